"""The exact task as a dpo_lab.task.Task: the sweep trains on it with the IMDb task's machinery, and every
evaluation carries the exact quantities (tiny sizes, a temporary results folder; seconds)."""

import numpy as np
import pytest
from exact_support import one_thread  # noqa: F401 - autouse fixture: one torch thread

from dpo_lab import bandits, config, evaluation, results, sweep
from dpo_lab.exact import ExactTask, enumerate_responses
from dpo_lab.task import PAIR_KEYS, load_task

TINY = config.get_profile("smoke").replace(
    exact_ref_steps=30,
    exact_pairs=300,
    exact_pref_steps=4,
    exact_pref_batch_size=8,
    exact_eval_every=2,
    exact_eval_samples=3,
    dpo_betas=(0.1,),
    unlikelihood_alphas=(0.5,),
    seeds=(0,),
)


@pytest.fixture
def task():
    return ExactTask(TINY)


def test_the_registry_builds_the_exact_task_at_its_own_sizes():
    t = load_task("exact", TINY)
    assert isinstance(t, ExactTask) and t.profile.name == TINY.name
    assert (t.profile.pref_steps, t.profile.pref_batch_size, t.profile.eval_every) == (4, 8, 2)
    assert t.profile.max_new_tokens == TINY.exact_max_len == t.space.max_len
    assert t.train_prompts() == t.test_prompts() == [f"{x} " for x in t.space.prompts]  # the separator: see below


def test_pairs_are_task_pairs_and_the_scorers_read_texts(task):
    pairs = task.preference_pairs(progress=False)
    assert len(pairs) == TINY.exact_pairs and all(set(PAIR_KEYS) <= set(p) for p in pairs)
    texts = ["the film was great great", "the film was bad", "the film was"]
    np.testing.assert_allclose(task.gold_reward()(texts), task.space.score(texts))
    assert task.gold_reward()(texts)[0] > 0 > task.gold_reward()(texts)[1]
    np.testing.assert_array_equal(task.second_scorer()(texts), [1.0, 0.0, 0.5])
    # polarity does not pay for repetition; r* does (the gameable part)
    assert task.second_scorer()(["the film was great great great"])[0] == task.second_scorer()(texts[:1])[0]


def test_the_engine_can_produce_exactly_the_enumerated_responses(task):
    ref = task.reference(progress=False)
    assert len(enumerate_responses(len(task.space.words), task.profile.max_new_tokens)) == task.space.n_responses
    np.testing.assert_allclose(task.ref_probs().sum(axis=1), 1.0, atol=1e-12)
    assert task.exact_evaluation(ref.model)["eval/enum_kl"] == pytest.approx(0.0, abs=1e-9)


def test_sweep_runs_on_the_exact_task_and_no_point_beats_the_exact_frontier(task):
    ctx = sweep.context(task=task, progress=False)
    assert ctx.task == "exact" and ctx.profile is task.profile
    runs = [sweep.evaluate_sft(ctx).path]
    for spec in (sweep.RunSpec("dpo", 0.1, 0), sweep.RunSpec("unlikelihood", 0.5, 0)):
        run = sweep.train_run(spec, ctx, progress=False)
        assert run.config["tag"]["task"] == "exact"
        runs.append(run.path)
    points = results.load_points([r for r in evaluation.frontier_runs(task="exact") if r.path in runs])
    assert results.task_of(points) == "exact" and len(points) == 1 + 2 * 2
    for p in points:  # theorem (F): the exact frontier bounds every policy
        assert p["enum_frontier_gap"] <= 1e-9 and p["enum_reward"] <= p["enum_frontier_reward"] + 1e-9
    sft = next(p for p in points if p["method"] == "sft")
    assert sft["enum_kl"] == pytest.approx(0.0, abs=1e-9)


def test_tasks_of_one_experiment_share_pi_ref_and_pairs_and_variants_get_their_own(task):
    again = ExactTask(TINY)
    assert again.ref_probs() is task.ref_probs() and not task.ref_probs().flags.writeable
    assert again.preference_pairs(progress=False) is task.preference_pairs(progress=False)  # sampled once
    ordered = ExactTask(TINY.replace(exact_labels="order", exact_offset="log"))
    pairs = ordered.preference_pairs(progress=False)
    assert pairs is not task.preference_pairs(progress=False)
    assert all(p["score_chosen"] > p["score_rejected"] for p in pairs)
    np.testing.assert_allclose(
        [p["offset"] for p in pairs], [np.log(p["score_chosen"] - p["score_rejected"]) for p in pairs]
    )
    assert ExactTask(TINY.replace(exact_lr_schedule="constant")).profile.pref_lr_schedule == "constant"
    assert task.profile.pref_lr_schedule == "cosine"


def test_best_of_n_is_evaluated_exactly_and_stays_under_the_frontier(task):
    space = task.space
    index = {tuple(y): k for k, y in enumerate(space.responses.ids)}
    prompt_of = {tuple(x): i for i, x in enumerate(space.prompt_id_lists())}

    def r_star(xs, ys):
        return [space.reward[prompt_of[tuple(x)], index[tuple(y)]] for x, y in zip(xs, ys)]

    one = task.best_of_n_evaluation(1, r_star)
    assert one["eval/enum_kl"] == pytest.approx(0.0, abs=1e-12)  # the best of one draw is pi_ref
    four = task.best_of_n_evaluation(4, r_star)
    assert 0 < four["eval/enum_kl"] <= bandits.best_of_n_kl_bound(4) + 1e-12  # ties (r* is whole numbers): below
    assert four["eval/enum_reward"] > one["eval/enum_reward"] and four["eval/enum_frontier_gap"] <= 1e-9
    fresh = task.fresh_pairs(50)
    assert len(fresh) == 50 and fresh != task.preference_pairs()[:50]  # drawn with another seed


def test_the_evaluator_scores_every_response_as_r_star_does(task):
    """The evaluator scores prompt text + decoded response: that must be r*(x, y) for every response (the
    word-level tokenizer decodes without a leading space; the prompts carry the separator)."""
    tok, space = task.reference(progress=False).tokenizer, task.space
    texts = [
        x + y
        for x in task.test_prompts()
        for y in tok.batch_decode([list(r[:-1]) if r[-1] == space.eos_id else list(r) for r in space.responses.ids])
    ]
    scores = task.gold_reward()(texts).reshape(space.n_prompts, space.n_responses)
    np.testing.assert_array_equal(scores, space.reward)
    assert task.prompt_ids(task.test_prompts(), tok) == space.prompt_id_lists()


def test_two_worker_processes_train_the_rlhf_baselines_with_the_rest(task):
    """The pool path of workers.run_jobs: preference runs start in the workers while this process trains
    the reward model and evaluates Best-of-N; PPO follows in the workers once its reward model exists."""
    from dpo_lab import workers

    specs = [sweep.RunSpec("dpo", 1.0, 0), sweep.RunSpec("ppo", 1.0, 0), sweep.RunSpec("ppo_gt", 1.0, 0),
             sweep.RunSpec("best_of_n", 4.0, 0)]  # fmt: skip
    out = workers.run_jobs([workers.Job(s) for s in specs], task.profile, workers=2, progress=False, task="exact")
    assert not out["failed"] and {job.spec for job in out["runs"]} == set(specs)
    assert {run.kind for run in out["runs"].values()} == {"pref", "ppo", "best_of_n"}
    points = results.load_points(list(out["runs"].values()))
    assert all(p["enum_frontier_gap"] <= 1e-9 for p in points)
