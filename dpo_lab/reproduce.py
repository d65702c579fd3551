"""``make reproduce``: execute every notebook in order and collect the results.

Introduced in notebook 00. Executed copies go to ``<results>/notebooks/``, figures to
``<results>/figures/`` (the notebooks save them), and ``<results>/REPORT.md`` lists the headline
numbers and each notebook's run time. Finished training runs are reused from the run store, so a
second ``make reproduce`` only re-executes the notebooks.

    python -m dpo_lab.reproduce [--only 03] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import config as _config
from .report import write_report

#: The repository the notebooks and reference runs live in (an installed wheel holds the library only).
REPOSITORY = "the dpo_lab repository"


def notebooks(root: Path | None = None, required: bool = False) -> list[Path]:
    """The numbered notebooks, in reading order. With ``required``, FileNotFoundError saying where they
    were looked for and how to get them when there are none (dpo_lab installed from a wheel, run
    outside a checkout)."""
    folder = (root or _config.project_root()) / "notebooks"
    found = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if required and not found:
        raise FileNotFoundError(
            f"no notebooks in {folder}: the installed dpo_lab package holds the library only. Clone "
            f"{REPOSITORY} and run this from the checkout (make reproduce, make student)."
        )
    return found


def execute(path: Path, out_dir: Path, timeout: int | None) -> float:
    """Execute one notebook (working directory = notebooks/) and write the executed copy; seconds taken.
    ``timeout``: seconds allowed per cell, None for no limit."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    try:
        client.execute()
    finally:
        nbformat.write(nb, out_dir / path.name)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="notebook number prefixes, e.g. 01 03")
    parser.add_argument(
        "--timeout", type=int, default=None, help="seconds allowed per cell (default: the profile's cell_timeout)"
    )
    args = parser.parse_args(argv)

    try:
        found = notebooks(required=True)
    except FileNotFoundError as err:
        print(f"dpo_lab reproduce: {err}", file=sys.stderr)
        return 2
    paths = [p for p in found if not args.only or p.name[:2] in args.only]
    if not paths:
        print(f"dpo_lab reproduce: --only {' '.join(args.only)} names none of {len(found)} notebooks", file=sys.stderr)
        return 2
    profile = _config.get_profile()
    timeout = profile.cell_timeout if args.timeout is None else args.timeout
    os.environ[_config.ENV_VAR] = profile.name  # the kernels inherit it
    out_dir = _config.results_dir(profile) / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"dpo_lab reproduce: profile {profile.name}, {len(paths)} notebooks -> {out_dir.parent}")
    timings: dict[str, float] = {}
    for i, path in enumerate(paths, start=1):
        print(f"[{i}/{len(paths)}] {path.name} ...", end=" ", flush=True)
        try:
            timings[path.name] = execute(path, out_dir, timeout or None)  # 0: no limit
        except Exception as err:  # noqa: BLE001 - report which notebook failed, keep what ran
            print(f"FAILED\n{err}\nexecuted copy with the error: {out_dir / path.name}")
            write_report(profile, timings)
            return 1
        print(f"done in {timings[path.name]:.0f} s", flush=True)
    report = write_report(profile, timings)
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
