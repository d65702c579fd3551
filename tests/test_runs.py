import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from dpo_lab import runs

CFG = {"lr": 0.1, "steps": 40, "seed": 3, "sizes": (2, 3)}

# A toy training job using the run store the way the trainers do: checkpoint every step, log every step.
WORKER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from dpo_lab import runs

    root, delay = sys.argv[1], float(sys.argv[2])
    cfg = {"lr": 0.1, "steps": 40, "seed": 3, "sizes": (2, 3)}
    run = runs.open_run("toy", cfg, root=root)
    if run.finished:
        print("reused"); sys.exit(0)
    resumed = run.resume()
    if resumed is None:
        step, state = 0, {"w": [0.0] * 3, "rng": np.random.default_rng(cfg["seed"]).bit_generator.state}
    else:
        step, state = resumed
    rng = np.random.default_rng(); rng.bit_generator.state = state["rng"]
    w = np.array(state["w"])
    while step < cfg["steps"]:
        w = w - cfg["lr"] * (w - 1.0 + 0.1 * rng.standard_normal(3))
        step += 1
        run.log({"step": step, "loss": float(((w - 1.0) ** 2).sum())})
        run.save_checkpoint({"w": w.tolist(), "rng": rng.bit_generator.state}, step)
        time.sleep(delay)
    run.finish({"w": w.tolist()})
    print("trained")
    """
)


def _worker(tmp_path, root, delay, wait=True):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(root), str(delay)], env=env, stdout=subprocess.PIPE, text=True
    )
    if wait:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        return out.strip()
    return proc


def test_killed_worker_resumes_to_the_uninterrupted_result(tmp_path):
    clean_root, killed_root = tmp_path / "clean", tmp_path / "killed"
    assert _worker(tmp_path, clean_root, 0.0) == "trained"

    proc = _worker(tmp_path, killed_root, 0.05, wait=False)
    metrics = None
    deadline = time.time() + 60
    while time.time() < deadline:
        found = list(killed_root.glob("toy-*/metrics.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= 8:
            metrics = found[0]
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert metrics is not None, "worker never logged"
    run = runs.open_run("toy", CFG, root=killed_root)
    assert not run.finished
    logged_before = len(run.metrics())
    assert 8 <= logged_before < 40

    assert _worker(tmp_path, killed_root, 0.0) == "trained"
    clean = runs.open_run("toy", CFG, root=clean_root)
    assert run.finished and run.result() == clean.result()
    assert run.metrics() == clean.metrics()  # no step lost, none logged twice
    assert [r["step"] for r in run.metrics()] == list(range(1, 41))
    assert not (run.path / "checkpoint.pt").exists()

    assert _worker(tmp_path, killed_root, 0.0) == "reused"


def test_same_config_same_run_other_config_other_run(tmp_path):
    a = runs.open_run("sft", {"x": 1, "y": [1, 2]}, root=tmp_path)
    b = runs.open_run("sft", {"y": (1, 2), "x": 1}, root=tmp_path)  # key order and tuples do not matter
    c = runs.open_run("sft", {"x": 2, "y": [1, 2]}, root=tmp_path)
    assert a.path == b.path != c.path
    assert json.loads((a.path / "config.json").read_text()) == {"x": 1, "y": [1, 2]}
    assert a.id.startswith("sft-") and len(a.id) == len("sft-") + 12


def test_cached_computes_once(tmp_path):
    calls = []

    def compute(run):
        calls.append(run.id)
        return {"value": 7}

    assert runs.cached("calc", {"a": 1}, compute, root=tmp_path) == {"value": 7}
    assert runs.cached("calc", {"a": 1}, compute, root=tmp_path) == {"value": 7}
    assert len(calls) == 1


def test_resume_without_checkpoint_drops_partial_metrics(tmp_path):
    run = runs.open_run("toy", {"a": 1}, root=tmp_path)
    run.log({"step": 1, "loss": 1.0})
    assert run.resume() is None
    assert run.metrics() == []


def test_resume_drops_only_records_after_the_checkpoint(tmp_path):
    run = runs.open_run("toy", {"a": 2}, root=tmp_path)
    for step in (1, 2, 3):
        run.log({"step": step})
    run.save_checkpoint({"k": 1}, step=2)
    step, state = run.resume()
    assert (step, state) == (2, {"k": 1})
    assert [r["step"] for r in run.metrics()] == [1, 2]


def test_torn_last_line_is_ignored_but_corruption_inside_is_an_error(tmp_path):
    run = runs.open_run("toy", {"a": 3}, root=tmp_path)
    run.log({"step": 1})
    with open(run.path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 2, "lo')
    assert run.metrics() == [{"step": 1}]
    with open(run.path / "metrics.jsonl", "a") as fh:
        fh.write('\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2"):
        run.metrics()


def test_bad_configs_and_kinds(tmp_path):
    with pytest.raises(ValueError, match="JSON"):
        runs.open_run("toy", {"f": object()}, root=tmp_path)
    with pytest.raises(ValueError, match="finite"):
        runs.open_run("toy", {"f": float("nan")}, root=tmp_path)
    with pytest.raises(TypeError, match="dict"):
        runs.open_run("toy", [1, 2], root=tmp_path)
    with pytest.raises(ValueError, match="kind"):
        runs.open_run("../escape", {"a": 1}, root=tmp_path)


def test_unfinished_result_is_an_error_and_finish_keeps_result(tmp_path):
    run = runs.open_run("toy", {"a": 4}, root=tmp_path)
    with pytest.raises(RuntimeError, match="has not finished"):
        run.result()
    run.save_checkpoint({"w": 1}, step=1)
    run.finish({"score": 0.5})
    assert run.finished and run.result() == {"score": 0.5}
    assert not (run.path / "checkpoint.pt").exists()
    with pytest.raises(ValueError):
        run.finish({"score": float("inf")})
    assert run.result() == {"score": 0.5}  # a bad result never replaces a stored one


def test_tampered_config_is_detected(tmp_path):
    run = runs.open_run("toy", {"a": 5}, root=tmp_path)
    (run.path / "config.json").write_text(json.dumps({"a": 6}))
    with pytest.raises(RuntimeError, match="another configuration"):
        runs.open_run("toy", {"a": 5}, root=tmp_path)


def test_list_runs_and_artifacts(tmp_path):
    a = runs.open_run("sft", {"a": 1}, root=tmp_path)
    runs.open_run("dpo", {"a": 1}, root=tmp_path)
    assert [r.id for r in runs.list_runs("sft", root=tmp_path)] == [a.id]
    assert len(runs.list_runs(root=tmp_path)) == 2
    path = a.artifact("model")
    assert path.parent.is_dir() and path.name == "model"


def test_default_root_is_inside_results(monkeypatch, tmp_path):
    monkeypatch.setenv("DPO_LAB_PROFILE", "smoke")
    run = runs.open_run("toy", {"a": 7})
    assert run.path.parent == tmp_path / "results" / "smoke" / "runs"


def test_config_hash_names_the_run_folder_and_ignores_key_order(tmp_path):
    run = runs.open_run("demo", {"b": 1, "a": [1, 2]}, root=tmp_path)
    assert runs.config_hash({"a": (1, 2), "b": 1}) == runs.config_hash({"b": 1, "a": [1, 2]})
    assert run.id == f"demo-{runs.config_hash({'a': [1, 2], 'b': 1})[:12]}"
    assert runs.config_hash({"a": 1}) != runs.config_hash({"a": 2})
    with pytest.raises(ValueError, match="finite"):
        runs.config_hash({"a": float("nan")})


def test_atomic_write_and_write_json_leave_no_temporary_behind(tmp_path):
    target = tmp_path / "table.json"
    runs.write_json(target, {"b": 2, "a": 1})
    assert target.read_text() == '{\n  "a": 1,\n  "b": 2\n}\n'

    def half_then_fail(p):
        p.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        runs.atomic_write(target, half_then_fail)
    assert target.read_text() == '{\n  "a": 1,\n  "b": 2\n}\n'  # the old content survives a failed write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.json"]


class _Payload:
    """What a malicious checkpoint holds: unpickling it would call os.system."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_crafted_checkpoint_is_refused_and_stale_temporaries_are_removed(tmp_path):
    import torch

    run = runs.open_run("toy", {"k": 1}, tmp_path)
    torch.save({"step": 1, "state": {"w": _Payload()}}, run.path / "checkpoint.pt")
    with pytest.raises(ValueError, match="checkpoint.pt: not a checkpoint of plain tensors"):
        run.resume()
    (run.path / "checkpoint.pt").unlink()
    stale = run.path / ".checkpoint.pt.abc123.tmp"  # a writer killed between mkstemp and os.replace
    stale.write_bytes(b"half")
    run.save_checkpoint({"w": torch.ones(2), "lr": 0.1, "name": "x"}, step=2)
    step, state = run.resume()
    assert step == 2 and torch.equal(state["w"], torch.ones(2)) and not stale.exists()


LOCK_WORKER = textwrap.dedent(
    """
    import sys, time
    from dpo_lab import runs

    root, name = sys.argv[1], sys.argv[2]
    run = runs.open_run("toy", {"same": "configuration"}, root=root)
    if not run.claim():  # what every trainer does before it starts or resumes a run
        print(name, "found it finished"); sys.exit(0)
    for step in range(1, 4):
        run.log({"step": step, "by": name})
        time.sleep(0.4)
    run.finish({"by": name})
    print(name, "trained it")
    """
)


def test_a_run_started_twice_at_once_is_computed_once(tmp_path):
    script = tmp_path / "lock_worker.py"
    script.write_text(LOCK_WORKER)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}

    def start(name):
        return subprocess.Popen([sys.executable, str(script), str(tmp_path / "runs"), name], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip

    first = start("first")
    time.sleep(1.0)  # first holds the run (and has logged a step) before second starts
    second = start("second")
    out_first, _ = first.communicate(timeout=60)
    out_second, err_second = second.communicate(timeout=60)
    assert out_first.strip() == "first trained it" and out_second.strip() == "second found it finished"
    assert "being computed by another process: waiting" in err_second
    [run] = runs.list_runs("toy", tmp_path / "runs")
    assert {r["by"] for r in run.metrics()} == {"first"} and len(run.metrics()) == 3
    again = runs.open_run("toy", {"same": "configuration"}, tmp_path / "runs")
    assert not again.claim() and again.result() == {"by": "first"}  # finished: nothing to wait for or hold
    assert again.path not in runs._HELD


def test_profile_runs_files_runs_under_that_profile_whatever_the_environment(monkeypatch, tmp_path):
    from dpo_lab import config

    monkeypatch.setenv("DPO_LAB_RESULTS", str(tmp_path))
    monkeypatch.setenv("DPO_LAB_PROFILE", "smoke")
    with runs.profile_runs(config.get_profile("cpu")) as root:
        run = runs.open_run("toy", CFG)
        assert root == tmp_path / "cpu" / "runs" and run.path.parent == root
        assert [r.id for r in runs.list_runs("toy")] == [run.id]
        assert runs.open_run("toy", CFG, root=tmp_path / "mine").path.parent == tmp_path / "mine"  # a root still wins
    assert runs.runs_root() == tmp_path / "smoke" / "runs"


def test_checkpoint_reads_without_dropping_metrics(tmp_path):
    run = runs.open_run("toy", CFG, root=tmp_path)
    assert run.checkpoint() is None
    for step in (1, 2, 3):
        run.log({"step": step})
    run.save_checkpoint({"w": [1.0]}, 2)
    assert run.checkpoint() == (2, {"w": [1.0]})
    assert [r["step"] for r in run.metrics()] == [1, 2, 3]  # untouched; resume() trims
    assert run.resume() == (2, {"w": [1.0]}) and [r["step"] for r in run.metrics()] == [1, 2]
