"""Many runs of the experiment at once: jobs spread over worker processes, variants included.

Introduced in notebook 04. ``dpo_lab.sweep`` says what one run is (a cell of its grid, trained from a
task's context by ``sweep.train_run``); this module trains a list of them. A :class:`Job` is a grid
cell (``sweep.RunSpec``) plus profile knobs changed for it: a *variant* of the experiment (fewer
pairs, order labels, another ODPO alpha). The changed knobs go into the run's tag as ``variant``, so
``results.load_points`` keeps a variant off the standard frontier unless asked for it.
:func:`run_jobs` builds each variant's context once per process, trains the jobs on
``profile.sweep_workers`` one-thread processes (2 x 1 thread is fastest on 2 cores, docs/background.md 6)
and reports the runs, their times and the ones that diverged. ``sweep.run_sweep`` is
:func:`run_jobs` on the grid.

Several GPUs, two ways (README, "Several GPUs or machines"): with K > 1 visible GPUs and K workers
(``workers=0``: one per GPU), worker i trains on GPU i (:func:`worker_device`), K runs at once; under
``torchrun`` the K ranks train each run together, one run after another (``dpo_lab.lm.distributed``):
preference and PPO runs split every step over the ranks, while pi_SFT's evaluation, the reward model and
Best-of-N run on rank 0 alone and the others wait (then load the reward model rank 0 stored).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from . import config as _config
from . import rlhf as _rlhf
from . import sweep as _sweep
from .evaluation import DEFAULT_TASK, RUN_KINDS
from .runs import list_runs, profile_runs
from .task import TASKS, Task


@dataclass(frozen=True)
class Job:
    """One run of :func:`run_jobs`: a grid cell, optionally in a variant of the experiment.

    Introduced in notebook 04. ``changes`` are profile knobs that differ from the sweep's profile, as
    sorted ``(knob, value)`` pairs (build with :meth:`of`): fewer pairs, the other labels, another
    ODPO alpha. They are the run's ``variant``: written into its tag, so that ``results.load_points``
    keeps variants off the standard frontier unless asked for them.
    """

    spec: _sweep.RunSpec
    changes: tuple = ()

    @classmethod
    def of(cls, spec: _sweep.RunSpec, **changes) -> Job:
        """``Job.of(RunSpec("dpo", 0.1, 0), exact_pairs=1000)``; knobs are checked against ``Profile``."""
        unknown = sorted(set(changes) - set(_config.Profile.__dataclass_fields__))
        if unknown or "name" in changes:
            raise ValueError(f"changes: {unknown or ['name']} are not profile knobs a variant may change")
        return cls(spec, tuple(sorted(changes.items())))

    @property
    def label(self) -> str:
        """E.g. "DPO beta=0.1 seed 0 (exact_pairs=1000)"."""
        extra = ", ".join(f"{k}={v}" for k, v in self.changes)
        return f"{self.spec.label} ({extra})" if extra else self.spec.label


_WORKER: dict = {}


def _variant_context(
    cache: dict, profile: _config.Profile, task: str | Task, changes: tuple, progress: bool
) -> _sweep.Context:
    """The context of one variant, built once per ``cache`` (one per worker process, one per call in
    the calling process, so a notebook that calls again sees what the store holds now)."""
    from .lm import distributed as _dist

    if changes not in cache:
        if changes and not isinstance(task, str):
            task = task.name  # a variant rebuilds its task from the registry at the changed profile
        changed = profile.replace(**dict(changes))
        # under torchrun rank 0 builds (and stores) what the context needs, the other ranks then load it
        cache[changes] = _dist.rank_zero_first(lambda: _sweep.context(changed, task, progress, dict(changes)))
    return cache[changes]


def worker_device(index: int, gpus: int) -> str | None:
    """The GPU that worker ``index`` trains on when ``gpus`` are visible: ``"cuda:<index mod gpus>"``
    with several, None (the default device) with one or none.

    Introduced in notebook 04."""
    for name, value in (("index", index), ("gpus", gpus)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}: need an integer >= 0, got {value!r}")
    return f"cuda:{index % gpus}" if gpus > 1 else None


def _init_worker(profile: _config.Profile, task: str, threads: int, slots) -> None:
    """Per worker process: one torch thread count, its GPU (a distinct index from ``slots``) and the
    sweep's profile and task."""
    import torch

    torch.set_num_threads(threads)
    device = worker_device(slots.get(), torch.cuda.device_count())
    if device is not None:
        torch.cuda.set_device(device)  # "cuda" (config.device()) now means this worker's GPU
    _WORKER.update(sweep=(profile, task), contexts={})


def _train_one(job: Job, ctx: _sweep.Context, progress: bool) -> tuple[str | None, float, str | None]:
    """``(run id, seconds, None)``, or ``(None, seconds, why)`` when the run diverged: a diverged run
    is a result (Unlikelihood with a large alpha can blow up), so the sweep keeps its evaluations so
    far and goes on."""
    started = time.perf_counter()
    try:
        return _sweep.train_run(job.spec, ctx, progress=progress).id, time.perf_counter() - started, None
    except FloatingPointError as err:
        return None, time.perf_counter() - started, str(err)


def _build_reward_model(ctx: _sweep.Context, progress: bool) -> None:
    """Train (or load) the reward model of ``ctx``'s PPO runs; it stays in ``ctx.cache``."""
    _rlhf.reward_model(ctx, progress)


def _train_in_worker(job: Job) -> tuple[str | None, float, str | None]:
    profile, task = _WORKER["sweep"]
    return _train_one(job, _variant_context(_WORKER["contexts"], profile, task, job.changes, False), progress=False)


def _submission_order(jobs: list[Job]) -> list[Job]:
    """The first run of each (variant, seed) first. Runs of one seed share their reference log-probs
    (the trainer caches them per data order), so two workers starting together then compute two
    different caches instead of the same one twice."""
    firsts = list({(job.changes, job.spec.seed): job for job in reversed(jobs)}.values())
    return sorted(jobs, key=lambda job: (job not in firsts, jobs.index(job)))


def run_jobs(
    jobs,
    profile: _config.Profile | None = None,
    workers: int | None = None,
    progress: bool = True,
    task: str | Task = DEFAULT_TASK,
) -> dict:
    """Train the runs of ``jobs`` (:class:`Job`; finished runs are loaded, interrupted ones resumed).

    Introduced in notebook 04. ``sweep.run_sweep`` is this with the jobs of ``sweep.grid``; a notebook
    asks for variants of the experiment (fewer pairs, another ODPO alpha) the same way, and they run
    on the same workers. With ``workers`` > 1 (default ``profile.sweep_workers``; 0 = one per visible
    GPU, each pinned to its GPU by :func:`worker_device`) the runs are spread over that many
    processes; each variant's pi_SFT, pairs and pi_SFT evaluation are built first in this process so
    the workers only read them. Each training process uses ``profile.sweep_threads``
    torch threads (0 = ``cores // workers``): on 2 cores two one-thread processes beat one two-thread
    process (docs/background.md 6), and a second thread is what suffers most when other jobs share the
    cores. A run that stops on a non-finite loss is reported, not fatal: it stays unfinished in the
    store with the evaluations it made. ``task`` is a name of ``task.TASKS`` or a ``Task`` (with
    several workers, or with variants, only a registered one: they rebuild it from its name).
    Returns ``{"runs": {job: Run}`` (finished runs), ``"failed": {job: reason}, "seconds": {job:
    seconds}, "sft_eval": [Run]`` (pi_SFT's evaluation: one run unless a variant changed the
    evaluation), ``"wall_seconds": total}``. Runs are stored under ``profile``'s results folder
    (``runs.profile_runs``). Under ``torchrun`` the ranks train the jobs together (module docstring):
    ``workers`` must then be 1 (or None), and only rank 0 shows progress.
    """
    p = profile or _config.get_profile()
    with profile_runs(p):
        return _run_jobs(jobs, p, workers, progress, task)


def _run_jobs(jobs, p: _config.Profile, workers: int | None, progress: bool, task: str | Task) -> dict:
    """:func:`run_jobs` inside the profile's run folder."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    from .lm import distributed as _dist
    from .lm import torch_threads

    jobs = list(jobs)
    if not jobs or not all(isinstance(job, Job) for job in jobs):
        raise ValueError("jobs: need a non-empty list of Job (Job(spec) or Job.of(spec, knob=value))")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ValueError(f"workers: need an integer >= 0 (0 = one per GPU), got {workers!r}")
    if _dist.init()[1] > 1:  # torchrun: the ranks are the workers of one run at a time
        if workers not in (None, 1):
            raise ValueError(f"workers: under torchrun the ranks train each run together; pass 1, got {workers}")
        workers, progress = 1, progress and _dist.rank() == 0
    workers = p.sweep_workers if workers is None else workers
    if workers == 0:
        import torch

        workers = max(1, torch.cuda.device_count())
    name = task.name if isinstance(task, Task) else task
    rebuilt = workers > 1 or any(job.changes for job in jobs)
    if name not in TASKS and not (isinstance(task, Task) and not rebuilt):
        raise ValueError(
            f"task: unknown {name!r}; valid tasks: {', '.join(sorted(TASKS))}"
            + (" (several workers and variants rebuild the task from its name)" if rebuilt else "")
        )
    threads = p.sweep_threads or max(1, (os.cpu_count() or 1) // workers)
    started = time.perf_counter()
    outcome = {}
    bar = tqdm(total=len(jobs), desc=f"runs ({name} task, {p.name} profile)", disable=not progress)
    contexts: dict = {}
    in_process = [job for job in jobs if job.spec.method in _rlhf.BEST_OF_N_METHODS]  # they share draws held here
    needs_rm = list(dict.fromkeys(job.changes for job in jobs if job.spec.method == "ppo"))

    def local_work() -> None:
        """In this process: the reward model that a variant's PPO runs share, and Best-of-N. With the
        workers' thread count: a second thread slows a small model down once another job shares the cores."""
        for changes in needs_rm:
            ctx = _variant_context(contexts, p, task, changes, progress)
            _dist.rank_zero_first(lambda ctx=ctx: _build_reward_model(ctx, progress))  # then loaded by the others
        for job in in_process:
            ctx = _variant_context(contexts, p, task, job.changes, progress)
            outcome[job] = _dist.on_rank_zero(_train_one, job, ctx, progress)
            bar.update(1)

    with torch_threads(threads):
        references = {
            changes: _dist.on_rank_zero(_sweep.evaluate_sft, _variant_context(contexts, p, task, changes, progress))
            for changes in dict.fromkeys(job.changes for job in jobs)
        }
        if workers == 1:
            local_work()
            for job in [job for job in jobs if job not in outcome]:
                ctx = _variant_context(contexts, p, task, job.changes, progress)
                outcome[job] = _train_one(job, ctx, progress)  # under torchrun: every rank, on one run
                bar.update(1)
    if workers > 1:
        os.environ[_config.ENV_VAR] = p.name  # the spawned workers resolve the same results folder
        spawn = multiprocessing.get_context("spawn")
        slots = spawn.Queue()  # worker i takes index i (its GPU, worker_device)
        for index in range(workers):
            slots.put(index)
        with ProcessPoolExecutor(
            workers, mp_context=spawn, initializer=_init_worker, initargs=(p, name, threads, slots)
        ) as pool:
            # the workers start on everything that needs nothing from this process, while this process
            # trains the reward model and evaluates Best-of-N; the PPO runs follow once their reward model exists
            first = [job for job in jobs if job not in in_process and job.spec.method != "ppo"]
            futures = {pool.submit(_train_in_worker, job): job for job in _submission_order(first)}
            with torch_threads(threads):
                local_work()
            ppo_jobs = [job for job in jobs if job.spec.method == "ppo"]
            futures |= {pool.submit(_train_in_worker, job): job for job in _submission_order(ppo_jobs)}
            for future in as_completed(futures):
                job = futures[future]
                try:
                    outcome[job] = future.result()
                except Exception as err:
                    raise RuntimeError(f"run {job.label} failed: {err}") from err
                bar.update(1)
    bar.close()
    stored = {r.id: r for kind in RUN_KINDS for r in list_runs(kind)}
    return {
        "runs": {j: stored[outcome[j][0]] for j in jobs if outcome[j][0]},
        "failed": {j: outcome[j][2] for j in jobs if outcome[j][2]},
        "seconds": {j: outcome[j][1] for j in jobs},
        "sft_eval": list({run.id: run for run in references.values()}.values()),
        "wall_seconds": time.perf_counter() - started,
    }
