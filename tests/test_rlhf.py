"""Tests for dpo_lab.rlhf: the sweep's reward model, PPO, PPO-GT and Best-of-N on the tiny experiment of
tests/sweep_support.py (a GPT-2 and BPE trained here; no hub, seconds)."""

import dataclasses

import numpy as np
import pytest
from lm_support import one_thread  # noqa: F401 - autouse fixture: one torch thread
from sweep_support import TINY

from dpo_lab import bandits, evaluation, results, rlhf, sweep
from dpo_lab.lm import ppo as ppo_pieces


def test_the_reward_model_holds_out_pairs_no_run_trains_on(tiny_context):
    held = rlhf.heldout_pairs(tiny_context)
    trained = {(tuple(p["chosen_ids"]), tuple(p["rejected_ids"])) for p in tiny_context.pairs}
    assert len(held) == TINY.rm_heldout
    assert not trained & {(tuple(p["chosen_ids"]), tuple(p["rejected_ids"])) for p in held}
    greedy = dataclasses.replace(tiny_context, profile=TINY.replace(rm_heldout=100))
    with pytest.raises(ValueError, match="rm_heldout"):
        rlhf.heldout_pairs(greedy)


def test_a_task_that_draws_fresh_pairs_supplies_the_held_out_set(tiny_context, monkeypatch):
    fresh = tiny_context.pairs[:2]
    monkeypatch.setattr(tiny_context.source, "fresh_pairs", lambda n: fresh, raising=False)
    assert rlhf.heldout_pairs(tiny_context) is fresh


def test_the_reward_model_is_trained_once_per_context_and_then_loaded(tiny_context):
    rm = rlhf.reward_model(tiny_context, progress=False)
    assert rm.run.finished and rm.run.config["tag"] == {"model": "reward_model", "task": "imdb", "profile": "smoke"}
    assert rlhf.reward_model(tiny_context) is rm  # the context keeps it
    again = rlhf.reward_model(dataclasses.replace(tiny_context, cache={}), progress=False)
    assert again.run.id == rm.run.id and again.result == rm.result  # a new context loads it from the store


def test_the_gold_reward_on_token_ids_is_the_evaluators_score_of_the_text(tiny_context):
    ev, tok = tiny_context.evaluator, tiny_context.sft.tokenizer
    gold = rlhf.gold_reward(tiny_context)
    responses = [tok(" good film", add_special_tokens=False)["input_ids"] + [tok.eos_token_id], []]
    got = gold.fn(ev.prompt_ids[:2], responses)
    assert np.allclose(got, ev.gold([ev.prompts[0] + " good film", ev.prompts[1]]))
    assert gold.name == "gold length"
    with pytest.raises(ValueError, match="prompt_ids"):
        gold.fn([[5, 6, 7]], [[1]])
    with pytest.raises(ValueError, match="method"):
        rlhf.reward_for("dpo", tiny_context)


def test_best_of_n_keeps_the_best_draw_and_reports_the_analytic_kl(tiny_context):
    ctx = tiny_context
    tag = {"method": "best_of_n_gt", "seed": 0, "profile": "smoke", "n": 4.0, "eval": ctx.evaluator.settings}
    run = rlhf.best_of_n_run(sweep.RunSpec("best_of_n_gt", 4.0, 0), ctx, tag, progress=False)
    [record] = [r for r in run.metrics() if r.get("split") == "eval"]
    draws = ctx.cache["draws"]
    best = draws.gold.reshape(-1, draws.m)[:, :4].max(axis=1)  # the gold reward selects: the best of 4, per slot
    assert record["eval/reward"] == pytest.approx(best.mean())
    assert record["eval/kl_exact"] == record["eval/kl_logratio"] == pytest.approx(bandits.best_of_n_kl_bound(4))
    assert record["eval/kl_exact_se"] == 0.0 and record["eval/bon_n"] == 4
    one = rlhf.best_of_n_run(sweep.RunSpec("best_of_n_gt", 1.0, 0), ctx, {**tag, "n": 1.0}, progress=False)
    [first] = [r for r in one.metrics() if r.get("split") == "eval"]
    assert first["eval/reward"] == pytest.approx(draws.gold.reshape(-1, draws.m)[:, 0].mean())  # plain sampling
    assert first["eval/kl_exact"] == 0.0 and first["eval/reward"] <= record["eval/reward"]
    assert rlhf.best_of_n_run(sweep.RunSpec("best_of_n_gt", 4.0, 0), ctx, tag).metrics() == run.metrics()
    with pytest.raises(ValueError, match="best_of_ns"):
        rlhf.best_of_n_run(sweep.RunSpec("best_of_n", 8.0, 0), ctx, {**tag, "n": 8.0})


def test_best_of_n_under_the_reward_model_shares_the_draws(tiny_context):
    ctx = tiny_context
    for method in ("best_of_n", "best_of_n_gt"):
        tag = sweep.run_tag(sweep.RunSpec(method, 4.0, 0), ctx.profile) | {"eval": ctx.evaluator.settings}
        rlhf.best_of_n_run(sweep.RunSpec(method, 4.0, 0), ctx, tag, progress=False)
    draws = ctx.cache["draws"]
    assert set(draws.scores) == {"gold length", rlhf.reward_model(ctx).run.id}  # one set of draws, two selectors


def test_ppo_and_ppo_gt_runs_carry_their_tag_and_reward(tiny_context):
    ctx = tiny_context
    for method in rlhf.PPO_METHODS:
        spec = sweep.RunSpec(method, 6.0, 0)
        run = sweep.train_run(spec, ctx, progress=False)
        assert run.kind == "ppo" and run.finished and run.config["tag"]["target_kl"] == 6.0
        assert run.config["ppo"]["target_kl"] == 6.0 and run.config["ppo"]["normalize_scores"] is True
        want = "gold length" if method == "ppo_gt" else rlhf.reward_model(ctx).run.id
        assert run.config["reward"] == want
        evals = [r for r in run.metrics() if r.get("split") == "eval"]
        assert len(evals) == TINY.ppo_iterations // TINY.ppo_eval_every
        assert sweep.train_run(spec, ctx, progress=False).id == run.id  # finished: loaded, not retrained


def test_a_diverged_ppo_run_is_reported_and_left_off_the_frontier(tiny_context, monkeypatch):
    real = ppo_pieces.policy_loss
    calls = []

    def blow_up_at_the_third_update(*args, **kwargs):
        calls.append(1)
        loss, stats = real(*args, **kwargs)
        return (loss * float("nan") if len(calls) == 3 else loss), stats  # after the first evaluation

    monkeypatch.setattr(ppo_pieces, "policy_loss", blow_up_at_the_third_update)
    monkeypatch.setattr(sweep, "context", lambda profile, task=None, progress=True, variant=None: tiny_context)
    monkeypatch.setattr(sweep, "grid", lambda p=None: [sweep.RunSpec("ppo_gt", 6.0, 0)])
    out = sweep.run_sweep(TINY, progress=False)
    [(spec, why)] = out["failed"].items()
    assert spec.method == "ppo_gt" and "non-finite" in why and "step 3" in why
    [ppo_run] = [r for r in evaluation.frontier_runs() if r.kind == "ppo"]
    assert not ppo_run.finished and any(r.get("split") == "eval" for r in ppo_run.metrics())  # it had evaluated
    assert {p["method"] for p in results.load_points(evaluation.frontier_runs())} == {"sft"}  # but is not plotted
    [(label, reason)] = results.diverged(evaluation.frontier_runs()).items()
    assert label.startswith("PPO-GT target_kl=6 seed 0") and "step 3" in reason
