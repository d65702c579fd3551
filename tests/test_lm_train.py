"""The shared SFT / preference trainer (dpo_lab.lm.train): a DPO step against a hand-written
reference, every loss wired correctly, gradient accumulation, schedules, evaluation, reuse of
finished runs, resume after a kill, non-finite losses and bad inputs."""

import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lm_support import EOS, TINY, naive_token_logps, one_thread  # noqa: F401 (autouse fixture)

from dpo_lab import losses, runs
from dpo_lab.lm import load_model, load_tokenizer, sequence_logprobs, train_preferences, train_sft
from dpo_lab.lm.train import batch_indices, learning_rate


def make_problem(n_pairs=12, seed=0):
    """A policy, a different reference and random preference pairs (also used by the kill worker)."""
    rng = random.Random(seed)

    def ids(low, high):
        return [rng.randrange(EOS) for _ in range(rng.randint(low, high))]

    pairs = [{"prompt_ids": ids(1, 4), "chosen_ids": ids(1, 9), "rejected_ids": ids(1, 9)} for _ in range(n_pairs)]
    return load_model(TINY, seed=1), load_model(TINY, seed=2), pairs


def params(model):
    return [p.detach().clone() for p in model.parameters()]


def assert_same_params(a, b, atol=0.0):
    for x, y in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(x, y, rtol=0, atol=atol)


def without_time(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


@pytest.mark.parametrize("optimizer", ["adamw", "rmsprop"])
def test_one_dpo_step_matches_a_hand_written_reference(tmp_path, optimizer):
    policy, ref, pairs = make_problem(8)
    beta, lr = 0.5, 1e-2
    out = train_preferences(
        policy,
        ref,
        pairs,
        beta=beta,
        steps=1,
        batch_size=8,
        micro_batch_size=3,
        lr=lr,
        optimizer=optimizer,
        max_grad_norm=0.5,
        run_root=tmp_path,
        progress=False,
    )

    hand = load_model(TINY, seed=1)

    def summed(model, key):
        return torch.stack([naive_token_logps(model, p["prompt_ids"], p[key] + [EOS]).sum() for p in pairs])

    with torch.no_grad():
        ref_c, ref_r = summed(ref, "chosen_ids"), summed(ref, "rejected_ids")
    pol_c, pol_r = summed(hand, "chosen_ids"), summed(hand, "rejected_ids")
    loss = -F.logsigmoid(beta * ((pol_c - ref_c) - (pol_r - ref_r))).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(hand.parameters(), 0.5)
    opt_class = torch.optim.AdamW if optimizer == "adamw" else torch.optim.RMSprop
    opt_class(hand.parameters(), lr=lr, weight_decay=0.0).step()

    record = out.metrics[0]
    assert record["step"] == 1 and record["split"] == "train" and record["lr"] == lr
    assert record["loss"] == pytest.approx(loss.item(), abs=1e-6)
    assert record["rewards/chosen"] == pytest.approx(beta * (pol_c - ref_c).mean().item(), abs=1e-5)
    assert record["rewards/margins"] == pytest.approx(
        beta * ((pol_c - ref_c) - (pol_r - ref_r)).mean().item(), abs=1e-5
    )
    # On the first step Adam moves each weight by about lr * g / (|g| + eps) and RMSprop by about
    # 10 lr * g / (|g| + 10 eps): entries with |g| near eps (1e-8) turn float rounding into visible
    # differences. Allow 1% of the largest move.
    largest_move = lr if optimizer == "adamw" else 10 * lr
    assert_same_params(out.policy, hand, atol=1e-2 * largest_move)
    assert not torch.equal(out.policy.lm_head.weight, policy.lm_head.weight)
    assert torch.equal(policy.lm_head.weight, load_model(TINY, seed=1).lm_head.weight)  # input untouched


def test_policy_equal_to_ref_starts_at_log_2(tmp_path):
    _, ref, pairs = make_problem()
    out = train_preferences(
        load_model(TINY, seed=2), ref, pairs, steps=1, batch_size=4, lr=1e-3, run_root=tmp_path, progress=False
    )
    first = out.metrics[0]
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["rewards/margins"] == 0 and first["rewards/accuracies"] == 0


def step_one_expected_loss(policy, ref, pairs, indices, loss, loss_kwargs, beta):
    """The mean loss of a batch from sequence_logprobs and dpo_lab.losses, outside the trainer."""
    p = [pairs[i]["prompt_ids"] for i in indices]
    pol_c = sequence_logprobs(policy, p, [pairs[i]["chosen_ids"] for i in indices], per_token=True)
    pol_r = sequence_logprobs(policy, p, [pairs[i]["rejected_ids"] for i in indices], per_token=True)
    ref_c = sequence_logprobs(ref, p, [pairs[i]["chosen_ids"] for i in indices])
    ref_r = sequence_logprobs(ref, p, [pairs[i]["rejected_ids"] for i in indices])
    if loss == "preferred_ft":
        return losses.preferred_ft_loss(pol_c.token_logps, pol_c.mask).mean().item()
    if loss == "unlikelihood":
        return (
            losses.unlikelihood_loss(pol_c.token_logps, pol_c.mask, pol_r.token_logps, pol_r.mask, **loss_kwargs)
            .mean()
            .item()
        )
    extra = {"offset": torch.tensor([pairs[i]["offset"] for i in indices])} if loss == "odpo" else {}
    return (
        losses.PAIRWISE_LOSSES[loss](pol_c.logps, pol_r.logps, ref_c, ref_r, beta, **loss_kwargs, **extra).mean().item()
    )


@pytest.mark.parametrize(
    "loss, loss_kwargs",
    [
        ("dpo", {}),
        ("cdpo", {"label_smoothing": 0.2}),
        ("ipo", {}),
        ("hinge", {}),
        ("odpo", {}),
        ("preferred_ft", {}),
        ("unlikelihood", {"alpha": 0.5}),
    ],
)
def test_every_loss_is_wired_to_the_right_inputs(tmp_path, loss, loss_kwargs):
    policy, ref, pairs = make_problem()
    if loss == "odpo":
        pairs = [{**p, "offset": 0.1 * i} for i, p in enumerate(pairs)]
    out = train_preferences(
        policy,
        ref,
        pairs,
        loss=loss,
        loss_kwargs=loss_kwargs,
        beta=0.3,
        steps=2,
        batch_size=5,
        micro_batch_size=2,
        lr=1e-3,
        run_root=tmp_path,
        progress=False,
    )
    expected = step_one_expected_loss(policy, ref, pairs, batch_indices(12, 5, 0, 0), loss, loss_kwargs, 0.3)
    records = out.metrics
    assert [r["step"] for r in records] == [1, 2]
    assert records[0]["loss"] == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert out.run.config["loss"] == loss


def test_gradient_accumulation_gives_the_same_model(tmp_path):
    policy, ref, pairs = make_problem()
    one = train_preferences(
        policy, ref, pairs, steps=2, batch_size=6, micro_batch_size=1, lr=1e-2, run_root=tmp_path / "a", progress=False
    )
    all_ = train_preferences(
        policy, ref, pairs, steps=2, batch_size=6, lr=1e-2, run_root=tmp_path / "b", progress=False
    )
    assert_same_params(one.policy, all_.policy, atol=1e-2 * 1e-2)  # 1% of Adam's move (see above)
    assert one.metrics[1]["loss"] == pytest.approx(all_.metrics[1]["loss"], abs=1e-6)


def test_reference_log_probs_are_computed_once_for_the_visited_pairs(tmp_path):
    policy, ref, pairs = make_problem()
    kwargs = dict(steps=2, batch_size=4, lr=1e-3, run_root=tmp_path, progress=False)
    train_preferences(policy, ref, pairs, **kwargs)
    (cache,) = runs.list_runs("reflogps", root=tmp_path)
    cached = torch.load(cache.artifact("ref_logps.pt"))
    visited = sorted(set(batch_indices(12, 4, 0, 0) + batch_indices(12, 4, 0, 1)))
    assert cached.shape == (12, 2) and cache.result() == {"pairs": len(visited)}
    assert torch.isnan(cached).any(dim=1).tolist() == [i not in visited for i in range(12)]
    prompts = [pairs[i]["prompt_ids"] for i in visited]
    for column, key in enumerate(("chosen_ids", "rejected_ids")):
        expected = sequence_logprobs(ref, prompts, [pairs[i][key] for i in visited])
        torch.testing.assert_close(cached[visited, column], expected, rtol=0, atol=1e-5)
    # other losses, betas and ODPO offsets on the same reference, data and order: no second pass
    train_preferences(policy, ref, pairs, loss="ipo", beta=0.5, **kwargs)
    train_preferences(policy, ref, [{**p, "offset": 1.0} for p in pairs], loss="odpo", **kwargs)
    assert len(runs.list_runs("reflogps", root=tmp_path)) == 1
    assert len(runs.list_runs("pref", root=tmp_path)) == 3


def test_columns_and_records_are_the_same_data(tmp_path):
    policy, ref, pairs = make_problem()
    columns = {k: [p[k] for p in pairs] for k in pairs[0]}
    kwargs = dict(steps=1, batch_size=4, lr=1e-3, run_root=tmp_path, progress=False)
    assert (
        train_preferences(policy, ref, pairs, **kwargs).run.path
        == train_preferences(policy, ref, columns, **kwargs).run.path
    )


def test_a_finished_run_returns_its_saved_model_without_training(tmp_path):
    policy, ref, pairs = make_problem()
    kwargs = dict(steps=3, batch_size=4, lr=1e-2, run_root=tmp_path, progress=False)
    first = train_preferences(policy, ref, pairs, tokenizer=load_tokenizer(), **kwargs)
    assert first.run.finished and (first.run.artifact("model") / "tokenizer.json").exists()
    assert not (first.run.path / "checkpoint.pt").exists()

    def must_not_run(policy, step):
        raise AssertionError("a finished run trained again")

    again = train_preferences(policy, ref, pairs, eval_fn=must_not_run, **kwargs)
    assert again.run.path == first.run.path and again.result == first.result
    assert_same_params(again.policy, first.policy)
    other = train_preferences(policy, ref, pairs, run_tag={"variant": 2}, **kwargs)
    assert other.run.path != first.run.path


def test_sft_minimises_the_mean_token_nll(tmp_path):
    policy, _, pairs = make_problem()
    sequences = [p["prompt_ids"] + p["chosen_ids"] for p in pairs]
    out = train_sft(
        policy, sequences, steps=8, batch_size=12, micro_batch_size=5, lr=1e-2, run_root=tmp_path, progress=False
    )
    logps = sequence_logprobs(policy, [s[:1] for s in sequences], [s[1:] for s in sequences], add_eos=False)
    n_tokens = sum(len(s) - 1 for s in sequences)
    records = out.metrics
    assert records[0]["loss"] == pytest.approx(-logps.sum().item() / n_tokens, rel=1e-6)
    assert records[0]["tokens"] == n_tokens
    assert records[-1]["loss"] < records[0]["loss"] - 0.5
    assert out.run.id.startswith("sft-")


def test_learning_rate_warmup_and_schedules():
    assert [learning_rate(k, 1.0, 10, warmup_steps=4) for k in (1, 2, 4, 5, 10)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert learning_rate(1, 2.0, 10) == 2.0
    assert learning_rate(4, 1.0, 10, 4, "cosine") == 1.0
    assert learning_rate(7, 1.0, 10, 4, "cosine") == pytest.approx(0.5)
    assert learning_rate(10, 1.0, 10, 4, "cosine") == pytest.approx(0.0)


def test_warmup_is_what_the_optimiser_used(tmp_path):
    policy, ref, pairs = make_problem()
    out = train_preferences(
        policy, ref, pairs, steps=3, batch_size=2, lr=3e-3, warmup_steps=2, run_root=tmp_path, progress=False
    )
    assert [r["lr"] for r in out.metrics] == pytest.approx([1.5e-3, 3e-3, 3e-3])


def test_batch_indices_cover_each_epoch_once_and_are_reproducible():
    stream = sum((batch_indices(10, 4, seed=3, step=k) for k in range(5)), [])
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert stream[:10] != stream[10:20]  # a new shuffle each epoch
    assert batch_indices(10, 4, 3, 2) == stream[8:12]
    assert batch_indices(3, 7, 0, 0)[:3] != [] and len(batch_indices(3, 7, 0, 0)) == 7


def test_eval_callback_every_n_steps_and_at_the_end(tmp_path):
    policy, ref, pairs = make_problem()
    seen = []

    def eval_fn(model, step):
        seen.append((step, model.training))
        return {"probe": float(model.lm_head.weight.sum())}

    out = train_preferences(
        policy,
        ref,
        pairs,
        steps=5,
        batch_size=2,
        lr=1e-3,
        eval_fn=eval_fn,
        eval_every=2,
        run_root=tmp_path,
        progress=False,
    )
    assert seen == [(2, False), (4, False), (5, False)]
    evals = [r for r in out.metrics if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4, 5]
    assert out.result["final_eval"] == {"probe": evals[-1]["probe"]}
    assert out.result["final_eval"]["probe"] == pytest.approx(float(out.policy.lm_head.weight.detach().sum()))
    with pytest.raises(ValueError, match="eval_fn must return a dict of numbers, got float"):
        train_preferences(
            policy,
            ref,
            pairs,
            steps=1,
            batch_size=2,
            lr=1e-3,
            eval_fn=lambda m, s: 0.5,
            run_root=tmp_path,
            progress=False,
        )


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_checkpoint(tmp_path):
    policy, ref, pairs = make_problem()

    def blow_up(model, step):  # stands in for a diverging update after step 3
        if step == 3:
            model.lm_head.weight[0, 0] = math.nan
        return {}

    with pytest.raises(FloatingPointError, match="non-finite policy log-probs at step 4.*last checkpoint"):
        train_preferences(
            policy,
            ref,
            pairs,
            steps=6,
            batch_size=4,
            lr=1e-3,
            eval_fn=blow_up,
            eval_every=1,
            checkpoint_every=2,
            run_root=tmp_path,
            progress=False,
        )
    (run,) = runs.list_runs("pref", root=tmp_path)
    assert not run.finished
    step, state = run.resume()
    assert step == 2 and all(torch.isfinite(t).all() for t in state["model"].values())
    assert max(r["step"] for r in run.metrics()) == 2


WORKER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from test_lm_train import make_problem, probe
    from dpo_lab.lm import train_preferences

    policy, ref, pairs = make_problem()

    def slow_probe(model, step):
        time.sleep(0.3)
        return probe(model, step)

    train_preferences(policy, ref, pairs, steps=10, batch_size=4, lr=1e-2, eval_fn=slow_probe, eval_every=1,
                      checkpoint_every=2, run_root=sys.argv[1], progress=False)
""")


def probe(model, step):
    """A deterministic evaluation: the log-prob of a fixed pair under the current policy."""
    return {"probe": sequence_logprobs(model, [[1, 2]], [[3, 4]]).item()}


def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    policy, ref, pairs = make_problem()
    kwargs = dict(steps=10, batch_size=4, lr=1e-2, eval_fn=probe, eval_every=1, checkpoint_every=2, progress=False)
    clean = train_preferences(policy, ref, pairs, run_root=tmp_path / "clean", **kwargs)

    killed_root = tmp_path / "killed"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(killed_root), str(Path(__file__).parent)], env=env)
    deadline, reached = time.time() + 120, False
    while time.time() < deadline and proc.poll() is None and not reached:
        found = list(killed_root.glob("pref-*/metrics.jsonl"))
        reached = bool(found) and '"step": 5' in found[0].read_text()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert reached, "the worker never reached step 5"
    (run,) = runs.list_runs("pref", root=killed_root)
    assert not run.finished and (run.path / "checkpoint.pt").exists()

    resumed = train_preferences(policy, ref, pairs, run_root=killed_root, **kwargs)
    assert resumed.run.path.name == clean.run.path.name
    assert resumed.result == clean.result
    assert without_time(resumed.metrics) == without_time(clean.metrics)
    assert [r["step"] for r in resumed.metrics if r["split"] == "train"] == list(range(1, 11))
    assert_same_params(resumed.policy, clean.policy)


def test_reference_that_is_the_policy_is_refused(tmp_path):
    policy, _, pairs = make_problem()
    with pytest.raises(ValueError, match="ref is the policy"):
        train_preferences(policy, policy, pairs, steps=1, batch_size=2, lr=1e-3, run_root=tmp_path)
    sharing = load_model(TINY, seed=5)
    sharing.transformer.wte = policy.transformer.wte
    with pytest.raises(ValueError, match="shares its weights"):
        train_preferences(policy, sharing, pairs, steps=1, batch_size=2, lr=1e-3, run_root=tmp_path)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"micro_batch_size": 0}, "micro_batch_size must be an integer >= 1"),
        ({"lr": -1.0}, "lr must be a finite number > 0"),
        ({"lr": math.nan}, "lr must be a finite number > 0"),
        ({"max_grad_norm": 0.0}, "max_grad_norm must be a finite number > 0"),
        ({"weight_decay": -0.1}, "weight_decay must be a finite number >= 0"),
        ({"warmup_steps": -1}, "warmup_steps must be an integer >= 0"),
        ({"optimizer": "sgd"}, "optimizer must be one of"),
        ({"lr_schedule": "linear"}, "lr_schedule must be one of"),
        ({"eval_every": 2}, "eval_every is set but eval_fn is None"),
        ({"eval_fn": 3}, "eval_fn must be callable"),
        ({"checkpoint_every": 0}, "checkpoint_every must be an integer >= 1"),
        ({"run_tag": "cpu"}, "run_tag must be a JSON-able dict"),
        ({"loss": "kto"}, "loss must be one of"),
        ({"beta": 0.0}, "beta must be a finite number > 0"),
        ({"loss": "unlikelihood"}, r"loss_kwargs \{\} do not fit loss 'unlikelihood'"),
        ({"loss": "cdpo", "loss_kwargs": {"label_smooth": 0.1}}, "do not fit loss 'cdpo'"),
        ({"loss_kwargs": {"beta": 0.1}}, "loss_kwargs must not hold beta"),
        ({"loss": "odpo"}, "loss='odpo' needs an 'offset' for every pair"),
    ],
)
def test_bad_trainer_arguments_are_refused(tmp_path, change, match):
    policy, ref, pairs = make_problem()
    kwargs = {"steps": 1, "batch_size": 2, "lr": 1e-3, "run_root": tmp_path, **change}
    with pytest.raises(ValueError, match=match):
        train_preferences(policy, ref, pairs, **kwargs)


@pytest.mark.parametrize(
    "pairs, match",
    [
        ([], "pairs is empty"),
        ("pairs", "pairs must be a list of dicts or a dict of lists"),
        ([{"prompt_ids": [1], "chosen_ids": [2]}], "pairs lack 'rejected_ids'"),
        ([{"prompt_ids": [1], "chosen_ids": [2], "rejected_ids": [3], "score": 1.0}], "unknown key 'score'"),
        ({"prompt_ids": [[1], [2]], "chosen_ids": [[2]], "rejected_ids": [[3]]}, "columns differ in length"),
        ([{"prompt_ids": [1], "chosen_ids": [2], "rejected_ids": [3], "offset": 0.5}], "ignores them"),
        ([{"prompt_ids": [1], "chosen_ids": [], "rejected_ids": [3]}], r"response_ids\[0\] is empty"),
        ([{"prompt_ids": [1], "chosen_ids": [2], "rejected_ids": [300]}], "outside the vocabulary"),
    ],
)
def test_bad_preference_data_is_refused(tmp_path, pairs, match):
    policy, ref, _ = make_problem()
    with pytest.raises(ValueError, match=match):
        train_preferences(policy, ref, pairs, steps=1, batch_size=2, lr=1e-3, run_root=tmp_path)


def test_bad_odpo_offsets_are_refused(tmp_path):
    policy, ref, pairs = make_problem()
    pairs = [{**p, "offset": -math.inf} for p in pairs]
    with pytest.raises(ValueError, match="NaN or infinite offset"):
        train_preferences(policy, ref, pairs, loss="odpo", steps=1, batch_size=2, lr=1e-3, run_root=tmp_path)


@pytest.mark.parametrize(
    "sequences, match",
    [
        ([], "sequences is empty"),
        ("abc", "sequences must be a list of token-id lists, got str"),
        ([torch.tensor([1, 2]), "ab"], r"sequences\[1\] must be a list of token ids, got str"),
        ([[1, 2], [3]], r"sequences\[1\] has fewer than 2 tokens"),
        ([[1, 2, 300]], "outside the vocabulary"),
        ([[1] * 65], r"pair 0: .* > the model's context of 64"),
    ],
)
def test_bad_sft_data_is_refused(tmp_path, sequences, match):
    with pytest.raises(ValueError, match=match):
        train_sft(load_model(TINY, seed=0), sequences, steps=1, batch_size=2, lr=1e-3, run_root=tmp_path)


def test_a_run_without_its_final_model_is_finished_and_says_so(tmp_path):
    policy, ref, pairs = make_problem()
    kwargs = dict(steps=2, batch_size=4, lr=1e-2, run_root=tmp_path, progress=False)
    first = train_preferences(policy, ref, pairs, keep_model=False, **kwargs)
    assert first.run.finished and not first.run.artifact("model").exists()
    assert first.policy is not None  # the trained copy, in memory
    again = train_preferences(policy, ref, pairs, **kwargs)  # keep_model is not part of the identity
    assert again.run.id == first.run.id and again.metrics == first.metrics and again.result == first.result
    with pytest.raises(FileNotFoundError, match="finished without keeping its final model.*keep_model=True"):
        _ = again.policy


def test_a_finished_run_loads_its_model_only_when_asked(tmp_path):
    policy, ref, pairs = make_problem()
    kwargs = dict(steps=2, batch_size=4, lr=1e-2, run_root=tmp_path, progress=False)
    first = train_preferences(policy, ref, pairs, **kwargs)
    again = train_preferences(policy, ref, pairs, **kwargs)
    assert again._policy is None
    assert_same_params(again.policy, first.policy)
