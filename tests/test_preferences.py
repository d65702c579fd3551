"""dpo_lab.preferences: Bradley-Terry and Plackett-Luce against direct formulas, the samplers, fit_reward, bad input."""

import itertools

import numpy as np
import pytest

from dpo_lab import bandits as B
from dpo_lab import preferences as P

RNG = np.random.default_rng(12345)
PERMS4 = np.array(list(itertools.permutations(range(4))))
# Overflow, 0/0 and log(0) outside the places that mean them are bugs here; underflow to 0 is not.
NO_OVERFLOW = dict(over="raise", invalid="raise", divide="raise")


# --- Bradley-Terry and Plackett-Luce --------------------------------------------------------------


def test_bradley_terry_values_symmetry_and_extremes():
    assert P.bradley_terry(1.0, 0.0) == pytest.approx(1 / (1 + np.exp(-1)), rel=1e-15)
    r = RNG.normal(size=(4, 7))
    p = P.bradley_terry(r[..., :, None], r[..., None, :])
    assert p.shape == (4, 7, 7)
    np.testing.assert_allclose(p + p.transpose(0, 2, 1), 1.0, atol=1e-15)
    with np.errstate(**NO_OVERFLOW):
        assert P.bradley_terry(1e4, -1e4) == 1.0 and P.bradley_terry(-1e4, 1e4) == 0.0
        assert P.bradley_terry(-745.0, 0.0) > 0  # far tail stays in floating range


def test_plackett_luce_sums_to_one_and_matches_eq18():
    reward = np.array([1.5, 0.8, 0.2, -0.5])
    p = P.plackett_luce_prob(reward, PERMS4)
    assert p.shape == (24,)
    assert p.sum() == pytest.approx(1.0, abs=1e-14)
    e = np.exp(reward)
    tau = PERMS4[5]
    by_hand = np.prod([e[tau[k]] / e[tau[k:]].sum() for k in range(4)])
    assert p[5] == pytest.approx(by_hand, rel=1e-13)
    np.testing.assert_allclose(P.plackett_luce_prob(reward, PERMS4, log=True), np.log(p), rtol=1e-13)


def test_plackett_luce_with_two_items_is_bradley_terry_and_shift_invariant():
    assert P.plackett_luce_prob([0.3, -1.2], [0, 1]) == pytest.approx(P.bradley_terry(0.3, -1.2), rel=1e-14)
    r = RNG.normal(size=(3, 4))
    np.testing.assert_allclose(
        P.plackett_luce_prob(r[:, None, :] + 7.0, PERMS4), P.plackett_luce_prob(r[:, None, :], PERMS4), rtol=1e-12
    )


def test_plackett_luce_extreme_rewards_are_finite():
    with np.errstate(**NO_OVERFLOW):
        p = P.plackett_luce_prob([1e4, 0.0, -1e4, 5e3], PERMS4)
    assert np.isfinite(p).all() and p.sum() == pytest.approx(1.0)
    assert p[list(map(tuple, PERMS4)).index((0, 3, 1, 2))] == pytest.approx(1.0)


# --- samplers ------------------------------------------------------------------------------------


def test_sample_rankings_match_plackett_luce():
    n = 200_000
    context, ranked = P.sample_rankings(B.FOUR_ARMED, n, rng=0)
    assert context.shape == (n,) and ranked.shape == (n, 4) and (context == 0).all()
    codes = ranked @ 4 ** np.arange(4)
    freq = np.bincount(codes, minlength=4**4)[PERMS4 @ 4 ** np.arange(4)] / n
    exact = P.plackett_luce_prob(B.FOUR_ARMED.reward[0], PERMS4)
    # fixed seed; 5 standard errors per cell leaves room for 24 cells at once
    assert (np.abs(freq - exact) < 5 * np.sqrt(exact * (1 - exact) / n)).all()


def test_sample_rankings_subset_candidates_follow_pi_ref():
    bandit = B.Bandit(reward=np.zeros(4), ref_policy=[0.1, 0.2, 0.3, 0.4])
    context, ranked = P.sample_rankings(bandit, 100_000, rng=np.random.default_rng(1), k=1 + 1)
    assert (ranked[:, 0] != ranked[:, 1]).all()
    # with equal rewards the winner is a fair coin between the two candidates, so the winner is a
    # draw from pi_ref without replacement's first or second pick: P(y) = p_y (1 + sum_{z!=y} p_z/(1-p_z)) / 2
    p = np.array([0.1, 0.2, 0.3, 0.4])
    inclusion = p * (1 + np.array([sum(p[z] / (1 - p[z]) for z in range(4) if z != y) for y in range(4)]))
    freq = np.bincount(ranked[:, 0], minlength=4) / 1e5
    np.testing.assert_allclose(freq, inclusion / 2, atol=5 * np.sqrt(0.25 / 1e5))


def test_sample_preferences_follow_bradley_terry():
    reward = np.array([[1.0, 0.0, -1.0], [0.0, 2.0, 0.5]])
    prefs = P.sample_preferences(reward, 60_000, rng=3)
    assert isinstance(prefs, P.Preferences) and prefs.context.shape == (60_000,)
    assert (prefs.chosen != prefs.rejected).all() and set(np.unique(prefs.context)) == {0, 1}
    x, a, b = 1, 1, 0  # P(action 1 beats action 0 in context 1) = sigma(2)
    games = (
        (prefs.context == x)
        & (np.minimum(prefs.chosen, prefs.rejected) == 0)
        & (np.maximum(prefs.chosen, prefs.rejected) == 1)
    )
    win_rate = (prefs.chosen[games] == a).mean()
    assert abs(win_rate - P.bradley_terry(2.0, 0.0)) < 5 * np.sqrt(0.25 / games.sum())
    assert b == 0


def test_samplers_are_reproducible_and_use_context_probs():
    a = P.sample_preferences(B.CONTEXTUAL, 1000, rng=7)
    b = P.sample_preferences(B.CONTEXTUAL, 1000, rng=np.random.default_rng(7))
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    context, _ = P.sample_rankings(np.zeros((3, 2)), 30_000, rng=0, context_probs=[0.7, 0.2, 0.1])
    np.testing.assert_allclose(np.bincount(context) / 30_000, [0.7, 0.2, 0.1], atol=0.01)


def test_sampler_bad_input():
    with pytest.raises(ValueError, match="a Bandit carries its own"):
        P.sample_preferences(B.THREE_ARMED, 10, 0, ref_policy=[1 / 3] * 3)
    with pytest.raises(ValueError, match="n: expected a positive integer"):
        P.sample_preferences(B.THREE_ARMED, 0, 0)
    with pytest.raises(ValueError, match="k: must be in"):
        P.sample_rankings(B.THREE_ARMED, 10, 0, k=4)
    with pytest.raises(ValueError, match="k: must be in"):
        P.sample_rankings([1.0, 2.0, 3.0], 10, 0, k=3, ref_policy=[0.5, 0.5, 0.0])


# --- fit_reward ----------------------------------------------------------------------------------


def test_fit_reward_recovers_the_class_and_keeps_the_init_mean():
    bandit = B.random_bandit(4, 5, rng=2, ref_concentration=5.0)
    prefs = P.sample_preferences(bandit, 400_000, rng=2)
    inits = [np.zeros((4, 5)), np.random.default_rng(0).normal(scale=5.0, size=(4, 5))]
    fits = [P.fit_reward(*prefs, init=i) for i in inits]
    for fit, init in zip(fits, inits):
        np.testing.assert_allclose(fit.mean(-1), init.mean(-1), atol=1e-12)
    diff = fits[1] - fits[0]  # differ by a per-context constant (converged to gradient < 1e-12)
    np.testing.assert_allclose(diff - diff.mean(-1, keepdims=True), 0.0, atol=1e-9)
    centred = lambda r: r - r.mean(-1, keepdims=True)  # noqa: E731
    # 400k pairs over 4 contexts x 10 action pairs: standard error of each fitted gap ~0.01
    np.testing.assert_allclose(centred(fits[0]), centred(bandit.reward), atol=0.06)


def test_fit_reward_bad_input_and_separation():
    with pytest.raises(ValueError, match="chosen: indices"):
        P.fit_reward([0], [3], [0], init=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="shape mismatch"):
        P.fit_reward([0, 0], [1], [0], init=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="compares an action with itself"):
        P.fit_reward([0], [1], [1], init=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="init: contains NaN"):
        P.fit_reward([0], [1], [0], init=[np.nan, 0.0])
    with pytest.raises(ValueError, match="infinite: in context 0, action 1 beats action 0"):
        P.fit_reward([0, 0], [1, 1], [0, 0], init=np.zeros(2))
    # a chain 2 > 1 > 0 with 1 > 0 also answered once the other way: action 2 is still never beaten
    with pytest.raises(ValueError, match="action 2 beats action"):
        P.fit_reward([0, 0, 0], [2, 1, 0], [1, 0, 1], init=np.zeros(3))
    with pytest.raises(RuntimeError, match="no convergence"):
        P.fit_reward([0, 0], [1, 0], [0, 1], init=[0.0, 50.0], max_iter=1)


# --- bad input --------------------------------------------------------------------------------

BAD_INPUT = {
    "bradley_terry NaN": (lambda: P.bradley_terry(np.array([1.0, np.nan]), 0.0), "finite"),
    "bradley_terry inf": (lambda: P.bradley_terry(0.0, np.array([np.inf, 1.0])), "finite"),
    "plackett_luce_prob NaN": (lambda: P.plackett_luce_prob([1.0, np.nan, 0.0], [2, 0, 1]), "NaN"),
    "plackett_luce_prob inf": (lambda: P.plackett_luce_prob([1.0, np.inf, 0.0], [2, 0, 1]), "inf"),
    "sample_preferences NaN": (lambda: P.sample_preferences([1.0, np.nan, 0.0], 5, 0), "NaN"),
    "sample_rankings inf": (lambda: P.sample_rankings([1.0, np.inf, 0.0], 5, 0), "inf"),
    "bradley_terry shapes": (lambda: P.bradley_terry(np.zeros(3), np.zeros(2)), "shape mismatch"),
    "plackett_luce_prob shapes": (
        lambda: P.plackett_luce_prob(np.zeros((2, 3)), np.array([[0, 1, 2]] * 3)),
        "shape mismatch",
    ),
}


@pytest.mark.parametrize("case, message", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_names_the_problem(case, message):
    with pytest.raises(ValueError, match=message):
        case()


@pytest.mark.parametrize("ranking", [[0, 0, 1], [0, 1, 3], [0, 1], [2.0, 0.0, 1.0], [[0, 1, 2], [1, 1, 0]]])
def test_ranking_must_be_a_permutation(ranking):
    with pytest.raises(ValueError, match="ranking"):
        P.plackett_luce_prob([1.0, 0.0, -1.0], ranking)
