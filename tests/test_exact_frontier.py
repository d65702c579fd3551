"""Exact KL, expected reward, the optimum pi*_beta and the reward-KL frontier of the exact task
(dpo_lab.exact.quantities), on the bandit whose arms are the enumerated responses."""

import math

import numpy as np
import pytest
from exact_support import one_thread, random_policy  # noqa: F401 (autouse fixture)

from dpo_lab import bandits
from dpo_lab.exact import (
    evaluate,
    exact_kl,
    expected_reward,
    frontier,
    frontier_bound,
    frontier_gap,
    frontier_reward,
    log_partition,
    optimal_policy,
    policy_logprobs,
    reward_from_policy,
)

BETAS = (1e-3, 0.05, 0.1, 1.0, 5.0, 1e3)
PAPER_BETAS = (0.05, 0.1, 1.0, 5.0)


@pytest.fixture(scope="module")
def ref(space, reference):
    """pi_ref's exact (P, K) probabilities, enumerated once."""
    return np.exp(policy_logprobs(reference.model, space))


def random_policies(space, seed=0):
    """Random policies of several shapes: smooth, peaked, sparse (exact zeros) and one-hot."""
    rng = np.random.default_rng(seed)
    out = [random_policy(space, rng, t) for t in (0.3, 1.0, 3.0, 10.0)]
    sparse = rng.dirichlet(np.full(space.n_responses, 0.05), size=space.n_prompts)
    sparse[sparse < 1e-3] = 0.0
    out.append(sparse / sparse.sum(axis=1, keepdims=True))
    out.append(np.eye(space.n_responses)[rng.integers(space.n_responses, size=space.n_prompts)])
    return out


# --- KL and reward ---------------------------------------------------------------------------------


def test_kl_of_pi_ref_to_itself_is_zero_and_kl_matches_a_brute_force_sum(space, reference, ref):
    assert (exact_kl(ref, ref, space) == 0).all()
    np.testing.assert_allclose(exact_kl(reference.model, ref, space), 0.0, atol=1e-12)  # enumerated again
    for policy in random_policies(space)[:5]:
        brute = [sum(p * math.log(p / q) for p, q in zip(policy[x], ref[x]) if p > 0) for x in range(space.n_prompts)]
        np.testing.assert_allclose(exact_kl(policy, ref, space), brute, rtol=1e-10, atol=1e-12)
        brute_r = [sum(p * r for p, r in zip(policy[x], space.reward[x])) for x in range(space.n_prompts)]
        np.testing.assert_allclose(expected_reward(policy, space), brute_r, rtol=0, atol=1e-12)
        assert (exact_kl(policy, ref, space) > 0).all()


# --- the frontier is a theorem ---------------------------------------------------------------------


def test_no_random_policy_beats_the_frontier_at_any_beta(space, ref):
    slack_without_kl = []
    for policy in random_policies(space):
        kl, reward = exact_kl(policy, ref, space), expected_reward(policy, space)
        for beta in BETAS:
            bound = beta * log_partition(ref, space, beta)
            assert (reward <= bound + beta * kl + 1e-12).all()  # (F), per prompt
            slack_without_kl.append((reward - bound).max())
        gap = frontier_gap(ref, space, kl.mean(), reward.mean())
        assert gap <= 1e-12
    # without its KL term the bound is false: (F) is not trivially loose
    assert max(slack_without_kl) > 0.1


@pytest.mark.parametrize("beta", BETAS)
def test_the_optimum_reaches_the_frontier_exactly_and_gives_back_the_reward(space, ref, beta):
    star = optimal_policy(ref, space, beta)
    np.testing.assert_allclose(star, bandits.optimal_policy(space.reward, ref, beta), rtol=0, atol=0)
    kl, reward = exact_kl(star, ref, space), expected_reward(star, space)
    # equality in (F): E[r] = beta log Z + beta KL, prompt by prompt
    np.testing.assert_allclose(reward, beta * (log_partition(ref, space, beta) + kl), rtol=0, atol=1e-9)
    assert abs(frontier_gap(ref, space, kl.mean(), reward.mean())) < 1e-9
    if beta >= 0.05:  # Eq. 5 inverts Eq. 4 wherever pi* is not 0 to float precision
        np.testing.assert_allclose(reward_from_policy(star, ref, space, beta), space.reward, rtol=0, atol=1e-8)


def test_frontier_reward_is_the_smallest_bound_and_its_ends_are_exact(space, ref):
    assert frontier_reward(ref, space, 0.0) == pytest.approx(float((ref * space.reward).sum(1).mean()), abs=1e-15)
    assert frontier_reward(ref, space, 1e3) == pytest.approx(float(space.reward.max(axis=1).mean()), abs=1e-12)
    kls, rewards = frontier(ref, space, PAPER_BETAS)
    for kl, reward in zip(kls, rewards):
        best = frontier_reward(ref, space, kl)
        assert best == pytest.approx(reward, abs=1e-9)
        for beta in BETAS:  # every beta bounds; the frontier is the smallest bound
            assert frontier_bound(ref, space, beta, kl) >= best - 1e-12


def test_frontier_is_monotone_and_the_paper_betas_span_it(space, ref):
    kls, rewards = frontier(ref, space, np.logspace(-3, 3, 25))
    assert (np.diff(kls) <= 0).all() and (np.diff(rewards) <= 0).all()  # flat only where pi* is the argmax
    assert (np.diff(kls[6:]) < 0).all() and (np.diff(rewards[6:]) < 0).all()  # beta >= 0.03
    kl_paper, reward_paper = frontier(ref, space, PAPER_BETAS)
    r_ref, r_max = float((ref * space.reward).sum(1).mean()), float(space.reward.max(axis=1).mean())
    gain = (reward_paper - r_ref) / (r_max - r_ref)
    assert kl_paper[0] > 3.0 and gain[1] > 0.95  # beta = 0.05, 0.1: at the reward maximiser
    assert 0.1 < gain[2] < 0.5  # beta = 1: mid-frontier
    assert kl_paper[-1] < 0.05 and gain[-1] < 0.05  # beta = 5: near pi_ref
    assert (np.diff(gain) < 0).all()


# --- evaluation records ----------------------------------------------------------------------------


def test_evaluate_gives_flat_finite_numbers_for_arrays_and_models(space, reference, ref):
    policy = random_policies(space, seed=5)[2]
    out = evaluate(policy, ref, space)
    assert all(k.startswith("eval/enum_") and math.isfinite(v) for k, v in out.items())
    assert out["eval/enum_kl"] == pytest.approx(np.mean([out[f"eval/enum_kl/{p}"] for p in range(4)]))
    assert out["eval/enum_reward"] == pytest.approx(expected_reward(policy, space).mean())
    assert out["eval/enum_frontier_gap"] <= 1e-12 < out["eval/enum_frontier_reward"] - out["eval/enum_reward"]
    at_ref = evaluate(reference.model, ref, space, prefix="exact/")
    assert at_ref["exact/kl"] == pytest.approx(0.0, abs=1e-12) and abs(at_ref["exact/frontier_gap"]) < 1e-12


# --- bad inputs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0, -0.1, "0.1", True, None, float("nan"), float("inf"), [0.1]])
def test_bad_betas_are_refused_by_name(space, ref, beta):
    with pytest.raises(ValueError, match="^beta"):
        optimal_policy(ref, space, beta)
    with pytest.raises(ValueError, match="^beta"):
        log_partition(ref, space, beta)


def test_other_bad_inputs_are_refused_by_name(space, ref):
    for betas in ([], ["0.1"], [0.1, -1.0], "0.1"):
        with pytest.raises(ValueError, match="^betas"):
            frontier(ref, space, betas)
    for kl in (-0.5, "1", float("nan")):
        with pytest.raises(ValueError, match="^kl"):
            frontier_reward(ref, space, kl)
    with pytest.raises(ValueError, match="^policy"):
        exact_kl(ref[:, :-1], ref, space)
    with pytest.raises(ValueError, match="^policy"):
        exact_kl(ref * 1.01, ref, space)
    with pytest.raises(ValueError, match="^ref"):
        exact_kl(ref, "pi_ref", space)
    with pytest.raises(ValueError, match="^space"):
        exact_kl(ref, ref, None)
    with pytest.raises(ValueError, match="^reward"):
        frontier_gap(ref, space, 0.1, "0.5")
