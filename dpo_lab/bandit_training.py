"""Training tabular softmax policies on bandits with the DPO loss family, and the two-stage RLHF baseline.

Introduced in notebook 03. ``dpo_lab.bandits`` holds the exact theory and ``dpo_lab.preferences`` the
preference data (numpy); this module fits policies to *sampled* data with the torch losses of
``dpo_lab.losses``, so notebook 03 can check that training reaches what the theory promises.

The policy class
----------------
A response ``y`` is a string of ``T`` tokens from a vocabulary of ``V`` (``n_actions = V**T``; action
index ``y = t_1 V^(T-1) + ... + t_T``). :class:`TabularPolicy` is autoregressive with one free logit per
(context, prefix, next token)::

    log pi_theta(y|x) = sum_t log softmax(log pi_ref(. | x, y_<t) + theta_t[x, y_<t, .])[y_t]

It starts at pi_ref (theta = 0) and can represent every policy with full support, so the optimum of a
sequence-level loss does not depend on T. ``T = 1`` (the default, ``vocab_size = n_actions``) is the
plain tabular softmax of the theory notebooks; ``T = 2`` gives responses that share prefixes, which is
what token-level losses such as Unlikelihood act on.

==============  ====================  ===================================================
name            shape                 meaning
==============  ====================  ===================================================
ref_policy      (n_contexts, A)       pi_ref(y|x), > 0 everywhere, A = V**T
prefs           Preferences           preferences.Preferences: context, chosen, rejected (n,)
rankings        Rankings              preferences.Rankings: context (n,), ranked (n, k) best first
policy          (n_contexts, A)       a trained pi_theta, float64 numpy
==============  ====================  ===================================================

Methods (:data:`METHODS`): the pairwise losses of ``losses.PAIRWISE_LOSSES`` ("dpo", "cdpo", "ipo",
"hinge", "odpo"), "unweighted" (``losses.unweighted_loss``), "plackett_luce" (rankings), and the
token-level baselines "unlikelihood" and "preferred_ft". Every method is trained the same way:
full-batch Adam on the mean per-example loss for a fixed number of steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from . import bandits, losses, preferences

PAIRWISE_METHODS = tuple(losses.PAIRWISE_LOSSES) + ("unweighted",)
TOKEN_METHODS = ("unlikelihood", "preferred_ft")
RANKING_METHODS = ("plackett_luce",)
METHODS = PAIRWISE_METHODS + TOKEN_METHODS + RANKING_METHODS


class TabularPolicy(torch.nn.Module):
    """An autoregressive tabular softmax policy that starts at pi_ref (see the module docstring).

    ``ref_policy`` (n_contexts, V**T) with every entry > 0; ``vocab_size`` V (default: n_actions, T = 1).
    Parameters ``theta[t]`` have shape (n_contexts, V**t, V), all zero at the start. float64 throughout,
    so trained policies can be compared with closed forms to ~1e-8.

    Introduced in notebook 03.
    """

    def __init__(self, ref_policy, vocab_size: int | None = None):
        super().__init__()
        ref = np.asarray(ref_policy, dtype=np.float64)
        if ref.ndim != 2 or not (ref > 0).all() or np.abs(ref.sum(-1) - 1).max() > bandits.PROB_ATOL:
            raise ValueError(
                "ref_policy must be an (n_contexts, n_actions) array of probabilities > 0 whose rows sum to 1"
            )
        n_contexts, n_actions = ref.shape
        vocab = n_actions if vocab_size is None else int(vocab_size)
        n_tokens = int(round(np.log(n_actions) / np.log(vocab))) if vocab > 1 else 0
        if vocab < 2 or vocab**n_tokens != n_actions:
            raise ValueError(
                f"vocab_size must be >= 2 with n_actions = vocab_size ** T; got vocab_size "
                f"{vocab_size} for {n_actions} actions"
            )
        self.vocab_size, self.n_tokens = vocab, n_tokens
        joint = ref.reshape(n_contexts, *([vocab] * n_tokens))
        for t in range(n_tokens):
            # marginal of the first t+1 tokens, then condition on the first t
            marginal = joint.sum(axis=tuple(range(t + 2, n_tokens + 1))).reshape(n_contexts, vocab**t, vocab)
            conditional = marginal / marginal.sum(axis=-1, keepdims=True)
            self.register_buffer(f"ref_logits_{t}", torch.from_numpy(np.log(conditional)))
        self.theta = torch.nn.ParameterList(
            torch.nn.Parameter(torch.zeros(n_contexts, vocab**t, vocab, dtype=torch.float64)) for t in range(n_tokens)
        )
        self.register_buffer("ref_log_policy", torch.from_numpy(np.log(ref)))
        self._all_actions = self._split(torch.arange(n_actions))  # reused by every log_policy() call

    def _split(self, action: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(prefix index, token) of every position t of each action."""
        out = []
        for t in range(self.n_tokens):
            prefix_and_token = action // self.vocab_size ** (self.n_tokens - 1 - t)
            out.append((prefix_and_token // self.vocab_size, prefix_and_token % self.vocab_size))
        return out

    def _tables(self) -> list[torch.Tensor]:
        return [
            torch.log_softmax(getattr(self, f"ref_logits_{t}") + self.theta[t], dim=-1) for t in range(self.n_tokens)
        ]

    def token_logps(self, context, action) -> torch.Tensor:
        """log pi_theta(y_t | x, y_<t) for each token: context, action (B,) ints -> (B, T)."""
        context, action = torch.as_tensor(context), torch.as_tensor(action)
        tables = self._tables()
        return torch.stack(
            [table[context, prefix, token] for table, (prefix, token) in zip(tables, self._split(action))], dim=-1
        )

    def log_policy(self) -> torch.Tensor:
        """log pi_theta(y | x) for every context and action: (n_contexts, n_actions), differentiable."""
        return sum(table[:, prefix, token] for table, (prefix, token) in zip(self._tables(), self._all_actions))

    def policy(self) -> np.ndarray:
        """pi_theta as a float64 numpy array (n_contexts, n_actions), rows renormalised against round-off."""
        p = self.log_policy().detach().exp().numpy()
        return p / p.sum(axis=-1, keepdims=True)


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")


def method_loss(policy: TabularPolicy, data, method: str, beta: float | None = None, **loss_kwargs) -> torch.Tensor:
    """Per-example loss of ``method`` for ``policy`` on ``data``: shape (n,), no reduction.

    ``data`` is a preferences.Preferences for pairwise and token methods, a preferences.Rankings for
    "plackett_luce". ``beta`` is required except for "unlikelihood" and "preferred_ft"; ``loss_kwargs``
    go to the loss (``label_smoothing`` for "cdpo", ``offset`` (n,) for "odpo", ``alpha`` for
    "unlikelihood"). Reference log-probs come from the policy's own pi_ref.

    Introduced in notebook 03.
    """
    _check_method(method)
    if beta is None and method not in TOKEN_METHODS:
        raise ValueError(f"beta is required for method {method!r}")
    ref = policy.ref_log_policy
    if method in RANKING_METHODS:
        if not isinstance(data, preferences.Rankings):
            raise ValueError("data must be a preferences.Rankings for method 'plackett_luce'")
        context, ranked = torch.as_tensor(data.context)[:, None], torch.as_tensor(data.ranked)
        return losses.plackett_luce_dpo_loss(policy.log_policy()[context, ranked], ref[context, ranked], beta)
    if not isinstance(data, preferences.Preferences):
        raise ValueError(f"data must be a preferences.Preferences for method {method!r}")
    context, chosen, rejected = (torch.as_tensor(a) for a in data)
    if method in TOKEN_METHODS:
        chosen_tokens = policy.token_logps(context, chosen)
        mask = torch.ones_like(chosen_tokens, dtype=torch.bool)  # every response has all T tokens
        if method == "preferred_ft":
            return losses.preferred_ft_loss(chosen_tokens, mask)
        return losses.unlikelihood_loss(chosen_tokens, mask, policy.token_logps(context, rejected), mask, **loss_kwargs)
    loss_fn = losses.unweighted_loss if method == "unweighted" else losses.PAIRWISE_LOSSES[method]
    if "offset" in loss_kwargs:
        loss_kwargs = {**loss_kwargs, "offset": torch.as_tensor(loss_kwargs["offset"], dtype=torch.float64)}
    log_pi = policy.log_policy()
    return loss_fn(
        log_pi[context, chosen],
        log_pi[context, rejected],
        ref[context, chosen],
        ref[context, rejected],
        beta,
        **loss_kwargs,
    )


@dataclass(frozen=True)
class FitResult:
    """A trained policy and how it got there.

    ``policy`` (n_contexts, n_actions) float64; ``curve`` (steps,) the training curve (mean loss, or
    for :func:`policy_gradient` the RLHF objective); ``seconds`` wall time; ``samples`` on-policy
    samples drawn during training (0 for offline methods).
    """

    policy: np.ndarray
    curve: np.ndarray
    seconds: float
    samples: int = 0


def _check_steps(steps: int, lr: float) -> None:
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")


def _deduplicate(data, loss_kwargs: dict):
    """Identical examples as one row with a count (the same loss, far fewer rows), as tensors.

    Bandit datasets repeat (context, chosen, rejected) triples many times; a per-pair ``offset`` is
    part of the row, so pairs that differ only in offset stay apart.
    """
    columns = [np.asarray(a).reshape(len(data[0]), -1) for a in data]
    offset = loss_kwargs.get("offset")
    per_pair_offset = offset is not None and np.ndim(offset) > 0
    if per_pair_offset and np.shape(offset) != (len(data[0]),):
        raise ValueError(
            f"offset has shape {np.shape(offset)}; it must be a scalar or have one entry per pair ({len(data[0])},)"
        )
    if per_pair_offset:
        columns.append(np.asarray(offset, dtype=np.float64).reshape(-1, 1))
    rows, counts = np.unique(np.concatenate(columns, axis=1).astype(np.float64), axis=0, return_counts=True)
    widths = np.cumsum([c.shape[1] for c in columns])[:-1]
    parts = np.split(rows, widths, axis=1)
    if per_pair_offset:
        loss_kwargs = {**loss_kwargs, "offset": parts.pop()[:, 0]}
    unique = type(data)(
        *(torch.as_tensor(part.astype(np.int64).reshape((-1,) + np.shape(a)[1:])) for part, a in zip(parts, data))
    )
    return unique, torch.as_tensor(counts, dtype=torch.float64), loss_kwargs


def fit_policy(
    ref_policy,
    data,
    method: str,
    beta: float | None = None,
    steps: int = 500,
    lr: float = 0.1,
    vocab_size: int | None = None,
    **loss_kwargs,
) -> FitResult:
    """Train a :class:`TabularPolicy` from pi_ref with ``method`` on ``data`` (full-batch Adam).

    Arguments as in :func:`method_loss`; ``steps`` optimiser steps at learning rate ``lr``.
    Raises ValueError if the loss becomes non-finite (it names the step).

    Introduced in notebook 03.
    """
    _check_method(method)
    _check_steps(steps, lr)
    start = time.perf_counter()
    policy = TabularPolicy(ref_policy, vocab_size)
    n_contexts, n_actions = policy.ref_log_policy.shape
    for name, values, bound in zip(data._fields, data, (n_contexts,) + (n_actions,) * (len(data) - 1)):
        values = np.asarray(values)
        if values.size == 0 or not np.issubdtype(values.dtype, np.integer) or values.min() < 0 or values.max() >= bound:
            raise ValueError(f"data.{name} must be non-empty integers in [0, {bound - 1}]")
    data, counts, loss_kwargs = _deduplicate(data, loss_kwargs)
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    curve = np.empty(int(steps))
    for step in range(int(steps)):
        optimizer.zero_grad()
        loss = (counts * method_loss(policy, data, method, beta, **loss_kwargs)).sum() / counts.sum()
        if not torch.isfinite(loss):
            raise ValueError(f"{method}: loss became {loss.item()} at step {step}")
        loss.backward()
        optimizer.step()
        curve[step] = loss.item()
    return FitResult(policy.policy(), curve, time.perf_counter() - start)


def policy_gradient(
    reward, ref_policy, beta: float, steps: int = 500, samples_per_context: int = 16, lr: float = 0.1, rng=0
) -> FitResult:
    """The RL stage of two-stage RLHF: REINFORCE on the KL-regularised objective (DPO Eq. 3).

    Each step draws ``samples_per_context`` responses y ~ pi_theta(.|x) in every context, scores them
    with the shaped reward ``r(x, y) - beta * log(pi_theta(y|x) / pi_ref(y|x))`` (the per-sample KL
    penalty PPO uses), subtracts the per-context mean score as a baseline and takes an Adam step on
    ``-mean((score - baseline) * log pi_theta(y|x))``. Its expectation is the exact gradient of
    ``E_pi[r] - beta KL(pi || pi_ref)`` because ``E_pi[grad log pi] = 0``.

    ``reward``, ``ref_policy`` (n_contexts, n_actions); ``rng`` a seed for torch's sampler.
    Returns a FitResult whose ``curve`` is the exact objective (context-averaged) at each step and
    whose ``samples`` counts every drawn response.

    Introduced in notebook 03.
    """
    if not (np.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a finite number > 0, got {beta}")
    _check_steps(steps, lr)
    if int(samples_per_context) < 2:
        raise ValueError(f"samples_per_context must be >= 2 (the baseline needs two), got {samples_per_context}")
    reward_t = torch.tensor(np.asarray(reward, dtype=np.float64))  # a copy: Bandit arrays are read-only
    start = time.perf_counter()
    policy = TabularPolicy(ref_policy)
    if reward_t.shape != policy.ref_log_policy.shape:
        raise ValueError(
            f"reward has shape {tuple(reward_t.shape)}, ref_policy has {tuple(policy.ref_log_policy.shape)}"
        )
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(int(rng))
    rows = torch.arange(reward_t.shape[0])[:, None]
    curve = np.empty(int(steps))
    for step in range(int(steps)):
        optimizer.zero_grad()
        log_pi = policy.log_policy()
        with torch.no_grad():
            pi = log_pi.exp()
            curve[step] = ((pi * (reward_t - beta * (log_pi - policy.ref_log_policy))).sum(-1)).mean().item()
            actions = torch.multinomial(pi, int(samples_per_context), replacement=True, generator=generator)
            score = reward_t[rows, actions] - beta * (log_pi - policy.ref_log_policy)[rows, actions]
            advantage = score - score.mean(dim=-1, keepdim=True)
        (-(advantage * log_pi[rows, actions]).mean()).backward()
        optimizer.step()
    samples = int(steps) * reward_t.shape[0] * int(samples_per_context)
    return FitResult(policy.policy(), curve, time.perf_counter() - start, samples)


def dpo_weight(chosen_rewards, rejected_rewards) -> np.ndarray:
    """The weight of a pair in the DPO gradient: sigma(r_hat_l - r_hat_w) (DPO appendix A.4).

    Large when the implicit reward ranks the pair wrongly, near 0 once it ranks it right by a margin.
    chosen_rewards, rejected_rewards: implicit rewards r_hat(x, y_w), r_hat(x, y_l), same shape.

    Introduced in notebook 03.
    """
    return preferences.bradley_terry(rejected_rewards, chosen_rewards)


def dpo_gradient(policy, ref_policy, prefs: preferences.Preferences, beta: float) -> np.ndarray:
    """The analytic gradient of the mean DPO loss with respect to tabular logits (DPO appendix A.4).

    With pi = softmax(logits) per context, grad_logits log pi(y|x) = e_y - pi(.|x); the pi(.|x) parts of
    y_w and y_l cancel, so each pair adds ``-beta * w * (e_{y_w} - e_{y_l})`` to its context's row, where
    ``w = dpo_weight(r_hat_w, r_hat_l)``; the sum is divided by the number of pairs.

    policy, ref_policy (n_contexts, n_actions); prefs with n pairs; beta > 0 -> (n_contexts, n_actions).

    Introduced in notebook 03.
    """
    r_hat = bandits.implicit_reward(policy, ref_policy, beta)
    context, chosen, rejected = (np.asarray(a) for a in prefs)
    weight = dpo_weight(r_hat[context, chosen], r_hat[context, rejected])
    grad = np.zeros_like(r_hat)
    np.add.at(grad, (context, chosen), -beta * weight)
    np.add.at(grad, (context, rejected), beta * weight)
    return grad / context.size


def rank_by_reward(bandit: bandits.Bandit, n: int, rng, k: int = 4) -> preferences.Rankings:
    """n prompts with k distinct responses from pi_ref each, ranked by the true reward (no noise).

    The DPO paper's IMDb recipe (Sec. 6.1): sample k completions per prompt from the reference policy
    and order them by the gold reward. The candidates are those of ``preferences.sample_rankings`` (drawn
    without replacement from pi_ref); only their order is replaced by the exact reward order.

    Introduced in notebook 03.
    """
    sampled = preferences.sample_rankings(bandit, n, rng, k=k)
    scores = bandit.reward[sampled.context[:, None], sampled.ranked]
    order = np.argsort(-scores, axis=-1, kind="stable")
    return preferences.Rankings(sampled.context, np.take_along_axis(sampled.ranked, order, axis=-1))


def pairs_from_rankings(rankings: preferences.Rankings) -> preferences.Preferences:
    """Every pair (i ranked above j) of every ranking: k(k-1)/2 pairs per prompt (the paper's 6 for k = 4).

    Introduced in notebook 03.
    """
    k = rankings.ranked.shape[1]
    above, below = np.triu_indices(k, 1)
    return preferences.Preferences(
        np.repeat(rankings.context, above.size),
        rankings.ranked[:, above].reshape(-1),
        rankings.ranked[:, below].reshape(-1),
    )


def mean_kl(policy, target, context_probs) -> float:
    """sum_x D(x) KL(policy(.|x) || target(.|x)): how far a trained policy is from a target, in nats.

    Introduced in notebook 03.
    """
    return float(np.asarray(context_probs) @ bandits.kl(policy, target))


def frontier_reward_at(bandit: bandits.Bandit, kl_budget: float, tol: float = 1e-10) -> float:
    """The ideal frontier's reward at a KL budget: max E_pi[r] subject to KL(pi || pi_ref) <= kl_budget.

    The maximiser is pi*_beta for the beta whose KL equals the budget (notebook 01: KL falls as beta
    grows), found by bisection on log beta over [1e-6, 1e6] until the KL matches to ``tol``. A budget
    beyond the beta -> 0 end gets that end's reward (the best action in every context). Comparing a
    trained policy's reward with this number says how far below the frontier it sits.

    Introduced in notebook 03.
    """
    kl_budget = float(kl_budget)
    if not (np.isfinite(kl_budget) and kl_budget >= 0):
        raise ValueError(f"kl_budget must be a finite number >= 0, got {kl_budget}")

    def point(log_beta):
        pi = bandits.optimal_policy(bandit.reward, bandit.ref_policy, np.exp(log_beta))
        return bandits.frontier_point(pi, bandit.reward, bandit.ref_policy, bandit.context_probs)

    low, high = np.log(1e-6), np.log(1e6)  # KL(low) is the largest reachable, KL(high) ~ 0
    kl_low, reward_low = point(low)
    if kl_budget >= kl_low:
        return reward_low
    while True:
        mid = 0.5 * (low + high)
        kl_mid, reward_mid = point(mid)
        if abs(kl_mid - kl_budget) < tol or high - low < 1e-12:
            return reward_mid
        low, high = (mid, high) if kl_mid > kl_budget else (low, mid)


SHARED_PREFIX_VOCAB = 4
SHARED_PREFIX = bandits.Bandit(
    reward=np.concatenate([[1.0, 0.5, 0.0, -0.5], np.full(12, -2.0)]),
    ref_policy=np.outer([0.97, 0.01, 0.01, 0.01], [0.4, 0.3, 0.2, 0.1]).reshape(-1),
    name="shared_prefix",
)
"""One prompt, responses of T = 2 tokens from a vocabulary of 4 (16 responses, index 4 * t_1 + t_2).

pi_ref opens 97% of responses with token 0 (a common opening) and 1% each with tokens 1-3 (rare,
garbled openings); the second token follows [0.4, 0.3, 0.2, 0.1]. Responses with the common opening
have graded rewards 1, 0.5, 0, -0.5 by second token; every rare-opening response has reward -2. Nearly
every preference pair therefore shares its first token, which is what token-level losses trip over.
Fit with ``vocab_size=SHARED_PREFIX_VOCAB``.
"""
