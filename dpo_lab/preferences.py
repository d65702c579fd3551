"""Preference models and preference data on toy bandits: Bradley-Terry, Plackett-Luce, samplers, reward MLE.

Introduced in notebook 02 (preferences see a reward only up to a per-context shift, its equivalence
class; rankings); notebook 03 trains policies on the pairs and rankings drawn here and reuses
``fit_reward`` for two-stage RLHF. The bandits themselves (``Bandit``, the named instances, the
KL-regularised optimum) live in ``dpo_lab.bandits``, whose conventions hold here too: numpy only,
float64 throughout, the last axis is the action axis, every bad input is a ValueError naming the argument.

Paper equations: Bradley-Terry (Eq. 1) and its maximum-likelihood reward (Eq. 2); Plackett-Luce
(Eq. 18); sampling rankings by the Gumbel-max trick (Appendix A.3).

==============  ===============================  ===============================================
name            shape                            meaning
==============  ===============================  ===============================================
``reward``      (n_contexts, n_actions) or (K,)  r(x, y); finite (NaN or inf is a ValueError)
``ref_policy``  same as reward, or (K,)          pi_ref(y|x): the samplers draw candidates from it
``ranking``     (..., K) int                     a full ranking: ``ranking[..., k]`` is placed k-th
``context``     (n,) int                         index of the context of each sample
``chosen``      (n,) int                         preferred action y_w of each pair
``rejected``    (n,) int                         dispreferred action y_l of each pair
``ranked``      (n, k) int                       actions of each ranking, most preferred first
==============  ===============================  ===============================================
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .bandits import Bandit, check_finite, check_same_actions

__all__ = [
    "Preferences",
    "Rankings",
    "bradley_terry",
    "plackett_luce_prob",
    "sample_rankings",
    "sample_preferences",
    "fit_reward",
]


# --- preference models (notebook 02) -------------------------------------------------------------


def bradley_terry(r_w, r_l) -> np.ndarray:
    """p(y_w > y_l) = sigma(r_w - r_l) = exp(r_w) / (exp(r_w) + exp(r_l)) (Eq. 1).

    Introduced in notebook 02. Stable for reward gaps of any size (no overflow at |r_w - r_l| = 1e4).
    For the matrix of all pairs: ``bradley_terry(r[..., :, None], r[..., None, :])``.

    r_w, r_l: arrays of broadcastable shapes (scalars allowed)  ->  broadcast shape, in [0, 1].
    """
    r_w, r_l = np.asarray(r_w, dtype=np.float64), np.asarray(r_l, dtype=np.float64)
    for arr, name in ((r_w, "r_w"), (r_l, "r_l")):
        if np.isnan(arr).any() or not np.isfinite(arr).all():
            raise ValueError(f"{name}: rewards must be finite (found NaN or inf)")
    try:
        d = r_w - r_l
    except ValueError:
        raise ValueError(f"shape mismatch: r_w has shape {r_w.shape}, r_l has shape {r_l.shape}") from None
    e = np.exp(-np.abs(d))  # <= 1: never overflows
    return np.where(d >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _ranking(ranking, n_items: int) -> np.ndarray:
    arr = np.asarray(ranking)
    if arr.ndim == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"ranking: expected an integer array of item indices, got dtype {arr.dtype}, shape {arr.shape}"
        )
    if arr.shape[-1] != n_items or not (np.sort(arr, axis=-1) == np.arange(n_items)).all():
        raise ValueError(
            f"ranking: every row must be a permutation of 0..{n_items - 1} (a full ranking of the {n_items} items)"
        )
    return arr


def plackett_luce_prob(reward, ranking, log: bool = False) -> np.ndarray:
    """Probability of a full ranking under Plackett-Luce (Eq. 18):

        p(tau) = prod_k exp(r[tau_k]) / sum_{j >= k} exp(r[tau_j])

    Introduced in notebook 02. ``ranking[..., k]`` is the item placed k-th (0 = most preferred).
    With K = 2 this is bradley_terry. Computed in log space (a reverse cumulative log-sum-exp).

    reward (..., K), ranking (..., K) int permutations, log  ->  broadcast leading shape (...);
    log-probabilities if ``log``.
    """
    reward = check_finite(reward, "reward")
    ranking = _ranking(ranking, reward.shape[-1])
    shape = check_same_actions(reward, ranking, "reward", "ranking")
    r = np.take_along_axis(np.broadcast_to(reward, shape), np.broadcast_to(ranking, shape), axis=-1)
    tail = np.logaddexp.accumulate(r[..., ::-1], axis=-1)[..., ::-1]  # log sum_{j >= k} exp r[tau_j]
    logp = (r - tail).sum(axis=-1)
    return logp if log else np.exp(logp)


# --- preference data: pairs and rankings drawn from a bandit -------------------------------------


class Rankings(NamedTuple):
    """Sampled rankings: ``context`` (n,) int; ``ranked`` (n, k) int actions, most preferred first."""

    context: np.ndarray
    ranked: np.ndarray


class Preferences(NamedTuple):
    """Sampled preference pairs, each (n,) int: ``context``, ``chosen`` (y_w), ``rejected`` (y_l)."""

    context: np.ndarray
    chosen: np.ndarray
    rejected: np.ndarray


def _as_bandit(bandit_or_reward, ref_policy, context_probs) -> Bandit:
    if isinstance(bandit_or_reward, Bandit):
        if ref_policy is not None or context_probs is not None:
            raise ValueError("ref_policy / context_probs: give them only with a reward array; a Bandit carries its own")
        return bandit_or_reward
    reward = np.atleast_2d(check_finite(bandit_or_reward, "reward"))
    if ref_policy is None:
        ref_policy = np.full(reward.shape[-1], 1.0 / reward.shape[-1])
    return Bandit(reward, ref_policy, context_probs)


def _count(n, name: str = "n") -> int:
    if isinstance(n, (bool, np.bool_)) or int(n) != n or int(n) < 1:
        raise ValueError(f"{name}: expected a positive integer, got {n!r}")
    return int(n)


def sample_rankings(bandit_or_reward, n, rng, k=None, ref_policy=None, context_probs=None) -> Rankings:
    """Draw n Plackett-Luce rankings of k actions each, all through the Gumbel-max trick (App. A.3).

    Introduced in notebook 02. For each sample: x ~ context_probs; k distinct candidate actions are
    drawn without replacement from pi_ref(.|x) (the top k of log pi_ref + Gumbel noise); the candidates
    are then ranked by r(x, y) + fresh Gumbel noise, which is an exact Plackett-Luce draw (Eq. 18).
    With k = n_actions every action is ranked and ``ranked`` rows are permutations.

    bandit_or_reward: a Bandit, or a reward array (K,) / (n_contexts, K) with optional ref_policy
    (default uniform) and context_probs (default uniform); n > 0; rng: Generator or int seed;
    k in [2, K] (default K)  ->  Rankings(context (n,), ranked (n, k)).
    """
    b = _as_bandit(bandit_or_reward, ref_policy, context_probs)
    n, rng = _count(n), np.random.default_rng(rng)
    k = b.n_actions if k is None else _count(k, "k")
    support = int((b.ref_policy > 0).sum(axis=-1).min())
    if not 2 <= k <= support:
        raise ValueError(f"k: must be in [2, {support}] (actions with pi_ref > 0 in every context), got {k}")
    context = rng.choice(b.n_contexts, size=n, p=b.context_probs)
    with np.errstate(divide="ignore"):
        keys = np.log(b.ref_policy[context]) + rng.gumbel(size=(n, b.n_actions))
    candidates = np.argsort(-keys, axis=-1)[:, :k]
    scores = np.take_along_axis(b.reward[context], candidates, axis=-1) + rng.gumbel(size=(n, k))
    ranked = np.take_along_axis(candidates, np.argsort(-scores, axis=-1), axis=-1)
    return Rankings(context, ranked)


def sample_preferences(bandit_or_reward, n, rng, ref_policy=None, context_probs=None) -> Preferences:
    """Draw n Bradley-Terry preference pairs (Eq. 1): a ranking of k = 2 (Plackett-Luce with K = 2 is BT).

    Introduced in notebook 02. x ~ context_probs; two distinct actions from pi_ref(.|x) (without
    replacement); the winner is y_w with probability sigma(r(x, y_w) - r(x, y_l)).

    Same arguments as sample_rankings  ->  Preferences(context (n,), chosen (n,), rejected (n,)).
    """
    context, ranked = sample_rankings(bandit_or_reward, n, rng, k=2, ref_policy=ref_policy, context_probs=context_probs)
    return Preferences(context, ranked[:, 0], ranked[:, 1])


# --- the maximum-likelihood reward (notebook 02; two-stage RLHF in notebook 03) ------------------


def _check_finite_mle(wins: np.ndarray) -> None:
    """The BT likelihood has a finite maximiser iff, among actions that are compared at all, everyone
    who beats someone can be beaten back through a chain of wins (the win graph is strongly connected
    within each component)."""
    n_act = wins.shape[-1]
    reach = ((wins > 0) | np.eye(n_act, dtype=bool)).astype(np.float64)
    for _ in range(int(np.ceil(np.log2(n_act))) + 1):  # transitive closure by repeated squaring
        reach = np.minimum(reach @ reach, 1.0)
    one_way = (reach > 0) & (reach.transpose(0, 2, 1) == 0)
    if one_way.any():
        x, i, j = np.argwhere(one_way)[0]
        raise ValueError(
            f"preferences: the maximum-likelihood reward is infinite: in context {x}, action "
            f"{i} beats action {j} (through a chain of wins) but is never beaten back"
        )


def fit_reward(context, chosen, rejected, init, tol: float = 1e-12, max_iter: int = 200) -> np.ndarray:
    """Maximum-likelihood Bradley-Terry reward on a table (Eq. 2), by damped Newton per context.

    Introduced in notebook 02 (under-specification); notebook 03 reuses it for two-stage RLHF.
    The log-likelihood only sees differences r(x, y_w) - r(x, y_l), so its gradient sums to zero in
    every context: the per-context mean of ``init`` is never changed. Fits from two initialisations
    differ by exactly that constant per context, which is the equivalence class made visible.
    Actions never compared in a context keep their initial value.

    context, chosen, rejected (n,) int; init (n_contexts, K) or (K,) (then context must be 0);
    tol: stop when every context's mean log-likelihood gradient is below it
    ->  reward of init's shape. ValueError when the MLE is infinite (an action, or a group of them,
    never beaten by the others); RuntimeError if not converged within max_iter.
    """
    init = check_finite(init, "init")
    r = np.atleast_2d(init).copy()
    n_ctx, n_act = r.shape
    idx = [np.asarray(a) for a in (context, chosen, rejected)]
    names = ("context", "chosen", "rejected")
    for a, name, hi in zip(idx, names, (n_ctx, n_act, n_act)):
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer) or a.size == 0:
            raise ValueError(f"{name}: expected a non-empty 1-d integer array, got {a.dtype} {a.shape}")
        if a.shape != idx[0].shape:
            raise ValueError(f"shape mismatch: {name} has shape {a.shape}, context has {idx[0].shape}")
        if a.min() < 0 or a.max() >= hi:
            raise ValueError(f"{name}: indices must be in [0, {hi - 1}]")
    if (idx[1] == idx[2]).any():
        raise ValueError("chosen/rejected: a pair compares an action with itself")
    wins = np.zeros((n_ctx, n_act, n_act))
    np.add.at(wins, tuple(idx), 1.0)
    _check_finite_mle(wins)
    n_pairs = np.maximum(wins.sum(axis=(1, 2)), 1.0)[:, None]
    games = wins + wins.transpose(0, 2, 1)

    def loglik(r):  # per context, mean over its pairs
        d = r[:, :, None] - r[:, None, :]
        return (wins * -np.logaddexp(0.0, -d)).sum(axis=(1, 2)) / n_pairs[:, 0]

    damping = np.full((n_ctx, 1, 1), 1e-3)
    for _ in range(max_iter):
        p = bradley_terry(r[:, :, None], r[:, None, :])  # p[x, i, j] = P(i beats j)
        grad = (wins - games * p).sum(axis=2) / n_pairs
        if np.abs(grad).max() < tol:
            return r.reshape(init.shape)
        w = games * p * (1.0 - p) / n_pairs[:, :, None]
        laplacian = np.eye(n_act) * w.sum(axis=2)[:, :, None] - w  # minus the Hessian, PSD
        # Levenberg-Marquardt: far from the optimum p(1 - p) underflows and pure Newton stalls, so
        # raise the damping (towards a gradient step) in a context until its likelihood does not fall.
        # (laplacian + damping I) keeps mean-zero vectors mean-zero: the constant is untouched.
        base = loglik(r)
        for _ in range(60):
            step = np.linalg.solve(laplacian + damping * np.eye(n_act), grad[:, :, None])[..., 0]
            step -= step.mean(axis=-1, keepdims=True)  # exactly mean-zero, not just up to round-off
            ok = loglik(r + step) >= base - 1e-14 * np.abs(base)  # equal up to round-off is fine
            if ok.all():
                break
            damping[~ok] *= 10.0
        r = r + np.where(ok[:, None], step, 0.0)
        damping = np.where(ok[:, None, None], np.maximum(damping / 10.0, 1e-12), damping)
    raise RuntimeError(
        f"fit_reward: no convergence in {max_iter} damped Newton steps (max gradient {np.abs(grad).max():.2g})"
    )
