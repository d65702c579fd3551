"""Time notebook 04 (the exact task) against its budget: smoke under 45 s, cpu under 4 minutes on 2 cores.

Executes ``notebooks/04_exact_task.ipynb`` (``notebook_timing``: a fresh results folder by default, so pi_ref and
every run of the notebook are trained, as on a first run) and prints the wall time and how fast the preference
runs' training steps went.

    .venv/bin/python benchmarks/bench_exact_task.py --profile cpu [--results DIR]
"""

from __future__ import annotations

import sys

from notebook_timing import time_notebook

BUDGET_SECONDS = {"smoke": 45, "cpu": 240}


def describe() -> None:
    from dpo_lab import evaluation

    runs = evaluation.frontier_runs(task="exact")
    steps = [m["seconds"] for r in runs for m in r.metrics() if m.get("split") == "train"]
    if steps:
        total = sum(steps)
        print(
            f"  {len(steps)} preference steps in {total:.0f} s of worker time ({1000 * total / len(steps):.1f} ms/step)"
        )


if __name__ == "__main__":
    sys.exit(time_notebook("04_exact_task.ipynb", BUDGET_SECONDS, describe, doc=__doc__))
