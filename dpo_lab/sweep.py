"""The experiment: DPO and its baselines trained from pi_SFT on a task, each run evaluated for the frontier.

Introduced in notebook 06. DPO paper Sec. 6.1 (Fig. 2) and ODPO paper Sec. 6.1: starting from a task's
pi_SFT and its preference pairs (``dpo_lab.task.Task``; default the IMDb task,
``dpo_lab.sentiment.IMDbTask``), train one policy per (method, hyperparameter, seed) and evaluate it
every ``eval_every`` steps on the same held-out prompts (``dpo_lab.task.Evaluator``). Each evaluation
is one point of the reward-KL frontier (``dpo_lab.results`` and ``dpo_lab.frontier`` read them; this module
imports neither).

The grid (:func:`grid`), with the losses of ``dpo_lab.losses`` (h = log-ratio margin, DPO Eq. 7):

=============  =================================  ======================================  =============
method         loss                               hyperparameter                          seeds
=============  =================================  ======================================  =============
dpo            -log sigmoid(beta h)               beta in ``profile.dpo_betas``           seeds[0]
odpo           -log sigmoid(beta h - Delta_r)     beta in ``profile.dpo_betas``;          seeds[0]
               Delta_r = alpha log(s_w - s_l)     alpha = ``profile.odpo_alpha``
ipo            (h - 1 / (2 beta))^2               beta = ``profile.ipo_beta``             seeds[0]
cdpo           DPO with label smoothing eps       beta = ``profile.cdpo_beta``,           seeds[0]
                                                  eps = ``profile.cdpo_label_smoothing``
preferred_ft   SFT on the chosen responses        none                                    every seed
unlikelihood   -log p(y_w) - alpha log(1 - p(y_l))  alpha in ``profile.unlikelihood_alphas``  seeds[0]
ppo, ppo_gt    PPO on a reward model / the gold   target KL in ``profile.ppo_target_kls``  seeds[0]
               reward (``dpo_lab.rlhf``)
best_of_n,     best of N samples of pi_SFT, by    N in ``profile.best_of_ns``              seeds[0]
best_of_n_gt   the reward model / the gold reward
=============  =================================  ======================================  =============

A seed sets the order of the training pairs (nothing else in a step is random). Preferred-FT has no
hyperparameter, so its runs differ by seed (as in the DPO paper); the other methods run one seed per
setting, like the paper's 22-run sweep.

Optimisation (per profile, ``pref_*`` knobs): the gpu profile keeps the paper's defaults (RMSprop,
lr 1e-6 with 150 linear warmup steps, 64 pairs per step). The cpu and smoke profiles train a small
model for few steps, so they scale the recipe: AdamW, lr 2e-4 (docs/background.md 6 measured 1e-4 .. 3e-4
at cpu scale; 1e-6 would not move a small model in 100 steps), 10 (smoke: 2) warmup steps, 16 (smoke:
8) pairs per step. Every run trains on the same fixed subset of ``pref_steps * pref_batch_size``
pairs (:func:`training_pairs`), one pass over it, so the reference log-probs each run caches cover
only what it uses.

Evaluation (``task.Evaluator``): ``eval_samples_per_prompt`` fresh samples per held-out prompt, by
plain ancestral sampling with one fixed seed (the same random numbers for every policy, so method
differences are not sampling luck), scored by the task's gold reward and second scorer on
prompt + response, and the sequence KL to pi_SFT by both estimators of ``dpo_lab.lm.estimate_kl``.
pi_SFT itself is evaluated once the same way (run kind ``sft_eval``): the level every method starts
from. Record format: ``dpo_lab.evaluation``.

Runs are stored and resumable (``dpo_lab.runs``, run kind ``pref``): a finished run is loaded, not
retrained; an interrupted one continues from its last checkpoint. A run's tag names its method,
hyperparameter, seed, profile and evaluation protocol, and its task unless that is the default one
(so IMDb runs keep the ids they had before tasks existed).

Many runs at once: ``dpo_lab.workers`` trains a list of jobs (grid cells, and variants of the
experiment: a cell with some profile knobs changed, named in its tag) on worker processes;
:func:`run_sweep` is that on the grid. ``python -m dpo_lab.sweep`` runs the whole
sweep of a task and profile (``--task``, ``--profile``; defaults IMDb and ``$DPO_LAB_PROFILE``) and
``--export data/runs`` copies the finished runs' configs and metrics (no models) for shipping, and
``--shard I/N`` trains only every N-th run from the I-th, for N machines sharing one results folder.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import config as _config
from .evaluation import DEFAULT_TASK, METHODS, REFERENCE_METHOD, describe, frontier_runs
from .rlhf import BEST_OF_N_METHODS, PPO_METHODS
from .runs import Run, open_run, profile_runs
from .task import PAIR_KEYS, TASKS, Evaluator, Task, check_pairs, load_task

#: beta of the token-level losses (Preferred-FT, Unlikelihood): their loss has no beta; it only scales
#: the implicit rewards beta * log(pi / pi_ref) that the trainer logs for every loss.
LOGGING_BETA = 0.1
#: Files of a run that :func:`export_runs` copies: configuration, metrics and result, never models.
EXPORTED_FILES = ("config.json", "metrics.jsonl", "result.json")
#: Preference methods whose runs keep their final model (notebook 06 reads DPO's policies: implicit
#: rewards, samples); the frontier needs only metrics, so the others store none (3.1 GB a run for
#: gpt2-large). PPO keeps its model (``dpo_lab.rlhf``); Best-of-N trains none.
KEPT_MODELS = ("dpo",)


@dataclass(frozen=True)
class RunSpec:
    """One cell of the grid: a method, its hyperparameter (None when it has none) and a seed.

    Introduced in notebook 06.
    """

    method: str
    hyper: float | None
    seed: int

    def __post_init__(self):
        if self.method not in METHODS or self.method == REFERENCE_METHOD:
            raise ValueError(
                f"method: need a trained method of {sorted(set(METHODS) - {REFERENCE_METHOD})}, got {self.method!r}"
            )
        has_hyper = METHODS[self.method].hyper_name is not None
        if has_hyper != (self.hyper is not None):
            raise ValueError(
                f"hyper: {self.method} {'needs' if has_hyper else 'takes no'} hyperparameter, got {self.hyper!r}"
            )
        if self.hyper is not None and not (math.isfinite(self.hyper) and self.hyper > 0):
            raise ValueError(f"hyper: need a finite number > 0, got {self.hyper!r}")
        if self.method in BEST_OF_N_METHODS and self.hyper != int(self.hyper):
            raise ValueError(f"hyper: N of {self.method} must be a whole number, got {self.hyper!r}")

    @property
    def label(self) -> str:
        """E.g. "DPO beta=0.1 seed 0" (``evaluation.describe``)."""
        return describe(self.method, self.hyper, self.seed)


def grid(profile: _config.Profile | None = None) -> list[RunSpec]:
    """Every run of the sweep (module table), in the order they are trained.

    Introduced in notebook 06.
    """
    p = profile or _config.get_profile()
    first = p.seeds[0]
    return (
        [RunSpec("dpo", b, first) for b in p.dpo_betas]
        + [RunSpec("odpo", b, first) for b in p.dpo_betas]
        + [RunSpec("unlikelihood", a, first) for a in p.unlikelihood_alphas]
        + [RunSpec("preferred_ft", None, s) for s in p.seeds]
        + [RunSpec("ipo", p.ipo_beta, first), RunSpec("cdpo", p.cdpo_beta, first)]
        + [RunSpec(m, float(k), first) for m in PPO_METHODS for k in p.ppo_target_kls]
        + [RunSpec(m, float(n), first) for m in BEST_OF_N_METHODS for n in p.best_of_ns]
    )


def _tag(method: str, seed: int, profile: _config.Profile, task: str, variant: dict | None = None) -> dict:
    """The frontier label of a run; ``task`` only for a task other than the default, ``variant`` only
    for a variant of the experiment (module docstring)."""
    tag = {"method": method, "seed": seed, "profile": profile.name}
    if task != DEFAULT_TASK:
        tag["task"] = task
    if variant:
        tag["variant"] = dict(sorted(variant.items()))
    return tag


def trainer_settings(
    spec: RunSpec, profile: _config.Profile | None = None, task: str = DEFAULT_TASK, variant: dict | None = None
) -> dict:
    """Keyword arguments of ``lm.train_preferences`` for one run, except data, models and eval.

    Introduced in notebook 06. ``run_tag`` holds the frontier label (method, hyperparameter, seed,
    profile, the task unless it is the default, the variant unless it is the standard experiment);
    :func:`train_run` adds the evaluation settings.
    """
    if not isinstance(task, str) or not task:
        raise ValueError(f"task: need a task's name, got {task!r}")
    if spec.method in PPO_METHODS + BEST_OF_N_METHODS:
        raise ValueError(f"spec: {spec.label} is not a preference-training run (dpo_lab.rlhf trains it)")
    p = profile or _config.get_profile()
    loss, beta, loss_kwargs = spec.method, spec.hyper, {}
    if spec.method == "cdpo":
        loss_kwargs = {"label_smoothing": p.cdpo_label_smoothing}
    elif spec.method == "unlikelihood":
        beta, loss_kwargs = LOGGING_BETA, {"alpha": spec.hyper}
    elif spec.method == "preferred_ft":
        beta = LOGGING_BETA
    return {
        "loss": loss,
        "beta": beta,
        "loss_kwargs": loss_kwargs,
        "steps": p.pref_steps,
        "batch_size": p.pref_batch_size,
        "micro_batch_size": min(p.pref_micro_batch_size, p.pref_batch_size),
        "lr": p.pref_lr,
        "optimizer": p.pref_optimizer,
        "warmup_steps": p.pref_warmup_steps,
        "lr_schedule": p.pref_lr_schedule,
        "seed": spec.seed,
        "eval_every": p.eval_every,
        "checkpoint_every": p.pref_checkpoint_every,
        "add_eos": False,
        "run_tag": run_tag(spec, p, task, variant),
    }


def run_tag(spec: RunSpec, profile: _config.Profile, task: str = DEFAULT_TASK, variant: dict | None = None) -> dict:
    """The frontier tag of the run of ``spec``: method, seed, profile, hyperparameter (under its
    ``evaluation.METHODS`` name), ODPO's alpha, the task unless it is the default, the variant
    unless it is the standard experiment. :func:`train_run` adds the evaluation protocol.

    Introduced in notebook 06.
    """
    tag = _tag(spec.method, spec.seed, profile, task, variant)
    if spec.hyper is not None:
        tag[METHODS[spec.method].hyper_name] = spec.hyper
    if spec.method == "odpo":
        tag["odpo_alpha"] = profile.odpo_alpha
    return tag


def training_pairs(pairs: list[dict], profile: _config.Profile | None = None, odpo: bool = False) -> list[dict]:
    """The fixed subset of pairs every run trains on, in ``lm.train_preferences`` format.

    Introduced in notebook 06. The first ``pref_steps * pref_batch_size`` pairs of a permutation
    seeded with ``profile.sampling_seed`` (all pairs when there are fewer), as ``prompt_ids``, ``chosen_ids``
    and ``rejected_ids``. With ``odpo`` each pair also carries its ODPO offset
    ``odpo_alpha * f(score difference)``: the task stores it at alpha = 1 (``task.PAIR_KEYS``), and
    the offset is linear in alpha (ODPO paper Eq. 15).
    """
    p = profile or _config.get_profile()
    check_pairs(pairs)
    keep = np.random.default_rng(p.sampling_seed).permutation(len(pairs))[: p.pref_steps * p.pref_batch_size]
    keys = PAIR_KEYS[:3] + (("offset",) if odpo else ())
    out = [{k: pairs[i][k] for k in keys} for i in sorted(keep)]
    if odpo and p.odpo_alpha != 1.0:
        for row in out:
            row["offset"] = p.odpo_alpha * float(row["offset"])
    return out


@dataclass
class Context:
    """What every run of one task and profile shares: pi_SFT, a frozen copy of it as pi_ref, the
    training pairs (with and without ODPO offsets), the evaluator, the task (its name, and the object),
    the training prompts PPO samples from, and ``cache``, where ``dpo_lab.rlhf`` keeps the reward model
    and Best-of-N's draws once built. Build it with :func:`context`."""

    profile: _config.Profile
    sft: object  # task.SFTPolicy
    ref: object
    pairs: list[dict]
    odpo_pairs: list[dict]
    evaluator: Evaluator
    task: str = DEFAULT_TASK
    variant: dict = field(default_factory=dict)
    source: Task | None = None
    train_prompts: list[str] = field(default_factory=list)
    train_prompt_ids: list[list[int]] = field(default_factory=list)
    cache: dict = field(default_factory=dict)


def context(
    profile: _config.Profile | None = None,
    task: str | Task | None = None,
    progress: bool = True,
    variant: dict | None = None,
) -> Context:
    """Load (or build once: cached runs) the task's pi_SFT, its preference pairs, its scorers and the
    evaluator.

    Introduced in notebook 06. ``task``: a name of ``task.TASKS`` (default IMDb) or a ``Task``; a
    ``Task`` brings its own profile, which must have the name of ``profile`` when both are given.
    ``Context.profile`` is the task's profile: the sizes every run of the context trains at.
    ``variant``: the knobs in which ``profile`` departs from the standard experiment (:class:`Job`),
    written into every run's tag.
    """
    from .lm import load_model

    p = profile or (task.profile if isinstance(task, Task) else _config.get_profile())
    if isinstance(task, Task):
        if task.profile.name != p.name:
            raise ValueError(f"task: its profile {task.profile.name!r} differs from profile {p.name!r}")
        t = task
    else:
        t = load_task(task, p)
    p = t.profile  # the task's sizes (module docstring of dpo_lab.task)
    with profile_runs(p):  # the cached runs of this profile, whatever $DPO_LAB_PROFILE says
        sft = t.reference(progress)
        pairs = t.preference_pairs(progress)
    ref = load_model(sft.path, device=_config.device()).eval()
    prompts = t.train_prompts()
    return Context(
        p,
        sft,
        ref,
        training_pairs(pairs, p),
        training_pairs(pairs, p, odpo=True),
        Evaluator.for_task(t, ref, sft.tokenizer),
        t.name,
        dict(variant or {}),
        t,
        prompts,
        t.prompt_ids(prompts, sft.tokenizer),
    )


def evaluate_sft(ctx: Context) -> Run:
    """The evaluation of pi_SFT itself (step 0, run kind ``sft_eval``), computed once.

    Introduced in notebook 06. pi_SFT against its frozen copy: both KL estimates are exactly 0, since
    the two models compute identical log-probs.
    """
    tag = {**_tag(REFERENCE_METHOD, ctx.profile.seeds[0], ctx.profile, ctx.task), "eval": ctx.evaluator.settings}
    with profile_runs(ctx.profile):
        run = open_run("sft_eval", {"tag": tag, "sft": ctx.sft.run.id})
    if not run.finished:
        record = ctx.evaluator(ctx.sft.model, 0)
        run.log({"split": "eval", "step": 0, **record})
        run.finish({"final_eval": record})
    return run


def train_run(spec: RunSpec, ctx: Context, progress: bool | str = True) -> Run:
    """Train (or load, when finished) the run of ``spec`` and return it; PPO and Best-of-N through
    ``dpo_lab.rlhf``. The run is stored under ``ctx.profile``'s results folder (``runs.profile_runs``);
    a preference run keeps its final model only for the methods of :data:`KEPT_MODELS`.

    Introduced in notebook 06.
    """
    with profile_runs(ctx.profile):
        return _train_run(spec, ctx, progress)


def _train_run(spec: RunSpec, ctx: Context, progress: bool | str) -> Run:
    from .lm import train_preferences

    if progress:  # the bar named like the figure legend, not by the run's hash
        changed = ", ".join(f"{k}={v}" for k, v in sorted(ctx.variant.items()))
        progress = f"{spec.label} ({changed})" if changed else spec.label
    if spec.method in PPO_METHODS + BEST_OF_N_METHODS:
        from . import rlhf

        tag = {**run_tag(spec, ctx.profile, ctx.task, ctx.variant), "eval": ctx.evaluator.settings}
        if spec.method in BEST_OF_N_METHODS:
            return rlhf.best_of_n_run(spec, ctx, tag, progress)
        return rlhf.train_ppo_run(spec, ctx, tag, progress).run
    kwargs = trainer_settings(spec, ctx.profile, ctx.task, ctx.variant)
    kwargs["run_tag"] = {**kwargs["run_tag"], "eval": ctx.evaluator.settings}
    pairs = ctx.odpo_pairs if spec.method == "odpo" else ctx.pairs
    keep = spec.method in KEPT_MODELS
    return train_preferences(
        ctx.sft.model, ctx.ref, pairs, eval_fn=ctx.evaluator, tokenizer=ctx.sft.tokenizer, progress=progress,
        keep_model=keep, **kwargs,
    ).run  # fmt: skip


def shard(specs: list[RunSpec], part: str | None) -> list[RunSpec]:
    """The runs of shard ``part`` = "I/N" (I in 0 .. N-1): every N-th spec from the I-th, so N machines
    (or a scheduler's array job) sharing one results folder split the grid; None = all of them.
    Two processes that still reach the same run train it once (``runs.Run.claim``).

    Introduced in notebook 06.
    """
    if part is None:
        return list(specs)
    try:
        index, count = (int(x) for x in part.split("/"))
    except (AttributeError, ValueError):
        raise ValueError(f"shard: expected I/N such as 0/4, got {part!r}") from None
    if not (count >= 1 and 0 <= index < count):
        raise ValueError(f"shard: need 0 <= I < N, got {part!r}")
    return list(specs)[index::count]


def run_sweep(
    profile: _config.Profile | None = None,
    workers: int | None = None,
    progress: bool = True,
    task: str | Task = DEFAULT_TASK,
    part: str | None = None,
) -> dict:
    """Train every run of :func:`grid` on ``task`` (``workers.run_jobs``, without variants), or the runs
    of one shard of it (``part``, :func:`shard`).

    Introduced in notebook 06. Returns ``{"runs": {spec: Run}`` (finished runs),
    ``"failed": {spec: reason}, "seconds": {spec: seconds}, "wall_seconds": total}``.
    """
    from .workers import Job, run_jobs  # workers imports this module: imported when called

    p = profile or (task.profile if isinstance(task, Task) else _config.get_profile())
    out = run_jobs([Job(spec) for spec in shard(grid(p), part)], p, workers, progress, task)
    return {k: {job.spec: v for job, v in out[k].items()} for k in ("runs", "failed", "seconds")} | {
        "wall_seconds": out["wall_seconds"]
    }


def policy_samples(ctx: Context, runs: dict[str, Run], n_prompts: int = 3) -> list[dict]:
    """One response per prompt from pi_SFT and from the final policy of each finished run, on the
    first ``n_prompts`` held-out prompts with the evaluation's seed: the same prompts and random
    numbers for every policy, so differences are the policies'.

    Introduced in notebook 06. ``runs`` maps a label to a finished run (its saved model is loaded).
    Returns one dict per (policy, prompt): ``policy``, ``prompt``, ``response``, ``reward`` (gold).
    """
    from .lm import load_model, sample

    ev = ctx.evaluator
    if isinstance(n_prompts, bool) or not isinstance(n_prompts, int) or not 1 <= n_prompts <= len(ev.prompts):
        raise ValueError(f"n_prompts: need an integer in [1, {len(ev.prompts)}], got {n_prompts!r}")
    unfinished = [label for label, run in runs.items() if not run.finished]
    if unfinished:
        raise ValueError(f"runs: {unfinished} have not finished; train them first (run_sweep)")
    modelless = [label for label, run in runs.items() if not run.artifact("model").exists()]
    if modelless:
        raise ValueError(f"runs: {modelless} kept no final model (a sweep keeps those of {KEPT_MODELS} and PPO)")
    policies = {"pi_SFT": ctx.sft.model}
    policies.update({label: load_model(run.artifact("model"), device=_config.device()) for label, run in runs.items()})
    rows = []
    for label, model in policies.items():
        s = sample(model, ev.tokenizer, ev.prompt_ids[:n_prompts], 1, ev.max_new_tokens, ev.seed)
        prompts = [ev.prompts[i] for i in s.prompt_index]
        rewards = ev.gold([x + y for x, y in zip(prompts, s.texts)])
        rows += [
            {"policy": label, "prompt": x, "response": y, "reward": float(r)}
            for x, y, r in zip(prompts, s.texts, rewards)
        ]
    return rows


def export_runs(dest: str | Path, root: str | Path | None = None, task: str = DEFAULT_TASK) -> list[Path]:
    """Copy the finished frontier runs of ``task`` under ``root`` (default ``<results>/runs``) to
    ``dest``: :data:`EXPORTED_FILES` only (no checkpoints, models or cached log-probs). Returns the folders.

    Introduced in notebook 06; ``data/runs`` holds the cpu-profile runs made this way.
    """
    runs = [r for r in frontier_runs(root, task) if r.finished]
    if not runs:
        raise ValueError(f"root: no finished frontier runs under {root or 'the results folder'}")
    dest = Path(dest)
    out = []
    for run in runs:
        folder = dest / run.id
        folder.mkdir(parents=True, exist_ok=True)
        for name in EXPORTED_FILES:
            shutil.copy2(run.path / name, folder / name)
        out.append(folder)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m dpo_lab.sweep [--task T] [--profile P] [--workers N] [--export DIR] [--shard I/N]
    [--data-seed S]``: a whole sweep."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default=DEFAULT_TASK, choices=sorted(TASKS), help="the task (default: %(default)s)")
    parser.add_argument(
        "--profile",
        default=None,
        choices=sorted(_config.PROFILES),
        help=f"the profile (default: ${_config.ENV_VAR}, else {_config.DEFAULT_PROFILE})",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="training processes (default: the profile's; 0 = one per GPU)"
    )
    parser.add_argument("--export", default=None, help="afterwards copy configs + metrics of the runs here")
    parser.add_argument("--shard", default=None, help="I/N: only every N-th run from the I-th (several machines)")
    parser.add_argument(
        "--data-seed",
        type=int,
        default=None,
        help="a replicate: redraw the pairs, training subset and evaluation samples with this seed, same pi_SFT",
    )
    args = parser.parse_args(argv)
    from .lm import distributed

    rank, world = distributed.init()  # torchrun: every rank trains each run with the others (dpo_lab.workers)
    say = print if rank == 0 else lambda *a: None
    if args.profile:
        # the results folder and the spawned workers follow the environment variable
        os.environ[_config.ENV_VAR] = args.profile
    profile = _config.get_profile(args.profile)
    if args.data_seed is not None:
        profile = profile.replace(data_seed=args.data_seed)
    specs = shard(grid(profile), args.shard)
    say(
        f"dpo_lab sweep: task {args.task}, profile {profile.name}, {len(specs)} runs"
        f"{f' (shard {args.shard} of {len(grid(profile))})' if args.shard else ''} -> {_config.results_dir(profile)}"
        + (f", {world} processes per run (torchrun)" if world > 1 else "")
    )
    out = run_sweep(profile, workers=args.workers, task=args.task, part=args.shard)
    for spec, sec in out["seconds"].items():
        status = out["runs"][spec].id if spec in out["runs"] else f"DIVERGED: {out['failed'][spec]}"
        say(f"{spec.label:40s} {sec:7.0f} s  {status}")
    say(f"wall time {out['wall_seconds']:.0f} s")
    if args.export and rank == 0:
        folders = export_runs(args.export, task=args.task)
        say(f"exported {len(folders)} runs to {args.export}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
