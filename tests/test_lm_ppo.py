"""The PPO pieces of dpo_lab.lm.ppo against straightforward references written here, on a hand-made
trajectory (two responses of 3 and 1 tokens, padded to 4)."""

import math

import pytest
import torch

from dpo_lab.lm import ppo

MASK = torch.tensor([[True, True, True, False], [True, False, False, False]])
LOGPS = torch.tensor([[-1.0, -0.5, -2.0, 0.0], [-0.3, 0.0, 0.0, 0.0]], dtype=torch.float64)
REF = torch.tensor([[-1.2, -0.5, -1.0, 0.0], [-0.9, 0.0, 0.0, 0.0]], dtype=torch.float64)
VALUES = torch.tensor([[0.5, 0.2, -0.1, 7.0], [0.4, 9.0, 9.0, 9.0]], dtype=torch.float64)  # junk on padding
SCORES = torch.tensor([1.0, -2.0], dtype=torch.float64)


def reference_gae(rewards, values, lengths, gamma, lam):
    """Textbook GAE, one response at a time, with plain Python numbers."""
    adv, ret = [], []
    for r, v, n in zip(rewards.tolist(), values.tolist(), lengths):
        v = v[:n] + [0.0]  # the episode ends after the last token
        deltas = [r[t] + gamma * v[t + 1] - v[t] for t in range(n)]
        a = [sum((gamma * lam) ** k * deltas[t + k] for k in range(n - t)) for t in range(n)]
        adv.append(a + [0.0] * (len(r) - n))
        ret.append([a[t] + v[t] for t in range(n)] + [0.0] * (len(r) - n))
    return torch.tensor(adv, dtype=torch.float64), torch.tensor(ret, dtype=torch.float64)


def test_shaped_rewards_pay_the_kl_per_token_and_the_score_at_the_end():
    rewards = ppo.shaped_rewards(SCORES, LOGPS, REF, MASK, kl_coef=0.1)
    expected = [[-0.1 * 0.2, 0.0, -0.1 * -1.0 + 1.0, 0.0], [-0.1 * 0.6 - 2.0, 0.0, 0.0, 0.0]]
    torch.testing.assert_close(rewards, torch.tensor(expected, dtype=torch.float64))
    # summed, the shaped rewards are score - beta * log(pi / pi_ref) of the whole response (Eq. 3)
    torch.testing.assert_close(rewards.sum(1), SCORES - 0.1 * ((LOGPS - REF) * MASK).sum(1))
    assert ppo.last_token(MASK).tolist() == [2, 0]


@pytest.mark.parametrize("gamma, lam", [(1.0, 0.95), (0.9, 0.5), (1.0, 1.0), (0.99, 0.0)])
def test_gae_matches_the_textbook_recursion(gamma, lam):
    rewards = ppo.shaped_rewards(SCORES, LOGPS, REF, MASK, kl_coef=0.05)
    advantages, returns = ppo.gae(rewards, VALUES, MASK, gamma, lam)
    expected_adv, expected_ret = reference_gae(rewards, VALUES, [3, 1], gamma, lam)
    torch.testing.assert_close(advantages, expected_adv)
    torch.testing.assert_close(returns, expected_ret)
    if lam == 1.0 and gamma == 1.0:  # Monte Carlo: the return of token t is the reward still to come
        torch.testing.assert_close(returns[0, 0], rewards[0, :3].sum())


def test_gae_ignores_what_stands_on_padding():
    junk = VALUES.clone()
    junk[~MASK] = -123.0
    a1, r1 = ppo.gae(ppo.shaped_rewards(SCORES, LOGPS, REF, MASK, 0.1), VALUES, MASK)
    a2, r2 = ppo.gae(ppo.shaped_rewards(SCORES, LOGPS, REF, MASK, 0.1), junk, MASK)
    torch.testing.assert_close(a1, a2)
    torch.testing.assert_close(r1, r2)


def test_policy_loss_is_the_clipped_surrogate():
    old = LOGPS.clone()
    new = LOGPS + torch.tensor([[0.5, -0.5, 0.05, 0.0], [0.1, 0.0, 0.0, 0.0]], dtype=torch.float64)
    adv = torch.tensor([[1.0, 1.0, -1.0, 0.0], [-2.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    loss, stats = ppo.policy_loss(new, old, adv, MASK, clip=0.2)
    terms = []
    for logp, logp_old, a in [(0.5, 0.0, 1.0), (-0.5, 0.0, 1.0), (0.05, 0.0, -1.0), (0.1, 0.0, -2.0)]:
        rho = math.exp(logp - logp_old)
        terms.append(-min(rho * a, min(max(rho, 0.8), 1.2) * a))
    assert float(loss) == pytest.approx(sum(terms) / 4)
    # clipped: token 1 (rho = e^0.5 > 1.2 with A > 0); token 2 has rho = e^-0.5 < 0.8, A > 0: unclipped wins
    assert stats["policy/clipfrac"] == pytest.approx(1 / 4)
    assert stats["policy/approxkl"] == pytest.approx((0.125 + 0.125 + 0.00125 + 0.005) / 4)
    same, _ = ppo.policy_loss(old, old, adv, MASK)
    assert float(same) == pytest.approx(-float((adv * MASK).sum() / 4))  # rho = 1: minus the mean advantage


def test_value_loss_is_the_clipped_squared_error():
    returns = torch.tensor([[1.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    old = torch.zeros_like(returns)
    new = torch.tensor([[0.5, 0.1, -0.1, 5.0], [0.1, 0.0, 0.0, 0.0]], dtype=torch.float64)
    loss, stats = ppo.value_loss(new, old, returns, MASK, clip=0.2)
    terms = []
    for v, r in [(0.5, 1.0), (0.1, 0.0), (-0.1, 0.0), (0.1, 2.0)]:
        vc = min(max(v, -0.2), 0.2)
        terms.append(0.5 * max((v - r) ** 2, (vc - r) ** 2))
    assert float(loss) == pytest.approx(sum(terms) / 4)
    assert stats["val/clipfrac"] == pytest.approx(1 / 4) and stats["val/vpred"] == pytest.approx(0.15)


def test_whiten_uses_response_tokens_only():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, -50.0, 0.0, 0.0]], dtype=torch.float64)
    out = ppo.whiten(x, MASK)
    chosen = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    torch.testing.assert_close(out[MASK], (chosen - chosen.mean()) / (chosen.std() + 1e-8))
    assert (out[~MASK] == 0).all()
    torch.testing.assert_close(ppo.whiten(x, MASK, shift_mean=False)[MASK].mean(), chosen.mean())


def test_kl_controller_steers_towards_its_target_and_a_fixed_one_does_not_move():
    ctl = ppo.KLController(0.2, target=6.0, horizon=1000)
    beta = 0.2
    for kl, n in [(12.0, 64), (6.6, 64), (3.0, 64), (5.9, 32)]:
        beta *= 1 + min(max(kl / 6.0 - 1, -0.2), 0.2) * n / 1000
        assert ctl.update(kl, n) == pytest.approx(beta)
    assert beta != 0.2
    fixed = ppo.KLController(0.1)
    assert fixed.update(50.0, 64) == 0.1 and fixed.target is None


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ppo.KLController(0.1, target=0.0), "target"),
        (lambda: ppo.KLController(0.1, target=-3.0), "target"),
        (lambda: ppo.KLController(-0.1), "init"),
        (lambda: ppo.KLController(0.1, 6.0, horizon=0), "horizon"),
        (lambda: ppo.KLController(0.1, 6.0).update(float("nan"), 4), "kl"),
        (lambda: ppo.KLController(0.1, 6.0).update(1.0, 0), "n"),
        (lambda: ppo.shaped_rewards(SCORES[:1], LOGPS, REF, MASK, 0.1), "scores"),
        (lambda: ppo.shaped_rewards(torch.tensor([1.0, float("nan")]), LOGPS, REF, MASK, 0.1), "scores"),
        (lambda: ppo.shaped_rewards(SCORES, LOGPS, REF, MASK, -0.1), "kl_coef"),
        (lambda: ppo.shaped_rewards(SCORES, LOGPS, REF[:, :3], MASK, 0.1), "ref_logps"),
        (lambda: ppo.gae(LOGPS, VALUES, MASK.float()), "mask"),
        (lambda: ppo.gae(LOGPS, VALUES, MASK, gamma=0.0), "gamma"),
        (lambda: ppo.gae(LOGPS, VALUES, MASK, lam=1.5), "lam"),
        (lambda: ppo.policy_loss(LOGPS, LOGPS, LOGPS, MASK, clip=0.0), "clip"),
        (lambda: ppo.last_token(torch.tensor([[True], [False]])), "no tokens"),
        (lambda: ppo.whiten(LOGPS[:1, :1], MASK[:1, :1]), "two"),
    ],
)
def test_bad_inputs_are_refused_by_name(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_shares_of_a_minibatch_sum_to_its_losses_and_statistics():
    """``tokens``: each share divides by the whole minibatch's token count, so the shares' losses and statistics
    add up to the whole's (how torchrun splits a PPO minibatch over processes)."""
    gen = torch.Generator().manual_seed(5)
    new, old, adv, ret = (torch.randn(4, 5, generator=gen, dtype=torch.float64) for _ in range(4))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    tokens = float(mask.sum())
    for loss_fn, args in ((ppo.policy_loss, (new, old, adv)), (ppo.value_loss, (new, old, ret))):
        whole, whole_stats = loss_fn(*args, mask)
        parts = [loss_fn(*(a[rows] for a in args), mask[rows], 0.2, tokens) for rows in (slice(0, 1), slice(1, 4))]
        assert float(sum(p[0] for p in parts)) == pytest.approx(float(whole), abs=1e-12)
        for key, value in whole_stats.items():
            assert sum(p[1][key] for p in parts) == pytest.approx(value, abs=1e-6), key  # some are float32 shares
        with pytest.raises(ValueError, match="tokens: need a count >= the 3 masked tokens"):
            loss_fn(*(a[:1] for a in args), mask[:1], 0.2, 2)
