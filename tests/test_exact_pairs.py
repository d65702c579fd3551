"""Preference pairs of the exact task (dpo_lab.exact.pairs): drawn from pi_ref, labelled by the gold
reward, and accepted by the engine's preference trainer."""

import numpy as np
import pytest
from exact_support import one_thread  # noqa: F401 (autouse fixture)

from dpo_lab import lm
from dpo_lab.exact import (
    chain_probs,
    evaluate,
    pair_arrays,
    policy_logprobs,
    sample_pairs,
    trainer_pairs,
    with_offset,
)


@pytest.fixture(scope="module")
def chain(space):
    """The corpus distribution: an exact, model-free pi_ref for the statistical tests."""
    return chain_probs(space)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_bradley_terry_labels_win_at_the_sigmoid_rate(space, chain):
    n = 10_000
    pairs = sample_pairs(space, chain, n, seed=0)
    d = np.array([p["score_chosen"] - p["score_rejected"] for p in pairs])
    # P(the better response is chosen | pair) = sigmoid(|r1 - r2|); a tie is a coin flip (counted 1/2)
    won = np.where(d > 0, 1.0, np.where(d == 0, 0.5, 0.0))
    expected = sigmoid(np.abs(d))
    se = np.sqrt(np.mean(expected * (1 - expected)) / n)
    assert abs(won.mean() - expected.mean()) < 4 * se  # fixed seed: cannot flake
    for gap in np.unique(np.round(np.abs(d[d != 0]), 9))[:4]:  # and gap by gap
        rows = np.isclose(np.abs(d), gap)
        p = sigmoid(gap)
        assert abs(won[rows].mean() - p) < 5 * np.sqrt(p * (1 - p) / rows.sum()) + 1e-12
    assert 0.6 < won.mean() < 0.9  # informative but noisy at scale 1: neither coin flips nor r*'s order


def test_order_labels_always_prefer_the_larger_reward_and_never_tie(space, chain):
    pairs = sample_pairs(space, chain, 3000, seed=1, labels="order")
    assert len(pairs) == 3000
    assert all(p["score_chosen"] > p["score_rejected"] for p in pairs)
    assert all(p["offset"] > 0 for p in pairs)


def test_the_log_offset_of_odpo_needs_and_gets_ordered_pairs(space, chain):
    pairs = sample_pairs(space, chain, 500, seed=1, labels="order", offset="log")
    gaps = np.array([p["score_chosen"] - p["score_rejected"] for p in pairs])
    np.testing.assert_allclose([p["offset"] for p in pairs], np.log(gaps), rtol=1e-12)
    assert min(p["offset"] for p in pairs) == 0.0  # r* gaps are whole numbers: a gap of 1 adds no offset
    identity = sample_pairs(space, chain, 500, seed=1, labels="order")
    assert [p["chosen_index"] for p in identity] == [p["chosen_index"] for p in pairs]  # same pairs, other f
    with pytest.raises(ValueError, match="offset.*labels='order'"):
        sample_pairs(space, chain, 10, seed=0, labels="bt", offset="log")
    with pytest.raises(ValueError, match="offset"):
        sample_pairs(space, chain, 10, seed=0, labels="order", offset="sqrt")


def test_pairs_are_distinct_responses_drawn_from_pi_ref(space, chain):
    n = 10_000
    prompt, chosen, rejected = pair_arrays(sample_pairs(space, chain, n, seed=2))
    assert (chosen != rejected).all()
    counts = np.bincount(prompt, minlength=space.n_prompts)
    assert (np.abs(counts / n - 0.25) < 5 * np.sqrt(0.25 * 0.75 / n)).all()
    # P(k in the pair | x) for two draws without replacement: pi_k + sum_{j != k} pi_j pi_k / (1 - pi_j)
    for p in range(space.n_prompts):
        pi = chain[p]
        inclusion = pi + pi * ((pi / (1 - pi)).sum() - pi / (1 - pi))
        rows = prompt == p
        for k in np.argsort(-pi)[:3]:
            freq = ((chosen[rows] == k) | (rejected[rows] == k)).mean()
            assert abs(freq - inclusion[k]) < 5 * np.sqrt(inclusion[k] * (1 - inclusion[k]) / rows.sum())


def test_pair_fields_agree_with_the_task_and_the_seed_decides_everything(space, chain):
    pairs = sample_pairs(space, chain, 200, seed=3)
    assert pairs == sample_pairs(space, chain, 200, seed=3)
    assert pairs != sample_pairs(space, chain, 200, seed=4)
    for pair in pairs:
        p, w, rej = pair["prompt_index"], pair["chosen_index"], pair["rejected_index"]
        assert pair["prompt"] == space.prompts[p] and pair["prompt_ids"] == list(space.prompt_ids[p])
        assert pair["chosen_ids"] == list(space.responses.ids[w]) and pair["chosen"] == space.text(w)
        assert pair["rejected_ids"] == list(space.responses.ids[rej]) and pair["rejected"] == space.text(rej)
        assert pair["score_chosen"] == space.reward[p, w] and pair["score_rejected"] == space.reward[p, rej]
        assert pair["offset"] == pytest.approx(pair["score_chosen"] - pair["score_rejected"], abs=1e-12)
        assert (pair["chosen_ids"][-1] == space.eos_id) == space.responses.finished[w]  # EOS iff k < L


def test_the_engine_trains_on_the_pairs_and_records_the_exact_evaluation(space, reference, tmp_path):
    ref_probs = np.exp(policy_logprobs(reference.model, space))
    pairs = sample_pairs(space, ref_probs, 64, seed=5)
    policy, ref = lm.load_model(reference.path, device="cpu"), lm.load_model(reference.path, device="cpu")
    for loss, data in (("dpo", trainer_pairs(pairs)), ("odpo", trainer_pairs(pairs, odpo=True))):
        trained = lm.train_preferences(
            policy,
            ref,
            data,
            loss=loss,
            beta=0.1,
            steps=2,
            batch_size=16,
            lr=1e-3,
            add_eos=False,  # responses carry their own EOS
            eval_fn=lambda model, step: evaluate(model, ref_probs, space),
            eval_every=2,
            run_root=tmp_path,
            progress=False,
        )
        record = [m for m in trained.run.metrics() if m.get("split") == "eval"][-1]
        assert record["eval/enum_kl"] > 0 and record["eval/enum_frontier_gap"] <= 1e-9
        assert set(data[0]) == {"prompt_ids", "chosen_ids", "rejected_ids"} | ({"offset"} if loss == "odpo" else set())


def test_bad_pair_arguments_are_refused_by_name(space, chain):
    for kwargs, name in (
        ({"n": 0}, "n"),
        ({"n": "10"}, "n"),
        ({"n": 2.5}, "n"),
        ({"seed": -1}, "seed"),
        ({"seed": "0"}, "seed"),
        ({"labels": "rank"}, "labels"),
    ):
        args = {"n": 10, "seed": 0, **kwargs}
        with pytest.raises(ValueError, match=f"^{name}"):
            sample_pairs(space, chain, **args)
    with pytest.raises(ValueError, match="^ref"):
        sample_pairs(space, chain[:, :10], 10, seed=0)
    with pytest.raises(ValueError, match="^pairs"):
        trainer_pairs({"prompt_ids": [[1]]})
    with pytest.raises(ValueError, match="^pairs"):
        trainer_pairs([{"prompt_ids": [1], "chosen_ids": [2]}])


def test_with_offset_recomputes_the_offset_of_the_same_pairs(space, chain):
    pairs = sample_pairs(space, chain, 300, seed=3, labels="order")
    logged = with_offset(pairs, "log")
    assert [p["offset"] for p in logged] == [p["offset"] for p in sample_pairs(space, chain, 300, 3, "order", "log")]
    assert all(p["offset"] == p["score_chosen"] - p["score_rejected"] for p in pairs)  # the input is unchanged
    with pytest.raises(ValueError, match="offset.*r\\*\\(y_w\\) > r\\*\\(y_l\\)"):
        with_offset(sample_pairs(space, chain, 300, seed=3), "log")  # Bradley-Terry: some pairs are reversed
    with pytest.raises(ValueError, match="offset"):
        with_offset(pairs, "square")
