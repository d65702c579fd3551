"""Tests for dpo_lab.plots: the figures and the widget, drawn headless from synthetic points and runs."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from frontier_support import make_run, point, sweep

from dpo_lab import frontier as fr
from dpo_lab import plots, results


# --- figures and the widget --------------------------------------------------------------------------
def test_plot_frontier_marks_the_front_and_names_the_profile():
    pts = sweep()
    fig = plots.plot_frontier(pts, log_kl=True)
    ax = fig.axes[0]
    assert "profile smoke" in ax.get_title()
    assert ax.get_xscale() == "symlog"
    n_front = int(
        fr.pareto_mask(
            *[results.column([p for p in pts if p["method"] != "sft"], k) for k in ("kl_exact", "reward")]
        ).sum()
    )

    def black_edged(c):
        e = c.get_edgecolors()
        return len(e) > 0 and np.all(e[:, :3] == 0) and np.all(e[:, 3] > 0)  # "none" is empty or alpha 0

    bordered = [c for c in ax.collections if black_edged(c)]
    assert len(bordered) == 1 and len(bordered[0].get_offsets()) == n_front
    labels = ax.get_legend_handles_labels()[1]
    assert "DPO" in labels and any(label.startswith("SFT (pi_ref)") for label in labels)
    plt.close(fig)
    with pytest.raises(ValueError, match="exactly one profile"):
        plots.plot_frontier(pts + [point(profile="cpu")])


def test_frontier_view_runs_headless_and_follows_its_controls(capsys):
    view = plots.frontier_view(sweep(odpo_shift=0.1))
    assert view.result["share"]["odpo"] == pytest.approx(1.0)
    assert "Share of Pareto points" in capsys.readouterr().out
    controls = {c.description: c for c in view.children[:-1]}
    controls["methods"].value = ("dpo", "preferred_ft")
    assert set(view.result["share"]) == {"dpo", "preferred_ft"}
    controls["KL"].value = "logratio"
    assert view.result["table"][0]["kl"] == pytest.approx(0.1)  # the SFT row: log-ratio KL = exact + 0.1
    controls["methods"].value = ()
    assert view.result is None
    assert "No evaluation points" in capsys.readouterr().out
    plt.close("all")
    with pytest.raises(ValueError, match="no evaluation points"):
        plots.frontier_view([point("sft", kl=0.0)])


def test_plot_hacking_draws_three_panels_with_the_sft_level():
    pts = [dict(p, second_reward=0.5, distinct1=0.4, eos_rate=0.2) for p in sweep()]
    fig = plots.plot_hacking(pts, log_kl=True)
    assert len(fig.axes) == 3 and "profile smoke" in fig._suptitle.get_text()
    for ax in fig.axes:
        assert ax.get_xscale() == "symlog"
        assert len(ax.lines) == 1  # the dashed pi_SFT level
        assert sum(len(c.get_offsets()) for c in ax.collections) == len(pts) - 1
    plt.close(fig)


def test_plot_training_curves_smooths_each_quantity(tmp_path):
    curve = [(s, 0.5, 1.0) for s in range(1, 11)]
    made = [make_run(tmp_path, "dpo", 0.1, 0, curve), make_run(tmp_path, "odpo", 0.1, 0, curve)]
    fig = plots.plot_training_curves(made, window=3)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == list(plots.TRAIN_CURVE_KEYS)
    line = visible[0].lines[0]
    np.testing.assert_allclose(line.get_xdata(), range(3, 11))  # a running mean of 3 starts at step 3
    np.testing.assert_allclose(line.get_ydata(), [0.5 + (s - 1) / 100 for s in range(3, 11)])
    assert "profile smoke" in fig._suptitle.get_text() and "3 steps" in fig._suptitle.get_text()
    plt.close(fig)
    with pytest.raises(ValueError, match="window"):
        plots.plot_training_curves(made, window=0)
    with pytest.raises(ValueError, match="at least one"):
        plots.plot_training_curves([])
    other = make_run(tmp_path, "dpo", 1.0, 0, curve, profile="cpu")
    with pytest.raises(ValueError, match="one profile"):
        plots.plot_training_curves(made + [other])
    broken = make_run(tmp_path, "ipo", 0.1, 0, curve, train_records=False)
    broken.log({"split": "train", "step": 11, "loss": 0.1})
    with pytest.raises(ValueError, match="metrics.jsonl.*missing"):
        plots.plot_training_curves([broken], keys=("loss", "rewards/margins"), window=1)


def test_plot_frontier_draws_a_known_optimum_under_exact_points():
    pts = [dict(p, enum_kl=p["kl_exact"], enum_reward=p["reward"]) for p in sweep()]
    fig = plots.plot_frontier(results.enumerated(pts), kl="enumerated", optimum=([0.0, 5.0, 1.0], [0.5, 1.0, 0.8]))
    ax = fig.axes[0]
    [curve] = [line for line in ax.get_lines() if line.get_label() == "exact optimum (Eq. 4)"]
    assert list(curve.get_xdata()) == [0.0, 1.0, 5.0]  # drawn in KL order
    assert "enumerated" in ax.get_xlabel() and "enumerated" in ax.get_ylabel()
    assert "samples" in plots.plot_frontier(pts).axes[0].get_ylabel()  # sampled points say so
    plt.close("all")
    with pytest.raises(ValueError, match="optimum"):
        plots.plot_frontier(pts, optimum=([0.0, 1.0], [0.5]))


def test_best_of_n_is_a_dashed_curve_off_the_pareto_front():
    bon = [point("best_of_n", kl=k, reward=0.9, step=0, hyper=n, run=f"bon-{n}") for n, k in ((1, 0.0), (4, 0.64))]
    fig = plots.plot_frontier(sweep() + bon)
    ax = fig.axes[0]
    [curve] = [line for line in ax.get_lines() if line.get_label().startswith("Best-of-N, N = 1, 4")]
    assert list(curve.get_xdata()) == [0.0, 0.64] and curve.get_linestyle() == "--"
    front = [line.get_label() for line in ax.get_lines() if line.get_label().startswith("Pareto front")]
    without = plots.plot_frontier(sweep())
    assert front == [line.get_label() for line in without.axes[0].get_lines() if line.get_label().startswith("Pareto")]
    plt.close(fig)
    plt.close(without)


def test_plot_ppo_training_draws_one_point_per_rollout_and_the_target(tmp_path):
    from dpo_lab import runs

    run = runs.open_run(
        "ppo",
        {"tag": {"method": "ppo", "seed": 0, "profile": "smoke", "target_kl": 6.0}, "settings": {"batch_size": 2},
         "ppo": {"batch_size": 4, "ppo_epochs": 2, "target_kl": 6.0}},
        tmp_path,
    )  # fmt: skip
    for step in range(1, 13):  # 3 rollouts of 2 epochs x 2 minibatches
        rollout = (step - 1) // 4
        run.log({"split": "train", "step": step, **{k: float(rollout) for k in plots.PPO_CURVE_KEYS}})
    fig = plots.plot_ppo_training([run])
    kl_panel = fig.axes[0]
    assert kl_panel.get_title() == "objective/kl"
    assert list(kl_panel.get_lines()[0].get_ydata()) == [0.0, 1.0, 2.0]
    assert [line.get_ydata()[0] for line in kl_panel.get_lines()[1:]] == [6.0]  # the target, dotted
    plt.close(fig)
    with pytest.raises(ValueError, match="PPO run"):
        plots.plot_ppo_training([make_run(tmp_path, "dpo", 0.1, 0, [(10, 0.5, 1.0)])])


def test_a_log_kl_axis_labels_its_ticks_with_short_numbers():
    fig = plots.plot_frontier(sweep(), log_kl=True)
    fig.canvas.draw()
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert labels and all(len(label.replace("\u2212", "-")) <= 6 for label in labels), labels
    plt.close(fig)


def test_the_frontier_view_carries_a_still_figure_for_renderers_without_widgets():
    import base64

    view = plots.frontier_view(sweep())
    bundle = plots.view_bundle(view)
    assert "application/vnd.jupyter.widget-view+json" in bundle  # live: the widget
    assert base64.b64decode(bundle["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"  # static: a PNG of the frontier
    plt.close("all")
