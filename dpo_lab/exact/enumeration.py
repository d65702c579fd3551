"""Exact policies: log pi(y|x) of every response of every prompt, by enumeration through the engine.

Introduced in notebook 04 (:mod:`dpo_lab.exact`). For a model pi (any causal LM over the task's
V + 1 tokens) and prompt x, the K responses of :mod:`dpo_lab.exact.responses` are scored with the
engine's own ``dpo_lab.lm.sequence_logprobs(model, prompt_ids, response_ids, add_eos=False)``, the
exact summed log-prob (DPO paper Eq. 7 is built from it):

    log pi(y | x) = sum_{t=1..|y|} log pi(y_t | x, y_<t)

Responses that end with EOS carry it (its probability counts), responses cut at L words do not, so
sum_y pi(y|x) = 1 exactly. The sum is checked for every prompt to within :data:`SUM_ATOL` (1e-5, the
float32 round-off of the engine's forward passes is about 1e-7): a failure means the enumeration and
the engine disagree on EOS or padding, and is a RuntimeError, never a silent renormalisation. Rows
that pass are renormalised in float64 (log-probs minus their log-sum-exp), so that
``dpo_lab.bandits`` (which checks sums to 1e-6) takes them and KL(pi_ref || pi_ref) is exactly 0.

==============  ========  ===================================================================
name            shape     meaning
==============  ========  ===================================================================
``logps``       (P, K)    log pi(y_k | x_p), float64, rows log-sum-exp to 0
``probs``       (P, K)    pi(y_k | x_p) = exp(logps), rows sum to 1
==============  ========  ===================================================================

Two ways to the same numbers (``tree``):

* ``tree=False``: every response scored on its own by ``lm.sequence_logprobs``, the function the
  trainers use: K x P = 4,444 sequences. Its sum to 1 is the check on the engine's EOS and padding.
* ``tree=True`` (default): the responses are the paths of a tree of prefixes, so the next-token
  distribution after each prefix of at most L - 1 words is read once, with the engine's
  ``response_logits`` (the trainers' forward pass), from the V^(L-1) sequences "L - 1 words + EOS"
  per prompt (400 sequences, 11x fewer tokens); log pi(y|x) is then a sum along y's path. Every
  position of those sequences is used: position t holds the distribution after the first t words.
  The two agree to float32 round-off (tested); evaluations use the tree, the notebook checks both.
"""

from __future__ import annotations

import itertools
import sys

import numpy as np

from .space import Space, check_space

SUM_ATOL = 1e-5
"""How far from 1 sum_y pi(y|x) may be before the enumeration is declared broken."""


def _logsumexp(a: np.ndarray) -> np.ndarray:
    m = a.max(axis=-1, keepdims=True)
    return m + np.log(np.exp(a - m).sum(axis=-1, keepdims=True))


def _tree_logprobs(model, space: Space, batch_size: int) -> np.ndarray:
    """(P, K) float64 log pi(y|x) read off the prefix tree (module docstring, ``tree=True``)."""
    import torch

    from ..lm.logprobs import pack_pairs, packing_capacity, response_logits
    from ..lm.model import model_device

    n_words, max_len, eos = space.responses.n_words, space.max_len, space.eos_id
    prefixes = [list(w) + [eos] for w in itertools.product(range(n_words), repeat=max_len - 1)]
    # dist[p, row, t] = log pi(. | x_p, first t words of prefix row), over the V + 1 tokens
    dist = np.empty((space.n_prompts, len(prefixes), max_len, n_words + 1))
    device, was_training = model_device(model), model.training
    model.eval()
    try:
        with torch.no_grad():
            for p, prompt in enumerate(space.prompt_id_lists()):
                for start in range(0, len(prefixes), batch_size):
                    rows = prefixes[start : start + batch_size]
                    batch = pack_pairs([prompt] * len(rows), rows, eos, packing_capacity(model), device)
                    logps = torch.log_softmax(response_logits(model, batch).double(), dim=-1).cpu().numpy()
                    dist[p, start + batch.target_seq.cpu().numpy(), batch.target_pos.cpu().numpy()] = logps
    finally:
        model.train(was_training)
    words, lengths, finished = space.responses.words, space.responses.lengths, space.responses.finished
    logps = np.zeros((space.n_prompts, space.n_responses))
    row = np.zeros(space.n_responses, dtype=np.int64)  # the prefix row holding the first t words, zeros after
    for t in range(max_len):
        scored = (t < lengths) | ((t == lengths) & finished)  # a word at step t, or the closing EOS
        token = np.where(t < lengths, words[:, t], eos)
        logps[:, scored] += dist[:, row[scored], t, token[scored]]
        if t < max_len - 1:
            row += np.where(t < lengths, words[:, t], 0) * n_words ** (max_len - 2 - t)
    return logps


def policy_logprobs(
    model, space: Space, batch_size: int = 512, normalize: bool = True, progress: bool = False, tree: bool = True
) -> np.ndarray:
    """log pi(y|x) of all K responses of all P prompts (module docstring), float64 (P, K).

    model: a causal LM over the task's tokens (``len(space.tokenizer)`` ids, EOS last); batch_size:
    sequences per engine forward (the result does not depend on it); normalize: subtract each row's
    log-sum-exp (default; False returns the engine's values unchanged, still checked); tree: read the
    prefix tree (default) or score every response with ``lm.sequence_logprobs`` (module docstring)
    ->  logps (P, K), each row's probabilities summing to 1. ValueError naming ``model`` for a model
    over another vocabulary or one whose context is shorter than ``space.n_positions - 1``;
    RuntimeError if a row's probabilities miss 1 by more than :data:`SUM_ATOL`.
    """
    import torch

    from ..lm import sequence_logprobs

    space = check_space(space)
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model: expected a causal LM (torch.nn.Module), got {type(model).__name__}")
    n_vocab = model.get_input_embeddings().num_embeddings
    if n_vocab != len(space.tokenizer):
        raise ValueError(
            f"model: has {n_vocab} token ids but the task's tokenizer has {len(space.tokenizer)}; "
            "only a model over exactly the task's words + EOS can be enumerated"
        )
    n_ctx = int(model.config.max_position_embeddings)
    if n_ctx < space.n_positions - 1:
        raise ValueError(f"model: context of {n_ctx} tokens < {space.n_positions - 1} (prompt + {space.max_len} words)")
    if tree:
        logps = _tree_logprobs(model, space, batch_size)
    else:
        responses = space.responses.id_lists()
        prompts = [p for p in space.prompt_id_lists() for _ in responses]  # prompt-major: row p, column k
        logps = sequence_logprobs(
            model,
            prompts,
            responses * space.n_prompts,
            batch_size=batch_size,
            add_eos=False,
            eos_id=space.eos_id,
            progress=progress,
        )
        logps = logps.double().numpy().reshape(space.n_prompts, space.n_responses)
    lse = _logsumexp(logps)
    worst = int(np.argmax(np.abs(np.expm1(lse[:, 0]))))
    if abs(np.expm1(lse[worst, 0])) > SUM_ATOL:
        raise RuntimeError(
            f"probabilities of the {space.n_responses} enumerated responses of prompt "
            f"{space.prompts[worst]!r} sum to {np.exp(lse[worst, 0]):.8f}, not 1: the "
            "enumeration and the engine disagree on EOS or padding"
        )
    return logps - lse if normalize else logps


def check_probs(probs, space: Space, name: str = "policy") -> np.ndarray:
    """``probs`` as a float64 (P, K) array of per-prompt distributions (ValueError naming ``name``)."""
    space = check_space(space)
    if isinstance(probs, (str, bytes)):
        raise ValueError(f"{name}: expected a (P, K) array of probabilities or a model, got a string")
    try:
        arr = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name}: expected a (P, K) array of probabilities or a model, got {type(probs).__name__}"
        ) from None
    shape = (space.n_prompts, space.n_responses)
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape} (prompts, responses), got {arr.shape}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"{name}: probabilities must be finite and >= 0")
    if np.abs(arr.sum(axis=1) - 1.0).max() > 1e-6:
        raise ValueError(
            f"{name}: each prompt's probabilities must sum to 1 (a row sums to "
            f"{arr.sum(axis=1)[np.argmax(np.abs(arr.sum(axis=1) - 1))]:.10g})"
        )
    return arr


def as_probs(policy, space: Space, name: str = "policy", batch_size: int = 512) -> np.ndarray:
    """pi(y|x) of a policy given as a model (enumerated with :func:`policy_logprobs`) or as a (P, K)
    probability array (checked), float64 (P, K). ``name`` is used in error messages."""
    torch = sys.modules.get("torch")  # no model can exist before torch is imported: skip the import
    if torch is not None and isinstance(policy, torch.nn.Module):
        return np.exp(policy_logprobs(policy, space, batch_size=batch_size))
    return check_probs(policy, space, name)


def softmax_policy(logits) -> np.ndarray:
    """pi(y|x) = exp(l(x, y)) / sum_y' exp(l(x, y')), row-wise in float64: any (P, K) logits as a policy
    (tests draw random policies this way). logits (P, K) finite  ->  probs (P, K)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or not np.isfinite(logits).all():
        raise ValueError(f"logits: expected a finite (P, K) array, got shape {logits.shape}")
    return np.exp(logits - _logsumexp(logits))
