"""Exact KL, expected reward, the optimum pi*_beta and the reward-KL frontier of the exact task.

Introduced in notebook 04 (:mod:`dpo_lab.exact`). The prompts are the contexts and the K
enumerated responses the arms of a ``dpo_lab.bandits`` bandit, so every quantity here is the bandit
function applied to exact (P, K) arrays, not a second derivation:

=====================================================  ==================================  ========
quantity                                               bandits function                    DPO
=====================================================  ==================================  ========
pi*_beta(y|x) = pi_ref(y|x) exp(r*(x,y)/beta) / Z(x)    ``optimal_policy``                  Eq. 4
log Z_beta(x) = log sum_y pi_ref(y|x) exp(r*/beta)      ``log_partition``                   Eq. 4
r(x,y) = beta log pi(y|x)/pi_ref(y|x) + beta log Z(x)   ``implicit_reward`` (+ log Z)       Eq. 5
KL(pi || pi_ref) = sum_y pi log(pi / pi_ref)            ``kl``                              Eq. 3
(mean_x KL, mean_x E_pi[r*]) and its curve over beta    ``frontier_point``, ``ideal_frontier``
=====================================================  ==================================  ========

The frontier is a theorem. For every policy pi, every prompt x and every beta > 0,

    E_pi[r*(x, y)] <= beta log Z_beta(x) + beta KL(pi(.|x) || pi_ref(.|x))             (F)

(Gibbs' inequality: E_pi[r*] - beta KL(pi || pi_ref) = beta log Z - beta KL(pi || pi*_beta)), with
equality iff pi = pi*_beta. Averaged over the uniform prompts, (F) bounds a policy's point (KL, R) by
R <= beta (mean_x log Z_beta(x) + KL) for every beta; the best bound is the exact frontier R*(KL),
reached at the beta whose pi*_beta has that KL (d/dbeta [beta log Z_beta] = -KL(pi*_beta || pi_ref)).
:func:`frontier_reward` computes R*(KL) by bisection on beta; any beta gives a valid bound, so an
inexact bisection can only loosen it, never report a false violation.

==============  ========  =====================================================================
name            shape     meaning
==============  ========  =====================================================================
``policy``      (P, K)    pi(y|x), or a model (enumerated with ``policy_logprobs``)
``ref``         (P, K)    pi_ref(y|x), or a model (enumerate it once and pass the array)
``beta``        float     > 0; small beta = close to the reward maximiser
``kl``          (P,)      KL(pi(.|x) || pi_ref(.|x)) per prompt, nats (whole-sequence KL)
``reward``      (P,)      E_{y~pi(.|x)}[r*(x, y)] per prompt
==============  ========  =====================================================================
"""

from __future__ import annotations

import math

import numpy as np

from .. import bandits
from .enumeration import as_probs
from .space import Space, check_space

BETA_MIN, BETA_MAX = 1e-6, 1e6
"""Bracket of the bisection in :func:`frontier_reward`: at 1e-6 pi*_beta is the argmax policy (reward
gaps are >= c = 1 here), at 1e6 it is pi_ref to 1e-13 in KL."""


def check_beta(beta, name: str = "beta") -> float:
    """``beta`` as a finite float > 0 (ValueError naming ``name`` for strings, bools, <= 0, NaN, inf)."""
    if isinstance(beta, (str, bytes, bool, np.bool_)) or not isinstance(beta, (int, float, np.number)):
        raise ValueError(f"{name}: expected a finite number > 0, got {beta!r}")
    b = float(beta)
    if not math.isfinite(b) or b <= 0:
        raise ValueError(f"{name}: must be a finite number > 0, got {beta!r}")
    return b


def check_betas(betas) -> np.ndarray:
    """``betas`` as a non-empty 1-d float array of numbers > 0 (ValueError naming ``betas``)."""
    if isinstance(betas, (str, bytes)):
        raise ValueError(f"betas: expected numbers > 0, got the string {betas!r}")
    values = list(np.atleast_1d(np.asarray(betas, dtype=object)).ravel()) if np.ndim(betas) <= 1 else None
    if not values:
        raise ValueError(f"betas: expected a non-empty 1-d list of numbers > 0, got {betas!r}")
    return np.array([check_beta(b, f"betas[{i}]") for i, b in enumerate(values)], dtype=np.float64)


def exact_kl(policy, ref, space: Space) -> np.ndarray:
    """KL(pi(.|x) || pi_ref(.|x)) = sum_y pi(y|x) log(pi(y|x) / pi_ref(y|x)) for each prompt (Eq. 3's
    penalty), over whole responses. policy, ref (P, K) or models  ->  (P,) nats, >= 0."""
    space = check_space(space)
    return bandits.kl(as_probs(policy, space, "policy"), as_probs(ref, space, "ref"))


def expected_reward(policy, space: Space) -> np.ndarray:
    """E_{y~pi(.|x)}[r*(x, y)] = sum_y pi(y|x) r*(x, y) for each prompt. policy (P, K) or a model
    ->  (P,)."""
    space = check_space(space)
    return (as_probs(policy, space, "policy") * space.reward).sum(axis=1)


def optimal_policy(ref, space: Space, beta) -> np.ndarray:
    """pi*_beta(y|x) = pi_ref(y|x) exp(r*(x,y) / beta) / Z(x) (Eq. 4), the maximiser of
    E_pi[r*] - beta KL(pi || pi_ref) (Eq. 3). ref (P, K) or a model, beta > 0  ->  (P, K)."""
    space = check_space(space)
    return bandits.optimal_policy(space.reward, as_probs(ref, space, "ref"), check_beta(beta))


def log_partition(ref, space: Space, beta) -> np.ndarray:
    """log Z_beta(x) = log sum_y pi_ref(y|x) exp(r*(x,y) / beta) (Eq. 4). ref (P, K), beta > 0  ->  (P,)."""
    space = check_space(space)
    return np.asarray(bandits.log_partition(space.reward, as_probs(ref, space, "ref"), check_beta(beta)))


def reward_from_policy(policy, ref, space: Space, beta) -> np.ndarray:
    """r(x, y) = beta log(pi(y|x) / pi_ref(y|x)) + beta log Z_beta(x) (Eq. 5). At pi = pi*_beta this
    is r* itself, exactly. policy, ref (P, K) (pi_ref > 0), beta > 0  ->  (P, K)."""
    space = check_space(space)
    ref = as_probs(ref, space, "ref")
    beta = check_beta(beta)
    implicit = bandits.implicit_reward(as_probs(policy, space, "policy"), ref, beta)
    return implicit + beta * np.asarray(bandits.log_partition(space.reward, ref, beta))[:, None]


def frontier(ref, space: Space, betas) -> tuple[np.ndarray, np.ndarray]:
    """The exact optimal reward-KL frontier: (mean_x KL(pi*_beta || pi_ref), mean_x E_{pi*_beta}[r*])
    for each beta (``bandits.ideal_frontier``; one beta shared by all prompts, uniform prompts).

    ref (P, K) or a model, betas (B,) > 0  ->  (kl (B,), reward (B,)); both fall as beta grows.
    """
    space = check_space(space)
    return bandits.ideal_frontier(space.reward, as_probs(ref, space, "ref"), check_betas(betas))


def frontier_bound(ref, space: Space, beta, kl) -> float:
    """The right side of (F) averaged over prompts: beta (mean_x log Z_beta(x) + KL). An upper bound on
    the mean reward of every policy whose mean KL is ``kl``, for every beta > 0 (module docstring).

    ref (P, K), beta > 0, kl >= 0  ->  float. Computed as mean_x(beta log Z) + beta KL; beta log Z is
    finite for any beta (``bandits.log_partition`` subtracts the max reward before dividing).
    """
    space = check_space(space)
    beta = check_beta(beta)
    log_z = log_partition(ref, space, beta)
    return float(np.mean(beta * log_z) + beta * _check_kl(kl))


def _check_kl(kl) -> float:
    """``kl`` as a float >= 0; a round-off negative down to -1e-9 counts as 0 (ValueError naming ``kl``)."""
    if isinstance(kl, (str, bytes, bool, np.bool_)) or not isinstance(kl, (int, float, np.number)):
        raise ValueError(f"kl: expected a finite number >= 0, got {kl!r}")
    k = float(kl)
    if not math.isfinite(k) or k < -1e-9:
        raise ValueError(f"kl: must be a finite number >= 0 (a KL divergence), got {kl!r}")
    return max(k, 0.0)


def frontier_reward(ref, space: Space, kl, tol: float = 1e-12) -> float:
    """R*(KL): the largest mean reward any policy can reach at mean KL(pi || pi_ref) = ``kl``, i.e.
    min over beta of :func:`frontier_bound` (module docstring), capped by mean_x max_y r*(x, y).

    Found by bisection on log beta in [BETA_MIN, BETA_MAX] for the beta with mean KL(pi*_beta) = kl;
    ``tol`` is the bracket width in log beta. ref (P, K) or a model, kl >= 0 (a round-off negative down
    to -1e-9 counts as 0)  ->  float.
    """
    space = check_space(space)
    ref = as_probs(ref, space, "ref")
    kl = _check_kl(kl)

    def kl_at(log_beta: float) -> float:
        return bandits.frontier_point(bandits.optimal_policy(space.reward, ref, math.exp(log_beta)), space.reward, ref)[
            0
        ]

    if kl == 0:  # KL = 0 only for pi = pi_ref itself
        return float(np.mean((ref * space.reward).sum(axis=1)))
    lo, hi = math.log(BETA_MIN), math.log(BETA_MAX)  # KL falls as beta grows: kl_at(lo) >= kl_at(hi)
    if kl >= kl_at(lo):
        hi = lo
    elif kl <= kl_at(hi):
        lo = hi
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if kl_at(mid) > kl:
            lo = mid
        else:
            hi = mid
    # Every beta gives a valid bound; take the best of the bracket's ends (and the trivial max bound).
    best = min(frontier_bound(ref, space, math.exp(b), kl) for b in (lo, hi))
    # On pi_ref's support (probabilities here are > 0 everywhere, but keep the definition exact).
    r_max = float(np.mean(np.where(ref > 0, space.reward, -np.inf).max(axis=1)))
    return min(best, r_max)


def frontier_gap(ref, space: Space, kl, reward) -> float:
    """reward - R*(kl): how far a (KL, reward) point lies ABOVE the exact frontier. Theorem (F) says
    <= 0 for every policy (up to float round-off, about 1e-12 here); = 0 exactly for pi*_beta.

    ref (P, K) or a model, kl >= 0, reward a number  ->  float.
    """
    from .reward import _number

    return _number(reward, "reward") - frontier_reward(ref, space, kl)


def evaluate(policy, ref, space: Space, prefix: str = "eval/enum_") -> dict:
    """Exact evaluation of a policy by enumeration: flat finite numbers ready for an evaluation record.

    ===================================  ===========================================================
    key (default prefix ``eval/enum_``)  value
    ===================================  ===========================================================
    ``<prefix>kl``                       mean_x KL(pi(.|x) || pi_ref(.|x)), nats, whole responses
    ``<prefix>reward``                   mean_x E_{y~pi}[r*(x, y)]
    ``<prefix>kl/<p>``                   KL for prompt p (0 .. P-1)
    ``<prefix>reward/<p>``               expected reward for prompt p
    ``<prefix>frontier_reward``          R*(KL), the best mean reward any policy has at that KL
    ``<prefix>frontier_gap``             reward - frontier_reward: <= ~1e-12 by theorem (F)
    ===================================  ===========================================================

    The prefix keeps these apart from the sampled estimates of an evaluation record (its
    ``eval/kl_exact`` is a sampled estimator that is exact per token, not this enumeration).
    policy: a model or (P, K) probabilities; ref: (P, K) probabilities (enumerate pi_ref once with
    ``np.exp(policy_logprobs(ref_model, space))``) or a model.
    """
    space = check_space(space)
    if not isinstance(prefix, str):
        raise ValueError(f"prefix: expected a string, got {type(prefix).__name__}")
    probs, ref = as_probs(policy, space, "policy"), as_probs(ref, space, "ref")
    kls, rewards = bandits.kl(probs, ref), (probs * space.reward).sum(axis=1)
    kl, reward = bandits.frontier_point(probs, space.reward, ref)
    best = frontier_reward(ref, space, kl)
    out = {f"{prefix}kl": kl, f"{prefix}reward": reward}
    out.update({f"{prefix}kl/{p}": float(v) for p, v in enumerate(kls)})
    out.update({f"{prefix}reward/{p}": float(v) for p, v in enumerate(rewards)})
    out.update({f"{prefix}frontier_reward": best, f"{prefix}frontier_gap": reward - best})
    return out
