"""Is this machine ready? Versions, device, and the offline assets, each loaded for real.

Introduced in notebook 00. :func:`check` returns one row per item with ``ok`` and a detail string;
nothing here downloads anything.

====================  ===========================================================================
item                  what "ok" means
====================  ===========================================================================
python, packages      importable, with their versions
device                torch runs a matrix product on the device the notebooks will use
GPT-2 tokenizer       the offline BPE maps "This movie was" to [1212, 3807, 373] (docs/background.md 4)
IMDb reviews          the bundled 25,000 IMDb training reviews load, both labels present
VADER                 the lexicon scorer rates a positive sentence above a negative one
====================  ===========================================================================
"""

from __future__ import annotations

import importlib
import platform
from collections.abc import Callable

PACKAGES = ("numpy", "torch", "transformers", "tokenizers", "matplotlib", "ipywidgets", "tqdm", "sklearn")
GPT2_CHECK = ("This movie was", [1212, 3807, 373])


def _row(item: str, probe: Callable[[], str]) -> dict:
    try:
        return {"item": item, "ok": True, "detail": probe()}
    except Exception as err:  # noqa: BLE001 - the point is to report any failure, not to raise it
        return {"item": item, "ok": False, "detail": f"{type(err).__name__}: {err}"}


def _package(name: str) -> str:
    return getattr(importlib.import_module(name), "__version__", "installed")


def _device() -> str:
    import torch

    from .config import device

    dev = device()
    x = torch.ones(64, 64, device=dev)
    if float((x @ x).sum()) != 64.0**3:
        raise RuntimeError(f"a 64x64 matrix product on {dev} gave a wrong result")
    return f"{dev} (fp32 on CPU, bf16 autocast on CUDA)"


def _gpt2_tokenizer() -> str:
    from .lm import load_tokenizer

    text, expected = GPT2_CHECK
    ids = load_tokenizer().encode(text)
    if ids != expected:
        raise RuntimeError(f"{text!r} -> {ids}, expected {expected}")
    return f"{text!r} -> {ids}"


def _imdb_reviews() -> str:
    from .sentiment import bundled_reviews

    reviews = bundled_reviews()
    if set(reviews.labels.tolist()) != {0, 1}:
        raise RuntimeError(f"expected labels 0 and 1, found {sorted(set(reviews.labels.tolist()))}")
    return f"{len(reviews):,} reviews, {int(reviews.labels.sum()):,} positive"


def _vader() -> str:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    good = analyzer.polarity_scores("A wonderful, moving film.")["compound"]
    bad = analyzer.polarity_scores("A dull, awful film.")["compound"]
    if not good > 0 > bad:
        raise RuntimeError(f"compound scores {good:.2f} (positive text) and {bad:.2f} (negative text)")
    return f"compound {good:+.2f} for a positive sentence, {bad:+.2f} for a negative one"


def check() -> list[dict]:
    """One row per item: ``{"item", "ok", "detail"}``. Never raises; read ``ok``."""
    rows = [_row("python", platform.python_version)]
    rows += [_row(name, lambda n=name: _package(n)) for name in PACKAGES]
    rows += [
        _row("device", _device),
        _row("GPT-2 tokenizer (offline)", _gpt2_tokenizer),
        _row("IMDb reviews (offline)", _imdb_reviews),
        _row("VADER lexicon", _vader),
    ]
    return rows


def format_status(rows: list[dict]) -> str:
    """The rows of :func:`check` as an aligned text table."""
    width = max(len(r["item"]) for r in rows)
    return "\n".join(f"{'ok' if r['ok'] else 'MISSING':8}{r['item'].ljust(width)}  {r['detail']}" for r in rows)
