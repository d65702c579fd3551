"""The memory plan of a preference run: what the device holds, from sizes and one measurement.

Introduced in notebook 06 (its plan cell prints it for every profile); ``benchmarks/gpu_check.py`` prints it next
to ``torch.cuda.max_memory_allocated``. With ``P`` parameters, ``L`` layers and ``T`` tokens per forward:

=====================  ==========================  ================================================================
term                   bytes                       why
=====================  ==========================  ================================================================
weights                4 P x copies                float32 (``lm.model``); 3 copies in a sweep: pi_SFT held by the
                                                   context, pi_ref, and the policy the trainer trains (a copy, so
                                                   re-running a cell finds the same run)
gradients              4 P                         float32, one per trained parameter
optimiser state        8 P (AdamW), 4 P (RMSprop)  two moments, or one
activations            (a x L + h) x T + w x L     ``a``: bytes autograd saves per token per layer, ``h``: per
                                                   token outside the layers (embeddings, LM head, log-softmax),
                                                   ``w``: bf16 copies of a layer's weights (0 in float32); all
                                                   measured on the trainers' own forward (:func:`measure`). The
                                                   head's share of ``h`` is paid for response tokens only: counting
                                                   every token makes the plan an upper bound by the prompts' share
                       + q x L x rows x R^2        ``q``: attention weights kept per row of R tokens (0 with the SDPA
                                                   kernels GPT-2 uses; an eager attention keeps T x T per head)
=====================  ==========================  ================================================================

``a``, ``q``, ``h`` and ``w`` are measured, not assumed: :func:`measure` runs the trainers' forward
(``token_logprobs``) on a 1- and a 2-layer GPT-2 of the profile's width, heads and vocabulary at three row lengths,
under the precision the target device uses (bf16 autocast for a GPU, run on the CPU), and counts the bytes autograd
saves for backward, each storage once and no parameter; differences give the per layer, per token and fixed parts.
Not planned: the gold classifier's weights (siebert: 355M parameters, 1.4 GB) and the CUDA allocator's fragmentation.
"""

from __future__ import annotations

import dataclasses

import torch

from .logprobs import pack_pairs, token_logprobs

GIB = 2**30
OPTIMIZER_STATE = {"adamw": 2, "rmsprop": 1}  # float32 tensors of the parameters' size


def gpt2_parameters(n_layer: int, n_embd: int, n_positions: int, vocab: int) -> int:
    """GPT-2's parameter count: token and position embeddings, ``n_layer`` blocks of ``12 d^2 + 13 d`` (attention
    3d x d and d x d, MLP 4d x d twice, their biases, two layer norms), the final layer norm; the head is tied."""
    for name, value in (("n_layer", n_layer), ("n_embd", n_embd), ("n_positions", n_positions), ("vocab", vocab)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    d = n_embd
    return (vocab + n_positions) * d + n_layer * (12 * d * d + 13 * d) + 2 * d


@dataclasses.dataclass(frozen=True)
class ActivationBytes:
    """Measured bytes saved for backward, for ``precision`` ("fp32" or "bf16"): per layer, ``per_token_layer`` (a)
    per token, ``per_token2_layer`` (q) per squared row length (attention weights) and ``per_layer_fixed`` (w:
    autocast's weight copies); outside the layers, ``per_token_outside`` (h) and ``fixed`` bytes per forward."""

    per_token_layer: float
    per_token2_layer: float
    per_layer_fixed: float
    per_token_outside: float
    fixed: float
    precision: str

    def total(self, n_layer: int, rows: int, row_len: int) -> float:
        """Bytes saved by a forward over ``rows`` rows of ``row_len`` tokens through ``n_layer`` layers."""
        per_layer = (
            self.per_token_layer * rows * row_len + self.per_token2_layer * rows * row_len**2 + self.per_layer_fixed
        )
        return n_layer * per_layer + self.per_token_outside * rows * row_len + self.fixed


def saved_bytes(model, prompt_ids: list[list[int]], response_ids: list[list[int]], bf16: bool = False) -> int:
    """Bytes autograd saves for backward in one trainer forward (``token_logprobs`` of the pairs, one sequence per
    row), each storage counted once and the model's parameters and buffers not at all; ``bf16``: under bf16 autocast
    (a GPU's precision). Run the model in eval mode, as the trainers do: dropout would add its masks."""
    params = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    eos = model.config.eos_token_id
    batch = pack_pairs(prompt_ids, response_ids, eos, None, torch.device("cpu"))
    precision = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), precision:
        token_logprobs(model, batch)
    return sum(seen.values())


def measure(
    n_embd: int, n_head: int, vocab: int, bf16: bool, lengths: tuple[int, int, int] = (4, 6, 8)
) -> ActivationBytes:
    """The terms of :class:`ActivationBytes`, from 1- and 2-layer GPT-2s of this width, heads and vocabulary, each
    run on one row of each of three ``lengths`` (the layers' difference is a T + q T^2 + w at three T: solved
    exactly). CPU only; about 3 s at gpt2-large's width in bf16."""
    from transformers import GPT2Config, GPT2LMHeadModel

    if len(lengths) != 3 or not 4 <= lengths[0] < lengths[1] < lengths[2]:
        raise ValueError(f"lengths must be three increasing row lengths >= 4, got {lengths!r}")
    found = {}
    for layers in (1, 2):
        cfg = GPT2Config(vocab_size=vocab, n_layer=layers, n_embd=n_embd, n_head=n_head, n_positions=lengths[2],
                         bos_token_id=vocab - 1, eos_token_id=vocab - 1)  # fmt: skip
        with torch.device("meta"):  # byte counts do not depend on the values: skip the random initialisation
            model = GPT2LMHeadModel(cfg).eval()
        model.to_empty(device="cpu")
        with torch.no_grad():
            for param in model.parameters():
                param.zero_()
        for t in lengths:  # a 2-token prompt and its response: one row of t tokens
            found[layers, t] = saved_bytes(model, [[0, 1]], [[2] * (t - 2)], bf16)
    t = torch.tensor(lengths, dtype=torch.float64)
    per_layer = torch.tensor([found[2, n] - found[1, n] for n in lengths], dtype=torch.float64)
    a, q, w = torch.linalg.solve(torch.stack([t, t**2, torch.ones(3, dtype=torch.float64)], 1), per_layer).tolist()
    outside = torch.tensor([found[1, n] for n in lengths], dtype=torch.float64) - per_layer
    h = float((outside[2] - outside[0]) / (t[2] - t[0]))
    fixed = float(outside[0] - h * t[0])
    return ActivationBytes(a, q, max(0.0, w), h, fixed, "bf16" if bf16 else "fp32")


def memory_plan(
    n_layer: int,
    n_embd: int,
    n_positions: int,
    vocab: int,
    optimizer: str,
    tokens_per_forward: int,
    measured: ActivationBytes,
    copies: int = 3,
) -> dict[str, float]:
    """The module table in GiB, with its ``total``: a preference run's device memory (``copies`` float32 weight
    copies, gradients, ``optimizer`` state, and the activations of ``tokens_per_forward`` tokens per micro-batch
    packed into rows of ``n_positions``)."""
    if optimizer not in OPTIMIZER_STATE:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZER_STATE)}, got {optimizer!r}")
    for name, value in (("tokens_per_forward", tokens_per_forward), ("copies", copies)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    p = gpt2_parameters(n_layer, n_embd, n_positions, vocab)
    rows, row_len = -(-tokens_per_forward // n_positions), min(tokens_per_forward, n_positions)
    plan = {
        "parameters (millions)": p / 1e6,
        f"weights ({copies} float32 copies)": 4 * p * copies / GIB,
        "gradients": 4 * p / GIB,
        f"optimiser state ({optimizer})": 4 * p * OPTIMIZER_STATE[optimizer] / GIB,
        f"activations ({tokens_per_forward} tokens, {measured.precision})": measured.total(n_layer, rows, row_len)
        / GIB,
    }
    plan["total"] = sum(v for k, v in plan.items() if k != "parameters (millions)")
    return plan
