"""Toy bandits: the KL-regularised optimum, reward equivalence classes, Bradley-Terry and Plackett-Luce.

Introduced in notebook 01 (optimal policy, frontier) and notebook 02 (equivalence classes, rankings);
notebook 03 trains policies on data drawn from these bandits. numpy only, float64 throughout.

A *bandit* here is the DPO setting with the language model taken out: a context ``x`` (a prompt) and a
finite set of actions ``y`` (completions). Every function is vectorised over contexts: the last axis
is always the action axis and leading axes broadcast.

==============  ===============================  ===============================================
name            shape                            meaning
==============  ===============================  ===============================================
``reward``      (n_contexts, n_actions) or (K,)  r(x, y); finite (NaN or inf is a ValueError)
``ref_policy``  same as reward, or (K,)          pi_ref(y|x); >= 0, sums to 1 over the last axis
``policy``      same as reward                   pi(y|x); >= 0, sums to 1 over the last axis
``beta``        float > 0                        KL strength: large beta = stay close to pi_ref
``context``     (n,) int                         index of the context of each sample
``chosen``      (n,) int                         preferred action y_w of each pair
``rejected``    (n,) int                         dispreferred action y_l of each pair
``ranked``      (n, k) int                       actions of each ranking, most preferred first
==============  ===============================  ===============================================

Probabilities must sum to 1 within ``PROB_ATOL`` (1e-6, so float32 round-off passes). Every bad input
is a ValueError that names the argument.

The direction of beta, once and for all: beta -> 0 gives the argmax of the reward (on the support of
pi_ref), beta -> infinity gives pi_ref itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = [
    "PROB_ATOL", "Bandit", "Preferences", "Rankings",
    "optimal_policy", "log_partition", "kl", "rlhf_objective", "implicit_reward", "project_reward",
    "frontier_point", "ideal_frontier",
    "bradley_terry", "plackett_luce_prob", "sample_rankings", "sample_preferences", "fit_reward",
    "random_bandit", "THREE_ARMED", "FOUR_ARMED", "CONTEXTUAL", "BANDITS",
]

PROB_ATOL = 1e-6


# --- input checks -------------------------------------------------------------------------------

def _finite(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 0:
        raise ValueError(f"{name}: expected an array with an action axis, got a scalar")
    if np.isnan(arr).any():
        raise ValueError(f"{name}: contains NaN")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains inf (rewards and log-probabilities must be finite)")
    return arr


def _probs(x, name: str, positive: bool = False) -> np.ndarray:
    arr = _finite(x, name)
    if (arr < 0).any():
        raise ValueError(f"{name}: probabilities must be >= 0 (smallest entry {arr.min():.3g})")
    if positive and (arr <= 0).any():
        raise ValueError(f"{name}: must be > 0 for every action (Theorem 1 assumes pi_ref > 0)")
    sums = arr.sum(axis=-1)
    if np.abs(sums - 1.0).max() > PROB_ATOL:
        worst = sums.ravel()[np.argmax(np.abs(sums - 1.0).ravel())]
        raise ValueError(f"{name}: probabilities must sum to 1 over the last (action) axis "
                         f"(a row sums to {worst:.10g})")
    return arr


def _beta(beta) -> float:
    if np.ndim(beta) != 0:
        raise ValueError(f"beta: expected a scalar, got shape {np.shape(beta)}")
    b = float(beta)
    if not np.isfinite(b) or b <= 0:
        raise ValueError(f"beta: must be a finite number > 0, got {beta}")
    return b


def _same_actions(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> tuple[int, ...]:
    """The broadcast shape of two (..., n_actions) arrays; a ValueError naming both otherwise."""
    try:
        if a.shape[-1] != b.shape[-1]:
            raise ValueError
        return np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"shape mismatch: {name_a} has shape {a.shape}, {name_b} has shape {b.shape} "
                         "(the last axes must be equal, leading axes must broadcast)") from None


def _log_weights(reward: np.ndarray, ref_policy: np.ndarray, beta: float):
    """``log pi_ref + (r - max r) / beta`` and ``max r``, shaped for a log-sum-exp.

    Subtracting the per-context maximum reward *before* dividing by beta keeps r / beta = 1e8
    (reward 1e4, beta 1e-4) out of the arithmetic: reward gaps are exact for nearby floats.
    """
    r_max = reward.max(axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):  # pi_ref = 0 -> log 0 = -inf is the right weight
        logits = np.log(ref_policy) + (reward - r_max) / beta
    return logits, r_max


def _logsumexp(a: np.ndarray) -> np.ndarray:
    m = a.max(axis=-1, keepdims=True)  # finite: pi_ref has positive mass somewhere
    return (m + np.log(np.exp(a - m).sum(axis=-1, keepdims=True)))[..., 0]


# --- the KL-regularised optimum (notebook 01) -----------------------------------------------------

def optimal_policy(reward, ref_policy, beta) -> np.ndarray:
    """pi*(y|x) = pi_ref(y|x) exp(r(x,y) / beta) / Z(x), the maximiser of the RLHF objective (Eq. 4).

    Introduced in notebook 01. Computed as a softmax of ``log pi_ref + (r - max r) / beta``, so beta =
    1e-4 or rewards of 1e4 give finite, exact probabilities. Actions with pi_ref = 0 get probability 0.

    reward (..., K), ref_policy (..., K), beta > 0  ->  (broadcast shape, ..., K), rows sum to 1.
    """
    reward, ref_policy, beta = _finite(reward, "reward"), _probs(ref_policy, "ref_policy"), _beta(beta)
    _same_actions(reward, ref_policy, "reward", "ref_policy")
    logits, _ = _log_weights(reward, ref_policy, beta)
    w = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return w / w.sum(axis=-1, keepdims=True)


def log_partition(reward, ref_policy, beta) -> np.ndarray:
    """log Z(x) = log sum_y pi_ref(y|x) exp(r(x,y) / beta) (Eq. 4; Appendix A.1).

    Introduced in notebook 01. Z itself overflows for r / beta > 709; its log is finite and exact
    (log Z = max r / beta + a log-sum-exp of terms <= 0).

    reward (..., K), ref_policy (..., K), beta > 0  ->  shape (...) (a 0-d array for one context).
    """
    reward, ref_policy, beta = _finite(reward, "reward"), _probs(ref_policy, "ref_policy"), _beta(beta)
    _same_actions(reward, ref_policy, "reward", "ref_policy")
    logits, r_max = _log_weights(reward, ref_policy, beta)
    return r_max[..., 0] / beta + _logsumexp(logits)


def kl(p, q) -> np.ndarray:
    """KL(p || q) = sum_y p(y) log(p(y) / q(y)) over the last axis, in nats.

    Introduced in notebook 01. Terms with p = 0 count 0 (0 log 0 = 0); the result is +inf where
    q = 0 < p. Not clipped at 0: inputs normalised only to PROB_ATOL can give negatives of that size.

    p (..., K), q (..., K)  ->  shape (broadcast of leading axes).
    """
    p, q = _probs(p, "p"), _probs(q, "q")
    _same_actions(p, q, "p", "q")
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(axis=-1)


def rlhf_objective(policy, reward, ref_policy, beta) -> np.ndarray:
    """E_{y~pi}[r(x,y)] - beta KL(pi(.|x) || pi_ref(.|x)) for each context (Eq. 3).

    Introduced in notebook 01. At pi = optimal_policy(...) it equals beta log Z(x), its maximum.

    policy (..., K), reward (..., K), ref_policy (..., K), beta > 0  ->  shape (...).
    """
    policy, reward, beta = _probs(policy, "policy"), _finite(reward, "reward"), _beta(beta)
    _same_actions(policy, reward, "policy", "reward")
    return (policy * reward).sum(axis=-1) - beta * kl(policy, ref_policy)


def implicit_reward(policy, ref_policy, beta) -> np.ndarray:
    """r_hat(x, y) = beta log(pi(y|x) / pi_ref(y|x)), the reward DPO reads off a policy (Eq. 5, Thm 1).

    Introduced in notebook 02. pi_ref must be > 0 everywhere; pi = 0 gives -inf.

    policy (..., K), ref_policy (..., K), beta > 0  ->  (broadcast shape, ..., K).
    """
    policy, beta = _probs(policy, "policy"), _beta(beta)
    ref_policy = _probs(ref_policy, "ref_policy", positive=True)
    _same_actions(policy, ref_policy, "policy", "ref_policy")
    with np.errstate(divide="ignore"):
        return beta * (np.log(policy) - np.log(ref_policy))


def project_reward(reward, ref_policy, beta) -> np.ndarray:
    """The Theorem 1 operator f(r, pi_ref, beta)(x, y) = r(x, y) - beta log Z(x) (Appendix A.6).

    Introduced in notebook 02. The result is in the class of ``reward`` (it differs by a function of x
    only), equals implicit_reward(optimal_policy(r), pi_ref, beta), and is the one member of the class
    with sum_y pi_ref exp(r / beta) = 1, i.e. log_partition(result) = 0 (Proposition 1).

    reward (..., K), ref_policy (..., K), beta > 0  ->  (broadcast shape, ..., K).
    """
    reward, ref_policy, beta = _finite(reward, "reward"), _probs(ref_policy, "ref_policy"), _beta(beta)
    _same_actions(reward, ref_policy, "reward", "ref_policy")
    logits, r_max = _log_weights(reward, ref_policy, beta)
    # beta log Z = max r + beta * lse; subtracting max r first keeps the 1e4-scale terms exact.
    return (reward - r_max) - beta * _logsumexp(logits)[..., None]


# --- the reward-KL frontier (notebook 01; used by notebook 03) ------------------------------------

def _context_weights(context_probs, n_contexts: int) -> np.ndarray:
    if context_probs is None:
        return np.full(n_contexts, 1.0 / n_contexts)
    w = _probs(context_probs, "context_probs")
    if w.shape != (n_contexts,):
        raise ValueError(f"shape mismatch: context_probs has shape {w.shape}, expected ({n_contexts},)")
    return w


def frontier_point(policy, reward, ref_policy, context_probs=None) -> tuple[float, float]:
    """(KL(pi || pi_ref), E_pi[r]) averaged over contexts: where a policy sits in the reward-KL plane.

    Introduced in notebook 01; notebook 03 places trained policies with it.

    policy, reward, ref_policy (n_contexts, K) or (K,); context_probs (n_contexts,) or None (uniform)
    ->  (kl, expected_reward), two floats.
    """
    policy, reward = _probs(policy, "policy"), _finite(reward, "reward")
    shape = _same_actions(policy, reward, "policy", "reward")
    kls = np.broadcast_to(kl(policy, ref_policy), shape[:-1]).reshape(-1)
    rewards = np.broadcast_to((policy * reward).sum(axis=-1), shape[:-1]).reshape(-1)
    w = _context_weights(context_probs, rewards.size)
    return float(w @ kls), float(w @ rewards)


def ideal_frontier(reward, ref_policy, betas, context_probs=None) -> tuple[np.ndarray, np.ndarray]:
    """The ideal reward-KL frontier: frontier_point(optimal_policy(r, pi_ref, beta)) for each beta.

    Introduced in notebook 01. No policy lies above this curve: pi_beta maximises E[r] - beta KL, so
    any pi with E_pi[r] > E_beta[r] needs KL(pi) > KL(pi_beta). One beta is shared by all contexts,
    which is what makes the points optimal for the context-averaged KL and reward.

    reward, ref_policy (n_contexts, K) or (K,); betas (B,) all > 0; context_probs (n_contexts,) or None
    ->  (kl (B,), expected_reward (B,)); KL falls and reward falls as beta grows.
    """
    betas = np.atleast_1d(np.asarray(betas, dtype=np.float64))
    if betas.ndim != 1 or betas.size == 0:
        raise ValueError(f"betas: expected a non-empty 1-d array, got shape {betas.shape}")
    points = np.array([frontier_point(optimal_policy(reward, ref_policy, b), reward, ref_policy,
                                      context_probs) for b in betas])
    return points[:, 0], points[:, 1]


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
        raise ValueError(f"ranking: expected an integer array of item indices, got dtype {arr.dtype}, "
                         f"shape {arr.shape}")
    if arr.shape[-1] != n_items or not (np.sort(arr, axis=-1) == np.arange(n_items)).all():
        raise ValueError(f"ranking: every row must be a permutation of 0..{n_items - 1} "
                         f"(a full ranking of the {n_items} items)")
    return arr


def plackett_luce_prob(reward, ranking, log: bool = False) -> np.ndarray:
    """Probability of a full ranking under Plackett-Luce (Eq. 18):

        p(tau) = prod_k exp(r[tau_k]) / sum_{j >= k} exp(r[tau_j])

    Introduced in notebook 02. ``ranking[..., k]`` is the item placed k-th (0 = most preferred).
    With K = 2 this is bradley_terry. Computed in log space (a reverse cumulative log-sum-exp).

    reward (..., K), ranking (..., K) int permutations, log  ->  broadcast leading shape (...);
    log-probabilities if ``log``.
    """
    reward = _finite(reward, "reward")
    ranking = _ranking(ranking, reward.shape[-1])
    shape = _same_actions(reward, ranking, "reward", "ranking")
    r = np.take_along_axis(np.broadcast_to(reward, shape), np.broadcast_to(ranking, shape), axis=-1)
    tail = np.logaddexp.accumulate(r[..., ::-1], axis=-1)[..., ::-1]  # log sum_{j >= k} exp r[tau_j]
    logp = (r - tail).sum(axis=-1)
    return logp if log else np.exp(logp)


# --- the bandit container and samplers -----------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Bandit:
    """A contextual bandit: rewards, reference policy and context distribution (read-only arrays).

    Introduced in notebook 01. 1-d inputs are one context; a 1-d ref_policy is shared by all contexts;
    context_probs defaults to uniform.

    ===============  ========================  =====================================
    reward           (n_contexts, n_actions)   r(x, y), finite
    ref_policy       (n_contexts, n_actions)   pi_ref(y|x)
    context_probs    (n_contexts,)             the prompt distribution D over x
    ===============  ========================  =====================================
    """

    reward: np.ndarray
    ref_policy: np.ndarray
    context_probs: np.ndarray | None = None
    name: str = "bandit"

    def __post_init__(self):
        reward = np.atleast_2d(_finite(self.reward, "reward"))
        ref = _probs(self.ref_policy, "ref_policy")
        shape = _same_actions(reward, ref, "reward", "ref_policy")
        if shape != reward.shape:
            raise ValueError(f"shape mismatch: ref_policy {ref.shape} does not fit reward {reward.shape}")
        ref = np.broadcast_to(ref, shape).copy()
        cp = _context_weights(self.context_probs, reward.shape[0]).copy()
        for arr in (reward, ref, cp):
            arr.setflags(write=False)  # named instances are shared across notebooks
        object.__setattr__(self, "reward", reward)
        object.__setattr__(self, "ref_policy", ref)
        object.__setattr__(self, "context_probs", cp)

    @property
    def n_contexts(self) -> int:
        return self.reward.shape[0]

    @property
    def n_actions(self) -> int:
        return self.reward.shape[1]

    def __repr__(self) -> str:
        return f"Bandit({self.name!r}, n_contexts={self.n_contexts}, n_actions={self.n_actions})"


def random_bandit(n_contexts: int, n_actions: int, rng, reward_scale: float = 1.0,
                  ref_concentration: float = 2.0, name: str = "random") -> Bandit:
    """A random bandit: rewards ~ N(0, reward_scale^2), pi_ref(.|x) ~ Dirichlet(ref_concentration).

    Introduced in notebook 01. ``rng`` is a numpy Generator or an int seed. Uniform contexts.
    """
    if int(n_contexts) < 1 or int(n_actions) < 2:
        raise ValueError(f"n_contexts >= 1 and n_actions >= 2 required, got {n_contexts}, {n_actions}")
    if not reward_scale > 0 or not ref_concentration > 0:
        raise ValueError("reward_scale and ref_concentration must be > 0")
    rng = np.random.default_rng(rng)
    reward = reward_scale * rng.standard_normal((n_contexts, n_actions))
    ref = rng.dirichlet(np.full(n_actions, float(ref_concentration)), size=n_contexts)
    return Bandit(reward, ref, name=name)


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
            raise ValueError("ref_policy / context_probs: give them only with a reward array; "
                             "a Bandit carries its own")
        return bandit_or_reward
    reward = np.atleast_2d(_finite(bandit_or_reward, "reward"))
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
    context, ranked = sample_rankings(bandit_or_reward, n, rng, k=2, ref_policy=ref_policy,
                                      context_probs=context_probs)
    return Preferences(context, ranked[:, 0], ranked[:, 1])


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
        raise ValueError(f"preferences: the maximum-likelihood reward is infinite: in context {x}, action "
                         f"{i} beats action {j} (through a chain of wins) but is never beaten back")


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
    init = _finite(init, "init")
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
    raise RuntimeError(f"fit_reward: no convergence in {max_iter} damped Newton steps (max gradient "
                       f"{np.abs(grad).max():.2g})")


# --- named instances used across notebooks -------------------------------------------------------

THREE_ARMED = Bandit(reward=[1.0, 0.5, 0.0], ref_policy=[0.15, 0.35, 0.5], name="three_armed")
"""One context, 3 actions: pi_ref favours the worst arm, so beta visibly trades reward for closeness."""

FOUR_ARMED = Bandit(reward=[1.5, 0.8, 0.2, -0.5], ref_policy=[0.25, 0.25, 0.25, 0.25], name="four_armed")
"""One context, 4 items: all 24 rankings can be enumerated (Plackett-Luce, notebook 02)."""

CONTEXTUAL = random_bandit(50, 20, rng=20230529, name="contextual_50x20")
"""50 contexts x 20 actions, seeded: the 'many prompts' bandit of notebooks 01-03."""

BANDITS = {b.name: b for b in (THREE_ARMED, FOUR_ARMED, CONTEXTUAL)}
