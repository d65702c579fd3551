"""Ancestral sampling with a KV cache: y_t ~ pi(. | x, y_<t), one token at a time, until EOS.

Introduced in notebook 05. Preference data (DPO paper Sec. 6.1: completions sampled from pi_SFT) and
every evaluation of the reward-KL frontier come from here. The loop is written out instead of calling
``generate`` so that nothing is added silently: ``generate`` applies model defaults such as
``top_k=50``, and samples that do not come from pi make KL estimates wrong, even negative
(docs/background.md 2.7). By default (``temperature=1, top_k=0, top_p=1``) this is plain ancestral sampling.

How a batch is run (B = rows in the batch, P = longest prompt, V = vocabulary):

=================  =======  =====================================================================
tensor             shape    meaning
=================  =======  =====================================================================
input_ids          (B, P)   prompts, LEFT-padded with EOS so every row's next token goes at the end
attention_mask     (B, t)   0 on the left padding, 1 on prompt and sampled tokens; grows by 1 a step
position_ids       (B, 1)   cumsum(attention_mask) - 1 at the newest token: padding shifts nothing
logits             (B, V)   next-token logits at the last position (the LM head runs on it only)
cache              layers   keys/values of every earlier position (``DynamicCache``)
=================  =======  =====================================================================

A row that emits EOS is finished: EOS is kept as its last response token and the row leaves the
batch (its cache rows are dropped), so later steps cost only what is still running. Randomness comes
from one ``torch.Generator`` seeded with ``seed``: the same call gives the same samples.

Under ``torchrun`` (``dpo_lab.lm.distributed``) every rank samples a contiguous share of each batch's
rows and the samples are gathered, so every rank returns what one process would (up to float
rounding: a row's logits come from a smaller batch). Each step every rank still draws the uniforms of
all rows sampling anywhere (it learns which rows ended from one small all-reduce a step) and keeps
its own: one process's random numbers, row for row.

Speed: a step is hundreds of small operations, and with two threads each one waits for both cores.
When other jobs share the cores, sample under ``dpo_lab.lm.torch_threads(1)``: on the 2-core
machine this was built on, with other jobs running (load average about 2.5), 64 rows x 48 tokens
ran at about 1,200 new tokens/s on one thread (8k vocabulary; 390 with GPT-2's 50k) against about
100 (50) on two (``benchmarks/bench_lm.py``).
"""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass

import numpy as np
import torch

from . import distributed as _dist
from .logprobs import as_id_lists, context_length, eos_id_of, vocab_size
from .model import autocast, head_logits, model_device


@dataclass
class Samples:
    """What :func:`sample` returns: ``N = len(prompts) * num_samples`` rows, prompt-major
    (row ``i * num_samples + j`` is sample ``j`` of prompt ``i``).

    ==============  ===============  ==========================================================
    field           type             meaning
    ==============  ===============  ==========================================================
    prompt_ids      N lists of int   the prompt's token ids (as tokenized, no padding)
    response_ids    N lists of int   sampled ids; ends with EOS if and only if EOS was emitted
    texts           N str or None    decoded responses without the EOS (None without tokenizer)
    prompt_index    N ints           which prompt each row continues
    finished        N bools          True when the response ended with EOS (not cut by the cap)
    kl_logratio     (N,) or None     with ``ref``: sum_t log pi(y_t|.) - log pi_ref(y_t|.) per row
    kl_exact        (N,) or None     with ``ref``: sum_t KL(pi(.|y_<t) || pi_ref(.|y_<t)) per row
    ==============  ===============  ==========================================================

    Score the responses with ``sequence_logprobs(model, s.prompt_ids, s.response_ids,
    add_eos=False)``: they already carry their EOS when there is one.
    """

    prompt_ids: list[list[int]]
    response_ids: list[list[int]]
    texts: list[str] | None
    prompt_index: list[int]
    finished: list[bool]
    kl_logratio: np.ndarray | None = None
    kl_exact: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.response_ids)


def _check_sampling_args(num_samples, max_new_tokens, seed, temperature, top_k, top_p, batch_size):
    for name, value, low in (
        ("num_samples", num_samples, 1),
        ("max_new_tokens", max_new_tokens, 1),
        ("top_k", top_k, 0),
        ("batch_size", batch_size, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p must lie in (0, 1], got {top_p!r}")


class _Draws:
    """The uniforms of the inverse-CDF draws of one sampling batch: at each step one per row still
    sampling, in row order, from the sampler's generator. ``rows`` are this rank's rows (positions in
    the batch of ``total`` rows); ``shared`` (under torchrun) tracks which rows of every rank still
    sample, so that each rank draws the same numbers as one process and keeps those of its rows."""

    def __init__(self, generator: torch.Generator, device, rows: list[int], total: int, shared: bool):
        self.generator, self.device, self.shared = generator, device, shared
        self.mine = torch.tensor(rows, dtype=torch.long)  # this rank's rows still sampling
        self.active = torch.ones(total, dtype=torch.bool)  # every rank's rows still sampling

    def uniforms(self, n: int) -> torch.Tensor:
        """(n, 1) float64 uniforms for this rank's n rows still sampling."""
        if not self.shared:
            return torch.rand(n, 1, generator=self.generator, device=self.device, dtype=torch.float64)
        u = torch.rand(int(self.active.sum()), 1, generator=self.generator, device=self.device, dtype=torch.float64)
        return u[(self.active.cumsum(0)[self.mine] - 1).to(self.device)]

    def advance(self, keep: torch.Tensor) -> bool:
        """Drop this rank's rows where ``keep`` is False; whether any row of any rank still samples."""
        if not self.shared:
            return bool(keep.any())
        keep = keep.cpu()
        still = torch.ones_like(self.active)
        still[self.mine[~keep]] = False
        self.active &= _dist.all_true(still)
        self.mine = self.mine[keep]
        return bool(self.active.any())


def _next_tokens(
    logits: torch.Tensor, draws: _Draws | torch.Generator, temperature: float, top_k: int, top_p: float
) -> torch.Tensor:
    """One token per row from (B, V) logits; with the defaults, a plain draw from softmax(logits).
    ``draws``: the batch's :class:`_Draws`, or a generator to draw from directly."""
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token once the more likely ones already cover top_p; the most likely always stays.
        drop = (probs.cumsum(dim=-1) - probs) >= top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, -math.inf))
    # Inverse-CDF draw: one uniform per row against the float64 cumulative distribution. Same law as
    # torch.multinomial, about 5x cheaper on a 50k vocabulary (measured: 25 vs 130 ms for 64 rows);
    # tokens of probability 0 (cut by top-k / top-p) have empty intervals and are never drawn.
    cdf = torch.cumsum(logits.softmax(dim=-1), dim=-1, dtype=torch.float64)
    if isinstance(draws, torch.Generator):
        draws = _Draws(draws, cdf.device, list(range(cdf.shape[0])), cdf.shape[0], shared=False)
    u = draws.uniforms(cdf.shape[0])
    return torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(-1).clamp(max=cdf.shape[-1] - 1)


def cache_argument(model) -> str:
    """The name under which the model's forward takes its KV cache: ``cache`` in recent transformers,
    ``past_key_values`` before (deprecated, and removed in 5.40, which ``transformers<6`` allows)."""
    return _cache_argument_of(type(model.base_model))


@functools.cache
def _cache_argument_of(cls) -> str:
    """Read once per model class: the sampler asks at every decoding step."""
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


def _sample_batch(
    model,
    prompts: list[list[int]],
    eos: int,
    max_new_tokens: int,
    draws: _Draws,
    temperature: float,
    top_k: int,
    top_p: float,
    ref=None,
):
    """Sample one response per prompt (this rank's rows of one batch, maybe none); returns (response ids,
    finished flags, KL terms): with ``ref``, ``ref`` reads the same tokens with its own cache, and each
    row's two KL sums (``dpo_lab.lm.kl``) are accumulated from the logits the draw was made from; else
    the terms are None."""
    from transformers import DynamicCache

    device = model_device(model)
    terms = np.zeros((len(prompts), 2)) if ref is not None else None  # per row: summed log-ratio, exact KL
    responses: list[list[int]] = [[] for _ in prompts]
    finished = [False] * len(prompts)
    active = torch.arange(len(prompts), device=device)  # batch row -> index into prompts
    if prompts:
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), eos, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, prompt in enumerate(prompts):
            input_ids[i, width - len(prompt) :] = torch.tensor(prompt)
            attention_mask[i, width - len(prompt) :] = 1
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
        cache = DynamicCache(config=model.config)
        ref_cache = DynamicCache(config=ref.config) if ref is not None else None
    for _ in range(max_new_tokens):
        if not len(active):  # torchrun: this rank's rows have ended, the draws go on for the others'
            if temperature:
                draws.uniforms(0)
            if not draws.advance(torch.zeros(0, dtype=torch.bool)):
                break
            continue
        with autocast(device):
            hidden = model.base_model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=True,
                **{cache_argument(model): cache},
            ).last_hidden_state[:, -1]
        logits = head_logits(model, hidden)
        tokens = _next_tokens(logits, draws, temperature, top_k, top_p)
        if ref is not None:
            terms[active.cpu().numpy()] += _kl_terms(ref, ref_cache, logits, tokens, input_ids, attention_mask,
                                                     position_ids)  # fmt: skip
        for row, token in zip(active.tolist(), tokens.tolist()):
            responses[row].append(token)
            finished[row] = token == eos
        keep = tokens != eos
        if not draws.advance(keep):
            break
        if not keep.all():
            if not keep.any():
                active = active[keep]
                continue
            cache.batch_select_indices(keep.nonzero().squeeze(-1))
            if ref_cache is not None:
                ref_cache.batch_select_indices(keep.nonzero().squeeze(-1))
            active, tokens, attention_mask = active[keep], tokens[keep], attention_mask[keep]
            position_ids = position_ids[keep]
        input_ids = tokens[:, None]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(active), 1)], dim=1)
        position_ids = position_ids[:, -1:] + 1
    return responses, finished, terms


def _kl_terms(ref, cache, logits, tokens, input_ids, attention_mask, position_ids) -> np.ndarray:
    """(B, 2) this step's log-ratio of the drawn token and exact KL over the vocabulary, pi's logits
    against ``ref``'s on the same context (``ref`` advances its own KV cache by the same input)."""
    device = model_device(ref)
    with autocast(device):
        hidden = ref.base_model(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            position_ids=position_ids.to(device),
            use_cache=True,
            **{cache_argument(ref): cache},
        ).last_hidden_state[:, -1]
    logp = logits.float().log_softmax(dim=-1)
    diff = logp - head_logits(ref, hidden).float().to(logp.device).log_softmax(dim=-1)
    picked = diff.gather(1, tokens[:, None]).squeeze(1)
    exact = (logp.exp() * diff).sum(dim=-1).clamp(min=0.0)  # KL >= 0: drop float32 rounding (-1e-7 when pi ~ pi_ref)
    return torch.stack([picked, exact], dim=1).double().cpu().numpy()


def sample(
    model,
    tokenizer,
    prompts,
    num_samples: int,
    max_new_tokens: int,
    seed: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    batch_size: int = 64,
    ref=None,
) -> Samples:
    """``num_samples`` responses of at most ``max_new_tokens`` tokens for each prompt.

    ==============  ==============================================================================
    argument        meaning
    ==============  ==============================================================================
    model           a causal LM (:func:`dpo_lab.lm.load_model`); sampled in eval mode, no gradient
    tokenizer       decodes the responses and gives the EOS id; None = no texts, EOS from the config
    prompts         strings (tokenized without special tokens) or lists of token ids
    num_samples     responses per prompt (>= 1)
    max_new_tokens  cap on response length; a response cut by it has no EOS
    seed            seeds the sampler's own generator (the global RNG is not touched)
    temperature     divides the logits; 1 = the model's distribution, 0 = greedy
    top_k           keep the k most likely tokens (0 = all)
    top_p           keep the smallest set of tokens whose probability reaches top_p (1 = all)
    batch_size      rows sampled together; the result depends on it only through float rounding
    ref             None, or pi_ref: then each row's KL terms to it are read off the logits the draw
                    was made from (``Samples.kl_logratio``, ``kl_exact``), ``ref`` stepping along
                    with its own cache: no second pass of ``model`` over the samples
                    (``dpo_lab.lm.kl.estimate_kl``); only for the model's own distribution
    ==============  ==============================================================================

    Returns :class:`Samples`. For KL estimates keep the defaults (docs/background.md 2.7). Raises
    ``ValueError`` naming the argument for empty prompts, out-of-vocabulary ids, a prompt whose
    length plus ``max_new_tokens`` exceeds the model's context, and bad sampling arguments.

    Introduced in notebook 05.
    """
    _check_sampling_args(num_samples, max_new_tokens, seed, temperature, top_k, top_p, batch_size)
    if isinstance(prompts, (str, bytes)):
        raise ValueError("prompts must be a list of strings or token-id lists, got a single string")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts is empty")
    if all(isinstance(p, str) for p in prompts):
        if tokenizer is None:
            raise ValueError("prompts are strings but tokenizer is None; pass a tokenizer or token ids")
        prompts = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    prompt_ids = as_id_lists("prompts", prompts)
    eos = eos_id_of(model, None if tokenizer is None else tokenizer.eos_token_id)
    n_vocab, n_ctx = vocab_size(model), context_length(model)
    if ref is not None:
        if (temperature, top_k, top_p) != (1.0, 0, 1.0):
            raise ValueError(
                "ref: KL terms need samples of the model's own distribution (temperature 1, no top-k/top-p)"
            )
        if vocab_size(ref) != n_vocab:
            raise ValueError(f"ref: a vocabulary of {vocab_size(ref)} tokens, the model has {n_vocab}")
        n_ctx = min(n_ctx, context_length(ref))
    for i, prompt in enumerate(prompt_ids):
        if not prompt:
            raise ValueError(f"prompts[{i}] is empty (use [eos] as a beginning-of-text prompt)")
        if not all(0 <= t < n_vocab for t in prompt):
            raise ValueError(f"prompts[{i}] holds a token id outside the vocabulary [0, {n_vocab})")
        if len(prompt) + max_new_tokens > n_ctx:
            raise ValueError(
                f"prompts[{i}] has {len(prompt)} tokens; with max_new_tokens={max_new_tokens} "
                f"that exceeds the model's context of {n_ctx} tokens"
            )

    rows = [i for i in range(len(prompt_ids)) for _ in range(num_samples)]
    device = model_device(model)
    generator = torch.Generator(device=device).manual_seed(seed)
    shared = _dist.world_size() > 1  # torchrun: each rank samples its share of every batch (module docstring)
    pieces = []
    modes = model.training, None if ref is None else ref.training
    model.eval()
    if ref is not None:
        ref.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(rows), batch_size):
                batch = rows[start : start + batch_size]
                mine = _dist.share(list(range(len(batch))))
                draws = _Draws(generator, device, mine, len(batch), shared)
                pieces.append(
                    _sample_batch(
                        model,
                        [prompt_ids[batch[i]] for i in mine],
                        eos,
                        max_new_tokens,
                        draws,
                        temperature,
                        top_k,
                        top_p,
                        ref,
                    )  # fmt: skip
                )
    finally:
        model.train(modes[0])
        if ref is not None:
            ref.train(modes[1])
    # every rank's share of batch b, in rank order, is batch b again
    ranks = _dist.gather_objects(pieces) if shared else [pieces]
    pieces = [piece for b in range(len(pieces)) for piece in (ranks[r][b] for r in range(len(ranks)))]
    responses = [r for out, _, _ in pieces for r in out]
    finished = [f for _, done, _ in pieces for f in done]
    terms = [kl for _, _, kl in pieces]
    texts = None
    if tokenizer is not None:
        texts = tokenizer.batch_decode([r[:-1] if f else r for r, f in zip(responses, finished)])
    kl = np.concatenate(terms) if ref is not None else None
    return Samples(
        [list(prompt_ids[i]) for i in rows],
        responses,
        texts,
        rows,
        finished,
        None if kl is None else kl[:, 0],
        None if kl is None else kl[:, 1],
    )
