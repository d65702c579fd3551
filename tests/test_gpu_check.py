"""benchmarks/gpu_check.py, the GPU acceptance check: it refuses without a GPU, and its code path runs on the CPU
with a tiny model (--cpu-dry-run), so the script a GPU user runs is kept working here."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import gpu_check  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without a GPU")
def test_without_a_gpu_it_refuses_and_says_why(capsys, tmp_path):
    assert gpu_check.main(["--out", str(tmp_path / "x.json")]) == 2
    assert "no CUDA GPU is visible" in capsys.readouterr().err and not (tmp_path / "x.json").exists()


def test_the_dry_run_measures_what_the_gpu_run_reports(tmp_path):
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--cpu-dry-run", "--steps", "3", "--eval-prompts", "4", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    for key in ("environment", "seconds_per_step", "tokens_per_second", "share_of_bf16_peak", "evaluation_seconds",
                "max_memory_allocated_gb", "evaluation_kl_exact"):  # fmt: skip
        assert key in report, key
    assert report["dry_run"] is True and report["steps"] == 3 and report["seconds_per_step"] > 0
    assert report["evaluation_samples"] == 4 * 4  # the gpu protocol's 4 samples per prompt
    plan = report["memory_plan_gb"]  # lm.memory's plan for the tiny model that ran, float32 on the CPU
    assert plan["parameters (millions)"] * 1e6 == report["model_parameters"] and report["planned_memory_gb"] > 0
