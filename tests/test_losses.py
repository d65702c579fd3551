"""Tests for dpo_lab.losses: hand-computed values, special cases, gradients, stability, bad inputs."""

import math

import pytest
import torch

from dpo_lab.losses import (
    PAIRWISE_LOSSES,
    dpo_loss,
    hinge_loss,
    ipo_loss,
    odpo_loss,
    odpo_offset,
    plackett_luce_dpo_loss,
    preference_metrics,
    preferred_ft_loss,
    unlikelihood_loss,
    unweighted_loss,
)

PAIRWISE = [dpo_loss, ipo_loss, hinge_loss, unweighted_loss]
ARG_NAMES = ["policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps"]


def pair(dtype=torch.float64):
    """One pair with chosen log-ratio c = 0.5 and rejected log-ratio d = -0.5, so h = 1."""
    return [torch.tensor([v], dtype=dtype) for v in (-1.0, -2.0, -1.5, -1.5)]


def random_pairs(batch=5, seed=0, requires_grad=False):
    gen = torch.Generator().manual_seed(seed)
    return [
        (-5 * torch.rand(batch, generator=gen, dtype=torch.float64)).requires_grad_(requires_grad) for _ in range(4)
    ]


def log_sigmoid(z):
    return -math.log1p(math.exp(-z))


# --- hand-computed values ------------------------------------------------------------------------


def test_dpo_hand_value():
    # beta * h = 0.5 * 1 = 0.5
    assert dpo_loss(*pair(), beta=0.5).item() == pytest.approx(-log_sigmoid(0.5), rel=1e-12)


def test_dpo_is_log2_when_policy_equals_reference():
    logps = torch.tensor([-3.0, -7.0], dtype=torch.float64)
    loss = dpo_loss(logps, logps + 1, logps, logps + 1, beta=0.1)
    torch.testing.assert_close(loss, torch.full((2,), math.log(2.0), dtype=torch.float64))


def test_cdpo_hand_value():
    expected = -0.9 * log_sigmoid(0.5) - 0.1 * log_sigmoid(-0.5)
    assert dpo_loss(*pair(), beta=0.5, label_smoothing=0.1).item() == pytest.approx(expected, rel=1e-12)


def test_ipo_hand_value():
    # (h - 1/(2 beta))^2 = (1 - 2)^2 with beta = 0.25; and 0 at the target margin (beta = 0.5)
    assert ipo_loss(*pair(), beta=0.25).item() == pytest.approx(1.0, rel=1e-12)
    assert ipo_loss(*pair(), beta=0.5).item() == pytest.approx(0.0, abs=1e-15)


def test_hinge_hand_value():
    assert hinge_loss(*pair(), beta=0.5).item() == pytest.approx(0.5, rel=1e-12)
    assert hinge_loss(*pair(), beta=2.0).item() == 0.0


def test_unweighted_hand_value():
    assert unweighted_loss(*pair(), beta=0.5).item() == pytest.approx(-0.5, rel=1e-12)


def test_unweighted_gradient_is_dpo_without_weight():
    pc, pr, rc, rr = random_pairs(requires_grad=True)
    unweighted_loss(pc, pr, rc, rr, 0.4).sum().backward()
    torch.testing.assert_close(pc.grad, torch.full_like(pc, -0.4))
    torch.testing.assert_close(pr.grad, torch.full_like(pr, 0.4))


def test_odpo_hand_value():
    expected = -log_sigmoid(0.5 - 0.3)
    assert odpo_loss(*pair(), beta=0.5, offset=0.3).item() == pytest.approx(expected, rel=1e-12)


def test_odpo_per_pair_offset():
    logps = random_pairs(batch=3)
    offset = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64)
    expected = torch.stack(
        [odpo_loss(*[x[i : i + 1] for x in logps], beta=0.7, offset=float(offset[i]))[0] for i in range(3)]
    )
    torch.testing.assert_close(odpo_loss(*logps, beta=0.7, offset=offset), expected)


def test_plackett_luce_hand_value():
    # K = 3, s = beta * log-ratio = (1, 0, -1) with beta = 1, ref = 0
    policy = torch.tensor([[1.0, 0.0, -1.0]], dtype=torch.float64)
    ref = torch.zeros_like(policy)
    lse = lambda *v: math.log(sum(math.exp(u) for u in v))  # noqa: E731
    expected = -((1 - lse(1, 0, -1)) + (0 - lse(0, -1)) + (-1 - lse(-1)))
    assert plackett_luce_dpo_loss(policy, ref, beta=1.0).item() == pytest.approx(expected, rel=1e-12)


def test_plackett_luce_k2_is_dpo():
    pc, pr, rc, rr = random_pairs(batch=6)
    ranked = plackett_luce_dpo_loss(torch.stack([pc, pr], 1), torch.stack([rc, rr], 1), beta=0.3)
    torch.testing.assert_close(ranked, dpo_loss(pc, pr, rc, rr, beta=0.3))


def test_plackett_luce_prefers_the_stated_order():
    policy = torch.tensor([[0.0, -1.0, -2.0, -3.0]], dtype=torch.float64)
    ref = torch.full_like(policy, -1.5)
    assert plackett_luce_dpo_loss(policy, ref, 1.0) < plackett_luce_dpo_loss(policy.flip(-1), ref, 1.0)


def test_preferred_ft_hand_value_ignores_padding():
    logps = torch.tensor([[math.log(0.5), math.log(0.25)], [math.log(0.1), float("nan")]])
    mask = torch.tensor([[True, True], [True, False]])
    expected = torch.tensor([-math.log(0.5) - math.log(0.25), -math.log(0.1)])
    torch.testing.assert_close(preferred_ft_loss(logps, mask), expected)


def test_unlikelihood_hand_value():
    chosen = torch.tensor([[math.log(0.5), math.log(0.25)]], dtype=torch.float64)
    rejected = torch.tensor([[math.log(0.5), math.log(0.9), -1.0]], dtype=torch.float64)
    rejected_mask = torch.tensor([[1, 1, 0]])  # 0/1 masks work as well as bool masks
    expected = (-math.log(0.5) - math.log(0.25)) - 0.5 * (math.log(0.5) + math.log(0.1))
    loss = unlikelihood_loss(chosen, torch.ones_like(chosen), rejected, rejected_mask, alpha=0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_unlikelihood_alpha_zero_is_preferred_ft():
    chosen = torch.log(torch.tensor([[0.2, 0.7]]))
    rejected = torch.log(torch.tensor([[0.6]]))
    mask = torch.ones_like(chosen, dtype=torch.bool)
    torch.testing.assert_close(
        unlikelihood_loss(chosen, mask, rejected, torch.ones_like(rejected), 0.0), preferred_ft_loss(chosen, mask)
    )


@pytest.mark.parametrize("logp", [-1e-3, -0.5, -0.8, -5.0, -50.0])
def test_unlikelihood_log_one_minus_p_is_accurate(logp):
    # both branches of the stable log(1 - p) (switch at log p = -log 2) against float64 math
    chosen = torch.zeros(1, 1, dtype=torch.float64)
    rejected = torch.tensor([[logp]], dtype=torch.float64)
    loss = unlikelihood_loss(chosen, torch.ones_like(chosen), rejected, torch.ones_like(rejected), 1.0)
    assert loss.item() == pytest.approx(-math.log(-math.expm1(logp)), rel=1e-12)


def test_odpo_offset_hand_values():
    win, lose = [1.5, 1.0], [0.5, 0.9]
    torch.testing.assert_close(odpo_offset(win, lose), torch.tensor([0.0, math.log(0.1)], dtype=torch.float64))
    torch.testing.assert_close(
        odpo_offset(win, lose, alpha=0.5, f="identity"), torch.tensor([0.5, 0.05], dtype=torch.float64)
    )
    torch.testing.assert_close(
        odpo_offset(win, lose, f="log_scores"), torch.tensor([math.log(3.0), math.log(1.0 / 0.9)], dtype=torch.float64)
    )


def test_preference_metrics_hand_values():
    pc = torch.tensor([-1.0, -2.0])
    pr = torch.tensor([-2.0, -1.0])
    ref = torch.tensor([-1.5, -1.5])
    metrics = preference_metrics(pc, pr, ref, ref, beta=0.1)
    expected = {
        "rewards/chosen": 0.1 * (0.5 - 0.5) / 2,
        "rewards/rejected": 0.1 * (-0.5 + 0.5) / 2,
        "rewards/margins": 0.1 * (1.0 - 1.0) / 2,
        "rewards/accuracies": 0.5,
        "logps/chosen": -1.5,
        "logps/rejected": -1.5,
    }
    assert set(metrics) == set(expected)
    for key, value in expected.items():
        assert isinstance(metrics[key], float)
        assert metrics[key] == pytest.approx(value, abs=1e-7), key
    one = preference_metrics(*pair(), beta=2.0)
    assert one["rewards/chosen"] == pytest.approx(1.0) and one["rewards/rejected"] == pytest.approx(-1.0)
    assert one["rewards/margins"] == pytest.approx(2.0) and one["rewards/accuracies"] == 1.0


# --- special cases that must coincide with DPO ----------------------------------------------------


def test_offset_zero_is_dpo():
    logps = random_pairs()
    torch.testing.assert_close(odpo_loss(*logps, beta=0.2, offset=0.0), dpo_loss(*logps, beta=0.2))
    torch.testing.assert_close(
        odpo_loss(*logps, beta=0.2, offset=torch.zeros(5, dtype=torch.float64)), dpo_loss(*logps, beta=0.2)
    )


def test_label_smoothing_zero_is_dpo():
    logps = random_pairs()
    torch.testing.assert_close(
        dpo_loss(*logps, beta=0.2, label_smoothing=0.0),
        -torch.nn.functional.logsigmoid(0.2 * ((logps[0] - logps[2]) - (logps[1] - logps[3]))),
    )


def test_registry_uniform_call():
    logps = random_pairs()
    assert set(PAIRWISE_LOSSES) == {"dpo", "cdpo", "ipo", "hinge", "odpo"}
    extra = {"cdpo": {"label_smoothing": 0.1}, "odpo": {"offset": 0.5}}
    for name, fn in PAIRWISE_LOSSES.items():
        assert fn(*logps, 0.1, **extra.get(name, {})).shape == (5,), name
    torch.testing.assert_close(
        PAIRWISE_LOSSES["cdpo"](*logps, 0.1, label_smoothing=0.1), dpo_loss(*logps, 0.1, label_smoothing=0.1)
    )


# --- gradients ------------------------------------------------------------------------------------


def test_dpo_gradient_is_the_weighted_update():
    """DPO appendix A.4: d loss / d log pi(y_w) = -beta * sigmoid(r_hat_l - r_hat_w) = -d loss / d log pi(y_l)."""
    pc, pr, rc, rr = random_pairs(requires_grad=True)
    beta = 0.4
    dpo_loss(pc, pr, rc, rr, beta).sum().backward()
    weight = torch.sigmoid(beta * ((pr - rr) - (pc - rc))).detach()
    torch.testing.assert_close(pc.grad, -beta * weight)
    torch.testing.assert_close(pr.grad, beta * weight)


@pytest.mark.parametrize(
    "fn,kwargs",
    [
        (dpo_loss, {}),
        (dpo_loss, {"label_smoothing": 0.2}),
        (ipo_loss, {}),
        (hinge_loss, {}),
        (odpo_loss, {"offset": 0.7}),
        (unweighted_loss, {}),
    ],
)
def test_gradcheck_pairwise(fn, kwargs):
    # h stays in (-5, 5) with beta = 0.3, away from the hinge kink at beta * h = 1 for this seed
    logps = random_pairs(seed=1, requires_grad=True)
    margin = (logps[0] - logps[2]) - (logps[1] - logps[3])
    assert (torch.abs(0.3 * margin - 1) > 1e-3).all()
    assert torch.autograd.gradcheck(lambda *x: fn(*x, 0.3, **kwargs), logps)


def test_gradcheck_odpo_offset_tensor():
    logps = random_pairs(seed=2, requires_grad=True)
    offset = torch.linspace(-1, 1, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *x: odpo_loss(*x[:4], 0.5, offset=x[4]), (*logps, offset))


def test_gradcheck_plackett_luce():
    gen = torch.Generator().manual_seed(3)
    policy = (-4 * torch.rand(3, 4, generator=gen, dtype=torch.float64)).requires_grad_()
    ref = (-4 * torch.rand(3, 4, generator=gen, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda p, r: plackett_luce_dpo_loss(p, r, 0.5), (policy, ref))


def test_gradcheck_token_losses():
    gen = torch.Generator().manual_seed(4)
    chosen = torch.log(torch.rand(2, 3, generator=gen, dtype=torch.float64) * 0.9 + 0.05).requires_grad_()
    rejected = torch.log(torch.rand(2, 4, generator=gen, dtype=torch.float64) * 0.9 + 0.05).requires_grad_()
    chosen_mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    rejected_mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda c: preferred_ft_loss(c, chosen_mask), (chosen,))
    assert torch.autograd.gradcheck(
        lambda c, r: unlikelihood_loss(c, chosen_mask, r, rejected_mask, 0.5), (chosen, rejected)
    )


def test_padding_gets_no_gradient_even_when_nan():
    chosen = torch.tensor([[-0.5, float("nan")]], requires_grad=True)
    rejected = torch.tensor([[-0.1, float("nan")]], requires_grad=True)
    mask = torch.tensor([[True, False]])
    unlikelihood_loss(chosen, mask, rejected, mask, 1.0).sum().backward()
    assert torch.isfinite(chosen.grad).all() and chosen.grad[0, 1] == 0
    assert torch.isfinite(rejected.grad).all() and rejected.grad[0, 1] == 0


# --- numerical stability ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize(
    "fn,kwargs",
    [
        (dpo_loss, {}),
        (dpo_loss, {"label_smoothing": 0.1}),
        (ipo_loss, {}),
        (hinge_loss, {}),
        (odpo_loss, {"offset": 2.0}),
        (unweighted_loss, {}),
    ],
)
def test_extreme_margins_finite(fn, kwargs, sign, dtype):
    pc = torch.tensor([sign * 5e3], dtype=dtype, requires_grad=True)
    pr = torch.tensor([-sign * 5e3], dtype=dtype, requires_grad=True)
    zero = torch.zeros(1, dtype=dtype)
    loss = fn(pc, pr, zero, zero, 1.0, **kwargs)  # h = +-1e4
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(pc.grad).all() and torch.isfinite(pr.grad).all()


def test_extreme_margin_values():
    big = torch.tensor([1e4])
    zero = torch.zeros(1)
    assert dpo_loss(big, zero, zero, zero, 1.0).item() == pytest.approx(0.0, abs=1e-30)
    assert dpo_loss(-big, zero, zero, zero, 1.0).item() == pytest.approx(1e4, rel=1e-6)
    # cDPO's finite minimiser: a huge correct margin still costs eps * 1e4
    assert dpo_loss(big, zero, zero, zero, 1.0, label_smoothing=0.1).item() == pytest.approx(1e3, rel=1e-5)
    ranked = torch.tensor([[1e4, 0.0, -1e4]], requires_grad=True)
    loss = plackett_luce_dpo_loss(ranked, torch.zeros(1, 3), 1.0)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6) and torch.isfinite(ranked.grad).all()
    worst = plackett_luce_dpo_loss(ranked.detach().flip(-1), torch.zeros(1, 3), 1.0)
    assert worst.item() == pytest.approx(3e4, rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_unlikelihood_certain_rejected_token_is_finite(dtype):
    rejected = torch.tensor([[0.0, -1e-12]], dtype=dtype, requires_grad=True)  # p = 1 (rounded)
    chosen = torch.tensor([[-1e4]], dtype=dtype, requires_grad=True)
    loss = unlikelihood_loss(chosen, torch.ones_like(chosen), rejected, torch.ones_like(rejected), 1.0)
    loss.backward()
    assert torch.isfinite(loss).all() and torch.isfinite(rejected.grad).all()
    # the clamp caps each certain token's cost at -log(1e-6)
    assert loss.item() == pytest.approx(1e4 + 2 * -math.log(1e-6), rel=1e-3)


# --- bad inputs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", PAIRWISE + [odpo_loss, preference_metrics])
@pytest.mark.parametrize("bad_index", range(4))
def test_pairwise_shape_mismatch(fn, bad_index):
    logps = random_pairs(batch=4)
    logps[bad_index] = logps[bad_index][:3]
    extra = {"offset": 0.0} if fn is odpo_loss else {}
    with pytest.raises(ValueError, match=ARG_NAMES[bad_index]):
        fn(*logps, 0.1, **extra)


@pytest.mark.parametrize("fn", PAIRWISE + [odpo_loss, preference_metrics])
@pytest.mark.parametrize("bad_index", range(4))
@pytest.mark.parametrize("bad_value", [float("nan"), float("inf")])
def test_pairwise_non_finite_logps(fn, bad_index, bad_value):
    logps = random_pairs(batch=4)
    logps[bad_index][2] = bad_value
    extra = {"offset": 0.0} if fn is odpo_loss else {}
    with pytest.raises(ValueError, match=f"{ARG_NAMES[bad_index]} contains NaN"):
        fn(*logps, 0.1, **extra)


@pytest.mark.parametrize("fn", PAIRWISE + [odpo_loss, preference_metrics])
def test_pairwise_bad_tensors(fn):
    extra = {"offset": 0.0} if fn is odpo_loss else {}
    logps = random_pairs(batch=2)
    with pytest.raises(TypeError, match="policy_chosen_logps"):
        fn([-1.0, -2.0], *logps[1:], 0.1, **extra)
    with pytest.raises(ValueError, match="ref_rejected_logps must be a floating"):
        fn(*logps[:3], torch.tensor([-1, -2]), 0.1, **extra)
    with pytest.raises(ValueError, match="policy_chosen_logps is empty"):
        fn(*[torch.zeros(0) for _ in range(4)], 0.1, **extra)


@pytest.mark.parametrize("fn", PAIRWISE + [odpo_loss, preference_metrics])
@pytest.mark.parametrize("beta", [0.0, -0.1, float("nan"), float("inf"), "0.1", True])
def test_bad_beta(fn, beta):
    extra = {"offset": 0.0} if fn is odpo_loss else {}
    with pytest.raises(ValueError, match="beta"):
        fn(*random_pairs(), beta, **extra)


def test_plackett_luce_bad_beta():
    with pytest.raises(ValueError, match="beta"):
        plackett_luce_dpo_loss(torch.zeros(2, 3), torch.zeros(2, 3), 0.0)


@pytest.mark.parametrize("eps", [-0.01, 0.5, 0.7, float("nan")])
def test_bad_label_smoothing(eps):
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(*random_pairs(), 0.1, label_smoothing=eps)


@pytest.mark.parametrize(
    "offset", [float("nan"), float("inf"), -float("inf"), torch.tensor([0.0, 1.0, float("nan"), 0.0, 0.0])]
)
def test_bad_offset(offset):
    with pytest.raises(ValueError, match="offset contains NaN or infinite.*ties must be dropped when pairs are built"):
        odpo_loss(*random_pairs(), 0.1, offset=offset)


def test_offset_shape_mismatch():
    with pytest.raises(ValueError, match="offset has shape"):
        odpo_loss(*random_pairs(), 0.1, offset=torch.zeros(3))


def test_odpo_offset_ties_and_reversals():
    with pytest.raises(ValueError, match="ties must be dropped when pairs are built"):
        odpo_offset([1.0, 0.5], [0.2, 0.5])
    with pytest.raises(ValueError, match="1 reversed"):
        odpo_offset([1.0, 0.4], [0.2, 0.5])
    # identity accepts a tie (offset 0)
    torch.testing.assert_close(odpo_offset([0.5], [0.5], f="identity"), torch.zeros(1, dtype=torch.float64))


def test_odpo_offset_bad_inputs():
    with pytest.raises(ValueError, match="score_chosen has shape"):
        odpo_offset([1.0, 2.0], [0.0])
    with pytest.raises(ValueError, match="score_rejected contains NaN"):
        odpo_offset([1.0], [float("nan")])
    with pytest.raises(ValueError, match="alpha"):
        odpo_offset([1.0], [0.0], alpha=-1.0)
    with pytest.raises(ValueError, match="log_scores"):
        odpo_offset([1.0], [0.0], f="log_scores")
    with pytest.raises(ValueError, match="f must be"):
        odpo_offset([1.0], [0.0], f="sqrt")


def test_plackett_luce_bad_inputs():
    with pytest.raises(ValueError, match="ref_logps has shape"):
        plackett_luce_dpo_loss(torch.zeros(2, 3), torch.zeros(2, 4), 1.0)
    with pytest.raises(ValueError, match="K >= 2"):
        plackett_luce_dpo_loss(torch.zeros(2, 1), torch.zeros(2, 1), 1.0)
    with pytest.raises(ValueError, match="shape \\(B, K\\)"):
        plackett_luce_dpo_loss(torch.zeros(4), torch.zeros(4), 1.0)
    with pytest.raises(ValueError, match="policy_logps contains NaN"):
        plackett_luce_dpo_loss(torch.tensor([[0.0, float("nan")]]), torch.zeros(1, 2), 1.0)


def test_token_loss_bad_inputs():
    ok = torch.zeros(2, 3)
    mask = torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="chosen_mask has shape"):
        preferred_ft_loss(ok, mask[:, :2])
    with pytest.raises(ValueError, match="chosen_token_logps must be a \\(B, T\\)"):
        preferred_ft_loss(torch.zeros(3), torch.ones(3))
    with pytest.raises(TypeError, match="chosen_token_logps"):
        preferred_ft_loss([[0.0]], torch.ones(1, 1))
    nan_rejected = torch.tensor([[float("nan"), 0.0, 0.0], [0.0, 0.0, 0.0]]) - 1
    with pytest.raises(ValueError, match="rejected_token_logps contains NaN.*rejected_mask"):
        unlikelihood_loss(ok, mask, nan_rejected, mask, 1.0)
    with pytest.raises(ValueError, match="rejected_mask has shape"):
        unlikelihood_loss(ok, mask, ok, mask[:, :1], 1.0)
    with pytest.raises(ValueError, match="batch size"):
        unlikelihood_loss(ok, mask, ok[:1], mask[:1], 1.0)
    for alpha in (-0.5, float("nan")):
        with pytest.raises(ValueError, match="alpha"):
            unlikelihood_loss(ok, mask, ok, mask, alpha)
