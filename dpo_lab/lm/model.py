"""Models: build, load and save GPT-2-style causal LMs, and the device/precision policy.

Introduced in notebook 05. The engine works with any Hugging Face causal LM whose ``base_model``
returns hidden states and whose output embedding is the LM head (GPT-2 in every profile).

Device and precision policy (docs/background.md 2.4 and 5), applied everywhere in ``dpo_lab.lm``:

==========  ===============  =================================================================
device      weights          matmuls
==========  ===============  =================================================================
cuda        float32          bfloat16 autocast in the transformer (fp16 gives NaN rewards;
                             bf16 does not); the LM head in float32 (:func:`head_logits`).
                             A GPU without bf16 (T4, V100: the free notebook GPUs) runs float32
cpu         float32          float32: bf16 matmul is about 400x slower on the CPUs used here
==========  ===============  =================================================================

``DPO_LAB_PRECISION`` overrides the matmul column: ``auto`` (the table, default), ``fp32`` (no autocast, e.g. to
rule precision out on a GPU) or ``bf16`` (bf16 autocast on any device: the tests run the gpu path's bf16 branch
on the CPU this way, with tiny models).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch


def gpt2_config(tokenizer, n_layer: int, n_embd: int, n_head: int, n_positions: int):
    """A ``GPT2Config`` for a fresh model of the given size that matches ``tokenizer``.

    The engine reads no project profile: callers pass the sizes (``dpo_lab.sentiment`` passes the
    profile's ``n_layer``, ``n_embd``, ``n_head``, ``n_positions``). The vocabulary size and the
    BOS/EOS ids come from the tokenizer, so a small trained BPE (8k tokens) gets an 8k embedding and
    the right EOS id instead of GPT-2's 50256.

    ===========  =====  ==========================================================
    n_layer      int    transformer blocks, >= 1
    n_embd       int    width, >= 1 and a multiple of ``n_head``
    n_head       int    attention heads, >= 1
    n_positions  int    context length in tokens (prompt + response), >= 2
    ===========  =====  ==========================================================

    Introduced in notebook 05.
    """
    from transformers import GPT2Config

    sizes = {"n_layer": n_layer, "n_embd": n_embd, "n_head": n_head, "n_positions": n_positions}
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < (2 if name == "n_positions" else 1):
            raise ValueError(f"{name}: need an integer >= {2 if name == 'n_positions' else 1}, got {value!r}")
    if n_embd % n_head:
        raise ValueError(f"n_embd: need a multiple of n_head = {n_head}, got {n_embd}")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("tokenizer has no EOS token (load it with dpo_lab.lm.load_tokenizer)")
    # No pad_token_id: padding is handled by masks (dpo_lab.lm.logprobs), and with one set,
    # transformers warns about unmasked padding on every packed batch that ends in EOS.
    return GPT2Config(vocab_size=len(tokenizer), bos_token_id=eos, eos_token_id=eos, **sizes)


def load_model(name_or_path_or_config, seed: int | None = None, device: str | None = None):
    """A causal LM in float32 on ``device`` (default: CUDA when visible, else the CPU), in eval mode.

    ============================  ==================================================================
    name_or_path_or_config        what is loaded
    ============================  ==================================================================
    a ``GPT2Config``              a freshly initialised GPT-2 (build the config with
                                  :func:`gpt2_config`); ``seed`` makes the initialisation
                                  reproducible without touching the global RNG
    a folder                      weights written by :func:`save_model` (or ``save_pretrained``)
    a hub name                    ``AutoModelForCausalLM.from_pretrained`` (gpu profile: gpt2-large)
    ============================  ==================================================================

    Eval mode means dropout off: the engine never uses dropout (see :mod:`dpo_lab.lm.train`).

    Introduced in notebook 05.
    """
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(name_or_path_or_config, GPT2Config):
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            model = GPT2LMHeadModel(name_or_path_or_config)
    elif isinstance(name_or_path_or_config, (str, Path)) and str(name_or_path_or_config).strip():
        check_local_path(name_or_path_or_config, "name_or_path_or_config")
        with quiet_weight_bars():
            model = AutoModelForCausalLM.from_pretrained(str(name_or_path_or_config), dtype=torch.float32)
    else:
        raise ValueError(
            "name_or_path_or_config must be a GPT2Config, a folder or a hub name, got "
            f"{type(name_or_path_or_config).__name__}"
        )
    return model.to(device=device, dtype=torch.float32).eval()


def check_local_path(name: str | Path, argument: str) -> None:
    """ValueError naming ``argument`` when ``name`` can only mean a local folder and none is there:
    a ``Path``, or a string that starts with "/", "." or "~", has more than one "/", or whose first
    part is an existing folder. Anything else ("gpt2-large", "siebert/sentiment-roberta-large-english")
    is left to the hub, whose own error then applies (an unreachable hub names the model)."""
    text = str(name)
    path = Path(text).expanduser()
    local = isinstance(name, Path) or text.startswith(("/", ".", "~")) or text.count("/") > 1
    local = local or ("/" in text and path.parent.is_dir())
    if local and not path.exists():
        raise ValueError(f"{argument}: the local path {text!r} does not exist")


@contextlib.contextmanager
def quiet_weight_bars():
    """transformers draws a progress bar for every model it loads or writes ("Loading weights",
    "Writing model shards"): for the run store's many small local saves that is noise that buries a
    notebook's output, so the engine turns them off while it loads and saves."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def save_model(model, tokenizer, path: str | Path) -> Path:
    """Write ``model`` (and ``tokenizer`` unless None) to the folder ``path``; returns the path.

    ``load_model(path)`` and ``load_tokenizer(path)`` read them back unchanged.

    Introduced in notebook 05.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with quiet_weight_bars():
        model.save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    return path


def hidden_size(model, name: str = "policy") -> int:
    """The width of a GPT-2 causal LM's hidden states (``config.n_embd``): what a head on its trunk (a
    value or reward head) takes. ValueError naming ``name`` for anything else."""
    if not hasattr(model, "base_model") or not hasattr(getattr(model, "config", None), "n_embd"):
        raise ValueError(f"{name}: expected a GPT-2 causal LM (dpo_lab.lm.load_model), got {type(model).__name__}")
    return int(model.config.n_embd)


def model_device(model) -> torch.device:
    """The device holding the model's parameters."""
    return next(model.parameters()).device


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` intra-op threads, then restore the previous number.

    On the 2-core machines of this project, two processes at one thread each beat one process at two
    (docs/background.md 6), and tiny models only lose from a second thread.

    Introduced in notebook 06.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


PRECISION_ENV_VAR = "DPO_LAB_PRECISION"
PRECISIONS = ("auto", "fp32", "bf16")


def autocast(device: torch.device | str):
    """The precision context for forward passes on ``device`` (module docstring: bf16 on CUDA only, unless
    ``$DPO_LAB_PRECISION`` says ``fp32`` or ``bf16``; ValueError naming the variable for another value)."""
    device = torch.device(device)
    precision = os.environ.get(PRECISION_ENV_VAR, "").strip().lower() or "auto"
    if precision not in PRECISIONS:
        raise ValueError(f"${PRECISION_ENV_VAR} must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16" or (precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()  # the CPU, or a GPU without bf16: float32 (never fp16, module table)


def head_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """The LM head on final hidden states ``(..., d) -> (..., V)``, always in float32.

    Under bf16 autocast the head would round logits of size ~20 to steps of ~0.1, an error that
    summed log-probs and KL estimates would carry over dozens of tokens; the head is one matmul, so
    it runs outside autocast.

    Introduced in notebook 05.
    """
    with torch.autocast(hidden.device.type, enabled=False):
        return model.get_output_embeddings()(hidden.float())
