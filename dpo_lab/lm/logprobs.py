"""Exact log-probabilities of responses given prompts: the quantity every DPO loss is built from.

Introduced in notebook 05. For a prompt x and a response y = (y_1, ..., y_R) (EOS included),

    log pi(y | x) = sum_{t=1..R} log pi(y_t | x, y_<t)            (DPO paper Eq. 7 needs this sum)

computed from one forward pass over the concatenated ids ``x + y``.

Correctness rules (each one is a known bug in public trainers, docs/background.md 2):

1. Prompt and response are tokenized separately and their ids concatenated (no BPE merge across the
   boundary). This module takes ids, so it cannot get that wrong; the caller tokenizes.
2. Which positions count is decided by masks built from the lengths, never by comparing token ids
   with the pad id (EOS), so an EOS inside a response counts and padding never does.
3. Sequences are packed into rows of up to the model's context, longest first, and each row is
   right-padded with EOS. Position ids restart at 0 for every sequence, and from that restart
   transformers builds a block-diagonal causal mask: a token attends only to earlier tokens of its
   own sequence. So a sequence gets the same positions and the same context alone, in a padded
   batch or packed next to others: results are invariant to batch size, order and padding (to
   float32 rounding, about 1e-6). Packing removes most padding from the forward pass. Models that
   would let packed sequences see each other (older transformers) are detected by a probe on first
   use and get one sequence per row instead (:func:`packing_capacity`).
4. EOS is appended to every response unless ``add_eos=False``; responses that already end with EOS
   with ``add_eos=True`` are refused, since a doubled EOS would be scored silently. Sampled responses
   (EOS present only when the model emitted it) are scored with ``add_eos=False``.
5. Context overflow is refused, never truncated: if ``len(prompt) + len(response)`` exceeds the
   model's context, a ``ValueError`` names the pair. Empty prompts (nothing to condition the first
   response token on), empty responses and out-of-vocabulary ids are refused the same way.
6. The LM head runs only on the positions that predict response tokens (not on prompt or padding
   positions), and log-probs come from a fused ``cross_entropy`` on those rows: no (B, T, V)
   float32 log-softmax is ever built.

Shapes (B = sequences in a batch, R = packed rows, T = longest row, L = longest response, n =
response tokens in the batch, V = vocabulary size, d = model width):

==================  =======  ============================================================
name                shape    meaning
==================  =======  ============================================================
input_ids           (R, T)   prompt + response ids of the sequences packed in each row,
                             right-padded with EOS
position_ids        (R, T)   0, 1, ... restarting at every sequence (padding continues the
                             last sequence of its row, after it, so it changes nothing)
predict_mask        (R, T)   True at positions whose next token is a response token
targets             (n,)     the response tokens, in row-major order of predict_mask
target_seq          (n,)     the sequence (0 .. B-1) each target belongs to
target_pos          (n,)     its position in that response (0 .. R_i - 1)
response_mask       (B, L)   True on the first R_i entries of sequence i
hidden (selected)   (n, d)   final hidden states at the predicting positions
logits              (n, V)   LM head on those rows only
token_logps         (B, L)   log pi(y_t | x, y_<t), 0 on padding
logps               (B,)     token_logps summed over the response
==================  =======  ============================================================
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import NamedTuple

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .model import autocast, head_logits, model_device


def as_id_lists(name: str, seqs) -> list[list[int]]:
    """``seqs`` (a list of id lists / 1-D tensors / arrays) as a list of lists of Python ints.

    Raises ``ValueError`` naming ``name`` and the index for strings (untokenized text) and
    non-integer ids.
    """
    if isinstance(seqs, (str, bytes)) or not hasattr(seqs, "__len__"):
        raise ValueError(f"{name} must be a list of token-id lists, got {type(seqs).__name__}")
    out = []
    for i, seq in enumerate(seqs):
        if isinstance(seq, (str, bytes)) or not hasattr(seq, "__iter__"):
            raise ValueError(
                f"{name}[{i}] must be a list of token ids, got {type(seq).__name__} "
                "(tokenize text first: tokenizer(texts, add_special_tokens=False))"
            )
        if isinstance(seq, torch.Tensor):
            seq = seq.tolist()
        try:
            ids = [operator.index(t) for t in seq]  # refuses floats such as 1.5 instead of truncating
        except TypeError as err:
            raise ValueError(f"{name}[{i}] must hold integer token ids ({err})") from err
        if any(isinstance(t, bool) for t in seq):  # operator.index(True) is 1 (numpy bools it refuses itself)
            raise ValueError(f"{name}[{i}] must hold integer token ids, not booleans")
        out.append(ids)
    return out


def context_length(model) -> int:
    """How many positions the model can attend over (``n_positions`` for GPT-2)."""
    return int(model.config.max_position_embeddings)


def vocab_size(model) -> int:
    """Rows of the input embedding: valid token ids are ``0 .. vocab_size - 1``."""
    return int(model.get_input_embeddings().num_embeddings)


def eos_id_of(model, eos_id: int | None = None) -> int:
    """``eos_id`` if given, else the model config's ``eos_token_id``, checked against the vocabulary."""
    eos = model.config.eos_token_id if eos_id is None else eos_id
    if not isinstance(eos, int) or not 0 <= eos < vocab_size(model):
        raise ValueError(
            f"eos_id must be a token id below the vocabulary size {vocab_size(model)}, got "
            f"{eos!r} (pass eos_id=tokenizer.eos_token_id)"
        )
    return eos


def prepare_pairs(
    model, prompt_ids, response_ids, add_eos: bool = True, eos_id: int | None = None
) -> tuple[list[list[int]], list[list[int]]]:
    """Validate (prompt, response) id lists for ``model``; return them with EOS appended if asked.

    Raises ``ValueError`` naming the argument and index for: mismatched lengths, an empty list, an
    empty prompt or response, ids outside ``[0, vocab_size)``, a response already ending in EOS when
    ``add_eos=True``, and a pair longer than the model's context (module docstring, rules 4-5).

    Introduced in notebook 05.
    """
    prompts = as_id_lists("prompt_ids", prompt_ids)
    responses = as_id_lists("response_ids", response_ids)
    if len(prompts) != len(responses):
        raise ValueError(f"prompt_ids has {len(prompts)} entries but response_ids has {len(responses)}")
    if not prompts:
        raise ValueError("prompt_ids is empty; pass at least one (prompt, response) pair")
    eos = eos_id_of(model, eos_id)
    n_vocab, n_ctx = vocab_size(model), context_length(model)
    out = []
    for i, (prompt, response) in enumerate(zip(prompts, responses)):
        if not prompt:
            raise ValueError(
                f"prompt_ids[{i}] is empty: the first response token needs a prompt token to "
                "be predicted from (use [eos] as a beginning-of-text prompt)"
            )
        if not response:
            raise ValueError(f"response_ids[{i}] is empty (a response that stops at once is [eos] with add_eos=False)")
        for name, seq in (("prompt_ids", prompt), ("response_ids", response)):
            bad = [t for t in seq if not 0 <= t < n_vocab]
            if bad:
                raise ValueError(f"{name}[{i}] holds token id {bad[0]} outside the vocabulary [0, {n_vocab})")
        if add_eos:
            if response[-1] == eos:
                raise ValueError(
                    f"response_ids[{i}] already ends with EOS ({eos}) and add_eos=True would "
                    "double it; pass add_eos=False for responses that carry their own EOS"
                )
            response = response + [eos]
        if len(prompt) + len(response) > n_ctx:
            raise ValueError(
                f"pair {i}: prompt ({len(prompt)} tokens) + response ({len(response)} tokens"
                f"{', EOS included' if add_eos else ''}) = {len(prompt) + len(response)} > the "
                f"model's context of {n_ctx} tokens; shorten it (nothing is truncated silently)"
            )
        out.append(response)
    return prompts, out


@dataclass
class PackedPairs:
    """A batch of (prompt, response) pairs packed into rows; field shapes in the module docstring."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    predict_mask: torch.Tensor
    targets: torch.Tensor
    target_seq: torch.Tensor
    target_pos: torch.Tensor
    response_mask: torch.Tensor

    def to(self, device: torch.device | str) -> PackedPairs:
        """The same batch on ``device``."""
        return PackedPairs(*(getattr(self, f.name).to(device) for f in fields(self)))


def pack_pairs(
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    pad_id: int,
    capacity: int | None = None,
    device: torch.device | str = "cpu",
) -> PackedPairs:
    """Concatenate each prompt with its response and pack the sequences into rows of at most
    ``capacity`` tokens (first fit, longest first); ``None`` puts one sequence in each row. Rows are
    right-padded with ``pad_id``. Inputs must already be validated (:func:`prepare_pairs`).

    Introduced in notebook 05.
    """
    lengths = [len(p) + len(r) for p, r in zip(prompts, responses)]
    rows: list[list[int]] = []
    fill: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        # First fit: the first row with room, else a new row.
        k = next((k for k in range(len(rows)) if fill[k] + lengths[i] <= capacity), None) if capacity else None
        if k is None:
            rows.append([i])
            fill.append(lengths[i])
        else:
            rows[k].append(i)
            fill[k] += lengths[i]
    # Built as Python lists and converted once: a torch call per sequence costs more than the
    # forward pass of a small model (this runs once per training step).
    width = max(fill)
    ids, positions, predict = [], [], []
    targets, target_seq, target_pos = [], [], []
    for k, row in enumerate(rows):
        row_ids, row_pos, row_predict = [], [], []
        for i in row:
            p, r = len(prompts[i]), len(responses[i])
            row_ids += list(prompts[i]) + list(responses[i])
            row_pos += range(p + r)
            # Position t predicts token t + 1: response tokens p .. p+r-1 are predicted at p-1 .. p+r-2.
            row_predict += [False] * (p - 1) + [True] * r + [False]
            targets += responses[i]
            target_seq += [i] * r
            target_pos += range(r)
        pad = width - fill[k]
        ids.append(row_ids + [pad_id] * pad)
        # Padding continues the last sequence's positions (as if it were longer), never restarts at 0.
        positions.append(row_pos + list(range(row_pos[-1] + 1, row_pos[-1] + 1 + pad)))
        predict.append(row_predict + [False] * pad)
    longest = max(len(r) for r in responses)
    response_mask = torch.arange(longest)[None, :] < torch.tensor([len(r) for r in responses])[:, None]
    return PackedPairs(
        torch.tensor(ids),
        torch.tensor(positions),
        torch.tensor(predict),
        torch.tensor(targets),
        torch.tensor(target_seq),
        torch.tensor(target_pos),
        response_mask,
    ).to(device)


_PACKING_PROBED: weakref.WeakKeyDictionary[torch.nn.Module, bool] = weakref.WeakKeyDictionary()


def packing_capacity(model) -> int | None:
    """Row capacity for :func:`pack_pairs`: the model's context when it keeps packed sequences apart,
    else None (one sequence per row).

    Checked once per model on a probe: the hidden states of [0, 0] must be the same alone and packed
    after [1, 1, 1]. Recent transformers (5.x) pass; a version that ignores restarting position ids
    would let the second sequence attend to the first and fails.

    Introduced in notebook 05.
    """
    if model not in _PACKING_PROBED:
        device = model_device(model)
        with torch.no_grad():
            packed = model.base_model(
                input_ids=torch.tensor([[1, 1, 1, 0, 0]], device=device),
                position_ids=torch.tensor([[0, 1, 2, 0, 1]], device=device),
                use_cache=False,
            ).last_hidden_state[0, 3:]
            alone = model.base_model(
                input_ids=torch.tensor([[0, 0]], device=device),
                position_ids=torch.tensor([[0, 1]], device=device),
                use_cache=False,
            ).last_hidden_state[0]
        _PACKING_PROBED[model] = bool(torch.allclose(packed, alone, rtol=1e-4, atol=1e-5))
    return context_length(model) if _PACKING_PROBED[model] else None


def response_logits(model, batch: PackedPairs) -> torch.Tensor:
    """Next-token logits ``(n, V)`` at the ``n`` positions that predict response tokens (row-major),
    float32. The LM head runs on these rows only (module docstring, rule 6); differentiable.

    No attention mask is passed: padding sits at the end of each row, after every real token, so
    causal attention keeps it out; packed sequences are kept apart by their restarting position ids.

    Introduced in notebook 05.
    """
    with autocast(batch.input_ids.device):
        hidden = model.base_model(
            input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False
        ).last_hidden_state
    return head_logits(model, hidden[batch.predict_mask])


def per_sequence(values: torch.Tensor, batch: PackedPairs) -> torch.Tensor:
    """Spread ``(n,)`` per-token values (order of ``batch.targets``) into ``(B, L)``, 0 on padding."""
    return values.new_zeros(batch.response_mask.shape).index_put((batch.target_seq, batch.target_pos), values)


def token_logprobs(model, batch: PackedPairs) -> torch.Tensor:
    """Per-token response log-probs ``(B, L)`` of a packed batch, 0 on padding; differentiable.

    ``cross_entropy`` turns the ``(n, V)`` response logits into log-probs of the targets in one
    fused call, without keeping a separate log-softmax tensor (module docstring, rule 6).

    Introduced in notebook 05.
    """
    logps = -F.cross_entropy(response_logits(model, batch), batch.targets, reduction="none")
    return per_sequence(logps, batch)


class TokenLogprobs(NamedTuple):
    """``sequence_logprobs(..., per_token=True)``: summed and per-token log-probs with their mask."""

    logps: torch.Tensor  # (N,) summed over each response
    token_logps: torch.Tensor  # (N, L) per response token, 0 on padding
    mask: torch.Tensor  # (N, L) bool, True on response tokens (EOS included)


def sequence_logprobs(
    model,
    prompt_ids,
    response_ids,
    batch_size: int = 32,
    add_eos: bool = True,
    per_token: bool = False,
    eos_id: int | None = None,
    progress: bool = False,
):
    """Summed log-prob ``log pi(response_i | prompt_i)`` of each pair, as a float32 CPU tensor (N,).

    ============  ===========================================================================
    argument      meaning
    ============  ===========================================================================
    model         a causal LM (:func:`dpo_lab.lm.load_model`); run in eval mode, no gradient
    prompt_ids    N lists of token ids (tokenized separately from the responses)
    response_ids  N lists of token ids
    batch_size    sequences per forward pass; the result does not depend on it
    add_eos       append EOS to every response (default); False for sampled responses
    per_token     also return per-token log-probs and their mask (a :class:`TokenLogprobs`)
    eos_id        EOS id; default ``model.config.eos_token_id``
    progress      show a progress bar over the batches
    ============  ===========================================================================

    Pairs are sorted by length before batching (less padding); results come back in input order and
    are invariant to batch size, order and padding (module docstring). Bad inputs raise
    ``ValueError`` naming the argument (:func:`prepare_pairs`).

    Introduced in notebook 05.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    prompts, responses = prepare_pairs(model, prompt_ids, response_ids, add_eos, eos_id)
    eos = eos_id_of(model, eos_id)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(responses[i]))
    capacity = packing_capacity(model)
    longest = max(len(r) for r in responses)
    token_logps = torch.zeros(len(prompts), longest)
    mask = torch.zeros(len(prompts), longest, dtype=torch.bool)
    device, was_training = model_device(model), model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in tqdm(range(0, len(order), batch_size), desc="log-probs", disable=not progress):
                rows = order[start : start + batch_size]
                batch = pack_pairs([prompts[i] for i in rows], [responses[i] for i in rows], eos, capacity, device)
                width = batch.response_mask.shape[1]
                token_logps[rows, :width] = token_logprobs(model, batch).cpu()
                mask[rows, :width] = batch.response_mask.cpu()
    finally:
        model.train(was_training)
    logps = token_logps.sum(dim=1)
    return TokenLogprobs(logps, token_logps, mask) if per_token else logps
