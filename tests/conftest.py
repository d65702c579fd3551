"""Shared test setup: every test writes results into its own temporary folder, never into results/."""
import pytest


@pytest.fixture(autouse=True)
def _isolated_results(tmp_path, monkeypatch):
    monkeypatch.setenv("DPO_LAB_RESULTS", str(tmp_path / "results"))
