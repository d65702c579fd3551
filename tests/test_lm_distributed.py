"""One run on several processes (dpo_lab.lm.distributed): two gloo processes under torchrun train the
run one process trains (DPO, SFT and PPO, records within 1e-5, identical weights on both ranks), a run stopped
(an exception on both ranks) or killed (SIGKILL of one rank) under two processes resumes to the uninterrupted one,
sharded sampling draws one process's samples;
the helpers are no-ops in one process, and what cannot split its steps is refused."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from distributed_worker import DPO, PPO, SFT, evaluation, length_reward, problem, samples
from lm_support import one_thread  # noqa: F401 (autouse fixture)

from dpo_lab import runs
from dpo_lab.lm import distributed, load_model, train_preferences, train_sft
from dpo_lab.lm.ppo_training import train_ppo
from dpo_lab.lm.train import fingerprint

TESTS = Path(__file__).resolve().parent


def _launch(out: Path, *mode: str) -> subprocess.CompletedProcess:
    """``tests/distributed_worker.py OUT [mode]`` under ``torchrun --nproc_per_node 2`` (gloo on the CPU)."""
    env = {**os.environ, "PYTHONPATH": f"{TESTS.parent}{os.pathsep}{TESTS}", "OMP_NUM_THREADS": "1"}
    env |= {"DPO_LAB_PROFILE": "smoke", "DPO_LAB_RESULTS": str(out / "results")}
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    return subprocess.run(
        [*command, str(TESTS / "distributed_worker.py"), str(out), *mode], env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """The folder where ``tests/distributed_worker.py`` ran once under 2 processes (about 13 s)."""
    out = tmp_path_factory.mktemp("two")
    killed = _launch(out, "kill")  # rank 1 dies at step 4 of the run in out/killed; the full launch resumes it
    (folder,) = (out / "killed").glob("pref-*")  # what the kill left: a checkpoint, no result
    left = {"returncode": killed.returncode, "checkpoint": (folder / "checkpoint.pt").exists()}
    (out / "kill.json").write_text(json.dumps(left | {"finished": (folder / "result.json").exists()}))
    done = _launch(out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    """The same runs in this process."""
    root = tmp_path_factory.mktemp("one")
    policy, ref, pairs, prompts, sequences = problem()
    dpo = train_preferences(policy, ref, pairs, **DPO, eval_fn=evaluation(ref, prompts), run_root=root, progress=False)
    sft = train_sft(policy, sequences, **SFT, run_root=root, progress=False)
    rl = train_ppo(policy, ref, prompts, length_reward, **PPO, eval_fn=evaluation(ref, prompts), run_root=root,
                   progress=False)  # fmt: skip
    return {"dpo": dpo, "sft": sft, "ppo": rl, "samples": samples(policy, ref, prompts)}


def _ranks(two):
    return [json.loads((two / f"rank{r}.json").read_text()) for r in (0, 1)]


def _stored(root, kind):
    (run,) = runs.list_runs(kind, root=root)
    return run


def _assert_same_records(two_records, one_records, atol):
    assert [(r["split"], r["step"]) for r in two_records] == [(r["split"], r["step"]) for r in one_records]
    for a, b in zip(two_records, one_records):
        for key, value in b.items():
            if key != "seconds":
                assert a[key] == pytest.approx(value, abs=atol), (a["step"], key)


def _assert_close_weights(model, other, atol=1e-4):
    """Summing the micro-batches' gradients in another order moves them by float rounding; where a
    gradient is near 0, AdamW's m / sqrt(v) turns that into up to about lr * 1e-3 (measured 2.3e-5 after 5
    steps at lr 1e-2), hence 1e-4 for the weights, while the losses agree to 1e-5."""
    for x, y in zip(model.parameters(), other.parameters()):
        torch.testing.assert_close(x, y, rtol=0, atol=atol)


def test_two_processes_train_the_dpo_run_of_one_process(two, one):
    run = _stored(two / "whole", "pref")
    assert run.id == one["dpo"].run.id  # the same identity: same fingerprints
    _assert_same_records(run.metrics(), one["dpo"].metrics, atol=1e-5)  # train losses and sharded evaluations
    ranks = _ranks(two)
    assert ranks[0]["whole"] == ranks[1]["whole"]  # identical weights on both ranks
    _assert_close_weights(load_model(run.artifact("model")), one["dpo"].policy)


def test_a_stopped_run_resumes_under_two_processes_to_the_uninterrupted_one(two):
    resumed, whole = _stored(two / "resumed", "pref"), _stored(two / "whole", "pref")
    records = resumed.metrics()
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4, 5]
    assert [r["step"] for r in records if r["split"] == "eval"] == [2, 4, 5]
    _assert_same_records(records, whole.metrics(), atol=0)
    assert resumed.result() == whole.result()
    ranks = _ranks(two)
    assert ranks[0]["resumed"] == ranks[1]["resumed"] == ranks[0]["whole"]


def test_a_killed_run_resumes_under_two_processes_to_the_uninterrupted_one(two):
    """Rank 1 was SIGKILLed at step 4's evaluation (torchrun then ended the group, exit status not 0); launched
    again, the run continued from step 3's checkpoint and ended as the uninterrupted run, records and weights."""
    assert json.loads((two / "kill.json").read_text()) == {"returncode": 1, "checkpoint": True, "finished": False}
    run, whole = _stored(two / "killed", "pref"), _stored(two / "whole", "pref")
    assert [r["step"] for r in run.metrics() if r["split"] == "train"] == [1, 2, 3, 4, 5]
    _assert_same_records(run.metrics(), whole.metrics(), atol=0)
    ranks = _ranks(two)
    assert ranks[0]["killed"] == ranks[1]["killed"] == ranks[0]["whole"]


def test_two_processes_train_the_ppo_run_of_one_process(two, one):
    """The rollouts sampled over both ranks, the minibatches split (1 + 2 rows): one process's losses, KL controller
    and evaluations (the rollout's statistics, every step's summed shares), and the same weights on both ranks."""
    run = _stored(two / "ppo", "ppo")
    records = run.metrics()
    assert [r["step"] for r in records if r["split"] == "train"] == list(range(1, 2 * 2 * 2 + 1))
    _assert_same_records(records, one["ppo"].metrics, atol=1e-5)
    ranks = _ranks(two)
    assert ranks[0]["ppo"] == ranks[1]["ppo"]
    _assert_close_weights(load_model(run.artifact("model")), one["ppo"].policy)


def test_two_processes_train_the_sft_run_of_one_process(two, one):
    run = _stored(two / "sft", "sft")
    _assert_same_records(run.metrics(), one["sft"].metrics, atol=1e-5)
    ranks = _ranks(two)
    assert ranks[0]["sft"] == ranks[1]["sft"]
    _assert_close_weights(load_model(run.artifact("model")), one["sft"].policy)


def test_the_sweep_under_two_processes_trains_each_run_once_together(two):
    from sweep_support import TINY

    from dpo_lab import sweep

    ranks = _ranks(two)
    assert ranks[0]["sweep"] == ranks[1]["sweep"]  # both ranks took part in every run
    assert sorted(ranks[0]["sweep"]) == sorted(spec.label for spec in sweep.grid(TINY))
    stored = {run.id: run for run in runs.list_runs(root=two / "results" / "smoke" / "runs")}
    for label, run_id in ranks[0]["sweep"].items():
        run = stored[run_id]
        assert run.finished and (run.path / "artifacts" / "model").exists() == label.startswith(("DPO", "PPO"))
        steps = [r["step"] for r in run.metrics() if r.get("split") == "train"]
        assert steps == sorted(set(steps)), (label, steps)  # once each: the ranks did not compete


def test_sharded_sampling_draws_the_samples_of_one_process(two, one):
    for rank in _ranks(two):
        for got, want in zip(rank["samples"], one["samples"]):
            assert got["response_ids"] == want["response_ids"] and got["finished"] == want["finished"]
            assert got["kl_exact"] == pytest.approx(want["kl_exact"], abs=1e-5)


def test_in_one_process_the_helpers_change_nothing():
    assert distributed.init() == (0, 1) and distributed.world_size() == 1 and distributed.rank() == 0
    items = [3, 1, 2]
    assert distributed.share(items) is items
    assert distributed.sum_floats(1.5, 2.0) == [1.5, 2.0]
    t = torch.ones(2, 3)
    assert distributed.gather_rows(t) is t
    assert distributed.broadcast("x") == "x" and distributed.gather_objects("x") == ["x"]
    assert distributed.rank_zero_first(lambda: 7) == 7
    with distributed.solo():
        assert distributed.world_size() == 1
    distributed.barrier()
    distributed.all_reduce_grads([torch.nn.Parameter(torch.ones(2))])


@pytest.mark.parametrize("world", [2, 3, 5])
def test_shares_are_contiguous_disjoint_and_cover_the_batch(monkeypatch, world):
    items = list(range(7))
    monkeypatch.setattr(distributed, "world_size", lambda: world)
    parts = []
    for r in range(world):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        parts.append(distributed.share(items))
    assert [i for part in parts for i in part] == items
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_what_cannot_split_its_steps_is_refused_under_torchrun(monkeypatch, tmp_path):
    policy = problem()[0]
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    from dpo_lab.lm.train import Settings, train_loop

    s = Settings(1, 2, 2, 1e-3, "adamw", 0, "constant", 0.0, 1.0, 0, 0)
    run = runs.open_run("sft", {"x": 1}, root=tmp_path)
    with pytest.raises(ValueError, match="does not split its steps over processes"):
        train_loop(run, policy, s, 4, lambda m, i: {"loss": 0.0}, None, None, 1, False)


def test_fingerprint_is_the_same_on_every_rank_for_the_same_weights():
    a, b = problem()[0], problem()[0]
    assert fingerprint(a) == fingerprint(b)
