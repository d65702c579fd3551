"""Tests for dpo_lab.task: the task interface, the registry, the scorer and the evaluator, with a tiny task
built here (a BPE and a GPT-2 of a few thousand weights; no hub, seconds)."""

from types import SimpleNamespace

import numpy as np
import pytest
from lm_support import one_thread  # noqa: F401 - autouse fixture: one torch thread
from sweep_support import TINY, WORDS, fake_pairs, length_score

from dpo_lab import evaluation, results, sweep, task
from dpo_lab.lm import gpt2_config, load_model, save_model
from dpo_lab.sentiment import IMDbTask, train_bpe
from dpo_lab.task import PAIR_KEYS, Evaluator, Scorer, SFTPolicy, Task, check_pairs, load_task


class TinyTask(Task):
    """A task of random words with a length reward and an 'exact' evaluation that counts its calls."""

    name = "tiny"

    def __init__(self, profile, folder):
        super().__init__(profile)
        self.folder, self.built, self.exact_calls = folder, 0, 0
        rng = np.random.default_rng(0)
        self.tokenizer = train_bpe([" ".join(rng.choice(WORDS, 12)) for _ in range(60)], vocab_size=300)

    def build_reference(self, progress=True):
        self.built += 1
        model = load_model(gpt2_config(self.tokenizer, **self.profile.model_sizes), seed=0)
        save_model(model, self.tokenizer, self.folder)
        return SFTPolicy(model, self.tokenizer, self.folder, SimpleNamespace(id="sft-tiny"), {})

    def train_prompts(self):
        return ["good film", "the plot"]

    def test_prompts(self):
        return ["an actor", "the story", "bad plot"]

    def prompt_ids(self, prompts, tokenizer):
        return [[tokenizer.eos_token_id] + tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]

    def preference_pairs(self, progress=True):
        return fake_pairs(self.reference(progress).tokenizer)

    def gold_reward(self):
        return Scorer("length", length_score)

    def second_scorer(self):
        return Scorer("g-count", lambda ts: np.array([min(1.0, t.count("g") / 3) for t in ts]))

    def exact_evaluation(self, policy):
        self.exact_calls += 1
        return {"eval/true_reward": 0.25, "eval/true_kl": 0.0}


def test_load_task_gives_the_registered_tasks():
    smoke = TINY.replace(name="smoke")
    imdb = load_task(profile=smoke)
    assert isinstance(imdb, IMDbTask) and imdb.name == evaluation.DEFAULT_TASK and imdb.profile == smoke
    assert imdb.exact_evaluation is None  # IMDb responses cannot be enumerated
    for name in task.TASKS:
        assert load_task(name, smoke).name == name
    with pytest.raises(ValueError, match="task: unknown 'nope'"):
        load_task("nope")


def test_a_task_must_implement_every_part():
    class Half(Task):
        name = "half"

        def train_prompts(self):
            return []

    with pytest.raises(TypeError, match="abstract"):
        Half(TINY)


def test_reference_is_built_once_per_task(tmp_path):
    t = TinyTask(TINY, tmp_path / "sft")
    assert t.reference() is t.reference() and t.built == 1


def test_check_pairs_names_the_pair_and_the_missing_keys():
    good = {k: [1] for k in PAIR_KEYS}
    check_pairs([good, good])
    with pytest.raises(ValueError, match="no preference pairs"):
        check_pairs([])
    with pytest.raises(ValueError, match=r"pairs\[1\]: lacks \['offset'\]"):
        check_pairs([good, {k: v for k, v in good.items() if k != "offset"}])


def test_scorer_refuses_a_single_string_and_non_strings():
    s = Scorer("len", lambda ts: [len(t) for t in ts])
    np.testing.assert_array_equal(s(["ab", "c"]), [2.0, 1.0])
    assert s([]).shape == (0,)
    with pytest.raises(ValueError, match="single string"):
        s("ab")
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        s(["ab", 3])


def test_the_sweep_runs_any_task_and_records_its_exact_quantities(tmp_path):
    t = TinyTask(TINY, tmp_path / "sft")
    ctx = sweep.context(task=t, progress=False)
    assert ctx.task == "tiny" and ctx.profile is TINY and ctx.ref is not ctx.sft.model
    assert ctx.evaluator.prompts == t.test_prompts() and ctx.evaluator.settings["exact"] is True
    run = sweep.train_run(sweep.RunSpec("dpo", 0.1, 0), ctx, progress=False)
    assert run.config["tag"]["task"] == "tiny"
    sft_run = sweep.evaluate_sft(ctx)
    points = results.load_points([run, sft_run])
    assert {p["task"] for p in points} == {"tiny"} and results.task_of(points) == "tiny"
    assert all(p["true_reward"] == 0.25 and p["true_kl"] == 0.0 for p in points)
    assert t.exact_calls == TINY.pref_steps + 1  # every evaluation, pi_SFT's included
    with pytest.raises(ValueError, match="differs from profile"):
        sweep.context(TINY.replace(name="other"), task=t, progress=False)
    with pytest.raises(ValueError, match="several workers"):
        sweep.run_sweep(TINY, workers=2, task=t, progress=False)


def test_evaluator_for_task_follows_the_profile(tmp_path):
    t = TinyTask(TINY.replace(eval_samples_per_prompt=3, max_new_tokens=5, seed=7), tmp_path / "sft")
    sft = t.reference()
    ev = Evaluator.for_task(t, sft.model, sft.tokenizer)
    assert (ev.num_samples, ev.max_new_tokens, ev.seed) == (3, 5, 7)
    assert ev.prompt_ids == t.prompt_ids(t.test_prompts(), sft.tokenizer)
    assert ev.gold.name == "length" and ev.second.name == "g-count"


def test_imdb_tags_name_no_task_so_old_run_ids_stay_valid():
    spec = sweep.RunSpec("dpo", 0.1, 0)
    assert "task" not in sweep.trainer_settings(spec, TINY)["run_tag"]
    assert sweep.trainer_settings(spec, TINY, "tiny")["run_tag"]["task"] == "tiny"
    with pytest.raises(ValueError, match="task"):
        sweep.trainer_settings(spec, TINY, "")


def test_sweep_command_line_names_the_tasks_and_profiles(capsys):
    with pytest.raises(SystemExit):
        sweep.main(["--task", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sweep.main(["--profile", "huge"])
    assert "invalid choice: 'huge'" in capsys.readouterr().err
