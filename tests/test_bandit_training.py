"""Tests for dpo_lab.bandit_training: the tabular policy, every method's loss, fitting, RLHF baseline."""

import math

import numpy as np
import pytest
import torch

from dpo_lab import bandit_training as bt
from dpo_lab import bandits, preferences

SMALL = bandits.random_bandit(3, 4, rng=7, name="small")


@pytest.fixture(autouse=True)
def _one_thread():
    # tabular problems are tiny: threads only add contention on a shared 2-core machine
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def prefs():
    return preferences.sample_preferences(SMALL, 4000, rng=0)


# --- TabularPolicy --------------------------------------------------------------------------------


def test_policy_starts_at_reference():
    policy = bt.TabularPolicy(SMALL.ref_policy)
    np.testing.assert_allclose(policy.policy(), SMALL.ref_policy, rtol=0, atol=1e-15)
    assert policy.n_tokens == 1 and policy.vocab_size == 4


def test_two_token_policy_factorises_reference():
    policy = bt.TabularPolicy(bt.SHARED_PREFIX.ref_policy, vocab_size=bt.SHARED_PREFIX_VOCAB)
    assert policy.n_tokens == 2
    np.testing.assert_allclose(policy.policy(), bt.SHARED_PREFIX.ref_policy, rtol=0, atol=1e-15)
    # response 4 * 1 + 3 = (rare opening 1, token 3): p(t1 = 1) = 0.01, p(t2 = 3 | t1) = 0.1
    token_logps = policy.token_logps(torch.tensor([0]), torch.tensor([7]))
    np.testing.assert_allclose(token_logps.exp().detach().numpy(), [[0.01, 0.1]], rtol=1e-12)


def test_token_logps_sum_to_log_policy():
    policy = bt.TabularPolicy(bt.SHARED_PREFIX.ref_policy, vocab_size=4)
    with torch.no_grad():
        for theta in policy.theta:
            theta.normal_()
    actions = torch.arange(16)
    summed = policy.token_logps(torch.zeros(16, dtype=torch.long), actions).sum(-1)
    torch.testing.assert_close(summed, policy.log_policy()[0])
    np.testing.assert_allclose(policy.policy().sum(-1), 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "ref,vocab,match",
    [
        (np.array([0.5, 0.5]), None, "n_contexts, n_actions"),
        (np.array([[0.5, 0.6]]), None, "sum to 1"),
        (np.array([[1.0, 0.0]]), None, "> 0"),
        (np.full((1, 6), 1 / 6), 4, "vocab_size"),
        (np.full((1, 4), 0.25), 1, "vocab_size"),
    ],
)
def test_policy_bad_reference(ref, vocab, match):
    with pytest.raises(ValueError, match=match):
        bt.TabularPolicy(ref, vocab)


# --- method_loss ----------------------------------------------------------------------------------


def test_dpo_at_reference_is_log2(prefs):
    loss = bt.method_loss(bt.TabularPolicy(SMALL.ref_policy), prefs, "dpo", beta=0.5)
    assert loss.shape == (4000,)
    torch.testing.assert_close(loss, torch.full((4000,), math.log(2.0), dtype=torch.float64))


def test_method_loss_shapes_and_values(prefs):
    policy = bt.TabularPolicy(SMALL.ref_policy)
    ref = np.log(SMALL.ref_policy)
    chosen_ref = ref[prefs.context, prefs.chosen]
    pft = bt.method_loss(policy, prefs, "preferred_ft")
    np.testing.assert_allclose(pft.detach().numpy(), -chosen_ref, rtol=1e-12)
    ul = bt.method_loss(policy, prefs, "unlikelihood", alpha=0.5)
    rejected_p = SMALL.ref_policy[prefs.context, prefs.rejected]
    np.testing.assert_allclose(ul.detach().numpy(), -chosen_ref - 0.5 * np.log1p(-rejected_p), rtol=1e-12)
    rankings = preferences.sample_rankings(SMALL, 10, rng=1, k=3)
    pl = bt.method_loss(policy, rankings, "plackett_luce", beta=1.0)
    # at pi = pi_ref every implicit reward is 0: each ranking of 3 has probability 1/3!
    np.testing.assert_allclose(pl.detach().numpy(), np.log(6.0), rtol=1e-12)


def test_method_loss_bad_inputs(prefs):
    policy = bt.TabularPolicy(SMALL.ref_policy)
    with pytest.raises(ValueError, match="method must be one of"):
        bt.method_loss(policy, prefs, "ppo", beta=1.0)
    with pytest.raises(ValueError, match="beta is required"):
        bt.method_loss(policy, prefs, "dpo")
    with pytest.raises(ValueError, match="Rankings"):
        bt.method_loss(policy, prefs, "plackett_luce", beta=1.0)
    with pytest.raises(ValueError, match="Preferences"):
        bt.method_loss(policy, preferences.sample_rankings(SMALL, 5, rng=0, k=2), "dpo", beta=1.0)


# --- fit_policy -----------------------------------------------------------------------------------


def test_dpo_fit_equals_two_stage_rlhf(prefs):
    """Tabular DPO is the BT maximum-likelihood reward followed by the closed form (DPO Sec. 5)."""
    fit = bt.fit_policy(SMALL.ref_policy, prefs, "dpo", beta=0.5, steps=300)
    reward = preferences.fit_reward(*prefs, init=np.zeros(SMALL.reward.shape))
    closed_form = bandits.optimal_policy(reward, SMALL.ref_policy, 0.5)
    # 300 Adam steps on a convex problem with 4000 pairs reach the MLE to ~1e-10 in KL
    assert bt.mean_kl(fit.policy, closed_form, SMALL.context_probs) < 1e-8
    assert fit.curve.shape == (300,) and fit.curve[-1] < fit.curve[0] and fit.seconds > 0 and fit.samples == 0


def test_fit_counts_duplicates(prefs):
    doubled = preferences.Preferences(*(np.concatenate([a, a]) for a in prefs))
    once = bt.fit_policy(SMALL.ref_policy, prefs, "ipo", beta=1.0, steps=50)
    twice = bt.fit_policy(SMALL.ref_policy, doubled, "ipo", beta=1.0, steps=50)
    np.testing.assert_allclose(once.policy, twice.policy, rtol=0, atol=1e-12)


def test_odpo_zero_offsets_is_dpo(prefs):
    dpo = bt.fit_policy(SMALL.ref_policy, prefs, "dpo", beta=1.0, steps=30)
    odpo = bt.fit_policy(SMALL.ref_policy, prefs, "odpo", beta=1.0, steps=30, offset=np.zeros(4000))
    np.testing.assert_allclose(odpo.policy, dpo.policy, rtol=0, atol=1e-12)


def test_odpo_per_pair_offsets_are_kept_apart():
    """Two identical pairs with different offsets must not be merged into one row."""
    pair = preferences.Preferences(np.array([0, 0]), np.array([1, 1]), np.array([2, 2]))
    policy = bt.TabularPolicy(SMALL.ref_policy)
    offsets = np.array([0.0, 3.0])
    expected = bt.method_loss(policy, pair, "odpo", beta=1.0, offset=offsets).mean()
    fit = bt.fit_policy(SMALL.ref_policy, pair, "odpo", beta=1.0, steps=1, lr=1e-9, offset=offsets)
    assert fit.curve[0] == pytest.approx(expected.item(), rel=1e-12)


@pytest.mark.parametrize(
    "method,kwargs",
    [
        ("cdpo", {"label_smoothing": 0.1}),
        ("hinge", {}),
        ("unweighted", {}),
        ("unlikelihood", {"alpha": 0.5}),
        ("preferred_ft", {}),
    ],
)
def test_every_method_trains(prefs, method, kwargs):
    beta = None if method in bt.TOKEN_METHODS else 1.0
    fit = bt.fit_policy(SMALL.ref_policy, prefs, method, beta=beta, steps=20, **kwargs)
    assert fit.curve[-1] < fit.curve[0]
    np.testing.assert_allclose(fit.policy.sum(-1), 1.0, rtol=0, atol=1e-12)


def test_plackett_luce_fit_reaches_optimum():
    rankings = preferences.sample_rankings(SMALL, 20000, rng=2, k=4)
    fit = bt.fit_policy(SMALL.ref_policy, rankings, "plackett_luce", beta=1.0, steps=200)
    target = bandits.optimal_policy(SMALL.reward, SMALL.ref_policy, 1.0)
    # 20k full rankings of 4 actions in 3 contexts: sampling error in KL is ~ (parameters / data) ~ 1e-3
    assert bt.mean_kl(fit.policy, target, SMALL.context_probs) < 5e-3


def test_fit_bad_inputs(prefs):
    with pytest.raises(ValueError, match="steps"):
        bt.fit_policy(SMALL.ref_policy, prefs, "dpo", beta=1.0, steps=0)
    with pytest.raises(ValueError, match="lr"):
        bt.fit_policy(SMALL.ref_policy, prefs, "dpo", beta=1.0, lr=-1.0)
    with pytest.raises(ValueError, match="method"):
        bt.fit_policy(SMALL.ref_policy, prefs, "rlhf", beta=1.0)
    with pytest.raises(ValueError, match="offset has shape"):
        bt.fit_policy(SMALL.ref_policy, prefs, "odpo", beta=1.0, offset=np.zeros(3))
    bad = preferences.Preferences(prefs.context, prefs.chosen + 4, prefs.rejected)
    with pytest.raises(ValueError, match="data.chosen"):
        bt.fit_policy(SMALL.ref_policy, bad, "dpo", beta=1.0)
    with pytest.raises(ValueError, match="beta"):
        bt.fit_policy(SMALL.ref_policy, prefs, "dpo", beta=0.0, steps=1)


def test_fit_stops_on_non_finite_loss(prefs):
    # an absurd learning rate moves logits by 1e200 in one step: IPO's squared margin overflows to inf
    with pytest.raises(ValueError, match="ipo: loss became inf at step 1"):
        bt.fit_policy(SMALL.ref_policy, prefs, "ipo", beta=1.0, steps=5, lr=1e200)


# --- two-stage RLHF: the policy-gradient stage ------------------------------------------------------


def test_policy_gradient_reaches_closed_form():
    target = bandits.optimal_policy(SMALL.reward, SMALL.ref_policy, 0.5)
    fit = bt.policy_gradient(SMALL.reward, SMALL.ref_policy, 0.5, steps=300, samples_per_context=32, rng=0)
    # REINFORCE noise with 32 samples per context and Adam at lr 0.1 leaves KL ~1e-5 after 300 steps
    assert bt.mean_kl(fit.policy, target, SMALL.context_probs) < 1e-3
    assert fit.samples == 300 * 3 * 32
    # the logged objective approaches its maximum, beta * E_x log Z(x)
    best = 0.5 * SMALL.context_probs @ bandits.log_partition(SMALL.reward, SMALL.ref_policy, 0.5)
    assert fit.curve[0] < best - 0.01 and abs(fit.curve[-1] - best) < 1e-3


def test_policy_gradient_bad_inputs():
    with pytest.raises(ValueError, match="beta"):
        bt.policy_gradient(SMALL.reward, SMALL.ref_policy, 0.0)
    with pytest.raises(ValueError, match="samples_per_context"):
        bt.policy_gradient(SMALL.reward, SMALL.ref_policy, 1.0, samples_per_context=1)
    with pytest.raises(ValueError, match="reward has shape"):
        bt.policy_gradient(SMALL.reward[:, :3], SMALL.ref_policy, 1.0)
    with pytest.raises(ValueError, match="steps"):
        bt.policy_gradient(SMALL.reward, SMALL.ref_policy, 1.0, steps=2.5)


# --- the gradient (DPO appendix A.4) ------------------------------------------------------------------


def test_dpo_weight_hand_value():
    np.testing.assert_allclose(bt.dpo_weight(1.0, 0.0), 1 / (1 + math.e), rtol=1e-12)
    np.testing.assert_allclose(bt.dpo_weight([0.0, -3.0], [0.0, 1.0]), [0.5, 1 / (1 + math.exp(-4))], rtol=1e-12)


def test_dpo_gradient_matches_autograd(prefs):
    policy = bt.TabularPolicy(SMALL.ref_policy)
    with torch.no_grad():
        policy.theta[0].normal_(generator=torch.Generator().manual_seed(0))
    bt.method_loss(policy, prefs, "dpo", beta=0.7).mean().backward()
    analytic = bt.dpo_gradient(policy.policy(), SMALL.ref_policy, prefs, beta=0.7)
    np.testing.assert_allclose(analytic, policy.theta[0].grad[:, 0].numpy(), rtol=1e-10, atol=1e-14)


# --- data helpers -----------------------------------------------------------------------------------


def test_rank_by_reward_orders_candidates():
    ranked = bt.rank_by_reward(SMALL, 50, rng=3, k=3)
    sampled = preferences.sample_rankings(SMALL, 50, rng=3, k=3)
    np.testing.assert_array_equal(ranked.context, sampled.context)
    np.testing.assert_array_equal(np.sort(ranked.ranked, 1), np.sort(sampled.ranked, 1))
    scores = SMALL.reward[ranked.context[:, None], ranked.ranked]
    assert (np.diff(scores, axis=1) < 0).all()


def test_pairs_from_rankings_hand_example():
    pairs = bt.pairs_from_rankings(preferences.Rankings(np.array([2]), np.array([[3, 0, 1]])))
    assert list(pairs.context) == [2, 2, 2]
    assert sorted(zip(pairs.chosen, pairs.rejected)) == [(0, 1), (3, 0), (3, 1)]


def test_mean_kl_hand_value():
    p = np.array([[0.5, 0.5], [1.0, 0.0]])
    q = np.array([[0.25, 0.75], [0.5, 0.5]])
    expected = 0.2 * (0.5 * math.log(2) + 0.5 * math.log(0.5 / 0.75)) + 0.8 * math.log(2)
    assert bt.mean_kl(p, q, [0.2, 0.8]) == pytest.approx(expected, rel=1e-12)


def test_frontier_reward_at():
    beta = 0.7
    pi = bandits.optimal_policy(SMALL.reward, SMALL.ref_policy, beta)
    kl, reward = bandits.frontier_point(pi, SMALL.reward, SMALL.ref_policy)
    assert bt.frontier_reward_at(SMALL, kl) == pytest.approx(reward, abs=1e-8)
    # near pi_ref the frontier's reward grows like sqrt(KL): a KL tolerance of 1e-10 is ~1e-5 in reward
    ref_reward = (SMALL.ref_policy * SMALL.reward).sum(-1).mean()
    assert bt.frontier_reward_at(SMALL, 0.0) == pytest.approx(ref_reward, abs=1e-4)
    assert bt.frontier_reward_at(SMALL, 1e3) == pytest.approx(SMALL.reward.max(-1).mean(), abs=1e-12)
    with pytest.raises(ValueError, match="kl_budget"):
        bt.frontier_reward_at(SMALL, -0.1)


def test_shared_prefix_bandit():
    b = bt.SHARED_PREFIX
    assert b.n_contexts == 1 and b.n_actions == bt.SHARED_PREFIX_VOCAB**2
    assert b.ref_policy[0, :4].sum() == pytest.approx(0.97) and (b.reward[0, 4:] == -2.0).all()
