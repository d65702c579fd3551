"""dpo_lab.bandits: every public function against a direct formula, the extreme-beta cases, and bad input.

The preference models and samplers (dpo_lab.preferences) are tested in test_preferences.py.
"""

import numpy as np
import pytest

from dpo_lab import bandits as B

RNG = np.random.default_rng(12345)
REWARD = RNG.normal(size=(6, 5))
REF = RNG.dirichlet(np.ones(5), size=6)
BETA = 0.7
# Overflow, 0/0 and log(0) outside the places that mean them are bugs here; underflow to 0 is not.
NO_OVERFLOW = dict(over="raise", invalid="raise", divide="raise")


def naive_policy(reward, ref, beta):
    w = ref * np.exp(reward / beta)
    return w / w.sum(-1, keepdims=True)


def random_policies(n, k, rng):
    return rng.dirichlet(np.full(k, 0.5), size=n)


# --- optimal_policy and log_partition ------------------------------------------------------------


def test_optimal_policy_matches_eq4_and_normalises():
    pi = B.optimal_policy(REWARD, REF, BETA)
    np.testing.assert_allclose(pi, naive_policy(REWARD, REF, BETA), rtol=1e-13)
    np.testing.assert_allclose(pi.sum(-1), 1.0, atol=1e-15)


def test_optimal_policy_broadcasts_a_shared_reference():
    pi = B.optimal_policy(REWARD, REF[0], BETA)
    assert pi.shape == REWARD.shape
    np.testing.assert_allclose(pi, naive_policy(REWARD, REF[0][None], BETA), rtol=1e-13)


def test_tiny_beta_gives_the_argmax_and_splits_ties_by_pi_ref():
    with np.errstate(**NO_OVERFLOW):
        pi = B.optimal_policy(REWARD, REF, 1e-4)
    np.testing.assert_array_equal(pi, np.eye(5)[REWARD.argmax(-1)])
    with np.errstate(**NO_OVERFLOW):
        tied = B.optimal_policy([1.0, 1.0, 0.0], [0.1, 0.3, 0.6], 1e-4)
    np.testing.assert_allclose(tied, [0.25, 0.75, 0.0], rtol=1e-15)


def test_huge_rewards_tiny_beta_are_exact():
    # reward gaps of 1e-4 at magnitude 1e4 with beta = 1e-4: r / beta = 1e8 overflows exp; the
    # exact answer is pi_ref * exp(gap / beta) normalised, gaps (0, -1, -inf-ish).
    reward = np.array([1e4, 1e4 - 1e-4, -1e4])
    ref = np.array([0.2, 0.3, 0.5])
    with np.errstate(**NO_OVERFLOW):
        pi = B.optimal_policy(reward, ref, 1e-4)
        log_z = B.log_partition(reward, ref, 1e-4)
        projected = B.project_reward(reward, ref, 1e-4)
    gap = (reward[1] - reward[0]) / 1e-4  # the float gap, -1 up to the spacing of floats near 1e4
    expected = np.array([0.2, 0.3 * np.exp(gap), 0.0]) / (0.2 + 0.3 * np.exp(gap))
    np.testing.assert_allclose(pi, expected, rtol=1e-14)
    np.testing.assert_allclose(log_z, 1e8 + np.log(0.2 + 0.3 * np.exp(gap)), rtol=1e-15)
    np.testing.assert_allclose(projected[:2], 1e-4 * np.log(expected[:2] / ref[:2]), rtol=1e-9)
    assert np.isfinite(projected).all() and np.isfinite(log_z)


def test_huge_beta_gives_pi_ref_to_first_order():
    for beta in (1e4, 1e6):
        pi = B.optimal_policy(REWARD, REF, beta)
        first_order = REF * (REWARD - (REF * REWARD).sum(-1, keepdims=True)) / beta
        # the next term of the expansion is O(1 / beta^2) with |r| <= 3 here
        np.testing.assert_allclose(pi - REF, first_order, atol=20 / beta**2)


def test_zero_reference_probability_stays_zero():
    pi = B.optimal_policy([5.0, 0.0, 1.0], [0.0, 0.5, 0.5], 0.1)
    assert pi[0] == 0.0
    np.testing.assert_allclose(pi[1:], naive_policy(np.array([0.0, 1.0]), np.array([0.5, 0.5]), 0.1))


def test_log_partition_matches_direct_sum_and_shape():
    log_z = B.log_partition(REWARD, REF, BETA)
    assert log_z.shape == (6,)
    np.testing.assert_allclose(log_z, np.log((REF * np.exp(REWARD / BETA)).sum(-1)), rtol=1e-13)
    assert np.shape(B.log_partition(REWARD[0], REF[0], BETA)) == ()


def test_lemma2_shift_by_a_function_of_x_keeps_the_policy():
    shift = RNG.normal(size=(6, 1)) * 100
    np.testing.assert_allclose(
        B.optimal_policy(REWARD + shift, REF, BETA), B.optimal_policy(REWARD, REF, BETA), atol=1e-13
    )
    np.testing.assert_allclose(
        B.log_partition(REWARD + shift, REF, BETA), B.log_partition(REWARD, REF, BETA) + shift[:, 0] / BETA, rtol=1e-12
    )


# --- kl and the objective -------------------------------------------------------------------------


def test_kl_known_values_and_conventions():
    np.testing.assert_allclose(B.kl([0.5, 0.5], [0.25, 0.75]), 0.5 * np.log(2) + 0.5 * np.log(2 / 3), rtol=1e-15)
    assert B.kl(REF, REF).tolist() == [0.0] * 6
    assert B.kl([1.0, 0.0], [0.5, 0.5]) == pytest.approx(np.log(2), rel=1e-15)  # 0 log 0 = 0
    assert B.kl([0.5, 0.5], [1.0, 0.0]) == np.inf  # q = 0 < p
    assert B.kl(REF, REF[0]).shape == (6,)


def test_kl_is_nonnegative_gibbs():
    p, q = random_policies(500, 5, RNG), random_policies(500, 5, RNG)
    assert (B.kl(p, q) >= 0).all()


def test_objective_at_optimum_is_beta_log_z_and_is_the_maximum():
    pi = B.optimal_policy(REWARD, REF, BETA)
    best = B.rlhf_objective(pi, REWARD, REF, BETA)
    np.testing.assert_allclose(best, BETA * B.log_partition(REWARD, REF, BETA), rtol=1e-13)
    others = random_policies(300, 5, RNG)[:, None, :]  # (300, 1, 5) against 6 contexts
    assert (B.rlhf_objective(others, REWARD, REF, BETA) <= best + 1e-12).all()
    np.testing.assert_allclose(B.rlhf_objective(REF, REWARD, REF, BETA), (REF * REWARD).sum(-1), rtol=1e-15)


def test_objective_gap_is_beta_kl_to_the_optimum():
    # Appendix A.1, Eq. 14: J(pi) = beta log Z - beta KL(pi || pi*).
    pi_star = B.optimal_policy(REWARD, REF, BETA)
    pi = random_policies(6, 5, RNG)
    np.testing.assert_allclose(
        B.rlhf_objective(pi, REWARD, REF, BETA),
        BETA * B.log_partition(REWARD, REF, BETA) - BETA * B.kl(pi, pi_star),
        rtol=1e-12,
    )


# --- implicit reward and Theorem 1 ----------------------------------------------------------------


def test_theorem1_projection_equals_implicit_reward_of_the_optimum():
    pi = B.optimal_policy(REWARD, REF, BETA)
    projected = B.project_reward(REWARD, REF, BETA)
    np.testing.assert_allclose(projected, B.implicit_reward(pi, REF, BETA), atol=1e-13)
    diff = REWARD - projected  # same class: depends on x only
    np.testing.assert_allclose(diff, diff[:, :1].repeat(5, axis=1), atol=1e-13)
    np.testing.assert_allclose(B.log_partition(projected, REF, BETA), 0.0, atol=1e-13)  # Proposition 1


def test_projection_is_the_same_for_the_whole_class():
    shifted = REWARD + RNG.normal(size=(6, 1)) * 50
    np.testing.assert_allclose(B.project_reward(shifted, REF, BETA), B.project_reward(REWARD, REF, BETA), atol=1e-12)


def test_implicit_reward_values():
    np.testing.assert_allclose(B.implicit_reward([0.5, 0.5], [0.25, 0.75], 2.0), 2 * np.log([2, 2 / 3]), rtol=1e-15)
    assert B.implicit_reward([1.0, 0.0], [0.5, 0.5], 1.0)[1] == -np.inf
    with pytest.raises(ValueError, match="ref_policy.*> 0"):
        B.implicit_reward([0.5, 0.5], [1.0, 0.0], 1.0)


# --- the frontier -------------------------------------------------------------------------------


def test_frontier_point_weights_contexts():
    pi = B.optimal_policy(REWARD, REF, BETA)
    w = RNG.dirichlet(np.ones(6))
    kl_, r_ = B.frontier_point(pi, REWARD, REF, w)
    assert kl_ == pytest.approx(w @ B.kl(pi, REF), rel=1e-14)
    assert r_ == pytest.approx(w @ (pi * REWARD).sum(-1), rel=1e-14)
    assert B.frontier_point(REF, REWARD, REF) == (0.0, pytest.approx((REF * REWARD).sum(-1).mean()))


def test_ideal_frontier_is_monotone_and_upper_bounds_random_policies():
    betas = np.geomspace(1e-3, 1e3, 61)
    kls, rewards = B.ideal_frontier(REWARD, REF, betas)
    assert kls.shape == rewards.shape == (61,)
    assert (np.diff(kls) <= 1e-12).all() and (np.diff(rewards) <= 1e-12).all()
    # every (kl, reward) of any policy lies under each supporting line of slope beta
    for pi in random_policies(200, 5, RNG)[:, None, :].repeat(6, axis=1):
        k, r = B.frontier_point(pi, REWARD, REF)
        assert (r <= rewards + betas * (k - kls) + 1e-12).all()


def test_ideal_frontier_bad_betas():
    with pytest.raises(ValueError, match="betas"):
        B.ideal_frontier(REWARD, REF, [])
    with pytest.raises(ValueError, match="beta"):
        B.ideal_frontier(REWARD, REF, [0.1, -1.0])
    with pytest.raises(ValueError, match="context_probs"):
        B.ideal_frontier(REWARD, REF, [0.1], context_probs=np.ones(5) / 5)


# --- Bandit ----------------------------------------------------------------------------------


def test_bandit_container():
    b = B.Bandit(reward=[1.0, 2.0], ref_policy=[0.5, 0.5])
    assert b.reward.shape == (1, 2) and b.n_contexts == 1 and b.n_actions == 2
    np.testing.assert_array_equal(b.context_probs, [1.0])
    with pytest.raises(ValueError):
        b.reward[0, 0] = 5.0  # read-only: named instances are shared
    shared = B.Bandit(reward=np.zeros((3, 2)), ref_policy=[0.25, 0.75])
    assert shared.ref_policy.shape == (3, 2)
    with pytest.raises(ValueError, match="shape mismatch"):
        B.Bandit(reward=np.zeros((3, 2)), ref_policy=np.full((4, 2), 0.5))


def test_named_bandits():
    assert B.THREE_ARMED.reward.shape == (1, 3) and B.FOUR_ARMED.reward.shape == (1, 4)
    assert B.CONTEXTUAL.reward.shape == (50, 20)
    assert set(B.BANDITS) == {"three_armed", "four_armed", "contextual_50x20"}
    again = B.random_bandit(50, 20, rng=20230529)
    np.testing.assert_array_equal(again.reward, B.CONTEXTUAL.reward)
    with pytest.raises(ValueError):
        B.random_bandit(2, 1, rng=0)


# --- bad input across the API -------------------------------------------------------------------

GOOD_R, GOOD_P = np.array([1.0, 0.0, -1.0]), np.array([0.2, 0.3, 0.5])
PROB_FUNCS = {
    "optimal_policy": lambda p: B.optimal_policy(GOOD_R, p, 1.0),
    "log_partition": lambda p: B.log_partition(GOOD_R, p, 1.0),
    "project_reward": lambda p: B.project_reward(GOOD_R, p, 1.0),
    "kl": lambda p: B.kl(p, GOOD_P),
    "rlhf_objective": lambda p: B.rlhf_objective(p, GOOD_R, GOOD_P, 1.0),
    "implicit_reward": lambda p: B.implicit_reward(p, GOOD_P, 1.0),
    "Bandit": lambda p: B.Bandit(GOOD_R, p),
}


@pytest.mark.parametrize("func", PROB_FUNCS.values(), ids=PROB_FUNCS.keys())
@pytest.mark.parametrize(
    "bad, message",
    [
        ([0.6, 0.6, -0.2], ">= 0"),
        ([0.2, 0.3, 0.6], "sum to 1"),
        ([0.2, np.nan, 0.8], "NaN"),
    ],
)
def test_bad_probabilities(func, bad, message):
    with pytest.raises(ValueError, match=message):
        func(np.array(bad))


BETA_FUNCS = {
    "optimal_policy": lambda b: B.optimal_policy(GOOD_R, GOOD_P, b),
    "log_partition": lambda b: B.log_partition(GOOD_R, GOOD_P, b),
    "project_reward": lambda b: B.project_reward(GOOD_R, GOOD_P, b),
    "rlhf_objective": lambda b: B.rlhf_objective(GOOD_P, GOOD_R, GOOD_P, b),
    "implicit_reward": lambda b: B.implicit_reward(GOOD_P, GOOD_P, b),
    "ideal_frontier": lambda b: B.ideal_frontier(GOOD_R, GOOD_P, [b]),
}


@pytest.mark.parametrize("func", BETA_FUNCS.values(), ids=BETA_FUNCS.keys())
@pytest.mark.parametrize("beta", [0.0, -1.0, np.nan, np.inf, [0.1, 0.2]])
def test_bad_beta(func, beta):
    with pytest.raises(ValueError, match="beta"):
        func(beta)


REWARD_FUNCS = {
    "optimal_policy": lambda r: B.optimal_policy(r, GOOD_P, 1.0),
    "log_partition": lambda r: B.log_partition(r, GOOD_P, 1.0),
    "project_reward": lambda r: B.project_reward(r, GOOD_P, 1.0),
    "rlhf_objective": lambda r: B.rlhf_objective(GOOD_P, r, GOOD_P, 1.0),
    "ideal_frontier": lambda r: B.ideal_frontier(r, GOOD_P, [1.0]),
    "Bandit": lambda r: B.Bandit(r, GOOD_P),
}


@pytest.mark.parametrize("func", REWARD_FUNCS.values(), ids=REWARD_FUNCS.keys())
@pytest.mark.parametrize("bad", [[1.0, np.nan, 0.0], [1.0, np.inf, 0.0]])
def test_bad_rewards(func, bad):
    with pytest.raises(ValueError, match="NaN|inf|finite"):
        func(np.array(bad))


SHAPE_CASES = {
    "optimal_policy": lambda: B.optimal_policy(np.zeros((2, 3)), np.full(4, 0.25), 1.0),
    "optimal_policy leading axes": lambda: B.optimal_policy(np.zeros((2, 3)), np.full((3, 3), 1 / 3), 1.0),
    "log_partition": lambda: B.log_partition(np.zeros(3), np.full(2, 0.5), 1.0),
    "project_reward": lambda: B.project_reward(np.zeros(3), np.full(2, 0.5), 1.0),
    "kl": lambda: B.kl(np.full(3, 1 / 3), np.full(2, 0.5)),
    "rlhf_objective": lambda: B.rlhf_objective(np.full(3, 1 / 3), np.zeros(2), np.full(3, 1 / 3), 1.0),
    "implicit_reward": lambda: B.implicit_reward(np.full(3, 1 / 3), np.full(2, 0.5), 1.0),
    "frontier_point": lambda: B.frontier_point(np.full(3, 1 / 3), np.zeros(2), np.full(3, 1 / 3)),
}


@pytest.mark.parametrize("case", SHAPE_CASES.values(), ids=SHAPE_CASES.keys())
def test_shape_mismatch(case):
    with pytest.raises(ValueError, match="shape mismatch"):
        case()


def test_public_checks_name_the_argument():
    # check_finite and check_same_actions are the checks dpo_lab.preferences reuses
    assert B.check_finite([1, 2], "x").dtype == np.float64
    with pytest.raises(ValueError, match="x: expected an array with an action axis"):
        B.check_finite(3.0, "x")
    assert B.check_same_actions(np.zeros((2, 3)), np.zeros(3), "a", "b") == (2, 3)
    with pytest.raises(ValueError, match=r"shape mismatch: a has shape \(3,\), b has shape \(2,\)"):
        B.check_same_actions(np.zeros(3), np.zeros(2), "a", "b")


# --- Best-of-N (issue 14) ----------------------------------------------------------------------------
def test_best_of_n_matches_drawing_n_and_keeping_the_best():
    reward = np.array([[0.0, 1.0, 1.0, 2.0, -1.0], [3.0, 3.0, 3.0, 0.0, 0.0]])  # ties, on purpose
    ref = np.array([[0.1, 0.3, 0.2, 0.05, 0.35], [0.2, 0.1, 0.1, 0.3, 0.3]])
    np.testing.assert_allclose(B.best_of_n(reward, ref, 1), ref, atol=1e-15)
    rng = np.random.default_rng(0)
    for n in (2, 4):
        pi = B.best_of_n(reward, ref, n)
        np.testing.assert_allclose(pi.sum(-1), 1.0, atol=1e-12)
        for x in range(2):
            draws = rng.choice(5, size=(200_000, n), p=ref[x])
            # the largest reward, a tie broken uniformly: a random key below the reward gap breaks it
            keys = reward[x][draws] + 1e-3 * rng.random(draws.shape)
            best = draws[np.arange(len(draws)), keys.argmax(1)]
            freq = np.bincount(best, minlength=5) / len(best)
            assert np.all(np.abs(freq - pi[x]) < 5 * np.sqrt(pi[x] * (1 - pi[x]) / len(best)) + 1e-12)


def test_best_of_n_kl_reaches_the_quoted_bound_only_without_atoms():
    k = 20_000
    ref, reward = np.full(k, 1.0 / k), np.arange(k, dtype=float)  # nearly atomless, no ties
    for n in (1, 4, 16):
        exact_kl = float(B.kl(B.best_of_n(reward, ref, n), ref))
        assert exact_kl <= B.best_of_n_kl_bound(n) + 1e-12
        assert exact_kl == pytest.approx(B.best_of_n_kl_bound(n), abs=2e-3)
    coarse = np.array([0.0, 0.0, 1.0, 1.0])  # ties: the best of 16 is far from "log 16 - 15/16" away
    ref4 = np.full(4, 0.25)
    assert float(B.kl(B.best_of_n(coarse, ref4, 16), ref4)) < B.best_of_n_kl_bound(16) - 1.0
    assert B.best_of_n_kl_bound(1) == 0.0


@pytest.mark.parametrize("n", [0, -2, 1.5, True, "4"])
def test_best_of_n_refuses_a_bad_n(n):
    with pytest.raises(ValueError, match="n"):
        B.best_of_n(np.zeros(3), np.full(3, 1 / 3), n)
    with pytest.raises(ValueError, match="n"):
        B.best_of_n_kl_bound(n)


@pytest.mark.parametrize("bad", ["0.1", b"1", True, np.bool_(True)])
def test_beta_must_be_a_number_not_a_string_or_bool(bad):
    with pytest.raises(ValueError, match="beta: expected a number"):
        B.optimal_policy(np.array([1.0, 0.0]), np.array([0.5, 0.5]), bad)


@pytest.mark.parametrize("bad", [["1", "2"], [True, False], np.array([1, "x"], dtype=object)])
def test_arrays_of_strings_or_bools_are_refused_by_name(bad):
    with pytest.raises(ValueError, match="reward: expected numbers"):
        B.optimal_policy(bad, np.array([0.5, 0.5]), 1.0)
