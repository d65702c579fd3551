"""Stored results as point tables: from frontier runs to one dict per evaluation, and how to select them.

Introduced in notebook 07. Reads stored runs and trains nothing (numpy only, plus the run store).

Frontier runs
-------------
``evaluation.frontier_runs`` finds them: training runs (kind ``"pref"`` of ``lm.train_preferences``)
and the evaluation of pi_SFT itself (kind ``"sft_eval"``, method ``"sft"``: the level every method
starts from, drawn as a dashed line), each tagged with a method of ``evaluation.METHODS``.
:func:`stored_runs` picks the reader's own runs, else the reference runs shipped in ``data/runs``.

Point tables
------------
:func:`load_points` turns runs into a list of *points*, one dict per evaluation, with the keys of the
record without the ``eval/`` prefix (``dpo_lab.evaluation`` documents them, including a task's exact
quantities when it has them) plus ``run``, ``method``, ``hyper_name``, ``hyper`` (NaN when the method
has none), ``seed``, ``profile``, ``task``, ``variant`` and ``step``. Every function of
``dpo_lab.frontier`` and ``dpo_lab.plots`` takes such a list; :func:`profile_of` and :func:`task_of`
refuse a list that mixes profiles or tasks, since their rewards are not comparable.

A *variant* of the experiment (``dpo_lab.sweep.Job``: fewer pairs, another ODPO alpha, ...) is named
in its runs' tags; :func:`load_points` keeps variants off the standard frontier unless asked.
:func:`enumerated` turns the points of a task with exact evaluation (the exact task of notebook 04)
into points measured by enumeration, with no sampling noise; read them with ``kl="enumerated"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .evaluation import DEFAULT_TASK, EVAL_KEYS, EVAL_PREFIX, METHODS, REFERENCE_METHOD, frontier_runs, run_label

#: KL estimator name -> column of a point table.
KL_ESTIMATORS = {"exact": "kl_exact", "logratio": "kl_logratio", "enumerated": "enum_kl"}


def reference_dir() -> Path:
    """``<checkout>/data/runs``: the reference runs shipped with the package (data/README.md says
    which profile, model, data and command made them).

    Introduced in notebook 07.
    """
    from . import config

    return config.project_root() / "data" / "runs"


def stored_runs(
    root: str | Path | None = None, reference: str | Path | None = None, task: str = DEFAULT_TASK
) -> tuple[list, str]:
    """The frontier runs of ``task`` (default IMDb) to plot and a sentence saying where they come from.

    Introduced in notebook 07. The reader's own runs (``root``, default ``<results>/runs`` of the
    active profile) when there are any, else the reference runs (``reference``, default
    :func:`reference_dir`). Their profile travels with every point, so a figure of the reference
    runs says so even when another profile is active.
    """
    from .runs import runs_root

    own_root = runs_root(root)
    own = frontier_runs(own_root, task)
    if own:
        return own, f"your runs: {len(own)} frontier runs in {own_root}"
    ref_root = Path(reference) if reference is not None else reference_dir()
    ref = frontier_runs(ref_root, task) if ref_root.is_dir() else []
    if ref:
        return ref, f"reference runs: {len(ref)} frontier runs in {ref_root} (none of your own in {own_root})"
    raise FileNotFoundError(
        f"no frontier runs in {own_root} nor in {ref_root}: run notebook 06 (or python -m dpo_lab.sweep) first; "
        "the reference runs ship with the repository (data/runs), not with the installed package"
    )


def variant_label(variant) -> str:
    """A run tag's ``variant`` ({knob: value}) as one label, e.g. "exact_pairs=200, odpo_alpha=0.5";
    "" for the standard experiment (no variant)."""
    if not variant:
        return ""
    if not isinstance(variant, dict):
        raise ValueError(f"variant: expected a dict of profile knobs, got {variant!r}")
    return ", ".join(f"{k}={v}" for k, v in sorted(variant.items()))


def load_points(runs: Iterable, variant: str | None = "") -> list[dict]:
    """Every evaluation record of ``runs`` (``dpo_lab.runs.Run`` objects) as a list of points.

    Introduced in notebook 07. Unfinished runs contribute the evaluations stored so far, so a sweep can
    be plotted while it runs; a run that diverged contributes none (:func:`diverged` lists them).
    Records without ``eval/reward`` (training steps) are skipped; an evaluation record missing a key, or
    a config whose ``tag`` lacks ``method``/``seed``/``profile``/the hyperparameter, is an error naming
    the file. ``variant``: "" (default) keeps the runs of the standard experiment, a
    :func:`variant_label` those of one variant, None all; pi_SFT's evaluation is kept in every case
    (every run starts there).
    """
    if variant is not None and not isinstance(variant, str):
        raise ValueError(f"variant: expected a label (str), '' or None, got {variant!r}")
    points = []
    for run in runs:
        cfg_file = Path(run.path) / "config.json"
        tag = run.config.get("tag")
        method = tag.get("method") if isinstance(tag, dict) else None
        if method not in METHODS:
            raise ValueError(f"{cfg_file}: 'tag' must hold a 'method' of {sorted(METHODS)}, got {method!r}")
        hyper_name = METHODS[method].hyper_name
        needed = ["seed", "profile"] + ([hyper_name] if hyper_name else [])
        missing = [k for k in needed if k not in tag]
        if missing:
            raise ValueError(f"{cfg_file}: the tag of a {method} run lacks {missing}")
        label = variant_label(tag.get("variant"))
        if variant is not None and label != variant and method != REFERENCE_METHOD:
            continue
        records = run.metrics()
        if divergence(records):
            continue
        for record in records:
            if EVAL_PREFIX + "reward" not in record:
                continue
            absent = [k for k in EVAL_KEYS if k not in record]
            if absent or "step" not in record:
                raise ValueError(
                    f"{Path(run.path) / 'metrics.jsonl'}: evaluation record at step "
                    f"{record.get('step')} lacks {absent or ['step']}"
                )
            # the task's exact quantities ride along when it has them
            point = {k[len(EVAL_PREFIX) :]: float(v) for k, v in record.items() if k.startswith(EVAL_PREFIX)}
            point.update(
                run=run.id,
                method=method,
                hyper_name=hyper_name,
                hyper=float(tag[hyper_name]) if hyper_name else math.nan,
                seed=int(tag["seed"]),
                profile=str(tag["profile"]),
                task=str(tag.get("task", DEFAULT_TASK)),
                variant=label,
                step=int(record["step"]),
            )
            points.append(point)
    return points


def divergence(records: Sequence[dict]) -> str | None:
    """Why a run stopped on a non-finite number (its ``"split": "diverged"`` record, written by the
    ``dpo_lab.lm`` trainers), or None when it did not."""
    return next((str(r.get("reason", "")) for r in records if r.get("split") == "diverged"), None)


def diverged(runs: Iterable) -> dict[str, str]:
    """``{run label: why}`` for the runs that diverged: left off every frontier, said out loud instead.

    Introduced in notebook 07.
    """
    out = {}
    for run in runs:
        why = divergence(run.metrics())
        if why is not None:
            out[f"{run_label(run)} ({run.id})"] = why
    return out


def enumerated(points: Sequence[dict]) -> list[dict]:
    """``points`` measured by enumeration: ``reward`` := ``enum_reward`` (the exact E_pi[r*]) and
    ``reward_se`` := 0, the sampled values kept as ``sampled_reward`` / ``sampled_reward_se``.

    Introduced in notebook 04. Read the result with ``kl="enumerated"`` (the exact KL, column
    ``enum_kl``): every function of ``dpo_lab.frontier`` and ``dpo_lab.plots`` then works on exact
    numbers, so a noise band is 0 and a verdict has no sampling error (training still had its seed).
    A point without exact quantities (a task that cannot enumerate) is a ValueError naming its run.
    """
    out = []
    for p in points:
        if "enum_reward" not in p or "enum_kl" not in p:
            raise ValueError(f"points: run {p.get('run')} (step {p.get('step')}) has no exact quantities")
        q = dict(p, sampled_reward=p["reward"], sampled_reward_se=p["reward_se"])
        q.update(reward=p["enum_reward"], reward_se=0.0, enum_kl_se=0.0)
        out.append(q)
    return out


def kl_column(kl: str) -> str:
    """The point-table column of the KL estimator ``kl`` (a key of :data:`KL_ESTIMATORS`)."""
    if kl not in KL_ESTIMATORS:
        raise ValueError(f"kl: estimator must be one of {sorted(KL_ESTIMATORS)}, got {kl!r}")
    return KL_ESTIMATORS[kl]


def column(points: Sequence[dict], key: str) -> np.ndarray:
    """The values of ``key`` over ``points`` as a float array, in the order of ``points``."""
    return np.array([p[key] for p in points], dtype=float)


def select_points(
    points: Sequence[dict],
    methods: Iterable[str] | None = None,
    hyper_range: tuple[float, float] | None = None,
    step_range: tuple[int, int] | None = None,
) -> list[dict]:
    """The points of the chosen ``methods`` whose hyperparameter lies in ``hyper_range`` and whose
    step lies in ``step_range`` (both inclusive; None = no limit).

    Introduced in notebook 07. Methods without a hyperparameter (Preferred-FT, the SFT reference)
    pass any ``hyper_range``; the SFT reference passes any ``step_range`` too, since it is the
    level every run starts from.
    """
    if methods is not None:
        methods = set(methods)
        unknown = methods - set(METHODS)
        if unknown:
            raise ValueError(f"methods: unknown {sorted(unknown)}; valid: {sorted(METHODS)}")
    for name, rng in (("hyper_range", hyper_range), ("step_range", step_range)):
        if rng is not None and (len(rng) != 2 or rng[0] > rng[1]):
            raise ValueError(f"{name}: need (low, high) with low <= high, got {rng!r}")
    out = []
    for p in points:
        if methods is not None and p["method"] not in methods:
            continue
        if hyper_range and p["hyper_name"] and not hyper_range[0] <= p["hyper"] <= hyper_range[1]:
            continue
        if step_range and p["method"] != REFERENCE_METHOD and not step_range[0] <= p["step"] <= step_range[1]:
            continue
        out.append(p)
    return out


def profile_of(points: Sequence[dict]) -> str:
    """The one profile that made ``points``; mixing profiles in one figure or table is an error.

    Introduced in notebook 07: it is how every figure says which profile made it (cpu-profile points
    must never be read as gpt2-large results).
    """
    profiles = sorted({p["profile"] for p in points})
    if len(profiles) != 1:
        raise ValueError(f"points: need the runs of exactly one profile, got {profiles or 'no points'}")
    return profiles[0]


def task_of(points: Sequence[dict]) -> str:
    """The one task whose runs made ``points``; rewards of two tasks are not comparable.

    Introduced in notebook 07.
    """
    tasks = sorted({p["task"] for p in points})
    if len(tasks) != 1:
        raise ValueError(f"points: need the runs of exactly one task, got {tasks or 'no points'}")
    return tasks[0]


def last_points(points: Sequence[dict]) -> list[dict]:
    """The last evaluation (largest step) of every run among ``points``, in input order of runs.

    Introduced in notebook 07: with a step range chosen, this is "the policy at the end of that range".
    """
    last: dict[str, dict] = {}
    for p in points:
        if p["run"] not in last or p["step"] > last[p["run"]]["step"]:
            last[p["run"]] = p
    return list(last.values())
