"""dpo_lab.bandits: every public function against a direct formula, the extreme-beta cases, and bad input."""
import itertools

import numpy as np
import pytest

from dpo_lab import bandits as B

RNG = np.random.default_rng(12345)
REWARD = RNG.normal(size=(6, 5))
REF = RNG.dirichlet(np.ones(5), size=6)
BETA = 0.7
PERMS4 = np.array(list(itertools.permutations(range(4))))
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
    np.testing.assert_allclose(B.optimal_policy(REWARD + shift, REF, BETA), B.optimal_policy(REWARD, REF, BETA),
                               atol=1e-13)
    np.testing.assert_allclose(B.log_partition(REWARD + shift, REF, BETA),
                               B.log_partition(REWARD, REF, BETA) + shift[:, 0] / BETA, rtol=1e-12)


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
    np.testing.assert_allclose(B.rlhf_objective(pi, REWARD, REF, BETA),
                               BETA * B.log_partition(REWARD, REF, BETA) - BETA * B.kl(pi, pi_star), rtol=1e-12)


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


# --- Bradley-Terry and Plackett-Luce --------------------------------------------------------------

def test_bradley_terry_values_symmetry_and_extremes():
    assert B.bradley_terry(1.0, 0.0) == pytest.approx(1 / (1 + np.exp(-1)), rel=1e-15)
    r = RNG.normal(size=(4, 7))
    p = B.bradley_terry(r[..., :, None], r[..., None, :])
    assert p.shape == (4, 7, 7)
    np.testing.assert_allclose(p + p.transpose(0, 2, 1), 1.0, atol=1e-15)
    with np.errstate(**NO_OVERFLOW):
        assert B.bradley_terry(1e4, -1e4) == 1.0 and B.bradley_terry(-1e4, 1e4) == 0.0
        assert B.bradley_terry(-745.0, 0.0) > 0  # far tail stays in floating range


def test_plackett_luce_sums_to_one_and_matches_eq18():
    reward = np.array([1.5, 0.8, 0.2, -0.5])
    p = B.plackett_luce_prob(reward, PERMS4)
    assert p.shape == (24,)
    assert p.sum() == pytest.approx(1.0, abs=1e-14)
    e = np.exp(reward)
    tau = PERMS4[5]
    by_hand = np.prod([e[tau[k]] / e[tau[k:]].sum() for k in range(4)])
    assert p[5] == pytest.approx(by_hand, rel=1e-13)
    np.testing.assert_allclose(B.plackett_luce_prob(reward, PERMS4, log=True), np.log(p), rtol=1e-13)


def test_plackett_luce_with_two_items_is_bradley_terry_and_shift_invariant():
    assert B.plackett_luce_prob([0.3, -1.2], [0, 1]) == pytest.approx(B.bradley_terry(0.3, -1.2), rel=1e-14)
    r = RNG.normal(size=(3, 4))
    np.testing.assert_allclose(B.plackett_luce_prob(r[:, None, :] + 7.0, PERMS4),
                               B.plackett_luce_prob(r[:, None, :], PERMS4), rtol=1e-12)


def test_plackett_luce_extreme_rewards_are_finite():
    with np.errstate(**NO_OVERFLOW):
        p = B.plackett_luce_prob([1e4, 0.0, -1e4, 5e3], PERMS4)
    assert np.isfinite(p).all() and p.sum() == pytest.approx(1.0)
    assert p[list(map(tuple, PERMS4)).index((0, 3, 1, 2))] == pytest.approx(1.0)


# --- samplers ------------------------------------------------------------------------------------

def test_sample_rankings_match_plackett_luce():
    n = 200_000
    context, ranked = B.sample_rankings(B.FOUR_ARMED, n, rng=0)
    assert context.shape == (n,) and ranked.shape == (n, 4) and (context == 0).all()
    codes = ranked @ 4 ** np.arange(4)
    freq = np.bincount(codes, minlength=4**4)[PERMS4 @ 4 ** np.arange(4)] / n
    exact = B.plackett_luce_prob(B.FOUR_ARMED.reward[0], PERMS4)
    # fixed seed; 5 standard errors per cell leaves room for 24 cells at once
    assert (np.abs(freq - exact) < 5 * np.sqrt(exact * (1 - exact) / n)).all()


def test_sample_rankings_subset_candidates_follow_pi_ref():
    bandit = B.Bandit(reward=np.zeros(4), ref_policy=[0.1, 0.2, 0.3, 0.4])
    context, ranked = B.sample_rankings(bandit, 100_000, rng=np.random.default_rng(1), k=1 + 1)
    assert (ranked[:, 0] != ranked[:, 1]).all()
    # with equal rewards the winner is a fair coin between the two candidates, so the winner is a
    # draw from pi_ref without replacement's first or second pick: P(y) = p_y (1 + sum_{z!=y} p_z/(1-p_z)) / 2
    p = np.array([0.1, 0.2, 0.3, 0.4])
    inclusion = p * (1 + np.array([sum(p[z] / (1 - p[z]) for z in range(4) if z != y) for y in range(4)]))
    freq = np.bincount(ranked[:, 0], minlength=4) / 1e5
    np.testing.assert_allclose(freq, inclusion / 2, atol=5 * np.sqrt(0.25 / 1e5))


def test_sample_preferences_follow_bradley_terry():
    reward = np.array([[1.0, 0.0, -1.0], [0.0, 2.0, 0.5]])
    prefs = B.sample_preferences(reward, 60_000, rng=3)
    assert isinstance(prefs, B.Preferences) and prefs.context.shape == (60_000,)
    assert (prefs.chosen != prefs.rejected).all() and set(np.unique(prefs.context)) == {0, 1}
    x, a, b = 1, 1, 0  # P(action 1 beats action 0 in context 1) = sigma(2)
    games = (prefs.context == x) & (np.minimum(prefs.chosen, prefs.rejected) == 0) & (
        np.maximum(prefs.chosen, prefs.rejected) == 1)
    win_rate = (prefs.chosen[games] == a).mean()
    assert abs(win_rate - B.bradley_terry(2.0, 0.0)) < 5 * np.sqrt(0.25 / games.sum())
    assert b == 0


def test_samplers_are_reproducible_and_use_context_probs():
    a = B.sample_preferences(B.CONTEXTUAL, 1000, rng=7)
    b = B.sample_preferences(B.CONTEXTUAL, 1000, rng=np.random.default_rng(7))
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    context, _ = B.sample_rankings(np.zeros((3, 2)), 30_000, rng=0, context_probs=[0.7, 0.2, 0.1])
    np.testing.assert_allclose(np.bincount(context) / 30_000, [0.7, 0.2, 0.1], atol=0.01)


def test_sampler_bad_input():
    with pytest.raises(ValueError, match="a Bandit carries its own"):
        B.sample_preferences(B.THREE_ARMED, 10, 0, ref_policy=[1 / 3] * 3)
    with pytest.raises(ValueError, match="n: expected a positive integer"):
        B.sample_preferences(B.THREE_ARMED, 0, 0)
    with pytest.raises(ValueError, match="k: must be in"):
        B.sample_rankings(B.THREE_ARMED, 10, 0, k=4)
    with pytest.raises(ValueError, match="k: must be in"):
        B.sample_rankings([1.0, 2.0, 3.0], 10, 0, k=3, ref_policy=[0.5, 0.5, 0.0])


# --- fit_reward ----------------------------------------------------------------------------------

def test_fit_reward_recovers_the_class_and_keeps_the_init_mean():
    bandit = B.random_bandit(4, 5, rng=2, ref_concentration=5.0)
    prefs = B.sample_preferences(bandit, 400_000, rng=2)
    inits = [np.zeros((4, 5)), np.random.default_rng(0).normal(scale=5.0, size=(4, 5))]
    fits = [B.fit_reward(*prefs, init=i) for i in inits]
    for fit, init in zip(fits, inits):
        np.testing.assert_allclose(fit.mean(-1), init.mean(-1), atol=1e-12)
    diff = fits[1] - fits[0]  # differ by a per-context constant (converged to gradient < 1e-12)
    np.testing.assert_allclose(diff - diff.mean(-1, keepdims=True), 0.0, atol=1e-9)
    centred = lambda r: r - r.mean(-1, keepdims=True)  # noqa: E731
    # 400k pairs over 4 contexts x 10 action pairs: standard error of each fitted gap ~0.01
    np.testing.assert_allclose(centred(fits[0]), centred(bandit.reward), atol=0.06)


def test_fit_reward_bad_input_and_separation():
    with pytest.raises(ValueError, match="chosen: indices"):
        B.fit_reward([0], [3], [0], init=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="shape mismatch"):
        B.fit_reward([0, 0], [1], [0], init=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="compares an action with itself"):
        B.fit_reward([0], [1], [1], init=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="init: contains NaN"):
        B.fit_reward([0], [1], [0], init=[np.nan, 0.0])
    with pytest.raises(ValueError, match="infinite: in context 0, action 1 beats action 0"):
        B.fit_reward([0, 0], [1, 1], [0, 0], init=np.zeros(2))
    # a chain 2 > 1 > 0 with 1 > 0 also answered once the other way: action 2 is still never beaten
    with pytest.raises(ValueError, match="action 2 beats action"):
        B.fit_reward([0, 0, 0], [2, 1, 0], [1, 0, 1], init=np.zeros(3))
    with pytest.raises(RuntimeError, match="no convergence"):
        B.fit_reward([0, 0], [1, 0], [0, 1], init=[0.0, 50.0], max_iter=1)


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
@pytest.mark.parametrize("bad, message", [
    ([0.6, 0.6, -0.2], ">= 0"),
    ([0.2, 0.3, 0.6], "sum to 1"),
    ([0.2, np.nan, 0.8], "NaN"),
])
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
    "bradley_terry": lambda r: B.bradley_terry(r, 0.0),
    "plackett_luce_prob": lambda r: B.plackett_luce_prob(r, [2, 0, 1]),
    "sample_preferences": lambda r: B.sample_preferences(r, 5, 0),
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
    "bradley_terry": lambda: B.bradley_terry(np.zeros(3), np.zeros(2)),
    "plackett_luce_prob": lambda: B.plackett_luce_prob(np.zeros((2, 3)), np.array([[0, 1, 2]] * 3)),
}


@pytest.mark.parametrize("case", SHAPE_CASES.values(), ids=SHAPE_CASES.keys())
def test_shape_mismatch(case):
    with pytest.raises(ValueError, match="shape mismatch"):
        case()


@pytest.mark.parametrize("ranking", [[0, 0, 1], [0, 1, 3], [0, 1], [2.0, 0.0, 1.0], [[0, 1, 2], [1, 1, 0]]])
def test_ranking_must_be_a_permutation(ranking):
    with pytest.raises(ValueError, match="ranking"):
        B.plackett_luce_prob(GOOD_R, ranking)
