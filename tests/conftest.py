"""Shared test setup: every test writes results into its own temporary folder, never into results/; the
exact task's space and tiny pi_ref for its test modules; the tiny experiment of the sweep tests."""

import atexit
import os
import shutil
import tempfile

import matplotlib
import pytest

# No test reaches a hub, and the datasets library (which reads these when first imported) caches into a temporary
# folder, not the user's ~/.cache: set before any test module imports it. Notebook kernels inherit them.
_HF_CACHE = tempfile.mkdtemp(prefix="dpo_lab-hf-")
atexit.register(shutil.rmtree, _HF_CACHE, ignore_errors=True)
os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_DATASETS_CACHE=_HF_CACHE)

# every figure is drawn headless, whatever MPLBACKEND says
matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _isolated_results(tmp_path, monkeypatch):
    monkeypatch.setenv("DPO_LAB_RESULTS", str(tmp_path / "results"))


# --- the exact task (tests/test_exact_*.py) ------------------------------------------------------
@pytest.fixture(scope="module")
def space():
    """The default space of the exact task (V = 10, L = 3, P = 4, K = 1,111)."""
    from dpo_lab.exact import make_space

    return make_space()


@pytest.fixture(scope="module")
def reference(space, tmp_path_factory):
    """The exact task's tiny pi_ref (``exact_support.tiny_reference``), trained once per test module."""
    from exact_support import tiny_reference

    return tiny_reference(space, tmp_path_factory)


# --- the experiment (tests/test_sweep.py, tests/test_rlhf.py) -------------------------------------
@pytest.fixture(scope="module")
def tokenizer():
    """A BPE of 300 tokens trained on a few made-up review words (``sweep_support``)."""
    from sweep_support import make_tokenizer

    return make_tokenizer()


@pytest.fixture(scope="module")
def sft_model(tokenizer):
    """A fresh 1-layer GPT-2 of ``sweep_support.TINY``'s sizes standing in for pi_SFT."""
    from sweep_support import make_sft_model

    return make_sft_model(tokenizer)


@pytest.fixture
def tiny_context(sft_model, tokenizer):
    """A ``sweep.Context`` of the tiny profile with fake pairs and stand-in scorers."""
    from sweep_support import make_tiny_context

    return make_tiny_context(sft_model, tokenizer)
