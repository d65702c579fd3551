"""Shared test setup: every test writes results into its own temporary folder, never into results/; the
exact task's space and tiny pi_ref for its test modules."""

import matplotlib
import pytest

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
