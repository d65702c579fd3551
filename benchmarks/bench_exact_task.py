"""Time notebook 04 (the exact task) against its budget: smoke under 45 s, cpu under 4 minutes on 2 cores.

Executes ``notebooks/04_exact_task.ipynb`` in a profile with a results folder of its own (fresh by
default, so pi_ref and every run of the notebook are trained, as on a first run) and prints the wall
time, how the preference runs spent theirs (training steps against the rest: evaluations, reference
log-probs, saving) and the load average before and after: the machines these numbers come from are
shared, and a load above the core count means other work ran at the same time.

    .venv/bin/python benchmarks/bench_exact_task.py --profile cpu [--results DIR]

Pass ``--results`` with an existing folder to time a re-run that loads the stored runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

BUDGET_SECONDS = {"smoke": 45, "cpu": 240}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    parser.add_argument("--results", type=Path, default=None, help="results folder (default: a fresh one)")
    args = parser.parse_args(argv)
    results = args.results or Path(tempfile.mkdtemp(prefix="bench04-"))
    # The kernel inherits these: the notebook runs in this profile and writes only under `results`.
    os.environ.update({"DPO_LAB_PROFILE": args.profile, "DPO_LAB_RESULTS": str(results), "MPLBACKEND": "Agg"})

    from dpo_lab import config, evaluation
    from dpo_lab.reproduce import execute

    profile = config.get_profile()
    notebook = config.project_root() / "notebooks" / "04_exact_task.ipynb"
    out_dir = config.results_dir(profile) / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    seconds = execute(notebook, out_dir, timeout=3600)
    load_after = os.getloadavg()

    print(
        f"notebook 04, profile {profile.name}: {seconds:.0f} s "
        f"(budget {BUDGET_SECONDS.get(profile.name, 'none')} s) on {os.cpu_count()} cores"
    )
    print(f"load average (1, 5, 15 min) before {load_before}, after {load_after}")
    steps = [
        m["seconds"] for r in evaluation.frontier_runs(task="exact") for m in r.metrics() if m.get("split") == "train"
    ]
    if steps:
        total = sum(steps)
        print(
            f"  {len(steps)} preference steps in {total:.0f} s of worker time ({1000 * total / len(steps):.1f} ms/step)"
        )
    print(f"executed copy: {out_dir / notebook.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
