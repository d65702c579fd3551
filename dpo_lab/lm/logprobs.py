"""Exact log-probabilities of responses given prompts: the quantity every DPO loss is built from.

Introduced in notebook 04. For a prompt x and a response y = (y_1, ..., y_R) (EOS included),

    log pi(y | x) = sum_{t=1..R} log pi(y_t | x, y_<t)            (DPO paper Eq. 7 needs this sum)

computed from one forward pass over the concatenated ids ``x + y``.

Correctness rules (each one is a known bug in public trainers, REFERENCE.md 4):

1. Prompt and response are tokenized separately and their ids concatenated (no BPE merge across the
   boundary). This module takes ids, so it cannot get that wrong; the caller tokenizes.
2. Batches are right-padded with EOS (= pad). Which positions count is decided by masks built from
   the lengths, never by comparing token ids with the pad id, so an EOS inside a response counts and
   padding never does.
3. Position ids come from the attention mask (``cumsum - 1``), so a sequence gets the same positions
   alone or in a padded batch: results are invariant to batch size, batch order and padding (to
   float32 rounding, about 1e-6).
4. EOS is appended to every response unless ``add_eos=False``; responses that already end with EOS
   with ``add_eos=True`` are refused, since a doubled EOS would be scored silently. Sampled responses
   (EOS present only when the model emitted it) are scored with ``add_eos=False``.
5. Context overflow is refused, never truncated: if ``len(prompt) + len(response)`` exceeds the
   model's context, a ``ValueError`` names the pair. Empty prompts (nothing to condition the first
   response token on), empty responses and out-of-vocabulary ids are refused the same way.
6. The LM head runs only on the positions that predict response tokens (not on prompt or padding
   positions), and log-probs come from a fused ``cross_entropy`` on those rows: no (B, T, V)
   float32 log-softmax is ever built.

Shapes (B = sequences in a batch, T = longest prompt + response, L = longest response, n = response
tokens in the batch, V = vocabulary size, d = model width):

==================  =======  ============================================================
name                shape    meaning
==================  =======  ============================================================
input_ids           (B, T)   prompt + response ids, right-padded with EOS
attention_mask      (B, T)   1 on real tokens, 0 on padding
position_ids        (B, T)   cumsum(attention_mask) - 1, clamped at 0
predict_mask        (B, T)   True at positions whose next token is a response token
targets             (n,)     the response tokens, row-major order
response_mask       (B, L)   True on the first R_i entries of row i
hidden (selected)   (n, d)   final hidden states at the predicting positions
logits              (n, V)   LM head on those rows only
token_logps         (B, L)   log pi(y_t | x, y_<t), 0 on padding
logps               (B,)     token_logps summed over the response
==================  =======  ============================================================
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, fields
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .model import autocast, model_device


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
            raise ValueError(f"{name}[{i}] must be a list of token ids, got {type(seq).__name__} "
                             "(tokenize text first: tokenizer(texts, add_special_tokens=False))")
        if isinstance(seq, torch.Tensor):
            seq = seq.tolist()
        try:
            ids = [operator.index(t) for t in seq]  # refuses floats such as 1.5 instead of truncating
        except TypeError as err:
            raise ValueError(f"{name}[{i}] must hold integer token ids ({err})") from err
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
        raise ValueError(f"eos_id must be a token id below the vocabulary size {vocab_size(model)}, got "
                         f"{eos!r} (pass eos_id=tokenizer.eos_token_id)")
    return eos


def prepare_pairs(model, prompt_ids, response_ids, add_eos: bool = True,
                  eos_id: int | None = None) -> tuple[list[list[int]], list[list[int]]]:
    """Validate (prompt, response) id lists for ``model``; return them with EOS appended if asked.

    Raises ``ValueError`` naming the argument and index for: mismatched lengths, an empty list, an
    empty prompt or response, ids outside ``[0, vocab_size)``, a response already ending in EOS when
    ``add_eos=True``, and a pair longer than the model's context (module docstring, rules 4-5).

    Introduced in notebook 04.
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
            raise ValueError(f"prompt_ids[{i}] is empty: the first response token needs a prompt token to "
                             "be predicted from (use [eos] as a beginning-of-text prompt)")
        if not response:
            raise ValueError(f"response_ids[{i}] is empty (a response that stops at once is [eos] with "
                             "add_eos=False)")
        for name, seq in (("prompt_ids", prompt), ("response_ids", response)):
            bad = [t for t in seq if not 0 <= t < n_vocab]
            if bad:
                raise ValueError(f"{name}[{i}] holds token id {bad[0]} outside the vocabulary [0, {n_vocab})")
        if add_eos:
            if response[-1] == eos:
                raise ValueError(f"response_ids[{i}] already ends with EOS ({eos}) and add_eos=True would "
                                 "double it; pass add_eos=False for responses that carry their own EOS")
            response = response + [eos]
        if len(prompt) + len(response) > n_ctx:
            raise ValueError(f"pair {i}: prompt ({len(prompt)} tokens) + response ({len(response)} tokens"
                             f"{', EOS included' if add_eos else ''}) = {len(prompt) + len(response)} > the "
                             f"model's context of {n_ctx} tokens; shorten it (nothing is truncated silently)")
        out.append(response)
    return prompts, out


@dataclass
class PaddedPairs:
    """A right-padded batch of (prompt, response) pairs; field shapes in the module docstring."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    predict_mask: torch.Tensor
    targets: torch.Tensor
    response_mask: torch.Tensor

    def to(self, device: torch.device | str) -> "PaddedPairs":
        """The same batch on ``device``."""
        return PaddedPairs(*(getattr(self, f.name).to(device) for f in fields(self)))


def pad_pairs(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int,
              device: torch.device | str = "cpu") -> PaddedPairs:
    """Concatenate each prompt with its response and right-pad the batch with ``pad_id``.

    Inputs must already be validated (:func:`prepare_pairs`). Masks come from the lengths only.

    Introduced in notebook 04.
    """
    lengths = [(len(p), len(r)) for p, r in zip(prompts, responses)]
    width = max(p + r for p, r in lengths)
    longest = max(r for _, r in lengths)
    input_ids = torch.full((len(lengths), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(lengths), width), dtype=torch.long)
    predict_mask = torch.zeros((len(lengths), width), dtype=torch.bool)
    response_mask = torch.zeros((len(lengths), longest), dtype=torch.bool)
    for i, (prompt, response) in enumerate(zip(prompts, responses)):
        p, r = lengths[i]
        input_ids[i, :p + r] = torch.tensor(list(prompt) + list(response), dtype=torch.long)
        attention_mask[i, :p + r] = 1
        # Position t predicts token t + 1: the response tokens at p .. p+r-1 are predicted at p-1 .. p+r-2.
        predict_mask[i, p - 1:p + r - 1] = True
        response_mask[i, :r] = True
    targets = torch.cat([torch.as_tensor(list(r), dtype=torch.long) for r in responses])
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    return PaddedPairs(input_ids, attention_mask, position_ids, predict_mask, targets,
                       response_mask).to(device)


def response_logits(model, batch: PaddedPairs) -> torch.Tensor:
    """Next-token logits ``(n, V)`` at the ``n`` positions that predict response tokens (row-major),
    float32. The LM head runs on these rows only (module docstring, rule 6); differentiable.

    Introduced in notebook 04.
    """
    with autocast(batch.input_ids.device):
        hidden = model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                  position_ids=batch.position_ids).last_hidden_state
        logits = model.get_output_embeddings()(hidden[batch.predict_mask])
    return logits.float()


def per_row(values: torch.Tensor, batch: PaddedPairs) -> torch.Tensor:
    """Spread ``(n,)`` per-token values (row-major) into ``(B, L)`` rows, 0 on padding."""
    return values.new_zeros(batch.response_mask.shape).masked_scatter(batch.response_mask, values)


def token_logprobs(model, batch: PaddedPairs) -> torch.Tensor:
    """Per-token response log-probs ``(B, L)`` of a padded batch, 0 on padding; differentiable.

    ``cross_entropy`` turns the ``(n, V)`` response logits into log-probs of the targets in one
    fused call, without keeping a separate log-softmax tensor (module docstring, rule 6).

    Introduced in notebook 04.
    """
    logps = -F.cross_entropy(response_logits(model, batch), batch.targets, reduction="none")
    return per_row(logps, batch)


class TokenLogprobs(NamedTuple):
    """``sequence_logprobs(..., per_token=True)``: summed and per-token log-probs with their mask."""

    logps: torch.Tensor  # (N,) summed over each response
    token_logps: torch.Tensor  # (N, L) per response token, 0 on padding
    mask: torch.Tensor  # (N, L) bool, True on response tokens (EOS included)


def sequence_logprobs(model, prompt_ids, response_ids, batch_size: int = 16, add_eos: bool = True,
                      per_token: bool = False, eos_id: int | None = None, progress: bool = False):
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

    Introduced in notebook 04.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    prompts, responses = prepare_pairs(model, prompt_ids, response_ids, add_eos, eos_id)
    eos = eos_id_of(model, eos_id)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(responses[i]))
    longest = max(len(r) for r in responses)
    token_logps = torch.zeros(len(prompts), longest)
    mask = torch.zeros(len(prompts), longest, dtype=torch.bool)
    device, was_training = model_device(model), model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in tqdm(range(0, len(order), batch_size), desc="log-probs", disable=not progress):
                rows = order[start:start + batch_size]
                batch = pad_pairs([prompts[i] for i in rows], [responses[i] for i in rows], eos, device)
                width = batch.response_mask.shape[1]
                token_logps[rows, :width] = token_logprobs(model, batch).cpu()
                mask[rows, :width] = batch.response_mask.cpu()
    finally:
        model.train(was_training)
    logps = token_logps.sum(dim=1)
    return TokenLogprobs(logps, token_logps, mask) if per_token else logps
