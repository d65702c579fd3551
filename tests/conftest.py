"""Shared test setup: every test writes results into its own temporary folder, never into results/."""

import matplotlib
import pytest

# every figure is drawn headless, whatever MPLBACKEND says
matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _isolated_results(tmp_path, monkeypatch):
    monkeypatch.setenv("DPO_LAB_RESULTS", str(tmp_path / "results"))
