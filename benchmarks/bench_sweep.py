"""Cost of the notebook-06 sweep (dpo_lab.sweep) and of notebooks 06 + 07, against the budgets of issue 7.

Budgets: smoke notebooks 06 + 07 together under 5 minutes on 2 cores; the cpu sweep under 45 minutes
on 2 cores. Three measurements, each optional:

* ``--model`` (default): for the active profile, seconds of one evaluation (pi_SFT on the held-out
  prompts), seconds per training step of a short DPO run, and the sweep time they predict:
  runs x (steps x step + evaluations x evaluation) / workers.
* ``--sweep``: the whole sweep, timed, in a scratch results folder (``run_sweep`` with the profile's
  workers). The scratch folder links the active results' cached runs of notebook 05 (tokenizer,
  pi_SFT, gold classifier, pairs), so only the sweep itself is timed.
* ``--notebooks``: notebooks 05 (untimed, it builds the cached assets), 06 and 07 executed in the smoke
  profile in a scratch results folder, the way ``make test`` runs them.

Every line prints the load average: the machine is shared, and other jobs slow every number here.

    DPO_LAB_PROFILE=cpu .venv/bin/python benchmarks/bench_sweep.py [--model] [--sweep] [--notebooks]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dpo_lab import config, evaluation, sweep
from dpo_lab.runs import list_runs, runs_root

NOTEBOOKS = ("05_sentiment_task.ipynb", "06_dpo_gpt2.ipynb", "07_reward_kl_frontier.ipynb")


def load() -> str:
    return "load average " + " / ".join(f"{x:.1f}" for x in os.getloadavg())


def scratch_results(profile) -> Path:
    """A scratch results folder whose runs/ links every cached non-frontier run of the active one."""
    scratch = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    target = scratch / profile.name / "runs"
    target.mkdir(parents=True)
    frontier_ids = {r.id for r in evaluation.frontier_runs()}
    for run in list_runs():
        if run.id not in frontier_ids:
            (target / run.id).symlink_to(run.path.resolve())
    return scratch


def cost_model(profile) -> None:
    """Time one evaluation and a short DPO run (in a scratch results folder); print the predicted sweep time."""

    from dpo_lab.lm import torch_threads

    os.environ[config.RESULTS_ENV_VAR] = str(scratch_results(profile))
    with torch_threads(profile.sweep_threads or max(1, (os.cpu_count() or 1) // profile.sweep_workers)):
        measure(profile)


def measure(profile) -> None:
    import torch

    ctx = sweep.context(profile, progress=False)
    ctx.evaluator(ctx.sft.model, 0)  # warm-up: first calls pay for allocation
    t0 = time.perf_counter()
    ctx.evaluator(ctx.sft.model, 0)
    eval_s = time.perf_counter() - t0
    print(
        f"one evaluation ({ctx.evaluator.settings['n_prompts']} prompts x {ctx.evaluator.num_samples}): "
        f"{eval_s:.1f} s  [{load()}]"
    )
    short = profile.replace(pref_steps=min(20, profile.pref_steps), eval_every=0)
    spec = sweep.RunSpec("dpo", profile.dpo_betas[0], profile.seeds[0])
    t0 = time.perf_counter()
    run = sweep.train_run(
        spec, sweep.Context(short, ctx.sft, ctx.ref, ctx.pairs, ctx.odpo_pairs, ctx.evaluator), progress=False
    )
    total = time.perf_counter() - t0
    steps = [r["seconds"] for r in run.metrics() if r.get("split") == "train"]
    step_s = statistics.median(steps[1:] or steps)
    overhead = total - sum(steps) - eval_s  # reference log-probs, copies, saving the model
    print(
        f"DPO step ({profile.pref_batch_size} pairs, {torch.get_num_threads()} threads): median {step_s:.2f} s; "
        f"per-run overhead (reference log-probs, saving) {overhead:.0f} s  [{load()}]"
    )
    n_runs = len(sweep.grid(profile))
    n_evals = len(set(range(profile.eval_every, profile.pref_steps + 1, profile.eval_every)) | {profile.pref_steps})
    one_run = profile.pref_steps * step_s + n_evals * eval_s + overhead
    print(
        f"predicted sweep: {n_runs} runs x {one_run:.0f} s / {profile.sweep_workers} workers + pi_SFT evaluation "
        f"= {(n_runs * one_run / profile.sweep_workers + eval_s) / 60:.1f} min at this load and thread count"
    )


def time_sweep(profile) -> None:
    """The whole sweep in a scratch results folder (assets of notebook 05 linked, not rebuilt)."""
    scratch = scratch_results(profile)
    env = {**os.environ, config.RESULTS_ENV_VAR: str(scratch), config.ENV_VAR: profile.name}
    print(f"whole sweep in {scratch} ... [{load()}]", flush=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dpo_lab.sweep"], env=env, check=True)
    print(f"whole sweep: {(time.perf_counter() - t0) / 60:.1f} min with {profile.sweep_workers} workers  [{load()}]")


def time_notebooks() -> None:
    """Notebooks 05 (untimed), 06 and 07 in the smoke profile, in a scratch results folder."""
    from dpo_lab.reproduce import execute

    scratch = Path(tempfile.mkdtemp(prefix="bench_notebooks_"))
    os.environ.update({config.RESULTS_ENV_VAR: str(scratch), config.ENV_VAR: "smoke", "MPLBACKEND": "Agg"})
    folder = config.project_root() / "notebooks"
    seconds = {name: execute(folder / name, scratch, timeout=900) for name in NOTEBOOKS}
    for name, sec in seconds.items():
        note = " (builds the cached assets; not in the budget)" if name == NOTEBOOKS[0] else ""
        print(f"smoke {name}: {sec:.0f} s{note}")
    print(f"smoke notebooks 06 + 07: {seconds[NOTEBOOKS[1]] + seconds[NOTEBOOKS[2]]:.0f} s (budget 300 s)  [{load()}]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="store_true", help="evaluation and step times, predicted sweep time")
    parser.add_argument("--sweep", action="store_true", help="time the whole sweep (scratch results folder)")
    parser.add_argument("--notebooks", action="store_true", help="time smoke notebooks 06 + 07")
    args = parser.parse_args(argv)
    profile = config.get_profile()
    print(f"bench_sweep: profile {profile.name}, {os.cpu_count()} cores, results {runs_root()}  [{load()}]")
    if args.model or not (args.sweep or args.notebooks):
        cost_model(profile)
    if args.sweep:
        time_sweep(profile)
    if args.notebooks:
        time_notebooks()
    return 0


if __name__ == "__main__":
    sys.exit(main())
