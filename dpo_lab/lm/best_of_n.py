"""Best-of-N (DPO paper Sec. 6.1): N responses from a policy, the one a reward likes best kept.

Introduced in notebook 04; the sweep's Best-of-N reference curves (``dpo_lab.rlhf``) use
:func:`select_best` on draws they share between the N. No training: for each prompt, draw
``n`` responses with the engine's sampler, score them all with ``reward_fn`` (a learned reward model, or
the task's gold reward as an upper reference) and keep the highest, a tie broken uniformly at random.
Its policy is known in closed form on a bandit (``dpo_lab.bandits.best_of_n``); its KL to the sampling
policy is at most log N - (N - 1)/N (``bandits.best_of_n_kl_bound``), with equality only when no two
responses tie and none carries much probability.

=================  =========  ======================================================================
field              type       meaning
=================  =========  ======================================================================
``prompt_ids``     P lists    the prompts, as given
``response_ids``   P lists    the kept response of each prompt (EOS included when it has one)
``scores``         (P,)       the reward of each kept response
``all_scores``     (P, n)     the rewards of all n draws, prompt by prompt
=================  =========  ======================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .logprobs import as_id_lists
from .ppo_training import call_reward
from .sampling import sample


@dataclass
class BestOfN:
    """What :func:`best_of_n` returns (module table)."""

    prompt_ids: list[list[int]]
    response_ids: list[list[int]]
    scores: torch.Tensor
    all_scores: torch.Tensor


def select_best(scores, seed: int) -> np.ndarray:
    """(P,) the column of the highest score in each row of ``scores`` (P, n), a tie broken uniformly at
    random (the draw with the largest of ``seed``'s random keys among those at the maximum)."""
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] < 1 or not np.isfinite(values).all():
        raise ValueError(f"scores: expected a finite (prompts, n) array, got shape {values.shape}")
    keys = np.random.default_rng([seed, values.shape[1]]).random(values.shape)
    at_max = values == values.max(axis=1, keepdims=True)
    return np.where(at_max, keys, -1.0).argmax(axis=1)


def best_of_n(policy, prompt_ids, n: int, reward_fn, max_new_tokens: int, seed: int, tokenizer=None) -> BestOfN:
    """Best-of-``n`` responses of ``policy`` for every prompt (module docstring); ``seed`` fixes the draws
    and the tie-breaks. ``reward_fn(prompt_ids, response_ids) -> (N,)`` numbers, higher is better."""
    prompts = as_id_lists("prompt_ids", prompt_ids)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected an integer >= 1, got {n!r}")
    if not callable(reward_fn):
        raise ValueError(f"reward_fn: expected a callable (prompt_ids, response_ids) -> scores, got {reward_fn!r}")
    drawn = sample(policy, tokenizer, prompts, n, max_new_tokens, seed)  # prompt-major: row i * n + j
    scores = call_reward(reward_fn, drawn.prompt_ids, drawn.response_ids).reshape(len(prompts), n)
    kept = select_best(scores, seed)
    rows = np.arange(len(prompts)) * n + kept
    return BestOfN(
        prompts,
        [list(drawn.response_ids[i]) for i in rows],
        scores[np.arange(len(prompts)), torch.from_numpy(kept)],
        scores,
    )
