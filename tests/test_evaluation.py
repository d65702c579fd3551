"""Tests for dpo_lab.evaluation: the method registry, the evaluation record and its text statistics."""

import numpy as np
import pytest
from frontier_support import EOS, make_run, record

from dpo_lab import evaluation as ev
from dpo_lab import runs


# --- statistics of one evaluation ----------------------------------------------------------------
def test_mean_and_se_matches_definition():
    x = np.array([1.0, 2.0, 4.0, 7.0])
    mean, se = ev.mean_and_se(x)
    assert mean == pytest.approx(3.5)
    assert se == pytest.approx(np.std(x, ddof=1) / 2)


@pytest.mark.parametrize("bad", [[1.0], [], [[1.0, 2.0]], [1.0, float("nan")]])
def test_mean_and_se_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="rewards"):
        ev.mean_and_se(bad, "rewards")


def test_words_ignore_case_and_punctuation():
    assert ev.words("A GREAT film!<br /> Don't") == ["a", "great", "film", "br", "don't"]


def test_distinct_n_counts_pooled_ngrams():
    assert ev.distinct_n(["a great a great"], 1) == pytest.approx(2 / 4)
    assert ev.distinct_n(["a great a great"], 2) == pytest.approx(2 / 3)
    # pooled over texts: the same response to two prompts halves distinct-1
    assert ev.distinct_n(["one two", "one two"], 1) == pytest.approx(0.5)
    assert ev.distinct_n(["one two", "three four"], 1) == 1.0
    assert ev.distinct_n(["", "word"], 2) == 0.0


@pytest.mark.parametrize(
    "texts,n,match",
    [("a text", 1, "texts"), ([], 1, "texts"), (["a"], 0, "n"), (["a"], 1.5, "n"), (["a", 3], 1, r"texts\[1\]")],
)
def test_distinct_n_rejects_bad_input(texts, n, match):
    with pytest.raises(ValueError, match=match):
        ev.distinct_n(texts, n)


def test_lengths_and_eos_rate():
    ids = [[5, 6, EOS, 7], [1, 2, 3], [EOS]]
    np.testing.assert_array_equal(ev.response_lengths(ids, EOS), [2, 3, 0])
    assert ev.eos_rate(ids, EOS) == pytest.approx(2 / 3)


@pytest.mark.parametrize("bad", [[], "abc", [[1, 2], "xy"], [[1.5]]])
def test_lengths_and_eos_rate_reject_bad_ids(bad):
    with pytest.raises(ValueError, match="response_ids"):
        ev.response_lengths(bad, EOS)
    with pytest.raises(ValueError, match="response_ids"):
        ev.eos_rate(bad, EOS)


def test_evaluation_record_has_every_key_and_right_values():
    rec = record(40, 0.6, 2.0)
    assert set(rec) == set(ev.EVAL_KEYS) | {"step"}
    assert rec["step"] == 40
    assert rec["eval/reward"] == pytest.approx(0.6)
    assert rec["eval/kl_exact"] == 2.0
    assert rec["eval/length"] == pytest.approx((4 * 2 + 4 * 4) / 8)
    assert rec["eval/eos_rate"] == 0.5
    assert rec["eval/distinct1"] == pytest.approx(3 / 24)
    assert rec["eval/n_samples"] == 8


def test_evaluation_record_rejects_bad_input():
    kl = {"kl_logratio": 1.0, "kl_logratio_se": 0.1, "kl_exact": 1.0, "kl_exact_se": 0.1}
    good = dict(
        rewards=[0.1, 0.2],
        second_rewards=[0.3, 0.4],
        kl=kl,
        texts=["a", "b"],
        response_ids=[[1], [2]],
        eos_token_id=EOS,
    )
    with pytest.raises(ValueError, match="step"):
        ev.evaluation_record(-1, **good)
    with pytest.raises(ValueError, match="texts"):
        ev.evaluation_record(0, **{**good, "texts": ["a"]})
    with pytest.raises(ValueError, match="second_rewards"):
        ev.evaluation_record(0, **{**good, "second_rewards": [0.3]})
    with pytest.raises(ValueError, match="kl: missing"):
        ev.evaluation_record(0, **{**good, "kl": {"kl_exact": 1.0}})
    with pytest.raises(ValueError, match="kl: non-finite"):
        ev.evaluation_record(0, **{**good, "kl": {**kl, "kl_exact": float("nan")}})


def test_frontier_runs_are_the_tagged_runs_of_the_frontier_kinds(tmp_path):
    make_run(tmp_path, "dpo", 0.1, 0, [(10, 0.6, 1.0)])
    make_run(tmp_path, "sft", None, 0, [(0, 0.5, 0.0)])
    runs.open_run("pref", {"tag": {}, "trainer": "demo"}, tmp_path)  # an untagged demonstration run
    runs.open_run("sft", {"tag": {"method": "sft"}}, tmp_path)  # another kind: the SFT training run
    assert sorted(r.kind for r in ev.frontier_runs(tmp_path)) == ["pref", "sft_eval"]


def test_run_label_reads_the_tag(tmp_path):
    assert ev.run_label(make_run(tmp_path, "unlikelihood", 0.5, 1, [(1, 0.5, 1.0)])) == "Unlikelihood alpha=0.5 seed 1"
    assert ev.run_label(make_run(tmp_path, "preferred_ft", None, 0, [(1, 0.5, 1.0)])) == "Preferred-FT seed 0"
    with pytest.raises(ValueError, match="config.json.*no frontier tag"):
        ev.run_label(runs.open_run("pref", {"tag": {}}, tmp_path))


def _kl(value=1.0):
    return {"kl_logratio": value, "kl_logratio_se": 0.1, "kl_exact": value, "kl_exact_se": 0.05}


def test_evaluation_record_carries_a_tasks_exact_quantities():
    rec = ev.evaluation_record(
        3,
        [0.5, 0.7],
        [0.4, 0.6],
        _kl(),
        ["a", "b"],
        [[1, EOS], [2]],
        EOS,
        exact={"eval/enum_kl": 1.25, "eval/enum_reward/0": np.float64(0.5)},
    )
    assert rec["eval/enum_kl"] == 1.25 and rec["eval/enum_reward/0"] == 0.5
    assert set(rec) == {"step", *ev.EVAL_KEYS, "eval/enum_kl", "eval/enum_reward/0"}


@pytest.mark.parametrize(
    "exact, match",
    [
        ({"enum_kl": 1.0}, "start with 'eval/'"),
        ({"eval/reward": 1.0}, "differ from EVAL_KEYS"),
        ({"eval/enum_kl": float("inf")}, "non-finite"),
        ({"eval/enum_kl": True}, "non-numbers"),
        ({"eval/enum_kl": "1.0"}, "non-numbers"),
    ],
)
def test_evaluation_record_refuses_bad_exact_quantities(exact, match):
    with pytest.raises(ValueError, match=match):
        ev.evaluation_record(3, [0.5, 0.7], [0.4, 0.6], _kl(), ["a", "b"], [[1, EOS], [2]], EOS, exact=exact)


def test_describe_names_a_grid_cell_and_refuses_unknown_methods():
    assert ev.describe("dpo", 0.1, 0) == "DPO beta=0.1 seed 0"
    assert ev.describe("preferred_ft", None, 2) == "Preferred-FT seed 2"
    with pytest.raises(ValueError, match="method: need one of"):
        ev.describe("reinforce", 0.1, 0)


def test_frontier_runs_keep_one_task_unless_asked_for_all(tmp_path):
    make_run(tmp_path, "dpo", 0.1, 0, [(10, 0.6, 1.0)])
    make_run(tmp_path, "dpo", 0.1, 0, [(10, 0.6, 1.0)], extra_tag={"task": "exact"})
    imdb, exact = ev.frontier_runs(tmp_path), ev.frontier_runs(tmp_path, task="exact")
    assert len(imdb) == len(exact) == 1 and "task" not in imdb[0].config["tag"]  # untagged runs are IMDb runs
    assert exact[0].config["tag"]["task"] == "exact" and len(ev.frontier_runs(tmp_path, task=None)) == 2
