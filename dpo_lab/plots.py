"""Figures and the interactive view of the reward-KL frontier and of training runs.

Introduced in notebook 07 (the hacking and training-curve figures in notebook 06). Every function here
only draws what ``dpo_lab.results`` and ``dpo_lab.frontier`` compute from stored runs; it trains
nothing and imports neither torch nor a task. Each figure's title names the profile (and the task)
that made its points, so a cpu-profile figure is never read as a gpt2-large result.

==========================  ================================================================
function                    draws
==========================  ================================================================
``plot_frontier``           reward against KL, coloured by method, Pareto front marked
``plot_hacking``            the second scorer, distinct-1 and the EOS rate against KL
``plot_training_curves``    what the preference trainer logs per step, one line per run
``frontier_view``           an ``ipywidgets`` view: methods, hyperparameter and step ranges,
                            KL estimator and axis; runs headless (``view.result``)
==========================  ================================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .evaluation import DEFAULT_TASK, METHODS, REFERENCE_CURVES, REFERENCE_METHOD, run_label
from .frontier import competitors, format_table, pareto_mask, pareto_share, summary_table, verdict
from .results import KL_ESTIMATORS, column, kl_column, profile_of, select_points, task_of


def _origin(points: Sequence[dict]) -> str:
    """ "profile cpu" for the default task, "task exact, profile cpu" for another one."""
    task = task_of(points)
    return f"profile {profile_of(points)}" if task == DEFAULT_TASK else f"task {task}, profile {profile_of(points)}"


def _symlog_kl(ax) -> None:
    """A symmetric log KL axis (linear within +-0.1 nats) with ticks at 1, 2, 5 x 10^k labelled by short
    numbers: the default formatter printed some labels with six significant digits."""
    from matplotlib.ticker import FuncFormatter, SymmetricalLogLocator

    ax.set_xscale("symlog", linthresh=0.1)
    # ticks at 1, 2, 5 x 10^k: a decade alone left a single labelled tick over KL 1-30
    ax.xaxis.set_major_locator(SymmetricalLogLocator(base=10, linthresh=0.1, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.3g}"))


def plot_frontier(points: Sequence[dict], kl: str = "exact", log_kl: bool = False, ax=None, optimum=None):
    """Reward against KL for every evaluation point, coloured by method, Pareto front marked.

    Introduced in notebook 07. Pareto points get a black border (as in ODPO Fig. 2) and are joined
    by a black step line; the SFT reference is a dashed horizontal line; Best-of-N (a reference curve,
    ``evaluation.REFERENCE_CURVES``) a dashed line through its N values, off the Pareto front.
    ``log_kl`` uses a symmetric log axis (linear within +-0.1 nats) because the log-ratio estimator
    can be slightly negative.
    ``optimum``: None, or ``(kls, rewards)`` of a known optimal frontier (the exact task's,
    ``dpo_lab.exact.frontier``), drawn as a grey curve no point may cross. The title names the
    profile that made the points. Returns the figure.
    """
    import matplotlib.pyplot as plt

    col = kl_column(kl)
    origin = _origin(points)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4.5))
    fig = ax.figure
    trained = competitors(points)
    ref = [p for p in points if p["method"] == REFERENCE_METHOD]
    for m in REFERENCE_CURVES:  # Best-of-N: one point per N, joined; never on the Pareto front
        curve = sorted((p for p in points if p["method"] == m), key=lambda p: p[col])
        if curve:
            ns = ", ".join(f"{p['hyper']:g}" for p in curve)
            ax.plot(column(curve, col), column(curve, "reward"), "d--", color=METHODS[m].color, lw=1.2, ms=5,
                    zorder=2, label=f"{METHODS[m].label}, N = {ns}")  # fmt: skip
    if optimum is not None:
        kls, rewards = (np.asarray(a, dtype=float) for a in optimum)
        if kls.ndim != 1 or kls.shape != rewards.shape or not kls.size:
            raise ValueError(f"optimum: need (kls, rewards) of equal length, got shapes {kls.shape}, {rewards.shape}")
        order = np.argsort(kls)
        ax.plot(kls[order], rewards[order], color="0.55", lw=2.5, alpha=0.6, zorder=1, label="exact optimum (Eq. 4)")
    if ref:
        level = float(np.mean(column(ref, "reward")))
        ax.axhline(level, color="0.3", ls="--", lw=1, label=f"{METHODS[REFERENCE_METHOD].label}: {level:.3f}")
    if trained:
        x, y = column(trained, col), column(trained, "reward")
        on = pareto_mask(x, y)
        for m in METHODS:
            idx = [i for i, p in enumerate(trained) if p["method"] == m]
            if idx:
                ax.scatter(
                    x[idx],
                    y[idx],
                    s=28,
                    color=METHODS[m].color,
                    alpha=0.75,
                    edgecolors="none",
                    label=METHODS[m].label,
                    zorder=3,
                )
        # Pareto points drawn again on top, opaque, with a black border
        ax.scatter(
            x[on],
            y[on],
            s=28,
            facecolors=[METHODS[p["method"]].color for p, o in zip(trained, on) if o],
            edgecolors="black",
            linewidths=1.4,
            zorder=4,
        )
        order = np.argsort(x[on])
        ax.step(
            x[on][order],
            y[on][order],
            where="post",
            color="black",
            lw=0.8,
            zorder=2,
            label=f"Pareto front ({int(on.sum())} points)",
        )
    if log_kl:
        _symlog_kl(ax)
    what = "enumerated, exact" if kl == "enumerated" else f"{kl} estimator"
    ax.set_xlabel(f"KL(pi || pi_SFT), {what} (nats){', symlog axis' if log_kl else ''}")
    exact = bool(points) and all("sampled_reward" in p for p in points)  # results.enumerated
    ax.set_ylabel("expected gold reward (enumerated)" if exact else "mean gold reward of samples")
    ax.set_title(f"Reward-KL frontier, {origin}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def plot_hacking(points: Sequence[dict], kl: str = "exact", log_kl: bool = False):
    """Three signs of reward hacking against KL: the second scorer, distinct-1 and the EOS rate.

    Introduced in notebook 06. Read it next to :func:`plot_frontier`: where the gold reward still
    climbs but the independent scorer stays flat, distinct-1 falls and EOS disappears, the policy is
    gaming the gold reward rather than writing more positive reviews. Returns the figure.
    """
    import matplotlib.pyplot as plt

    col = kl_column(kl)
    origin = _origin(points)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharex=True)
    panels = [
        ("second_reward", "second scorer, mean score"),
        ("distinct1", "distinct-1 (unique words / words)"),
        ("eos_rate", "share of responses ending with EOS"),
    ]
    ref = [p for p in points if p["method"] == REFERENCE_METHOD]
    for ax, (key, ylabel) in zip(axes, panels):
        for m in METHODS:
            mine = [p for p in points if p["method"] == m and m != REFERENCE_METHOD]
            if mine:
                ax.scatter(
                    column(mine, col),
                    column(mine, key),
                    s=18,
                    color=METHODS[m].color,
                    alpha=0.75,
                    label=METHODS[m].label,
                )
        if ref:
            ax.axhline(float(np.mean(column(ref, key))), color="0.3", ls="--", lw=1, label="pi_SFT")
        if log_kl:
            _symlog_kl(ax)
        ax.set_xlabel(f"KL(pi || pi_SFT), {kl} estimator (nats)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Signs of reward hacking along the frontier, {origin}")
    fig.tight_layout()
    return fig


def _label_panels(axes, keys: Sequence[str], xlabel: str) -> None:
    """One logged quantity per panel: its name as the title, a grid, unused panels hidden, the legend
    (one line per run) in the first."""
    for ax, key in zip(axes.flat, keys):
        ax.set_title(key, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)


#: What the preference trainer logs each step (``losses.preference_metrics``), as plotted by
#: :func:`plot_training_curves`.
TRAIN_CURVE_KEYS = ("loss", "rewards/accuracies", "rewards/margins", "rewards/chosen", "logps/chosen", "logps/rejected")


def plot_training_curves(runs: Sequence, keys: Sequence[str] = TRAIN_CURVE_KEYS, window: int = 5):
    """One panel per logged training quantity, one line per run (colours in the order of ``runs``),
    smoothed by a running mean over ``window`` steps (1 = raw). Returns the figure.

    Introduced in notebook 06. Chosen log-probs often fall while the margin rises: the loss only asks
    the chosen response to gain on the rejected one relative to pi_ref, and pushing the rejected
    response down also lowers similar (chosen) responses (docs/background.md 2.6).
    """
    import matplotlib.pyplot as plt

    if not runs:
        raise ValueError("runs: need at least one training run")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window: need an integer >= 1, got {window!r}")
    profiles = sorted({str(r.config.get("tag", {}).get("profile")) for r in runs})
    if len(profiles) != 1:
        raise ValueError(f"runs: need the runs of exactly one profile, got {profiles}")
    cols = min(3, len(keys))
    fig, axes = plt.subplots(
        math.ceil(len(keys) / cols), cols, figsize=(4.3 * cols, 3.2 * math.ceil(len(keys) / cols)), squeeze=False
    )
    colors = plt.cm.viridis(np.linspace(0.0, 0.9, len(runs)))
    for run, color in zip(runs, colors):
        label = run_label(run)
        train = [r for r in run.metrics() if r.get("split") == "train"]
        steps = np.array([r["step"] for r in train])
        for ax, key in zip(axes.flat, keys):
            values = np.array([r[key] for r in train if key in r], dtype=float)
            if len(values) != len(steps):
                raise ValueError(f"{Path(run.path) / 'metrics.jsonl'}: {key!r} is missing from some training records")
            if len(values) >= window:
                smooth = np.convolve(values, np.ones(window) / window, mode="valid")
                ax.plot(steps[window - 1 :], smooth, color=color, lw=1.2, alpha=0.85, label=label)
    _label_panels(axes, keys, "optimiser step")
    smoothing = f"running mean over {window} steps" if window > 1 else "raw"
    fig.suptitle(f"Training curves ({smoothing}), profile {profiles[0]}")
    fig.tight_layout()
    return fig


#: What PPO logs each step (``lm.ppo_training``), as plotted by :func:`plot_ppo_training`.
PPO_CURVE_KEYS = ("objective/kl", "objective/kl_coef", "objective/scores", "loss/value", "policy/clipfrac",
                  "objective/entropy")  # fmt: skip


def plot_ppo_training(runs: Sequence, keys: Sequence[str] = PPO_CURVE_KEYS):
    """PPO's own view of its runs: one panel per logged quantity, one line per run, by rollout (the
    quantities of a rollout are logged with each of its optimiser steps; one value per rollout is
    drawn). A run's target KL is a dotted line in its colour on the ``objective/kl`` panel, where the
    adaptive controller should bring the rollouts' KL. Returns the figure.

    Introduced in notebook 04 (the exact task) and used in notebook 06 (IMDb).
    """
    import matplotlib.pyplot as plt

    runs = list(runs)
    if not runs or any(r.kind != "ppo" for r in runs):
        raise ValueError("runs: need at least one PPO run (run kind 'ppo')")
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 3.1 * rows), squeeze=False)
    colors = plt.cm.plasma(np.linspace(0.0, 0.85, len(runs)))
    for run, color in zip(runs, colors):
        knobs = run.config["ppo"]
        per_rollout = knobs["ppo_epochs"] * (knobs["batch_size"] // run.config["settings"]["batch_size"])
        rollouts = [r for r in run.metrics() if r.get("split") == "train"][::per_rollout]  # one step per rollout
        x = np.arange(1, len(rollouts) + 1)
        target = run.config["ppo"]["target_kl"]
        for ax, key in zip(axes.flat, keys):
            ax.plot(x, [r.get(key, np.nan) for r in rollouts], "o-", ms=2.5, lw=1, color=color, label=run_label(run))
            if key == "objective/kl" and target is not None:
                ax.axhline(target, color=color, ls=":", lw=1)
    _label_panels(axes, keys, "rollout")
    profiles = sorted({str(r.config.get("tag", {}).get("profile")) for r in runs})
    fig.suptitle(f"PPO by rollout (dotted: each run's target KL), profile {', '.join(profiles)}")
    fig.tight_layout()
    return fig


def frontier_view(points: Sequence[dict]):
    """An ``ipywidgets.interactive`` view of the frontier: methods, beta/alpha range, step range,
    KL estimator, log or linear KL axis. The view only selects and calls this module's functions.

    Introduced in notebook 07. Runs headless: ``interactive`` calls the view once on creation, and
    ``view.result`` holds what the current selection gives; ``view.fallback_png`` is the figure of every
    point, for renderers without widgets (:func:`view_bundle`) (a dict with ``share``, ``table`` and
    ``verdict``, or None when nothing is selected), so a notebook can assert on it.
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    trained = [p for p in points if p["method"] != REFERENCE_METHOD]
    if not trained:
        raise ValueError("points: no evaluation points besides the SFT reference")
    present = [m for m in METHODS if m != REFERENCE_METHOD and any(p["method"] == m for p in trained)]
    hypers = sorted({p["hyper"] for p in trained if p["hyper_name"]}) or [0.0]
    steps = sorted({p["step"] for p in trained})

    def show(methods, hyper, step, kl, axis):
        sel = select_points(points, list(methods) + [REFERENCE_METHOD], hyper, step)
        if not any(p["method"] != REFERENCE_METHOD for p in sel):
            print("No evaluation points in this selection.")
            return None
        fig = plot_frontier(sel, kl, log_kl=axis == "log")
        display(fig)
        plt.close(fig)
        share = pareto_share(sel, kl)
        table = summary_table(sel, kl)
        said = verdict(sel, kl)
        print("Share of Pareto points: " + ", ".join(f"{METHODS[m].label} {s:.0%}" for m, s in share.items()))
        print(format_table(table))
        print("\n".join(said))
        return {"share": share, "table": table, "verdict": said}

    view = w.interactive(
        show,
        methods=w.SelectMultiple(
            options=[(METHODS[m].label, m) for m in present], value=present, description="methods"
        ),
        hyper=w.SelectionRangeSlider(
            options=[(f"{h:g}", h) for h in hypers], index=(0, len(hypers) - 1), description="beta/alpha"
        ),
        step=w.SelectionRangeSlider(
            options=[(str(s), s) for s in steps], index=(0, len(steps) - 1), description="steps"
        ),
        kl=w.ToggleButtons(options=list(KL_ESTIMATORS), description="KL"),
        axis=w.ToggleButtons(options=["linear", "log"], description="KL axis"),
    )
    still = plot_frontier(points, "exact")
    view.fallback_png = _png(still)  # what a static rendering shows instead (view_bundle)
    plt.close(still)
    return view


def _png(fig) -> str:
    """The figure as a base64 PNG, as notebooks store images."""
    import base64
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def view_bundle(view) -> dict:
    """The frontier view as a display bundle: the live widget, and its initial figure as a PNG that
    renderers without widgets (GitHub, an HTML export) show instead of an empty cell. Display it with
    ``IPython.display.display(plots.view_bundle(view), raw=True)``.

    Introduced in notebook 07.
    """
    return {**view._repr_mimebundle_(), "image/png": view.fallback_png}
