"""What the notebook benchmarks share: run one notebook in a profile, with a results folder of its own, and
print its wall time against its budget and the load average around it.

Fresh results folder by default, so the notebook builds everything as on a first run; ``--results`` with an
existing folder times a re-run that reuses the stored runs. The machines these numbers come from are shared:
a load above the core count means other work ran at the same time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def time_notebook(name: str, budgets: dict[str, int], describe: Callable[[], None], argv=None, doc: str = "") -> int:
    """Execute ``notebooks/<name>`` (``--profile``, ``--results``), print the time, then call ``describe()``
    for the benchmark's own lines (it runs with the notebook's results folder active)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    parser.add_argument("--results", type=Path, default=None, help="results folder (default: a fresh one)")
    args = parser.parse_args(argv)
    results = args.results or Path(tempfile.mkdtemp(prefix=f"bench{name[:2]}-"))
    # The kernel inherits these: the notebook runs in this profile and writes only under `results`.
    os.environ.update({"DPO_LAB_PROFILE": args.profile, "DPO_LAB_RESULTS": str(results), "MPLBACKEND": "Agg"})

    from dpo_lab import config
    from dpo_lab.reproduce import execute

    profile = config.get_profile()
    notebook = config.project_root() / "notebooks" / name
    out_dir = config.results_dir(profile) / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    seconds = execute(notebook, out_dir, timeout=7200)
    load_after = os.getloadavg()
    print(
        f"notebook {name[:2]}, profile {profile.name}: {seconds:.0f} s "
        f"(budget {budgets.get(profile.name, 'none')} s) on {os.cpu_count()} cores"
    )
    print(f"load average (1, 5, 15 min) before {load_before}, after {load_after}")
    describe()
    print(f"executed copy: {out_dir / notebook.name}")
    return 0
