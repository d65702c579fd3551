"""Preference losses on summed log-probabilities: DPO and its family.

Introduced in notebook 03 (on bandits, where a "response" is one action) and reused unchanged by the
language-model trainer in ``dpo_lab.lm`` (where a response is a token sequence). Every pairwise loss
takes the four summed log-probabilities of a batch of preference pairs and returns one loss per pair,
shape ``(B,)``, with no reduction: the caller chooses mean, sum or weights.

Notation (DPO paper Sec. 4; docs/background.md 1), per pair ``(x, y_w, y_l)``:

===========================  ========  ==========================================================
name                         shape     meaning
===========================  ========  ==========================================================
``policy_chosen_logps``      (B,)      log pi_theta(y_w | x), summed over the response's tokens
``policy_rejected_logps``    (B,)      log pi_theta(y_l | x)
``ref_chosen_logps``         (B,)      log pi_ref(y_w | x); no gradient is needed through it
``ref_rejected_logps``       (B,)      log pi_ref(y_l | x)
``beta``                     float     > 0; larger beta = stay closer to pi_ref
c = chosen log-ratio         (B,)      policy_chosen_logps - ref_chosen_logps
d = rejected log-ratio       (B,)      policy_rejected_logps - ref_rejected_logps
h = c - d                    (B,)      log-ratio margin; beta * h is the implicit reward margin
===========================  ========  ==========================================================

``r_hat(x, y) = beta * log(pi_theta(y|x) / pi_ref(y|x))`` is the implicit reward (DPO Eq. 5 without
the ``beta log Z(x)`` term, which cancels in every pairwise difference).

The registry ``PAIRWISE_LOSSES`` lets a trainer pick a pairwise loss by name. Every entry is called
as ``PAIRWISE_LOSSES[name](policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
ref_rejected_logps, beta, **extra)``; ``extra`` is empty except for

* ``"cdpo"``: ``label_smoothing=eps`` with ``0 < eps < 0.5`` (it is :func:`dpo_loss`; without
  ``label_smoothing`` it is plain DPO),
* ``"odpo"``: ``offset=...``, a float or a ``(B,)`` tensor (build it with :func:`odpo_offset`).

The ranking loss (:func:`plackett_luce_dpo_loss`) and the token-level baselines
(:func:`preferred_ft_loss`, :func:`unlikelihood_loss`) take other inputs and are not in the registry;
neither is :func:`unweighted_loss`, DPO without its weight, which exists to be shown failing.

Bad inputs raise ``ValueError`` naming the argument: mismatched shapes, NaN or infinite log-probs,
``beta <= 0``, ``label_smoothing`` outside ``[0, 0.5)``, a NaN or infinite offset.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

# Largest per-token probability the unlikelihood term works with: -log(1 - p) is at most
# -log(1e-6) ~ 13.8 per token, so one near-certain rejected token cannot dominate a batch with inf.
_MAX_UNLIKELY_PROB = 1.0 - 1e-6


def _check_tensors(**named: torch.Tensor) -> None:
    """All arguments are floating tensors of one shape with finite entries (names for the errors)."""
    shape = None
    first = None
    for name, value in named.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if not value.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor of log-probs, got {value.dtype}")
        if value.numel() == 0:
            raise ValueError(f"{name} is empty; a batch needs at least one example")
        if shape is None:
            shape, first = value.shape, name
        elif value.shape != shape:
            raise ValueError(
                f"{name} has shape {tuple(value.shape)} but {first} has shape "
                f"{tuple(shape)}; all log-prob tensors must have the same shape"
            )
        if not torch.isfinite(value).all():
            raise ValueError(f"{name} contains NaN or infinite log-probs")


def _check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    """float(value), finite and > 0 (>= 0 with ``allow_zero``), never a str or bool; else a ValueError naming it."""
    if isinstance(value, (str, bytes, bool)) or type(value).__name__ == "bool_":
        raise ValueError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not (math.isfinite(value) and (value >= 0 if allow_zero else value > 0)):
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value}")
    return value


def _margin_and_beta(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    """(h, beta) after validation: h = (log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))."""
    _check_tensors(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
    )
    margin = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)
    return margin, _check_positive("beta", beta)


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """The DPO loss (DPO Eq. 7), optionally label-smoothed (conservative DPO, "cDPO").

    ``loss = -(1 - eps) * log sigmoid(beta * h) - eps * log sigmoid(-beta * h)``

    With ``eps = label_smoothing = 0`` this is Eq. 7, the negative log-likelihood of the preference
    under Bradley-Terry with the implicit reward (derivation: DPO appendix A.2). ``eps > 0`` assumes
    each label is flipped with probability eps; the loss then has a finite minimiser
    ``beta * h = log((1 - eps) / eps)`` instead of pushing the margin to infinity.
    ``log sigmoid`` is evaluated stably, so margins of +-1e4 give finite losses and gradients.

    ===============  =====  ============================================
    argument         shape  meaning
    ===============  =====  ============================================
    4 logps          (B,)   summed log-probs (see the module docstring)
    beta             float  > 0
    label_smoothing  float  eps in [0, 0.5); 0 = plain DPO
    returns          (B,)   per-pair loss
    ===============  =====  ============================================

    Introduced in notebook 03.
    """
    margin, beta = _margin_and_beta(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta
    )
    eps = float(label_smoothing)
    if not 0.0 <= eps < 0.5:
        raise ValueError(f"label_smoothing must lie in [0, 0.5), got {label_smoothing}")
    logits = beta * margin
    return -(1.0 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)


def odpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    offset: float | torch.Tensor,
) -> torch.Tensor:
    """DPO with an offset (ODPO paper Eq. 7c): ``loss = -log sigmoid(beta * h - offset)``.

    The chosen response must beat the rejected one by at least ``offset = Delta_r`` in implicit
    reward; by ODPO Theorem 2 this is the likelihood of "the Gumbel-noised reward gap exceeds
    Delta_r". ``offset = 0`` is exactly :func:`dpo_loss`. Build per-pair offsets with
    :func:`odpo_offset` (ODPO Eq. 15).

    ==========  ==============  ============================================
    argument    shape           meaning
    ==========  ==============  ============================================
    4 logps     (B,)            summed log-probs (see the module docstring)
    beta        float           > 0
    offset      float or (B,)   Delta_r per pair, finite (may be negative)
    returns     (B,)            per-pair loss
    ==========  ==============  ============================================

    Introduced in notebook 03.
    """
    margin, beta = _margin_and_beta(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta
    )
    offset = torch.as_tensor(offset, dtype=margin.dtype, device=margin.device)
    if offset.dim() > 0 and offset.shape != margin.shape:
        raise ValueError(
            f"offset has shape {tuple(offset.shape)}; it must be a scalar or match the "
            f"log-probs' shape {tuple(margin.shape)}"
        )
    if not torch.isfinite(offset).all():
        raise ValueError(
            "offset contains NaN or infinite values (with f='log' a tie gives log 0 = -inf; "
            "ties must be dropped when pairs are built)"
        )
    return -F.logsigmoid(beta * margin - offset)


def odpo_offset(score_chosen, score_rejected, alpha: float = 1.0, f: str = "log") -> torch.Tensor:
    """The ODPO offset ``Delta_r = alpha * f(score_w - score_l)`` (ODPO Eq. 15 and Sec. 7.1).

    ============  ==========================================================================
    ``f``         offset
    ============  ==========================================================================
    "log"         ``alpha * log(score_w - score_l)`` (the paper's main choice). Needs
                  ``score_w > score_l``: a tie would give ``log 0 = -inf``, so ties must be
                  dropped when pairs are built. Gaps below 1 give negative offsets.
    "identity"    ``alpha * (score_w - score_l)``
    "log_scores"  ``alpha * (log score_w - log score_l)`` (the ablation "log of each reward");
                  needs positive scores
    ============  ==========================================================================

    ==================  =====  ============================================
    argument            shape  meaning
    ==================  =====  ============================================
    score_chosen        (B,)   score (e.g. gold reward) of y_w; array-like
    score_rejected      (B,)   score of y_l
    alpha               float  >= 0; alpha = 0 turns ODPO into DPO
    returns             (B,)   float64 tensor of offsets
    ==================  =====  ============================================

    Introduced in notebook 03.
    """
    score_chosen = torch.as_tensor(score_chosen, dtype=torch.float64)
    score_rejected = torch.as_tensor(score_rejected, dtype=torch.float64)
    if score_chosen.shape != score_rejected.shape:
        raise ValueError(
            f"score_chosen has shape {tuple(score_chosen.shape)} but score_rejected has "
            f"shape {tuple(score_rejected.shape)}"
        )
    for name, value in (("score_chosen", score_chosen), ("score_rejected", score_rejected)):
        if not torch.isfinite(value).all():
            raise ValueError(f"{name} contains NaN or infinite scores")
    alpha = _check_positive("alpha", alpha, allow_zero=True)
    if f == "log":
        gap = score_chosen - score_rejected
        if (gap <= 0).any():
            raise ValueError(
                "f='log' needs score_chosen > score_rejected for every pair: a tie gives "
                "log 0 = -inf, so ties must be dropped when pairs are built "
                f"({int((gap == 0).sum())} ties, {int((gap < 0).sum())} reversed pairs)"
            )
        return alpha * torch.log(gap)
    if f == "identity":
        return alpha * (score_chosen - score_rejected)
    if f == "log_scores":
        if (score_chosen <= 0).any() or (score_rejected <= 0).any():
            raise ValueError("f='log_scores' needs positive score_chosen and score_rejected")
        return alpha * (torch.log(score_chosen) - torch.log(score_rejected))
    raise ValueError(f"f must be 'log', 'identity' or 'log_scores', got {f!r}")


def ipo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """The IPO loss (Azar et al. 2023): ``loss = (h - 1 / (2 * beta))^2``.

    A squared loss that pulls the log-ratio margin ``h`` to the bounded target ``1 / (2 beta)``
    instead of pushing it towards infinity, so IPO stays put under deterministic preferences where
    DPO drifts. Here ``beta`` is IPO's regulariser tau (larger = closer to pi_ref).

    Log-prob convention: this function uses the log-probs it is given, and in dpo_lab those are
    **summed** over the response's tokens (sequence-level probabilities, as in the IPO paper's
    definition). Some public trainers average per token before IPO; that rescales ``h`` by the
    response length and therefore changes what a given beta means.

    ==========  =====  ================================================
    argument    shape  meaning
    ==========  =====  ================================================
    4 logps     (B,)   summed log-probs (see the module docstring)
    beta        float  IPO's tau > 0; the target margin is 1 / (2 beta)
    returns     (B,)   per-pair loss >= 0, zero at the target margin
    ==========  =====  ================================================

    Introduced in notebook 03.
    """
    margin, beta = _margin_and_beta(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta
    )
    return (margin - 1.0 / (2.0 * beta)) ** 2


def hinge_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """SLiC-style hinge loss with a reference model: ``loss = max(0, 1 - beta * h)``.

    Zero (and no gradient) once the implicit reward margin ``beta * h`` reaches 1: pairs that are
    already ranked with margin stop moving, so the target margin in log-ratio is ``1 / beta``.

    ==========  =====  ================================================
    argument    shape  meaning
    ==========  =====  ================================================
    4 logps     (B,)   summed log-probs (see the module docstring)
    beta        float  > 0; the loss vanishes once beta * h >= 1
    returns     (B,)   per-pair loss >= 0
    ==========  =====  ================================================

    Introduced in notebook 03.
    """
    margin, beta = _margin_and_beta(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta
    )
    return torch.relu(1.0 - beta * margin)


def unweighted_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """DPO's update with its weight removed: ``loss = -beta * h``, a cautionary example.

    Its gradient is ``-beta * [grad log pi(y_w) - grad log pi(y_l)]``, the DPO gradient (DPO
    appendix A.4) with the weight ``sigma(r_hat_l - r_hat_w)`` replaced by 1. Without the weight a pair
    keeps pushing after it is ranked correctly: the loss is unbounded below and has no minimiser,
    which is why the DPO paper reports that this naive version degenerates (Sec. 4). Not in
    ``PAIRWISE_LOSSES``: it is there to be shown failing.

    ==========  =====  ============================================
    argument    shape  meaning
    ==========  =====  ============================================
    4 logps     (B,)   summed log-probs (see the module docstring)
    beta        float  > 0
    returns     (B,)   per-pair loss (unbounded below)
    ==========  =====  ============================================

    Introduced in notebook 03.
    """
    margin, beta = _margin_and_beta(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta
    )
    return -beta * margin


def plackett_luce_dpo_loss(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO for rankings of K responses (DPO appendix A.3, Eq. 20).

    With ``s_k = beta * (policy_logps[:, k] - ref_logps[:, k])`` and the responses ordered
    best-first (column 0 = ranked first),

    ``loss = -sum_{k=1..K} [ s_k - logsumexp(s_k, ..., s_K) ]``,

    the negative log-likelihood of the ranking under Plackett-Luce with the implicit reward.
    For K = 2 it equals :func:`dpo_loss`. The suffix log-sum-exps come from one stable
    ``logcumsumexp`` over the reversed columns.

    ===========  ======  ===================================================
    argument     shape   meaning
    ===========  ======  ===================================================
    policy_logps (B, K)  log pi_theta(y_tau(k) | x), column k = rank k (best first)
    ref_logps    (B, K)  log pi_ref of the same responses, same order
    beta         float   > 0
    returns      (B,)    per-ranking loss
    ===========  ======  ===================================================

    Introduced in notebook 03.
    """
    _check_tensors(policy_logps=policy_logps, ref_logps=ref_logps)
    if policy_logps.dim() != 2 or policy_logps.shape[1] < 2:
        raise ValueError(f"policy_logps must have shape (B, K) with K >= 2, got {tuple(policy_logps.shape)}")
    beta = _check_positive("beta", beta)
    scores = beta * (policy_logps - ref_logps)
    suffix_lse = torch.logcumsumexp(scores.flip(-1), dim=-1).flip(-1)
    return -(scores - suffix_lse).sum(dim=-1)


def _masked_token_logps(
    name: str, token_logps: torch.Tensor, mask_name: str, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate (B, T) token log-probs and their mask; return (log-probs with padding set to 0, bool mask).

    Padding positions may hold anything (garbage, even NaN): only masked-in entries are checked, and
    they are replaced by 0 before any arithmetic so padding never reaches the loss or its gradient.
    """
    if not isinstance(token_logps, torch.Tensor) or not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} and {mask_name} must be torch.Tensors")
    if token_logps.dim() != 2 or not token_logps.is_floating_point():
        raise ValueError(
            f"{name} must be a (B, T) floating tensor, got shape {tuple(token_logps.shape)} "
            f"and dtype {token_logps.dtype}"
        )
    if mask.shape != token_logps.shape:
        raise ValueError(f"{mask_name} has shape {tuple(mask.shape)} but {name} has shape {tuple(token_logps.shape)}")
    mask = mask.bool()
    if not torch.isfinite(token_logps[mask]).all():
        raise ValueError(f"{name} contains NaN or infinite log-probs at positions where {mask_name} is set")
    return torch.where(mask, token_logps, torch.zeros_like(token_logps)), mask


def preferred_ft_loss(chosen_token_logps: torch.Tensor, chosen_mask: torch.Tensor) -> torch.Tensor:
    """Preferred-FT: supervised fine-tuning on the chosen responses only (DPO paper Sec. 6).

    ``loss = -sum_t mask_t * log pi_theta(y_w,t | x, y_w,<t)``, the negative summed log-likelihood of
    y_w (the same scale as the summed log-probs of the pairwise losses; divide by
    ``chosen_mask.sum(-1)`` for a per-token average).

    ==================  ======  ==================================================
    argument            shape   meaning
    ==================  ======  ==================================================
    chosen_token_logps  (B, T)  log-prob of each token of y_w under the policy
    chosen_mask         (B, T)  True (or 1) on response tokens, False on padding
    returns             (B,)    per-example loss
    ==================  ======  ==================================================

    Introduced in notebook 03 (a bandit response is one token: T = 1).
    """
    logps, _ = _masked_token_logps("chosen_token_logps", chosen_token_logps, "chosen_mask", chosen_mask)
    return -logps.sum(dim=-1)


def unlikelihood_loss(
    chosen_token_logps: torch.Tensor,
    chosen_mask: torch.Tensor,
    rejected_token_logps: torch.Tensor,
    rejected_mask: torch.Tensor,
    alpha: float,
) -> torch.Tensor:
    """The Unlikelihood baseline (Welleck et al. 2019; DPO paper Sec. 6 and App. C.3).

    ``loss = -sum_t log p(y_w,t) - alpha * sum_t log(1 - p(y_l,t))``

    Raises the likelihood of y_w (the :func:`preferred_ft_loss` term) and, with weight alpha, pushes
    down every token of y_l. ``log(1 - p)`` is computed from ``logp`` without forming ``1 - p``:
    ``log(-expm1(logp))`` near ``p = 1`` and ``log1p(-exp(logp))`` elsewhere, with ``p`` clamped at
    ``1 - 1e-6`` so a near-certain rejected token costs at most about 13.8 instead of inf.

    ====================  ======  ==================================================
    argument              shape   meaning
    ====================  ======  ==================================================
    chosen_token_logps    (B, T)  per-token log-probs of y_w under the policy
    chosen_mask           (B, T)  True on y_w's response tokens
    rejected_token_logps  (B, T') per-token log-probs of y_l under the policy
    rejected_mask         (B, T') True on y_l's response tokens
    alpha                 float   >= 0, weight of the unlikelihood term (paper: 0.05 to 1)
    returns               (B,)    per-pair loss
    ====================  ======  ==================================================

    Introduced in notebook 03.
    """
    alpha = _check_positive("alpha", alpha, allow_zero=True)
    likelihood = preferred_ft_loss(chosen_token_logps, chosen_mask)
    logps, mask = _masked_token_logps("rejected_token_logps", rejected_token_logps, "rejected_mask", rejected_mask)
    if logps.shape[0] != likelihood.shape[0]:
        raise ValueError(
            f"rejected_token_logps has batch size {logps.shape[0]} but chosen_token_logps has {likelihood.shape[0]}"
        )
    logps = logps.clamp(max=math.log(_MAX_UNLIKELY_PROB))
    # Both branches are finite after the clamp, so torch.where cannot leak NaN into the gradient.
    log_one_minus_p = torch.where(
        logps > -math.log(2.0), torch.log(-torch.expm1(logps)), torch.log1p(-torch.exp(logps))
    )
    unlikelihood = -(log_one_minus_p * mask).sum(dim=-1)
    return likelihood + alpha * unlikelihood


def preference_metrics(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
) -> dict[str, float]:
    """The quantities preference trainers log, as batch means (floats, no gradient).

    =====================  ======================================================
    key                    batch mean of
    =====================  ======================================================
    rewards/chosen         beta * (policy_chosen_logps - ref_chosen_logps)
    rewards/rejected       beta * (policy_rejected_logps - ref_rejected_logps)
    rewards/margins        rewards/chosen - rewards/rejected
    rewards/accuracies     1 where the chosen reward exceeds the rejected one, else 0
    logps/chosen           policy_chosen_logps
    logps/rejected         policy_rejected_logps
    =====================  ======================================================

    Chosen log-probs falling while the margin rises is normal in DPO (docs/background.md 2.6).
    Inputs: four ``(B,)`` tensors and ``beta > 0``, as for :func:`dpo_loss`.

    Introduced in notebook 03.
    """
    _check_tensors(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
    )
    beta = _check_positive("beta", beta)
    with torch.no_grad():
        chosen = beta * (policy_chosen_logps - ref_chosen_logps)
        rejected = beta * (policy_rejected_logps - ref_rejected_logps)
        return {
            "rewards/chosen": chosen.mean().item(),
            "rewards/rejected": rejected.mean().item(),
            "rewards/margins": (chosen - rejected).mean().item(),
            "rewards/accuracies": (chosen > rejected).float().mean().item(),
            "logps/chosen": policy_chosen_logps.mean().item(),
            "logps/rejected": policy_rejected_logps.mean().item(),
        }


PAIRWISE_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "dpo": dpo_loss,
    "cdpo": dpo_loss,  # pass label_smoothing=eps (module docstring)
    "ipo": ipo_loss,
    "hinge": hinge_loss,
    "odpo": odpo_loss,  # pass offset=... (module docstring)
}
