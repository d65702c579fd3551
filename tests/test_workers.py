"""dpo_lab.workers beyond what tests/test_sweep.py covers: which GPU a worker takes, and the worker
counts that are refused (under torchrun the ranks are the workers)."""

import pytest

from dpo_lab import workers


@pytest.mark.parametrize(
    "index, gpus, device",
    [(0, 0, None), (3, 1, None), (0, 4, "cuda:0"), (3, 4, "cuda:3"), (5, 4, "cuda:1"), (1, 2, "cuda:1")],
)
def test_worker_i_takes_gpu_i_when_several_are_visible(index, gpus, device):
    assert workers.worker_device(index, gpus) == device


@pytest.mark.parametrize("index, gpus, name", [(-1, 2, "index"), (0, -2, "gpus"), (1.0, 2, "index"), (0, True, "gpus")])
def test_worker_device_refuses_bad_arguments(index, gpus, name):
    with pytest.raises(ValueError, match=f"^{name}: need an integer >= 0"):
        workers.worker_device(index, gpus)


def test_under_torchrun_several_workers_are_refused(tiny_context, monkeypatch):
    from sweep_support import TINY

    from dpo_lab import sweep
    from dpo_lab.lm import distributed

    monkeypatch.setattr(distributed, "init", lambda: (0, 2))
    with pytest.raises(ValueError, match="workers: under torchrun the ranks train each run together"):
        workers.run_jobs([workers.Job(sweep.grid(TINY)[0])], TINY, workers=2, progress=False)
    with pytest.raises(ValueError, match="workers: need an integer >= 0"):
        workers.run_jobs([workers.Job(sweep.grid(TINY)[0])], TINY, workers=-1, progress=False)
