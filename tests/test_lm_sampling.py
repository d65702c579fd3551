"""Ancestral sampling (dpo_lab.lm.sampling): left padding, EOS, reproducibility, the sampled
distribution against exact enumeration, truncation options and bad inputs."""

import inspect

import pytest
import torch
from lm_support import EOS, FOUR_EOS, FOUR_TOKENS, TINY, all_responses, one_thread  # noqa: F401 (autouse fixture)
from transformers import GPT2Config

from dpo_lab.lm import Samples, load_model, load_tokenizer, sample, sequence_logprobs
from dpo_lab.lm.sampling import _next_tokens

PROMPTS = [[1, 2, 3, 4, 5, 6, 7], [8], [9, 10, 11]]


@pytest.fixture(scope="module")
def model():
    return load_model(TINY, seed=0)


def greedy_without_cache(model, prompt, max_new_tokens):
    """Recompute the whole sequence every step: no cache, no padding, nothing to get wrong."""
    ids, out = list(prompt), []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            token = model(torch.tensor([ids])).logits[0, -1].argmax().item()
            out.append(token)
            ids.append(token)
            if token == EOS:
                break
    return out


def test_left_padded_cached_greedy_matches_a_loop_without_cache(model):
    batched = sample(model, None, PROMPTS, num_samples=1, max_new_tokens=12, seed=0, temperature=0)
    assert batched.response_ids == [greedy_without_cache(model, p, 12) for p in PROMPTS]
    alone = [sample(model, None, [p], 1, 12, 0, temperature=0).response_ids[0] for p in PROMPTS]
    assert batched.response_ids == alone


def test_same_seed_same_samples_other_seed_other_samples(model):
    a = sample(model, None, PROMPTS, 4, 10, seed=5)
    assert a.response_ids == sample(model, None, PROMPTS, 4, 10, seed=5).response_ids
    assert a.response_ids != sample(model, None, PROMPTS, 4, 10, seed=6).response_ids
    state = torch.get_rng_state()
    sample(model, None, PROMPTS, 1, 3, seed=0)
    assert torch.equal(state, torch.get_rng_state())


def test_layout_is_prompt_major(model):
    out = sample(model, None, PROMPTS, 2, 5, seed=0, batch_size=4)
    assert isinstance(out, Samples) and len(out) == 6
    assert out.prompt_index == [0, 0, 1, 1, 2, 2]
    assert out.prompt_ids == [PROMPTS[i] for i in out.prompt_index]
    assert out.texts is None


@pytest.fixture(scope="module")
def four_token_model():
    return load_model(FOUR_TOKENS, seed=1)


def test_samples_follow_the_model_distribution_exactly(four_token_model):
    prompt, n = [FOUR_EOS, 1], 6000
    outcomes = all_responses(2)
    exact = sequence_logprobs(four_token_model, [prompt] * len(outcomes), outcomes, add_eos=False).exp()
    assert abs(exact.sum().item() - 1) < 1e-5  # the 13 outcomes exhaust the distribution
    drawn = sample(four_token_model, None, [prompt], n, 2, seed=0, batch_size=2000)
    counts = torch.tensor([drawn.response_ids.count(o) for o in outcomes], dtype=torch.float64)
    assert counts.sum() == n
    chi2 = ((counts - n * exact.double()) ** 2 / (n * exact.double())).sum().item()
    assert chi2 < 32.9  # the 99.9% quantile of chi-square with 12 degrees of freedom
    for response, finished in zip(drawn.response_ids, drawn.finished):
        assert finished == (response[-1] == FOUR_EOS) and FOUR_EOS not in response[:-1]


def test_truncation_options_restrict_the_support():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(400, 1)
    gen = torch.Generator().manual_seed(0)
    assert set(_next_tokens(logits, gen, 1.0, 2, 1.0).tolist()) == {0, 1}
    assert set(_next_tokens(logits, gen, 1.0, 0, 0.5).tolist()) == {0}
    assert set(_next_tokens(logits, gen, 1.0, 0, 0.8).tolist()) == {0, 1}
    assert set(_next_tokens(logits, gen, 1.0, 0, 0.81).tolist()) == {0, 1, 2}
    assert set(_next_tokens(logits, gen, 0.0, 0, 1.0).tolist()) == {0}
    plain = _next_tokens(logits, gen, 1.0, 0, 1.0)
    assert set(plain.tolist()) == {0, 1, 2, 3}


def test_strings_are_tokenized_and_texts_decoded():
    tokenizer = load_tokenizer()
    cfg = GPT2Config(vocab_size=len(tokenizer), n_layer=1, n_embd=16, n_head=2, n_positions=32)
    model = load_model(cfg, seed=0)
    out = sample(model, tokenizer, ["This movie was", "I"], 2, 6, seed=0)
    assert out.prompt_ids[0] == [1212, 3807, 373]
    for response, text, finished in zip(out.response_ids, out.texts, out.finished):
        assert text == tokenizer.decode(response[:-1] if finished else response)
        assert len(response) <= 6


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"prompts": []}, "prompts is empty"),
        ({"prompts": "a string"}, "got a single string"),
        ({"prompts": ["text"]}, "tokenizer is None"),
        ({"prompts": [[1], []]}, r"prompts\[1\] is empty"),
        ({"prompts": [[1, 300]]}, r"prompts\[0\] holds a token id outside the vocabulary"),
        ({"prompts": [[1] * 60], "max_new_tokens": 5}, r"prompts\[0\] has 60 tokens; with max_new_tokens=5"),
        ({"num_samples": 0}, "num_samples must be an integer >= 1"),
        ({"max_new_tokens": 0}, "max_new_tokens must be an integer >= 1"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"temperature": -1.0}, "temperature must be a finite number >= 0"),
        ({"top_k": -1}, "top_k must be an integer >= 0"),
        ({"top_p": 0.0}, r"top_p must lie in \(0, 1\]"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ],
)
def test_bad_inputs_are_refused(model, kwargs, match):
    args = {"prompts": [[1]], "num_samples": 1, "max_new_tokens": 3, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        sample(model, None, **args)


def test_sampling_uses_the_current_name_of_the_kv_cache_argument():
    """transformers deprecated ``past_key_values=`` (removed in 5.40, inside the ``<6`` pin): sampling
    passes the cache under whatever name the installed version's forward takes, without a warning."""
    import warnings

    from transformers import GPT2Config

    from dpo_lab.lm import load_model, sample
    from dpo_lab.lm.sampling import cache_argument

    config = GPT2Config(vocab_size=10, n_layer=1, n_embd=8, n_head=2, n_positions=16, eos_token_id=9, bos_token_id=9)
    model = load_model(config, seed=0)
    assert cache_argument(model) in inspect.signature(model.base_model.forward).parameters
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a deprecation warning would fail here
        sample(model, None, [[1, 2]], 2, 4, seed=0, ref=load_model(model.config, seed=1))
