"""Tests for dpo_lab.results: stored runs to point tables, and selecting points (runs made here, no training)."""

import math

import pytest
from frontier_support import make_run, point

from dpo_lab import evaluation as ev
from dpo_lab import results, runs


# --- loading and selecting points --------------------------------------------------------------------
def test_load_points_reads_every_evaluation(tmp_path):
    make_run(tmp_path, "dpo", 0.1, 0, [(10, 0.6, 1.0), (20, 0.7, 2.0)])
    make_run(tmp_path, "preferred_ft", None, 1, [(10, 0.55, 0.5)], finish=False)
    make_run(tmp_path, "sft", None, 0, [(0, 0.5, 0.0)])
    points = results.load_points(ev.frontier_runs(tmp_path))
    assert len(points) == 4  # training records skipped, the unfinished run included
    dpo = sorted((p for p in points if p["method"] == "dpo"), key=lambda p: p["step"])
    assert [p["step"] for p in dpo] == [10, 20]
    assert dpo[1]["reward"] == pytest.approx(0.7) and dpo[1]["kl_exact"] == 2.0
    assert dpo[0]["hyper_name"] == "beta" and dpo[0]["hyper"] == 0.1 and dpo[0]["profile"] == "smoke"
    pft = next(p for p in points if p["method"] == "preferred_ft")
    assert pft["hyper_name"] is None and math.isnan(pft["hyper"]) and pft["seed"] == 1


def test_stored_runs_prefers_the_readers_runs_then_the_reference(tmp_path):
    own, ref = tmp_path / "own", tmp_path / "ref"
    make_run(ref, "dpo", 0.1, 0, [(10, 0.6, 1.0)], profile="cpu")
    found, said = results.stored_runs(own, ref)
    assert len(found) == 1 and said.startswith("reference runs") and str(ref) in said
    make_run(own, "dpo", 0.1, 0, [(10, 0.6, 1.0)])
    found, said = results.stored_runs(own, ref)
    assert len(found) == 1 and found[0].config["tag"]["profile"] == "smoke" and said.startswith("your runs")
    with pytest.raises(FileNotFoundError, match="notebook 06"):
        results.stored_runs(tmp_path / "empty", tmp_path / "missing")
    assert results.reference_dir().parts[-2:] == ("data", "runs")


def test_load_points_names_the_file_on_bad_runs(tmp_path):
    bad_method = runs.open_run("pref", {"tag": {"method": "reinforce", "seed": 0, "profile": "smoke"}}, tmp_path / "a")
    with pytest.raises(ValueError, match="config.json.*method"):
        results.load_points([bad_method])
    no_beta = runs.open_run("pref", {"tag": {"method": "dpo", "seed": 0, "profile": "smoke"}}, tmp_path / "b")
    with pytest.raises(ValueError, match=r"config.json.*\['beta'\]"):
        results.load_points([no_beta])
    short = runs.open_run(
        "pref", {"tag": {"method": "dpo", "beta": 0.1, "seed": 0, "profile": "smoke"}}, tmp_path / "c"
    )
    short.log({"step": 5, "eval/reward": 0.5})
    with pytest.raises(ValueError, match="metrics.jsonl.*step 5"):
        results.load_points([short])


def test_select_points_filters_methods_hyper_and_steps():
    pts = [
        point("dpo", hyper=0.1, step=10),
        point("dpo", hyper=1.0, step=30),
        point("preferred_ft", step=10),
        point("sft", kl=0.0, step=0),
    ]
    assert len(results.select_points(pts, methods=["dpo"])) == 2
    kept = results.select_points(pts, hyper_range=(0.5, 2.0))
    assert [p["method"] for p in kept] == ["dpo", "preferred_ft", "sft"]  # no-hyper methods always pass
    kept = results.select_points(pts, step_range=(20, 40))
    assert [p["method"] for p in kept] == ["dpo", "sft"]  # the SFT reference ignores the step range


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"methods": ["reinforce"]}, "methods"),
        ({"hyper_range": (2.0, 1.0)}, "hyper_range"),
        ({"step_range": (5,)}, "step_range"),
    ],
)
def test_select_points_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        results.select_points([point()], **kwargs)


def test_profile_of_refuses_mixed_profiles():
    assert results.profile_of([point(profile="cpu")]) == "cpu"
    with pytest.raises(ValueError, match="exactly one profile"):
        results.profile_of([point(profile="cpu"), point(profile="gpu")])
    with pytest.raises(ValueError, match="no points"):
        results.profile_of([])


def test_task_of_refuses_mixed_tasks_and_old_runs_are_imdb_runs(tmp_path):
    assert results.task_of([point(task="exact"), point(task="exact")]) == "exact"
    with pytest.raises(ValueError, match="exactly one task"):
        results.task_of([point(task="exact"), point()])
    # a run made before tasks existed names none in its tag: it is a run of the default task
    [old] = results.load_points([make_run(tmp_path, "dpo", 0.1, 0, [(10, 0.6, 1.0)])])
    assert old["task"] == ev.DEFAULT_TASK == "imdb"


def test_last_points_keeps_the_largest_step_per_run():
    pts = [point(run="a", step=10), point(run="a", step=30), point(run="b", step=5), point(run="a", step=20)]
    assert [(p["run"], p["step"]) for p in results.last_points(pts)] == [("a", 30), ("b", 5)]


# --- variants and exact measurement ------------------------------------------------------------------
def test_variant_label_names_the_changed_knobs_in_order():
    assert results.variant_label(None) == results.variant_label({}) == ""
    assert results.variant_label({"odpo_alpha": 0.5, "exact_pairs": 200}) == "exact_pairs=200, odpo_alpha=0.5"
    with pytest.raises(ValueError, match="variant"):
        results.variant_label(["exact_pairs", 200])


def test_load_points_keeps_variants_apart(tmp_path):
    make_run(tmp_path, "dpo", 0.1, 0, [(10, 0.6, 1.0)])
    fewer = make_run(tmp_path, "dpo", 0.1, 0, [(10, 0.4, 1.5)], extra_tag={"variant": {"exact_pairs": 200}})
    make_run(tmp_path, "sft", None, 0, [(0, 0.5, 0.0)])
    stored = ev.frontier_runs(tmp_path)
    standard = results.load_points(stored)
    assert len(standard) == 2 and {p["variant"] for p in standard} == {""}
    only = results.load_points(stored, variant="exact_pairs=200")
    assert {p["method"] for p in only} == {"dpo", "sft"} and [p["run"] for p in only if p["method"] == "dpo"] == [
        fewer.id
    ]
    assert len(results.load_points(stored, variant=None)) == 3
    assert results.load_points(stored, variant="exact_pairs=7") == [p for p in standard if p["method"] == "sft"]
    with pytest.raises(ValueError, match="variant"):
        results.load_points(stored, variant={"exact_pairs": 200})


def test_enumerated_points_replace_the_sampled_reward_and_keep_it():
    exact_point = point(kl=1.0, reward=0.5, se=0.02) | {"enum_kl": 0.9, "enum_reward": 0.55}
    [p] = results.enumerated([exact_point])
    assert (p["reward"], p["reward_se"], p["enum_kl_se"]) == (0.55, 0.0, 0.0)
    assert (p["sampled_reward"], p["sampled_reward_se"]) == (0.5, 0.02) and exact_point["reward"] == 0.5
    assert results.kl_column("enumerated") == "enum_kl" and results.column([p], "enum_kl")[0] == 0.9
    with pytest.raises(ValueError, match="no exact quantities"):
        results.enumerated([point()])


def test_stored_runs_look_for_the_task_asked_for(tmp_path):
    own, ref = tmp_path / "own", tmp_path / "ref"
    make_run(own, "dpo", 0.1, 0, [(10, 0.6, 1.0)], extra_tag={"task": "exact"})
    make_run(ref, "dpo", 0.1, 0, [(10, 0.6, 1.0)], profile="cpu")
    found, said = results.stored_runs(own, ref)
    assert said.startswith("reference runs") and "task" not in found[0].config["tag"]  # exact runs are not IMDb's
    found, said = results.stored_runs(own, ref, task="exact")
    assert said.startswith("your runs") and found[0].config["tag"]["task"] == "exact"
