"""Tests for dpo_lab.frontier on synthetic runs that the tests create (no training)."""
import itertools
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy import stats  # noqa: E402

from dpo_lab import frontier as fr  # noqa: E402
from dpo_lab import runs  # noqa: E402

EOS = 0


def point(method="dpo", kl=1.0, reward=0.5, se=0.01, step=10, run=None, hyper=0.1, seed=0, profile="smoke"):
    """A point as load_points makes it (the fields the analysis functions read)."""
    hyper_name = fr.METHODS[method].hyper_name
    return {"run": run or f"{method}-{hyper}-{seed}", "method": method, "hyper_name": hyper_name,
            "hyper": hyper if hyper_name else math.nan, "seed": seed, "profile": profile, "step": step,
            "reward": reward, "reward_se": se, "kl_exact": kl, "kl_exact_se": 0.05,
            "kl_logratio": kl + 0.1, "kl_logratio_se": 0.2}


def record(step, reward, kl, n=8):
    """A valid evaluation record with mean reward `reward` and exact KL `kl`."""
    rewards = reward + np.linspace(-0.05, 0.05, n)
    return fr.evaluation_record(
        step, rewards, rewards[::-1], {"kl_logratio": kl + 0.1, "kl_logratio_se": 0.2, "kl_exact": kl,
                                       "kl_exact_se": 0.05},
        ["a great film"] * n, [[5, 6, EOS]] * (n // 2) + [[5, 6, 7, 8]] * (n - n // 2), EOS)


def make_run(root, method, hyper, seed, curve, profile="smoke", train_records=True, finish=True):
    """A stored run of `method` whose evaluations follow `curve` = [(step, reward, kl), ...]."""
    tag = {"method": method, "seed": seed, "profile": profile}
    if fr.METHODS[method].hyper_name:
        tag[fr.METHODS[method].hyper_name] = hyper
    kind = "sft_eval" if method == "sft" else "pref"
    run = runs.open_run(kind, {"tag": tag, "trainer": "test"}, root)
    for step, reward, kl in curve:
        if train_records:
            run.log({"split": "train", "step": step, **{k: 0.5 + step / 100 for k in fr.TRAIN_CURVE_KEYS}})
        run.log(record(step, reward, kl))
    if finish:
        run.finish({"steps": curve[-1][0]})
    return run


# --- statistics of one evaluation ----------------------------------------------------------------
def test_mean_and_se_matches_definition():
    x = np.array([1.0, 2.0, 4.0, 7.0])
    mean, se = fr.mean_and_se(x)
    assert mean == pytest.approx(3.5)
    assert se == pytest.approx(np.std(x, ddof=1) / 2)


@pytest.mark.parametrize("bad", [[1.0], [], [[1.0, 2.0]], [1.0, float("nan")]])
def test_mean_and_se_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="rewards"):
        fr.mean_and_se(bad, "rewards")


def test_words_ignore_case_and_punctuation():
    assert fr.words("A GREAT film!<br /> Don't") == ["a", "great", "film", "br", "don't"]


def test_distinct_n_counts_pooled_ngrams():
    assert fr.distinct_n(["a great a great"], 1) == pytest.approx(2 / 4)
    assert fr.distinct_n(["a great a great"], 2) == pytest.approx(2 / 3)
    # pooled over texts: the same response to two prompts halves distinct-1
    assert fr.distinct_n(["one two", "one two"], 1) == pytest.approx(0.5)
    assert fr.distinct_n(["one two", "three four"], 1) == 1.0
    assert fr.distinct_n(["", "word"], 2) == 0.0


@pytest.mark.parametrize("texts,n,match", [("a text", 1, "texts"), ([], 1, "texts"), (["a"], 0, "n"),
                                           (["a"], 1.5, "n"), (["a", 3], 1, r"texts\[1\]")])
def test_distinct_n_rejects_bad_input(texts, n, match):
    with pytest.raises(ValueError, match=match):
        fr.distinct_n(texts, n)


def test_lengths_and_eos_rate():
    ids = [[5, 6, EOS, 7], [1, 2, 3], [EOS]]
    np.testing.assert_array_equal(fr.response_lengths(ids, EOS), [2, 3, 0])
    assert fr.eos_rate(ids, EOS) == pytest.approx(2 / 3)


@pytest.mark.parametrize("bad", [[], "abc", [[1, 2], "xy"], [[1.5]]])
def test_lengths_and_eos_rate_reject_bad_ids(bad):
    with pytest.raises(ValueError, match="response_ids"):
        fr.response_lengths(bad, EOS)
    with pytest.raises(ValueError, match="response_ids"):
        fr.eos_rate(bad, EOS)


def test_evaluation_record_has_every_key_and_right_values():
    rec = record(40, 0.6, 2.0)
    assert set(rec) == set(fr.EVAL_KEYS) | {"step"}
    assert rec["step"] == 40
    assert rec["eval/reward"] == pytest.approx(0.6)
    assert rec["eval/kl_exact"] == 2.0
    assert rec["eval/length"] == pytest.approx((4 * 2 + 4 * 4) / 8)
    assert rec["eval/eos_rate"] == 0.5
    assert rec["eval/distinct1"] == pytest.approx(3 / 24)
    assert rec["eval/n_samples"] == 8


def test_evaluation_record_rejects_bad_input():
    kl = {"kl_logratio": 1.0, "kl_logratio_se": 0.1, "kl_exact": 1.0, "kl_exact_se": 0.1}
    good = dict(rewards=[0.1, 0.2], second_rewards=[0.3, 0.4], kl=kl, texts=["a", "b"],
                response_ids=[[1], [2]], eos_token_id=EOS)
    with pytest.raises(ValueError, match="step"):
        fr.evaluation_record(-1, **good)
    with pytest.raises(ValueError, match="texts"):
        fr.evaluation_record(0, **{**good, "texts": ["a"]})
    with pytest.raises(ValueError, match="second_rewards"):
        fr.evaluation_record(0, **{**good, "second_rewards": [0.3]})
    with pytest.raises(ValueError, match="kl: missing"):
        fr.evaluation_record(0, **{**good, "kl": {"kl_exact": 1.0}})
    with pytest.raises(ValueError, match="kl: non-finite"):
        fr.evaluation_record(0, **{**good, "kl": {**kl, "kl_exact": float("nan")}})


# --- loading and selecting points --------------------------------------------------------------------
def test_load_points_reads_every_evaluation(tmp_path):
    make_run(tmp_path, "dpo", 0.1, 0, [(10, 0.6, 1.0), (20, 0.7, 2.0)])
    make_run(tmp_path, "preferred_ft", None, 1, [(10, 0.55, 0.5)], finish=False)
    make_run(tmp_path, "sft", None, 0, [(0, 0.5, 0.0)])
    points = fr.load_points(fr.frontier_runs(tmp_path))
    assert len(points) == 4  # training records skipped, the unfinished run included
    dpo = sorted((p for p in points if p["method"] == "dpo"), key=lambda p: p["step"])
    assert [p["step"] for p in dpo] == [10, 20]
    assert dpo[1]["reward"] == pytest.approx(0.7) and dpo[1]["kl_exact"] == 2.0
    assert dpo[0]["hyper_name"] == "beta" and dpo[0]["hyper"] == 0.1 and dpo[0]["profile"] == "smoke"
    pft = next(p for p in points if p["method"] == "preferred_ft")
    assert pft["hyper_name"] is None and math.isnan(pft["hyper"]) and pft["seed"] == 1


def test_frontier_runs_are_the_tagged_runs_of_the_frontier_kinds(tmp_path):
    make_run(tmp_path, "dpo", 0.1, 0, [(10, 0.6, 1.0)])
    make_run(tmp_path, "sft", None, 0, [(0, 0.5, 0.0)])
    runs.open_run("pref", {"tag": {}, "trainer": "demo"}, tmp_path)  # an untagged demonstration run
    runs.open_run("sft", {"tag": {"method": "sft"}}, tmp_path)  # another kind: the SFT training run
    assert sorted(r.kind for r in fr.frontier_runs(tmp_path)) == ["pref", "sft_eval"]


def test_stored_runs_prefers_the_readers_runs_then_the_reference(tmp_path):
    own, ref = tmp_path / "own", tmp_path / "ref"
    make_run(ref, "dpo", 0.1, 0, [(10, 0.6, 1.0)], profile="cpu")
    found, said = fr.stored_runs(own, ref)
    assert len(found) == 1 and said.startswith("reference runs") and str(ref) in said
    make_run(own, "dpo", 0.1, 0, [(10, 0.6, 1.0)])
    found, said = fr.stored_runs(own, ref)
    assert len(found) == 1 and found[0].config["tag"]["profile"] == "smoke" and said.startswith("your runs")
    with pytest.raises(FileNotFoundError, match="notebook 05"):
        fr.stored_runs(tmp_path / "empty", tmp_path / "missing")
    assert fr.reference_dir().parts[-2:] == ("data", "runs")


def test_load_points_names_the_file_on_bad_runs(tmp_path):
    bad_method = runs.open_run("pref", {"tag": {"method": "ppo", "seed": 0, "profile": "smoke"}}, tmp_path / "a")
    with pytest.raises(ValueError, match="config.json.*method"):
        fr.load_points([bad_method])
    no_beta = runs.open_run("pref", {"tag": {"method": "dpo", "seed": 0, "profile": "smoke"}}, tmp_path / "b")
    with pytest.raises(ValueError, match=r"config.json.*\['beta'\]"):
        fr.load_points([no_beta])
    short = runs.open_run("pref", {"tag": {"method": "dpo", "beta": 0.1, "seed": 0, "profile": "smoke"}},
                          tmp_path / "c")
    short.log({"step": 5, "eval/reward": 0.5})
    with pytest.raises(ValueError, match="metrics.jsonl.*step 5"):
        fr.load_points([short])


def test_select_points_filters_methods_hyper_and_steps():
    pts = [point("dpo", hyper=0.1, step=10), point("dpo", hyper=1.0, step=30),
           point("preferred_ft", step=10), point("sft", kl=0.0, step=0)]
    assert len(fr.select_points(pts, methods=["dpo"])) == 2
    kept = fr.select_points(pts, hyper_range=(0.5, 2.0))
    assert [p["method"] for p in kept] == ["dpo", "preferred_ft", "sft"]  # no-hyper methods always pass
    kept = fr.select_points(pts, step_range=(20, 40))
    assert [p["method"] for p in kept] == ["dpo", "sft"]  # the SFT reference ignores the step range


@pytest.mark.parametrize("kwargs,match", [({"methods": ["ppo"]}, "methods"),
                                          ({"hyper_range": (2.0, 1.0)}, "hyper_range"),
                                          ({"step_range": (5,)}, "step_range")])
def test_select_points_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fr.select_points([point()], **kwargs)


def test_profile_of_refuses_mixed_profiles():
    assert fr.profile_of([point(profile="cpu")]) == "cpu"
    with pytest.raises(ValueError, match="exactly one profile"):
        fr.profile_of([point(profile="cpu"), point(profile="gpu")])
    with pytest.raises(ValueError, match="no points"):
        fr.profile_of([])


# --- Pareto fronts ---------------------------------------------------------------------------------
def naive_pareto(kl, reward):
    n = len(kl)
    return np.array([not any(kl[j] <= kl[i] and reward[j] >= reward[i] and (kl[j] < kl[i] or reward[j] > reward[i])
                             for j in range(n)) for i in range(n)])


def test_pareto_mask_small_example():
    kl = [0.5, 1.0, 1.0, 2.0, 3.0, 3.0]
    reward = [0.6, 0.7, 0.65, 0.6, 0.9, 0.9]
    np.testing.assert_array_equal(fr.pareto_mask(kl, reward), [True, True, False, False, True, True])


@pytest.mark.parametrize("seed", range(5))
def test_pareto_mask_matches_the_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    kl = np.round(rng.exponential(2.0, 60), 1)  # rounding makes many ties
    reward = np.round(rng.uniform(0, 1, 60), 1)
    np.testing.assert_array_equal(fr.pareto_mask(kl, reward), naive_pareto(kl, reward))


def test_pareto_mask_rejects_bad_input():
    with pytest.raises(ValueError, match="equal length"):
        fr.pareto_mask([1.0, 2.0], [0.5])
    with pytest.raises(ValueError, match="kl"):
        fr.pareto_mask([1.0, float("nan")], [0.5, 0.6])
    with pytest.raises(ValueError, match="reward"):
        fr.pareto_mask([1.0, 2.0], [0.5, float("inf")])


def test_pareto_share_excludes_the_reference():
    pts = [point("sft", kl=0.0, reward=0.5), point("dpo", kl=1.0, reward=0.8), point("dpo", kl=2.0, reward=0.9),
           point("odpo", kl=0.5, reward=0.7), point("preferred_ft", kl=1.0, reward=0.6)]
    share = fr.pareto_share(pts)
    assert share == pytest.approx({"dpo": 2 / 3, "odpo": 1 / 3, "preferred_ft": 0.0})
    with pytest.raises(ValueError, match="no evaluation points"):
        fr.pareto_share([point("sft", kl=0.0)])
    with pytest.raises(ValueError, match="kl"):
        fr.pareto_share(pts, kl="forward")


# --- confidence intervals and the table ------------------------------------------------------------
def test_mean_ci_is_the_t_interval_over_runs():
    v = np.array([0.6, 0.7, 0.65])
    mean, lo, hi, basis = fr.mean_ci(v, [0.01] * 3, 0.9)
    half = stats.t.ppf(0.95, 2) * v.std(ddof=1) / math.sqrt(3)
    assert (mean, lo, hi) == pytest.approx((0.65, 0.65 - half, 0.65 + half))
    assert basis == "t over 3 runs"


def test_mean_ci_covers_the_true_mean_90_percent_of_the_time():
    rng = np.random.default_rng(0)
    trials = 1500
    hits = sum(lo <= 1.0 <= hi for lo, hi in
               (fr.mean_ci(rng.normal(1.0, 0.3, 3), [0.0] * 3, 0.9)[1:3] for _ in range(trials)))
    # binomial sd of the coverage is sqrt(0.9*0.1/1500) = 0.0077; 0.03 is about four of them
    assert abs(hits / trials - 0.9) < 0.03


def test_mean_ci_single_run_uses_its_standard_error():
    mean, lo, hi, basis = fr.mean_ci([0.7], [0.02], 0.9)
    assert (lo, hi) == pytest.approx((0.7 - 1.6449 * 0.02, 0.7 + 1.6449 * 0.02), abs=1e-5)
    assert basis == "z from SE of 1 run"


@pytest.mark.parametrize("values,se,conf,match", [([], [], 0.9, "non-empty"), ([1.0], [0.1, 0.2], 0.9, "equal-length"),
                                                  ([1.0], [-0.1], 0.9, "se >= 0"), ([np.nan], [0.1], 0.9, "finite"),
                                                  ([1.0], [0.1], 1.5, "confidence")])
def test_mean_ci_rejects_bad_input(values, se, conf, match):
    with pytest.raises(ValueError, match=match):
        fr.mean_ci(values, se, conf)


def test_summary_table_groups_runs_and_uses_their_last_evaluation():
    pts = [point("dpo", hyper=0.1, seed=0, step=10, reward=0.1), point("dpo", hyper=0.1, seed=0, step=20, reward=0.7),
           point("dpo", hyper=0.1, seed=1, step=20, reward=0.8),
           point("dpo", hyper=1.0, seed=0, step=20, reward=0.6, se=0.02),
           point("preferred_ft", seed=0, step=20, reward=0.55), point("preferred_ft", seed=1, step=20, reward=0.57),
           point("sft", kl=0.0, step=0, reward=0.5)]
    rows = fr.summary_table(pts)
    assert [(r["method"], r["hyper"], r["runs"]) for r in rows] == [
        ("sft", None, 1), ("dpo", 0.1, 2), ("dpo", 1.0, 1), ("preferred_ft", None, 2)]
    assert rows[1]["reward"] == pytest.approx(0.75)  # step-10 point of seed 0 not used
    assert rows[2]["reward_hi"] - rows[2]["reward"] == pytest.approx(1.6449 * 0.02, abs=1e-4)
    text = fr.format_table(rows)
    assert "beta=0.1" in text and "Preferred-FT" in text and "0.750" in text and "90% CI" in text


def test_last_points_keeps_the_largest_step_per_run():
    pts = [point(run="a", step=10), point(run="a", step=30), point(run="b", step=5), point(run="a", step=20)]
    assert [(p["run"], p["step"]) for p in fr.last_points(pts)] == [("a", 30), ("b", 5)]


# --- comparing frontiers and the verdict -----------------------------------------------------------
def test_frontier_at_is_a_step_function():
    pts = [point(kl=1.0, reward=0.6, se=0.01), point(kl=2.0, reward=0.8, se=0.02), point(kl=3.0, reward=0.7)]
    best, se = fr.frontier_at(pts, [0.5, 1.0, 2.5, 10.0])
    np.testing.assert_allclose(best, [-np.inf, 0.6, 0.8, 0.8])
    np.testing.assert_allclose(se, [np.nan, 0.01, 0.02, 0.02])


def sweep(dpo_shift=0.0, odpo_shift=0.0, pft_reward=0.52, ul_reward=0.52):
    """Synthetic points of a whole sweep: DPO and ODPO climb with KL, the baselines stay near SFT."""
    pts = [point("sft", kl=0.0, reward=0.5, step=0, hyper=None)]
    for beta, step in itertools.product([0.1, 1.0], [10, 20, 30]):
        kl = step / (10 * beta)
        pts.append(point("dpo", kl=kl, reward=0.5 + 0.1 * math.log1p(kl) + dpo_shift, step=step, hyper=beta))
        pts.append(point("odpo", kl=kl, reward=0.5 + 0.1 * math.log1p(kl) + odpo_shift, step=step, hyper=beta))
    for step in (10, 20, 30):
        pts.append(point("preferred_ft", kl=1.0 + step / 100, reward=pft_reward, step=step))
        pts.append(point("unlikelihood", kl=1.0 + step / 50, reward=ul_reward, step=step, hyper=0.5))
    return pts


def test_compare_frontiers_counts_below_tie_above():
    c = fr.compare_frontiers(sweep(), "dpo", "preferred_ft")
    assert c.dominates and c.n_points == 1 and c.n_below == 1
    assert "dominates Preferred-FT" in c.sentence() and "1 of 1 clearly below" in c.sentence()
    c = fr.compare_frontiers(sweep(pft_reward=0.9), "dpo", "preferred_ft")
    assert not c.dominates and c.n_above == 1 and "does not dominate" in c.sentence()
    # DPO's best reward at KL <= 1.1 is 0.5 + 0.1*log(2) = 0.569; se 0.01 each -> band 0.023
    c = fr.compare_frontiers(sweep(pft_reward=0.575), "dpo", "preferred_ft")
    assert (c.n_tie, c.n_above, c.n_below) == (1, 0, 0) and "within noise" in c.sentence()


def test_compare_frontiers_without_sft_reference_reports_uncovered_points():
    pts = [p for p in sweep() if p["method"] != "sft"]
    pts.append(point("preferred_ft", kl=0.1, reward=0.52, step=5))  # below DPO's smallest KL (1.0)
    c = fr.compare_frontiers(pts, "dpo", "preferred_ft")
    assert c.n_uncovered == 1 and "never reached" in c.sentence()


def test_compare_frontiers_rejects_bad_methods():
    with pytest.raises(ValueError, match="better"):
        fr.compare_frontiers(sweep(), "sft", "dpo")
    with pytest.raises(ValueError, match="worse"):
        fr.compare_frontiers(sweep(), "dpo", "ppo")
    with pytest.raises(ValueError, match="no ipo points"):
        fr.compare_frontiers(sweep(), "dpo", "ipo")


def test_verdict_is_computed_from_the_data():
    said = fr.verdict(sweep(odpo_shift=0.1))
    assert said[0].startswith("Profile smoke")
    assert "DPO's frontier dominates Preferred-FT" in said[1]
    assert "DPO's frontier dominates Unlikelihood" in said[2]
    assert said[3].startswith("ODPO adds to DPO") and "ODPO owns 100%" in said[3]
    assert "6 of 6 clearly above" in said[3]
    said = fr.verdict(sweep(odpo_shift=-0.1, ul_reward=0.95))
    assert "does not dominate Unlikelihood" in said[2]
    assert said[3].startswith("ODPO does not add to DPO") and "ODPO owns 0%" in said[3]
    said = fr.verdict([p for p in sweep() if p["method"] in ("sft", "dpo")])
    assert "no Preferred-FT points" in said[1] and "both are needed" in said[3]


# --- figures and the widget --------------------------------------------------------------------------
def test_plot_frontier_marks_the_front_and_names_the_profile():
    pts = sweep()
    fig = fr.plot_frontier(pts, log_kl=True)
    ax = fig.axes[0]
    assert "profile smoke" in ax.get_title()
    assert ax.get_xscale() == "symlog"
    n_front = int(fr.pareto_mask(*[fr._column([p for p in pts if p["method"] != "sft"], k)
                                   for k in ("kl_exact", "reward")]).sum())
    def black_edged(c):
        e = c.get_edgecolors()
        return len(e) > 0 and np.all(e[:, :3] == 0) and np.all(e[:, 3] > 0)  # "none" is empty or alpha 0
    bordered = [c for c in ax.collections if black_edged(c)]
    assert len(bordered) == 1 and len(bordered[0].get_offsets()) == n_front
    labels = ax.get_legend_handles_labels()[1]
    assert "DPO" in labels and any(label.startswith("SFT (pi_ref)") for label in labels)
    plt.close(fig)
    with pytest.raises(ValueError, match="exactly one profile"):
        fr.plot_frontier(pts + [point(profile="cpu")])


def test_frontier_view_runs_headless_and_follows_its_controls(capsys):
    view = fr.frontier_view(sweep(odpo_shift=0.1))
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
        fr.frontier_view([point("sft", kl=0.0)])


def test_hacking_onset_finds_the_lowest_kl_repetitive_point():
    pts = [dict(point("sft", kl=0.0, step=0), distinct1=0.40),
           dict(point("dpo", kl=2.0, step=10), distinct1=0.39), dict(point("dpo", kl=6.0, step=20), distinct1=0.30),
           dict(point("odpo", kl=4.0, step=10), distinct1=0.35), dict(point("preferred_ft", kl=1.0), distinct1=0.41)]
    assert fr.hacking_onset(pts)["kl_exact"] == 4.0  # 0.35 < 0.9 * 0.40 = 0.36
    assert fr.hacking_onset(pts, drop=0.2)["kl_exact"] == 6.0
    assert fr.hacking_onset(pts, drop=0.5) is None
    assert fr.hacking_onset(pts, kl="logratio")["kl_logratio"] == 4.1
    with pytest.raises(ValueError, match="drop"):
        fr.hacking_onset(pts, drop=1.5)
    with pytest.raises(ValueError, match="SFT reference"):
        fr.hacking_onset(pts[1:])


def test_hacking_onset_ignores_a_dip_the_run_recovers_from():
    sft = dict(point("sft", kl=0.0, step=0), distinct1=0.40)
    dip = [dict(point("dpo", kl=k, step=s), distinct1=d)
           for k, s, d in [(3.0, 25, 0.30), (2.5, 50, 0.39), (5.0, 75, 0.28), (6.0, 100, 0.38)]]
    assert fr.hacking_onset([sft, *dip]) is None  # both falls recovered
    # the same run, but from step 75 on it keeps repeating: the onset is step 75, not the earlier dip
    stuck = [*dip[:3], dict(dip[3], distinct1=0.25)]
    assert fr.hacking_onset([sft, *stuck])["step"] == 75
    # the order the points come in does not matter; the lowest KL over runs wins
    other = [dict(point("odpo", kl=k, step=s), distinct1=0.2) for k, s in [(8.0, 50), (4.0, 25)]]
    onset = fr.hacking_onset([*reversed(stuck), *other, sft])
    assert (onset["method"], onset["kl_exact"]) == ("odpo", 4.0)


def test_plot_hacking_draws_three_panels_with_the_sft_level():
    pts = [dict(p, second_reward=0.5, distinct1=0.4, eos_rate=0.2) for p in sweep()]
    fig = fr.plot_hacking(pts, log_kl=True)
    assert len(fig.axes) == 3 and "profile smoke" in fig._suptitle.get_text()
    for ax in fig.axes:
        assert ax.get_xscale() == "symlog"
        assert len(ax.lines) == 1  # the dashed pi_SFT level
        assert sum(len(c.get_offsets()) for c in ax.collections) == len(pts) - 1
    plt.close(fig)


def test_run_label_reads_the_tag(tmp_path):
    assert fr.run_label(make_run(tmp_path, "unlikelihood", 0.5, 1, [(1, 0.5, 1.0)])) == "Unlikelihood alpha=0.5 seed 1"
    assert fr.run_label(make_run(tmp_path, "preferred_ft", None, 0, [(1, 0.5, 1.0)])) == "Preferred-FT seed 0"
    with pytest.raises(ValueError, match="config.json.*no frontier tag"):
        fr.run_label(runs.open_run("pref", {"tag": {}}, tmp_path))


def test_plot_training_curves_smooths_each_quantity(tmp_path):
    curve = [(s, 0.5, 1.0) for s in range(1, 11)]
    made = [make_run(tmp_path, "dpo", 0.1, 0, curve), make_run(tmp_path, "odpo", 0.1, 0, curve)]
    fig = fr.plot_training_curves(made, window=3)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == list(fr.TRAIN_CURVE_KEYS)
    line = visible[0].lines[0]
    np.testing.assert_allclose(line.get_xdata(), range(3, 11))  # a running mean of 3 starts at step 3
    np.testing.assert_allclose(line.get_ydata(), [0.5 + (s - 1) / 100 for s in range(3, 11)])
    assert "profile smoke" in fig._suptitle.get_text() and "3 steps" in fig._suptitle.get_text()
    plt.close(fig)
    with pytest.raises(ValueError, match="window"):
        fr.plot_training_curves(made, window=0)
    with pytest.raises(ValueError, match="at least one"):
        fr.plot_training_curves([])
    other = make_run(tmp_path, "dpo", 1.0, 0, curve, profile="cpu")
    with pytest.raises(ValueError, match="one profile"):
        fr.plot_training_curves(made + [other])
    broken = make_run(tmp_path, "ipo", 0.1, 0, curve, train_records=False)
    broken.log({"split": "train", "step": 11, "loss": 0.1})
    with pytest.raises(ValueError, match="metrics.jsonl.*missing"):
        fr.plot_training_curves([broken], keys=("loss", "rewards/margins"), window=1)
