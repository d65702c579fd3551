"""Exact policies by enumeration through the engine, and pi_ref trained by the engine
(dpo_lab.exact.enumeration, dpo_lab.exact.reference)."""

import dataclasses

import numpy as np
import pytest
import torch
from exact_support import TINY_BATCH, TINY_STEPS, one_thread  # noqa: F401 (autouse fixture)

from dpo_lab import bandits, lm
from dpo_lab.exact import (
    Responses,
    chain_probs,
    make_space,
    optimal_policy,
    policy_logprobs,
    train_reference,
)
from dpo_lab.exact.reference import FLOOR


def random_model(space, seed=1):
    """A fresh GPT-2 over the task's tokens with large weights: far from uniform, untrained."""
    cfg = lm.gpt2_config(space.tokenizer, 2, 32, 2, 16)
    cfg.initializer_range = 0.6
    return lm.load_model(cfg, seed=seed, device="cpu")


def naive_logprob(model, prompt, response):
    """log pi(response | prompt) from one plain forward over prompt + response (no packing, no masks)."""
    ids = torch.tensor([list(prompt) + list(response)], device=next(model.parameters()).device)
    with torch.no_grad():
        logp = model(input_ids=ids).logits[0].double().log_softmax(-1)
    n = len(prompt)
    return float(sum(logp[n - 1 + t, tok] for t, tok in enumerate(response)))


# --- sums to 1: pins EOS and padding -----------------------------------------------------------------


def test_raw_probabilities_sum_to_one_for_a_trained_and_a_random_policy(space, reference):
    uniform = np.full(space.n_responses, 1.0 / space.n_responses)
    for model in (reference.model, random_model(space)):
        raw = policy_logprobs(model, space, normalize=False, tree=False)  # the engine's values, unchanged
        assert raw.shape == (space.n_prompts, space.n_responses)
        np.testing.assert_allclose(np.exp(raw).sum(axis=1), 1.0, rtol=0, atol=1e-5)
        # the prefix tree gives the same numbers from 11x fewer tokens, whatever the batch size
        tree = policy_logprobs(model, space, normalize=False)
        np.testing.assert_allclose(tree, raw, rtol=0, atol=1e-5)
        np.testing.assert_allclose(policy_logprobs(model, space, normalize=False, batch_size=7), tree, atol=1e-5)
        probs = np.exp(policy_logprobs(model, space))
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)
        assert (bandits.kl(probs, uniform) > 0.5).all()  # neither is near uniform: the check has teeth


@pytest.mark.parametrize("mistake", ["eos after the cap", "no eos before the cap"])
def test_an_enumeration_that_breaks_the_eos_convention_is_caught(space, mistake):
    r, eos = space.responses, space.eos_id
    if mistake == "eos after the cap":  # L words + EOS: the mass of longer continuations is lost
        ids = tuple(i if done else i + (eos,) for i, done in zip(r.ids, r.finished))
    else:  # k < L words without EOS: prefix probabilities, counted twice
        ids = tuple(i[:-1] if done and len(i) > 1 else i for i, done in zip(r.ids, r.finished))
    broken = dataclasses.replace(space, responses=Responses(ids, r.words, r.lengths, r.finished, 10, 3, eos))
    with pytest.raises(RuntimeError, match="not 1"):  # scoring each response's ids is what checks them
        policy_logprobs(random_model(space), broken, tree=False)


def test_enumerated_logprobs_agree_with_the_engine_on_one_response_and_with_a_naive_forward(space, reference):
    raw = policy_logprobs(reference.model, space, normalize=False)
    prompts = space.prompt_id_lists()
    for p, k in [(0, 0), (0, 7), (1, 57), (2, 300), (3, 1110), (2, 888)]:
        ids = list(space.responses.ids[k])
        alone = lm.sequence_logprobs(reference.model, [prompts[p]], [ids], add_eos=False)
        assert float(alone[0]) == pytest.approx(raw[p, k], abs=1e-5)
        assert naive_logprob(reference.model, prompts[p], ids) == pytest.approx(raw[p, k], abs=1e-4)


def test_engine_samples_are_enumerated_responses_at_their_enumerated_frequencies(space, reference):
    probs = np.exp(policy_logprobs(reference.model, space))
    n = 1000
    s = lm.sample(reference.model, space.tokenizer, space.prompt_id_lists(), n, space.max_len, seed=0)
    counts = np.zeros_like(probs)
    for p, ids, done in zip(s.prompt_index, s.response_ids, s.finished):
        k = space.responses.index(ids)  # raises if lm.sample produced something not enumerated
        assert done == space.responses.finished[k]
        counts[p, k] += 1
    for p in range(space.n_prompts):
        top = np.argsort(-probs[p])[:5]
        se = np.sqrt(probs[p, top] * (1 - probs[p, top]) / n)
        assert (np.abs(counts[p, top] / n - probs[p, top]) < 5 * se).all()


# --- L = 1: a bandit over next tokens ------------------------------------------------------------------


def test_with_one_token_the_task_is_a_bandit_over_next_tokens(space):
    one = make_space(max_len=1)
    assert one.n_responses == 11 and one.responses.ids[0] == (one.eos_id,)
    model = random_model(one, seed=3)
    probs = np.exp(policy_logprobs(model, one))
    order = [one.eos_id] + list(range(10))  # response k <-> next token order[k]
    logits = []
    with torch.no_grad():
        for prompt in one.prompt_id_lists():
            logits.append(model(input_ids=torch.tensor([prompt])).logits[0, -1].double()[order])
    logits = torch.stack(logits)
    np.testing.assert_allclose(probs, logits.softmax(-1).numpy(), rtol=0, atol=1e-6)
    for beta in (0.05, 0.3, 2.0):
        ours = optimal_policy(probs, one, beta)
        np.testing.assert_allclose(ours, bandits.optimal_policy(one.reward, probs, beta), rtol=0, atol=1e-12)
        # Eq. 4 for one token: pi_ref exp(r / beta) / Z = softmax(logits + r / beta)
        direct = (logits + torch.from_numpy(one.reward.copy()) / beta).softmax(-1).numpy()
        np.testing.assert_allclose(ours, direct, rtol=0, atol=1e-6)


# --- pi_ref --------------------------------------------------------------------------------------------


def test_pi_ref_is_far_from_uniform_and_closer_to_its_corpus_than_uniform_is(space, reference):
    probs = np.exp(policy_logprobs(reference.model, space))
    uniform = np.full_like(probs, 1.0 / space.n_responses)
    assert (bandits.kl(probs, uniform) > 2.0).all()  # log K = 7.01 nats at most
    chain = chain_probs(space)
    np.testing.assert_allclose(chain.sum(axis=1), 1.0, atol=1e-12)
    assert (chain.min(axis=1) > 0).all() and FLOOR > 0
    assert (bandits.kl(chain, probs) < bandits.kl(chain, uniform) / 3).all()
    losses = [m["loss"] for m in reference.run.metrics() if m.get("split") == "train"]
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])


def test_pi_ref_is_stored_resumable_and_reloads_identically(space, reference):
    again = train_reference(
        space, steps=TINY_STEPS, batch_size=TINY_BATCH, run_root=reference.run.path.parent, device="cpu"
    )
    assert again.run.id == reference.run.id and again.run.finished
    for a, b in zip(reference.model.parameters(), again.model.parameters()):
        assert torch.equal(a.cpu(), b.cpu())
    frozen = lm.load_model(reference.path, device="cpu")
    assert len(lm.load_tokenizer(reference.path)) == len(space.tokenizer)
    np.testing.assert_allclose(
        policy_logprobs(frozen, space), policy_logprobs(reference.model, space), rtol=0, atol=1e-6
    )


def test_bad_models_and_tasks_are_refused(space):
    from transformers import GPT2Config

    other = lm.load_model(GPT2Config(vocab_size=300, n_layer=1, n_embd=8, n_head=1, n_positions=16), device="cpu")
    with pytest.raises(ValueError, match="^model"):
        policy_logprobs(other, space)
    with pytest.raises(ValueError, match="^model"):
        policy_logprobs("gpt2", space)
    with pytest.raises(ValueError, match="^space"):
        policy_logprobs(random_model(space), "exact")
    with pytest.raises(ValueError, match="^n_positions"):
        train_reference(space, n_positions=4)
