"""Tests for dpo_lab.frontier on synthetic runs that the tests create (no training)."""

import math

import numpy as np
import pytest
from frontier_support import point, sweep
from scipy import stats

from dpo_lab import frontier as fr


# --- Pareto fronts ---------------------------------------------------------------------------------
def naive_pareto(kl, reward):
    n = len(kl)
    return np.array(
        [
            not any(
                kl[j] <= kl[i] and reward[j] >= reward[i] and (kl[j] < kl[i] or reward[j] > reward[i]) for j in range(n)
            )
            for i in range(n)
        ]
    )


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
    pts = [
        point("sft", kl=0.0, reward=0.5),
        point("dpo", kl=1.0, reward=0.8),
        point("dpo", kl=2.0, reward=0.9),
        point("odpo", kl=0.5, reward=0.7),
        point("preferred_ft", kl=1.0, reward=0.6),
    ]
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
    hits = sum(
        lo <= 1.0 <= hi for lo, hi in (fr.mean_ci(rng.normal(1.0, 0.3, 3), [0.0] * 3, 0.9)[1:3] for _ in range(trials))
    )
    # binomial sd of the coverage is sqrt(0.9*0.1/1500) = 0.0077; 0.03 is about four of them
    assert abs(hits / trials - 0.9) < 0.03


def test_mean_ci_single_run_uses_its_standard_error():
    mean, lo, hi, basis = fr.mean_ci([0.7], [0.02], 0.9)
    assert (lo, hi) == pytest.approx((0.7 - 1.6449 * 0.02, 0.7 + 1.6449 * 0.02), abs=1e-5)
    assert basis == "z from SE of 1 run"


@pytest.mark.parametrize(
    "values,se,conf,match",
    [
        ([], [], 0.9, "non-empty"),
        ([1.0], [0.1, 0.2], 0.9, "equal-length"),
        ([1.0], [-0.1], 0.9, "se >= 0"),
        ([np.nan], [0.1], 0.9, "finite"),
        ([1.0], [0.1], 1.5, "confidence"),
    ],
)
def test_mean_ci_rejects_bad_input(values, se, conf, match):
    with pytest.raises(ValueError, match=match):
        fr.mean_ci(values, se, conf)


def test_summary_table_groups_runs_and_uses_their_last_evaluation():
    pts = [
        point("dpo", hyper=0.1, seed=0, step=10, reward=0.1),
        point("dpo", hyper=0.1, seed=0, step=20, reward=0.7),
        point("dpo", hyper=0.1, seed=1, step=20, reward=0.8),
        point("dpo", hyper=1.0, seed=0, step=20, reward=0.6, se=0.02),
        point("preferred_ft", seed=0, step=20, reward=0.55),
        point("preferred_ft", seed=1, step=20, reward=0.57),
        point("sft", kl=0.0, step=0, reward=0.5),
    ]
    rows = fr.summary_table(pts)
    assert [(r["method"], r["hyper"], r["runs"]) for r in rows] == [
        ("sft", None, 1),
        ("dpo", 0.1, 2),
        ("dpo", 1.0, 1),
        ("preferred_ft", None, 2),
    ]
    assert rows[1]["reward"] == pytest.approx(0.75)  # step-10 point of seed 0 not used
    assert rows[2]["reward_hi"] - rows[2]["reward"] == pytest.approx(1.6449 * 0.02, abs=1e-4)
    text = fr.format_table(rows)
    assert "beta=0.1" in text and "Preferred-FT" in text and "0.750" in text and "90% CI" in text


# --- comparing frontiers and the verdict -----------------------------------------------------------
def test_frontier_at_is_a_step_function():
    pts = [point(kl=1.0, reward=0.6, se=0.01), point(kl=2.0, reward=0.8, se=0.02), point(kl=3.0, reward=0.7)]
    best, se = fr.frontier_at(pts, [0.5, 1.0, 2.5, 10.0])
    np.testing.assert_allclose(best, [-np.inf, 0.6, 0.8, 0.8])
    np.testing.assert_allclose(se, [np.nan, 0.01, 0.02, 0.02])


def test_frontier_envelope_interpolates_between_hull_vertices():
    pts = [point(kl=0.0, reward=0.5), point(kl=1.0, reward=0.7), point(kl=1.5, reward=0.6)]  # (1.5, 0.6): under
    pts += [point(kl=2.0, reward=0.75, se=0.02), point(kl=3.0, reward=0.74)]  # (3, 0.74): past the best reward
    best, se = fr.frontier_envelope(pts, [0.5, 1.0, 1.5, 2.0, 5.0])
    np.testing.assert_allclose(best, [0.6, 0.7, 0.725, 0.75, 0.75])
    np.testing.assert_allclose(se, [math.sqrt(2) * 0.005, 0.01, math.sqrt(0.005**2 + 0.01**2), 0.02, 0.02])
    best, se = fr.frontier_envelope(pts[1:], [0.5])  # below the smallest KL: nothing reaches it
    assert best[0] == -np.inf and np.isnan(se[0])
    best, _ = fr.frontier_envelope([], [1.0])
    assert best[0] == -np.inf


@pytest.mark.parametrize("seed", range(5))
def test_frontier_envelope_is_the_concave_hull_above_the_step_function(seed):
    rng = np.random.default_rng(seed)
    pts = [point(kl=float(k), reward=float(r)) for k, r in zip(rng.uniform(0, 10, 12), rng.uniform(0.4, 0.9, 12))]
    q = np.linspace(0, 12, 241)
    env, _ = fr.frontier_envelope(pts, q)
    step, _ = fr.frontier_at(pts, q)
    covered = np.isfinite(step)
    assert np.all(env[covered] >= step[covered] - 1e-12) and np.array_equal(np.isfinite(env), covered)
    # by brute force: the best mixture of two points with lam KL_1 + (1 - lam) KL_2 <= k
    kl, r = np.array([p["kl_exact"] for p in pts]), np.array([p["reward"] for p in pts])
    lam = np.linspace(0, 1, 2001)[:, None, None]
    mix_kl, mix_r = lam * kl[:, None] + (1 - lam) * kl[None, :], lam * r[:, None] + (1 - lam) * r[None, :]
    for k, e in zip(q[covered][::8], env[covered][::8]):
        assert e == pytest.approx(np.max(np.where(mix_kl <= k, mix_r, -np.inf)), abs=2e-3)


def test_a_mixture_of_two_policies_earns_the_mixed_reward_at_no_more_than_the_mixed_kl():
    """The reason frontier_envelope may join two evaluated policies (joint convexity of KL)."""
    rng = np.random.default_rng(0)
    ref, r = rng.dirichlet(np.ones(50)), rng.normal(size=50)
    kl = lambda p: float(np.sum(p * np.log(p / ref)))  # noqa: E731
    for _ in range(20):
        p1, p2, lam = rng.dirichlet(np.ones(50) * 0.3), rng.dirichlet(np.ones(50) * 0.3), rng.uniform()
        mix = lam * p1 + (1 - lam) * p2
        assert mix @ r == pytest.approx(lam * (p1 @ r) + (1 - lam) * (p2 @ r))
        assert kl(mix) <= lam * kl(p1) + (1 - lam) * kl(p2) + 1e-12


def test_compare_frontiers_counts_below_tie_above():
    c = fr.compare_frontiers(sweep(), "dpo", "preferred_ft")
    assert c.dominates and c.n_points == 1 and c.n_below == 1
    assert "dominates Preferred-FT" in c.sentence() and "1 of 1 clearly below" in c.sentence()
    c = fr.compare_frontiers(sweep(pft_reward=0.9), "dpo", "preferred_ft")
    assert not c.dominates and c.n_above == 1 and "does not dominate" in c.sentence()
    # DPO's envelope at KL 1.1: 0.9 x 0.569 (KL 1) + 0.1 x 0.610 (KL 2) = 0.573, band 0.022
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
        fr.compare_frontiers(sweep(), "dpo", "best_of_n")  # a reference curve, not a competitor
    with pytest.raises(ValueError, match="no ppo points"):
        fr.compare_frontiers(sweep(), "dpo", "ppo")
    with pytest.raises(ValueError, match="no ipo points"):
        fr.compare_frontiers(sweep(), "dpo", "ipo")


def test_verdict_is_computed_from_the_data():
    said = fr.verdict(sweep(odpo_shift=0.1))
    assert said[0].startswith("Profile smoke") and len(said) == 2 + len(fr.VERDICT_BASELINES)
    assert "DPO's frontier dominates Preferred-FT" in said[1]
    assert "DPO's frontier dominates Unlikelihood" in said[2]
    assert "no PPO points" in said[3] and "no PPO-GT points" in said[4]
    assert said[5].startswith("ODPO adds to DPO") and "ODPO owns 100%" in said[5]
    assert "6 of 6 clearly above" in said[5]
    said = fr.verdict(sweep(odpo_shift=-0.1, ul_reward=0.95))
    assert "does not dominate Unlikelihood" in said[2]
    assert said[5].startswith("ODPO does not add to DPO") and "ODPO owns 0%" in said[5]
    said = fr.verdict([p for p in sweep() if p["method"] in ("sft", "dpo")])
    assert "no Preferred-FT points" in said[1] and "both are needed" in said[5]


def test_verdict_places_ppo_and_keeps_best_of_n_off_the_front():
    ppo = [dict(point("ppo", kl=k, reward=r, step=s), run="ppo-a", hyper=6.0)
           for k, r, s in ((2.0, 0.55, 10), (4.0, 0.6, 20))]  # fmt: skip
    gt = [dict(point("ppo_gt", kl=3.0, reward=0.99, step=10), run="ppo-b", hyper=6.0)]
    bon = [dict(point("best_of_n", kl=k, reward=0.999, step=0), run=f"bon-{k}", hyper=k) for k in (1.0, 4.0)]
    said = fr.verdict(sweep() + ppo + gt + bon)
    assert "DPO's frontier dominates PPO (" in said[3]
    assert "DPO's frontier does not dominate PPO-GT" in said[4]
    share = fr.pareto_share(sweep() + ppo + gt + bon)
    assert "best_of_n" not in share and share["ppo_gt"] > 0


def test_hacking_onset_finds_the_lowest_kl_repetitive_point():
    pts = [
        dict(point("sft", kl=0.0, step=0), distinct1=0.40),
        dict(point("dpo", kl=2.0, step=10), distinct1=0.39),
        dict(point("dpo", kl=6.0, step=20), distinct1=0.30),
        dict(point("odpo", kl=4.0, step=10), distinct1=0.35),
        dict(point("preferred_ft", kl=1.0), distinct1=0.41),
    ]
    assert fr.hacking_onset(pts)["kl_exact"] == 4.0  # 0.35 < 0.9 * 0.40 = 0.36
    assert fr.hacking_onset(pts, drop=0.2)["kl_exact"] == 6.0
    assert fr.hacking_onset(pts, drop=0.5) is None
    assert fr.hacking_onset(pts, kl="logratio")["kl_logratio"] == 4.1
    with pytest.raises(ValueError, match="drop"):
        fr.hacking_onset(pts, drop=1.5)
    with pytest.raises(ValueError, match="SFT reference"):
        fr.hacking_onset(pts[1:])


def test_hacking_onset_counts_trained_policies_only():
    sft = {**point("sft", kl=0.0, step=0, hyper=None), "distinct1": 0.40}
    bon = {**point("best_of_n", kl=1.8, step=0, hyper=16), "distinct1": 0.30}  # plainer, but nothing learned
    ppo = [{**point("ppo", kl=k, step=s, hyper=12.0), "distinct1": d} for k, s, d in ((3, 80, 0.39), (9, 160, 0.3))]
    assert fr.hacking_onset([sft, bon]) is None
    assert fr.hacking_onset([sft, bon, *ppo])["method"] == "ppo"


def test_hacking_onset_ignores_a_dip_the_run_recovers_from():
    sft = dict(point("sft", kl=0.0, step=0), distinct1=0.40)
    dip = [
        dict(point("dpo", kl=k, step=s), distinct1=d)
        for k, s, d in [(3.0, 25, 0.30), (2.5, 50, 0.39), (5.0, 75, 0.28), (6.0, 100, 0.38)]
    ]
    assert fr.hacking_onset([sft, *dip]) is None  # both falls recovered
    # the same run, but from step 75 on it keeps repeating: the onset is step 75, not the earlier dip
    stuck = [*dip[:3], dict(dip[3], distinct1=0.25)]
    assert fr.hacking_onset([sft, *stuck])["step"] == 75
    # the order the points come in does not matter; the lowest KL over runs wins
    other = [dict(point("odpo", kl=k, step=s), distinct1=0.2) for k, s in [(8.0, 50), (4.0, 25)]]
    onset = fr.hacking_onset([*reversed(stuck), *other, sft])
    assert (onset["method"], onset["kl_exact"]) == ("odpo", 4.0)


# --- distance to a known optimum -------------------------------------------------------------------
def exact(p, kl, reward, best):
    """`p` with exact quantities: exact KL and reward, and R*(KL) = `best`."""
    return dict(p, enum_kl=kl, enum_reward=reward, reward=reward, enum_frontier_gap=reward - best)


def test_deficit_table_reads_each_run_against_the_optimum():
    pts = [
        exact(point("sft", kl=0.0, step=0, hyper=None), 0.0, 0.2, 0.2),
        exact(point("dpo", step=10, hyper=1.0, run="a"), 0.5, 0.6, 0.7),
        exact(point("dpo", step=20, hyper=1.0, run="a"), 1.0, 0.9, 1.2),
        exact(point("preferred_ft", step=20, run="b", seed=1), 0.3, 0.3, 0.6),
    ]
    rows = fr.deficit_table(pts)
    assert [r["label"] for r in rows] == ["DPO beta=1", "Preferred-FT"]  # METHODS order, no SFT row
    dpo, pft = rows
    assert (dpo["step"], dpo["kl"], dpo["reward"]) == (20, 1.0, 0.9)
    assert dpo["deficit"] == pytest.approx(0.3) and dpo["best_deficit"] == pytest.approx(0.1)
    assert dpo["best_kl"] == 0.5 and dpo["gain_share"] == pytest.approx(0.7 / 1.0)  # (0.9-0.2)/(1.2-0.2)
    assert pft["seed"] == 1 and pft["gain_share"] == pytest.approx(0.1 / 0.4)
    text = fr.format_deficits(rows)
    assert text.splitlines()[0].startswith("run") and "70%" in text and "0.100 (0.500)" in text
    assert math.isnan(fr.deficit_table(pts[1:])[0]["gain_share"])  # no SFT reward to count gains from
    with pytest.raises(ValueError, match="run x.*exact quantities"):
        fr.deficit_table([point(run="x")])
