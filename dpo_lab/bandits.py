"""Toy bandits: the KL-regularised optimum, the reward-KL frontier, and the bandits the notebooks share.

Introduced in notebook 01 (optimal policy, frontier); notebook 02 adds the implicit reward and the
Theorem 1 projection (equivalence classes), and ``dpo_lab.preferences`` draws preference data from these
bandits for notebooks 02 and 03. numpy only, float64 throughout.

A *bandit* here is the DPO setting with the language model taken out: a context ``x`` (a prompt) and a
finite set of actions ``y`` (completions). Every function is vectorised over contexts: the last axis
is always the action axis and leading axes broadcast.

=================  ===============================  ===============================================
name               shape                            meaning
=================  ===============================  ===============================================
``reward``         (n_contexts, n_actions) or (K,)  r(x, y); finite (NaN or inf is a ValueError)
``ref_policy``     same as reward, or (K,)          pi_ref(y|x); >= 0, sums to 1 over the last axis
``policy``         same as reward                   pi(y|x); >= 0, sums to 1 over the last axis
``beta``           float > 0                        KL strength: large beta = stay close to pi_ref
``context_probs``  (n_contexts,) or None            the prompt distribution D over x (None: uniform)
=================  ===============================  ===============================================

Probabilities must sum to 1 within ``PROB_ATOL`` (1e-6, so float32 round-off passes). Every bad input
is a ValueError that names the argument; ``check_finite`` and ``check_same_actions`` are public because
``dpo_lab.preferences`` checks its inputs the same way.

The direction of beta, once and for all: beta -> 0 gives the argmax of the reward (on the support of
pi_ref), beta -> infinity gives pi_ref itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "PROB_ATOL",
    "Bandit",
    "optimal_policy",
    "log_partition",
    "kl",
    "rlhf_objective",
    "implicit_reward",
    "project_reward",
    "frontier_point",
    "ideal_frontier",
    "best_of_n",
    "best_of_n_kl_bound",
    "random_bandit",
    "check_finite",
    "check_same_actions",
    "THREE_ARMED",
    "FOUR_ARMED",
    "CONTEXTUAL",
    "BANDITS",
]

PROB_ATOL = 1e-6


# --- input checks --------------------------------------------------------------------------------


def check_finite(x, name: str) -> np.ndarray:
    """``x`` as a float64 array with at least one (action) axis and only finite entries.

    Used by every function here and by ``dpo_lab.preferences``. A ValueError naming ``name`` for a
    scalar, a NaN or an inf.
    """
    raw = np.asarray(x)
    if raw.dtype.kind in "USb" or (raw.dtype.kind == "O" and any(isinstance(v, (str, bytes, bool)) for v in raw.flat)):
        raise ValueError(f"{name}: expected numbers, got {'booleans' if raw.dtype.kind == 'b' else 'strings'}")
    arr = raw.astype(np.float64)
    if arr.ndim == 0:
        raise ValueError(f"{name}: expected an array with an action axis, got a scalar")
    if np.isnan(arr).any():
        raise ValueError(f"{name}: contains NaN")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains inf (rewards and log-probabilities must be finite)")
    return arr


def _probs(x, name: str, positive: bool = False) -> np.ndarray:
    arr = check_finite(x, name)
    if (arr < 0).any():
        raise ValueError(f"{name}: probabilities must be >= 0 (smallest entry {arr.min():.3g})")
    if positive and (arr <= 0).any():
        raise ValueError(f"{name}: must be > 0 for every action (Theorem 1 assumes pi_ref > 0)")
    sums = arr.sum(axis=-1)
    if np.abs(sums - 1.0).max() > PROB_ATOL:
        worst = sums.ravel()[np.argmax(np.abs(sums - 1.0).ravel())]
        raise ValueError(
            f"{name}: probabilities must sum to 1 over the last (action) axis (a row sums to {worst:.10g})"
        )
    return arr


def _beta(beta) -> float:
    if isinstance(beta, (str, bytes, bool, np.bool_)):
        raise ValueError(f"beta: expected a number, got {type(beta).__name__} {beta!r}")
    if np.ndim(beta) != 0:
        raise ValueError(f"beta: expected a scalar, got shape {np.shape(beta)}")
    b = float(beta)
    if not np.isfinite(b) or b <= 0:
        raise ValueError(f"beta: must be a finite number > 0, got {beta}")
    return b


def check_same_actions(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> tuple[int, ...]:
    """The broadcast shape of two (..., n_actions) arrays: equal last (action) axes, broadcastable leading axes.

    Used by every function here and by ``dpo_lab.preferences``. A ValueError naming both arrays and
    their shapes ("shape mismatch") otherwise.
    """
    try:
        if a.shape[-1] != b.shape[-1]:
            raise ValueError
        return np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"shape mismatch: {name_a} has shape {a.shape}, {name_b} has shape {b.shape} "
            "(the last axes must be equal, leading axes must broadcast)"
        ) from None


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


# --- the KL-regularised optimum (notebook 01) ----------------------------------------------------


def optimal_policy(reward, ref_policy, beta) -> np.ndarray:
    """pi*(y|x) = pi_ref(y|x) exp(r(x,y) / beta) / Z(x), the maximiser of the RLHF objective (Eq. 4).

    Introduced in notebook 01. Computed as a softmax of ``log pi_ref + (r - max r) / beta``, so beta =
    1e-4 or rewards of 1e4 give finite, exact probabilities. Actions with pi_ref = 0 get probability 0.

    reward (..., K), ref_policy (..., K), beta > 0  ->  (broadcast shape, ..., K), rows sum to 1.
    """
    reward, ref_policy, beta = check_finite(reward, "reward"), _probs(ref_policy, "ref_policy"), _beta(beta)
    check_same_actions(reward, ref_policy, "reward", "ref_policy")
    logits, _ = _log_weights(reward, ref_policy, beta)
    w = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return w / w.sum(axis=-1, keepdims=True)


def log_partition(reward, ref_policy, beta) -> np.ndarray:
    """log Z(x) = log sum_y pi_ref(y|x) exp(r(x,y) / beta) (Eq. 4; Appendix A.1).

    Introduced in notebook 01. Z itself overflows for r / beta > 709; its log is finite and exact
    (log Z = max r / beta + a log-sum-exp of terms <= 0).

    reward (..., K), ref_policy (..., K), beta > 0  ->  shape (...) (a 0-d array for one context).
    """
    reward, ref_policy, beta = check_finite(reward, "reward"), _probs(ref_policy, "ref_policy"), _beta(beta)
    check_same_actions(reward, ref_policy, "reward", "ref_policy")
    logits, r_max = _log_weights(reward, ref_policy, beta)
    return r_max[..., 0] / beta + _logsumexp(logits)


def kl(p, q) -> np.ndarray:
    """KL(p || q) = sum_y p(y) log(p(y) / q(y)) over the last axis, in nats.

    Introduced in notebook 01. Terms with p = 0 count 0 (0 log 0 = 0); the result is +inf where
    q = 0 < p. Not clipped at 0: inputs normalised only to PROB_ATOL can give negatives of that size.

    p (..., K), q (..., K)  ->  shape (broadcast of leading axes).
    """
    p, q = _probs(p, "p"), _probs(q, "q")
    check_same_actions(p, q, "p", "q")
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(axis=-1)


def rlhf_objective(policy, reward, ref_policy, beta) -> np.ndarray:
    """E_{y~pi}[r(x,y)] - beta KL(pi(.|x) || pi_ref(.|x)) for each context (Eq. 3).

    Introduced in notebook 01. At pi = optimal_policy(...) it equals beta log Z(x), its maximum.

    policy (..., K), reward (..., K), ref_policy (..., K), beta > 0  ->  shape (...).
    """
    policy, reward, beta = _probs(policy, "policy"), check_finite(reward, "reward"), _beta(beta)
    check_same_actions(policy, reward, "policy", "reward")
    return (policy * reward).sum(axis=-1) - beta * kl(policy, ref_policy)


def implicit_reward(policy, ref_policy, beta) -> np.ndarray:
    """r_hat(x, y) = beta log(pi(y|x) / pi_ref(y|x)), the reward DPO reads off a policy (Eq. 5, Thm 1).

    Introduced in notebook 02. pi_ref must be > 0 everywhere; pi = 0 gives -inf.

    policy (..., K), ref_policy (..., K), beta > 0  ->  (broadcast shape, ..., K).
    """
    policy, beta = _probs(policy, "policy"), _beta(beta)
    ref_policy = _probs(ref_policy, "ref_policy", positive=True)
    check_same_actions(policy, ref_policy, "policy", "ref_policy")
    with np.errstate(divide="ignore"):
        return beta * (np.log(policy) - np.log(ref_policy))


def project_reward(reward, ref_policy, beta) -> np.ndarray:
    """The Theorem 1 operator f(r, pi_ref, beta)(x, y) = r(x, y) - beta log Z(x) (Appendix A.6).

    Introduced in notebook 02. The result is in the class of ``reward`` (it differs by a function of x
    only), equals implicit_reward(optimal_policy(r), pi_ref, beta), and is the one member of the class
    with sum_y pi_ref exp(r / beta) = 1, i.e. log_partition(result) = 0 (Proposition 1).

    reward (..., K), ref_policy (..., K), beta > 0  ->  (broadcast shape, ..., K).
    """
    reward, ref_policy, beta = check_finite(reward, "reward"), _probs(ref_policy, "ref_policy"), _beta(beta)
    check_same_actions(reward, ref_policy, "reward", "ref_policy")
    logits, r_max = _log_weights(reward, ref_policy, beta)
    # beta log Z = max r + beta * lse; subtracting max r first keeps the 1e4-scale terms exact.
    return (reward - r_max) - beta * _logsumexp(logits)[..., None]


# --- the reward-KL frontier (notebook 01; used by notebook 03) -----------------------------------


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
    policy, reward = _probs(policy, "policy"), check_finite(reward, "reward")
    shape = check_same_actions(policy, reward, "policy", "reward")
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
    points = np.array(
        [frontier_point(optimal_policy(reward, ref_policy, b), reward, ref_policy, context_probs) for b in betas]
    )
    return points[:, 0], points[:, 1]


def best_of_n(reward, ref_policy, n) -> np.ndarray:
    """The policy of Best-of-N (DPO paper Sec. 6.1): draw ``n`` actions from pi_ref, keep the one with
    the largest reward, a tie broken uniformly among the tied draws.

    Introduced in notebook 04 (a reference of Fig. 2). Exactly: the best of n draws has reward level <=
    r with probability F(r)^n, F the reward's CDF under pi_ref, and among the actions of the winning
    level each is chosen in proportion to pi_ref, so pi_N(y) = pi_ref(y) / pi_ref(level of y) *
    (F(r_y)^n - F(r_y^-)^n).

    reward, ref_policy (n_contexts, K) or (K,); n integer >= 1  ->  pi_N of the same shape (n = 1: pi_ref).
    """
    reward = check_finite(reward, "reward")
    ref_policy = _probs(ref_policy, "ref_policy")
    check_same_actions(reward, ref_policy, "reward", "ref_policy")
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: expected an integer >= 1, got {n!r}")
    reward, ref_policy = np.broadcast_arrays(reward, ref_policy)
    order = np.argsort(reward, axis=-1, kind="stable")
    r, p = np.take_along_axis(reward, order, -1), np.take_along_axis(ref_policy, order, -1)
    same = np.concatenate([np.zeros_like(r[..., :1], dtype=bool), r[..., 1:] == r[..., :-1]], axis=-1)
    level = np.cumsum(~same, axis=-1) - 1  # index of each action's reward level, in increasing order
    out = np.zeros_like(p)
    for idx in np.ndindex(r.shape[:-1]):  # a few contexts: levels differ per context
        mass = np.bincount(level[idx], weights=p[idx])  # pi_ref of each level
        below = np.concatenate([[0.0], np.cumsum(mass)[:-1]])
        wins = np.clip(below + mass, 0.0, 1.0) ** n - below**n  # P(the best of n lies at the level)
        share = np.divide(p[idx], mass[level[idx]], out=np.zeros_like(p[idx]), where=mass[level[idx]] > 0)
        np.put_along_axis(out[idx], order[idx], share * wins[level[idx]], axis=-1)
    return out


def best_of_n_kl_bound(n) -> float:
    """log n - (n - 1) / n: KL(pi_N || pi_ref) when the reward has no ties and pi_ref no atoms, the
    figure usually quoted for Best-of-N; with atoms or ties the exact KL (``kl(best_of_n(...), ref)``)
    is smaller. Introduced in notebook 04. n integer >= 1  ->  float >= 0."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: expected an integer >= 1, got {n!r}")
    return float(np.log(n) - (n - 1) / n)


# --- the bandit container ------------------------------------------------------------------------


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
        reward = np.atleast_2d(check_finite(self.reward, "reward"))
        ref = _probs(self.ref_policy, "ref_policy")
        shape = check_same_actions(reward, ref, "reward", "ref_policy")
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


def random_bandit(
    n_contexts: int,
    n_actions: int,
    rng,
    reward_scale: float = 1.0,
    ref_concentration: float = 2.0,
    name: str = "random",
) -> Bandit:
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


# --- named instances used across notebooks -------------------------------------------------------

THREE_ARMED = Bandit(reward=[1.0, 0.5, 0.0], ref_policy=[0.15, 0.35, 0.5], name="three_armed")
"""One context, 3 actions: pi_ref favours the worst arm, so beta visibly trades reward for closeness."""

FOUR_ARMED = Bandit(reward=[1.5, 0.8, 0.2, -0.5], ref_policy=[0.25, 0.25, 0.25, 0.25], name="four_armed")
"""One context, 4 items: all 24 rankings can be enumerated (Plackett-Luce, notebook 02)."""

CONTEXTUAL = random_bandit(50, 20, rng=20230529, name="contextual_50x20")
"""50 contexts x 20 actions, seeded: the 'many prompts' bandit of notebooks 01-03."""

BANDITS = {b.name: b for b in (THREE_ARMED, FOUR_ARMED, CONTEXTUAL)}
