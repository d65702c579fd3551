"""Time notebook 05 against its budget: smoke under 3 minutes, cpu under 20 minutes on 2 cores.

Executes ``notebooks/05_sentiment_task.ipynb`` (``notebook_timing``: a fresh results folder by default, so pi_SFT,
the gold reward and the preference data are all built, as on a first run) and prints the wall time, the time of
the SFT steps and of the sampling of the pairs.

    .venv/bin/python benchmarks/bench_sentiment_task.py --profile cpu [--results DIR]

Pass ``--results`` with an existing folder to time a re-run that reuses the stored runs.
"""

from __future__ import annotations

import sys

from notebook_timing import time_notebook

BUDGET_SECONDS = {"smoke": 180, "cpu": 1200}


def describe() -> None:
    from dpo_lab import runs

    for run in runs.list_runs("sft"):
        steps = [m for m in run.metrics() if m.get("split") == "train"]
        if steps:
            total = sum(m["seconds"] for m in steps)
            where = " where the release was made, not here" if "release" in run.config else ""
            print(f"  {run.id}: {len(steps)} SFT steps in {total:.0f} s ({total / len(steps):.2f} s/step){where}")
    for run in runs.list_runs("pairs"):
        if run.finished:
            print(f"  {run.id}: {run.result()}")


if __name__ == "__main__":
    sys.exit(time_notebook("05_sentiment_task.ipynb", BUDGET_SECONDS, describe, doc=__doc__))
