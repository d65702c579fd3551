"""PPO for the KL-regularised objective (DPO Eq. 3), per token: reward shaping, GAE, the clipped losses
and the KL controller.

Introduced in notebook 04 (section 9); one of the RLHF baselines of Fig. 2: the pieces of the PPO
update that ``dpo_lab.lm.ppo_training`` puts together. RLHF's second stage (DPO paper Sec. 3,
Eq. 3) maximises E[r(x, y)] - beta KL(pi || pi_ref) with PPO (Schulman et al. 2017) in the form of
Ziegler et al. (2019) that the paper's off-the-shelf PPO (trlx) follows: the KL penalty is paid token by
token, the reward of the whole response arrives at its last token.

A rollout batch holds B sampled responses of at most T tokens (EOS included when emitted), all
tensors right-padded:

===============  =======  ======================================================================
name             shape    meaning
===============  =======  ======================================================================
``logps``        (B, T)   log pi_theta(y_t | x, y_<t) of the sampled tokens, the policy being trained
``old_logps``    (B, T)   the same under the policy that sampled the rollout (fixed during the update)
``ref_logps``    (B, T)   the same under pi_ref
``values``       (B, T)   V(x, y_<t): the value head's estimate of the return before token t
``scores``       (B,)     the reward of each whole response (reward model, or the gold reward)
``mask``         (B, T)   bool, True on response tokens; padding is False and never counts
===============  =======  ======================================================================

=========================  ==================================================================================
function                   formula (t over response tokens, L the last one)
=========================  ==================================================================================
:func:`shaped_rewards`     r_t = -beta (log pi_old(y_t) - log pi_ref(y_t)) + [t = L] score
:func:`gae`                delta_t = r_t + gamma V_{t+1} - V_t (V after L is 0);
                           A_t = sum_l (gamma lambda)^l delta_{t+l}; returns R_t = A_t + V_t
:func:`whiten`             (x - mean) / std over the masked entries (advantages, and rewards when normalised)
:func:`policy_loss`        mean over tokens of -min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t),
                           rho_t = pi_theta(y_t) / pi_old(y_t)
:func:`value_loss`         mean over tokens of 0.5 max((V_t - R_t)^2, (clip(V_t, V_old +- eps_v) - R_t)^2)
:class:`KLController`      adaptive (Ziegler et al. Sec. 2.2): beta <- beta (1 + clip(KL / target - 1, +-0.2)
                           n / horizon); fixed when ``target`` is None
=========================  ==================================================================================

Summed over tokens, the shaped rewards give score - beta log(pi / pi_ref) of the whole response, whose
expectation is Eq. 3's objective: PPO with a fixed beta and enough updates approaches pi*_beta (Eq. 4).
Bad inputs raise ``ValueError`` naming the argument.
"""

from __future__ import annotations

import math

import torch


def _check(mask: torch.Tensor, **named: torch.Tensor) -> None:
    """``mask`` is a (B, T) bool tensor and every named tensor a finite float tensor of its shape."""
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.dim() != 2:
        raise ValueError(f"mask: expected a (B, T) bool tensor, got {getattr(mask, 'dtype', type(mask).__name__)}")
    for name, value in named.items():
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise ValueError(f"{name}: expected a float tensor, got {type(value).__name__}")
        if value.shape != mask.shape:
            raise ValueError(f"{name}: shape {tuple(value.shape)} differs from mask's {tuple(mask.shape)}")
        if not torch.isfinite(value[mask]).all():
            raise ValueError(f"{name}: has NaN or infinite entries on response tokens")


def _positive(value, name: str, upper: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    if upper is not None and value > upper:
        raise ValueError(f"{name}: expected a number <= {upper}, got {value!r}")
    return float(value)


def last_token(mask: torch.Tensor) -> torch.Tensor:
    """(B,) index of each row's last response token. A row without any is a ValueError."""
    if not mask.any(dim=1).all():
        raise ValueError("mask: a response has no tokens")
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(mask, positions, -1).max(dim=1).values


def shaped_rewards(
    scores: torch.Tensor, logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> torch.Tensor:
    """Per-token rewards (B, T): -kl_coef (logps - ref_logps) on every response token, plus the
    response's score on its last token; 0 on padding. ``logps`` are those of the sampling policy."""
    _check(mask, logps=logps, ref_logps=ref_logps)
    if not isinstance(scores, torch.Tensor) or scores.shape != mask.shape[:1] or not torch.isfinite(scores).all():
        raise ValueError(f"scores: expected a finite ({mask.shape[0]},) tensor, one score per response")
    if isinstance(kl_coef, bool) or not isinstance(kl_coef, (int, float)) or not kl_coef >= 0:
        raise ValueError(f"kl_coef: expected a number >= 0, got {kl_coef!r}")
    rewards = torch.where(mask, -kl_coef * (logps - ref_logps), torch.zeros_like(logps))
    rows = torch.arange(mask.shape[0], device=mask.device)
    return rewards.index_put((rows, last_token(mask)), scores.to(rewards.dtype), accumulate=True)


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns (Schulman et al. 2016), both (B, T), 0 on padding.

    Responses are right-padded, so a row's tokens are its first ones; the value after the last token
    is 0 (the episode ends there). ``gamma`` in (0, 1], ``lam`` in [0, 1].
    """
    _check(mask, rewards=rewards, values=values)
    gamma = _positive(gamma, "gamma", upper=1.0)
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam: expected a number in [0, 1], got {lam!r}")
    rewards, values = rewards * mask, values * mask  # padding contributes nothing
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        following = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * following - values[:, t]
        running = delta + gamma * lam * running
        running = running * mask[:, t]  # a padded position restarts the sum (it follows the episode's end)
        advantages[:, t] = running
    return advantages, (advantages + values) * mask


def whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """``values`` scaled to unit variance over the masked entries (and centred unless ``shift_mean``
    is False); 0 on padding. Needs at least two masked entries."""
    _check(mask, values=values)
    if int(mask.sum()) < 2:
        raise ValueError("mask: whitening needs at least two response tokens")
    chosen = values[mask]
    mean, std = chosen.mean(), chosen.std()
    out = (values - mean) / (std + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def _masked_mean(x: torch.Tensor, mask: torch.Tensor, tokens: float | None = None) -> torch.Tensor:
    return (x * mask).sum() / (mask.sum() if tokens is None else tokens)


def _tokens(tokens, mask: torch.Tensor) -> float | None:
    """``tokens`` checked: None, or a count >= the tokens of ``mask`` (this share's part of a larger batch)."""
    if tokens is None:
        return None
    if isinstance(tokens, bool) or not isinstance(tokens, (int, float)) or not tokens >= max(1.0, float(mask.sum())):
        raise ValueError(f"tokens: need a count >= the {int(mask.sum())} masked tokens here (and >= 1), got {tokens!r}")
    return float(tokens)


def policy_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
    tokens: float | None = None,
) -> tuple[torch.Tensor, dict]:
    """PPO's clipped surrogate, averaged over response tokens, and what it did (``policy/clipfrac``:
    share of tokens whose ratio was clipped; ``policy/approxkl``: mean of 0.5 (log rho)^2). ``tokens``:
    divide by this count instead of the mask's (a rank's share of a minibatch split over processes: the
    shares' losses and statistics then sum to the whole minibatch's)."""
    _check(mask, logps=logps, old_logps=old_logps, advantages=advantages)
    clip = _positive(clip, "clip", upper=1.0)
    tokens = _tokens(tokens, mask)
    log_ratio = logps - old_logps
    ratio = torch.exp(log_ratio)
    unclipped, clipped = -advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip, 1 + clip)
    loss = _masked_mean(torch.maximum(unclipped, clipped), mask, tokens)
    stats = {
        "policy/clipfrac": float(_masked_mean((clipped > unclipped).float(), mask, tokens)),
        "policy/approxkl": float(_masked_mean(0.5 * log_ratio.detach() ** 2, mask, tokens)),
    }
    return loss, stats


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
    tokens: float | None = None,
) -> tuple[torch.Tensor, dict]:
    """The clipped value loss, averaged over response tokens, and ``val/clipfrac``, ``val/vpred``
    (mean prediction) and ``val/error`` (mean squared error before clipping); ``tokens`` as in
    :func:`policy_loss`."""
    _check(mask, values=values, old_values=old_values, returns=returns)
    clip = _positive(clip, "clip")
    tokens = _tokens(tokens, mask)
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    plain_error, clipped_error = (values - returns) ** 2, (clipped - returns) ** 2
    loss = 0.5 * _masked_mean(torch.maximum(plain_error, clipped_error), mask, tokens)
    stats = {
        "val/clipfrac": float(_masked_mean((clipped_error > plain_error).float(), mask, tokens)),
        "val/vpred": float(_masked_mean(values.detach(), mask, tokens)),
        "val/error": float(_masked_mean(plain_error.detach(), mask, tokens)),
    }
    return loss, stats


class KLController:
    """The coefficient beta of the per-token KL penalty.

    ``target`` None: fixed at ``init`` (the objective of Eq. 3 at that beta). Otherwise adaptive
    (Ziegler et al. 2019, Sec. 2.2): after a batch whose sequence KL was ``kl``, over ``n`` sampled
    responses, beta <- beta (1 + clip(kl / target - 1, -0.2, 0.2) n / horizon). The DPO paper's PPO
    runs sweep the target KL in {3, 6, 9, 12}.
    """

    def __init__(self, init: float, target: float | None = None, horizon: int = 10_000):
        self.value = _positive(init, "init")
        self.target = None if target is None else _positive(target, "target")
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon: expected an integer >= 1, got {horizon!r}")
        self.horizon = horizon

    def update(self, kl: float, n: int) -> float:
        """Move beta after a batch (no-op when fixed) and return it."""
        if isinstance(kl, bool) or not isinstance(kl, (int, float)) or not math.isfinite(kl):
            raise ValueError(f"kl: expected a finite number, got {kl!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n: expected an integer >= 1, got {n!r}")
        if self.target is not None:
            error = min(max(kl / self.target - 1.0, -0.2), 0.2)
            self.value *= 1.0 + error * n / self.horizon
        return self.value
