"""Where the sweep's time goes on 2 cores: one training process against two at once.

Issue 15 measured a cpu-profile preference step at 1.05-1.25 s in isolation while the stored sweep (two
one-thread worker processes, ``dpo_lab.workers``) logged 2.13-2.30 s per step. This script runs the same DPO
steps (cpu-profile GPT-2 and vocabulary, 16 pairs per step, synthetic IMDb-shaped pairs, ``train_preferences``)
in 1 process and then in 2 processes at once, each with ``--threads`` torch threads, and prints the median
seconds per step of each: if two processes each run at half speed, the cores do not add up.

    .venv/bin/python benchmarks/bench_workers.py [--steps 12] [--threads 1]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time


def _steps(args: tuple[int, int, int]) -> list[float]:
    """Seconds of each DPO step of one process (run in a fresh spawned process)."""
    steps, threads, seed = args
    import torch

    torch.set_num_threads(threads)
    from bench_lm import _Vocab, synthetic_pairs

    from dpo_lab import config
    from dpo_lab.lm import gpt2_config, load_model, train_preferences

    profile = config.get_profile("cpu")
    cfg = gpt2_config(_Vocab(profile.sft_bpe_vocab), **profile.model_sizes)
    policy, ref = load_model(cfg, seed=0, device="cpu"), load_model(cfg, seed=1, device="cpu")
    pairs = synthetic_pairs(16 * steps, profile.sft_bpe_vocab, seed=seed)
    with tempfile.TemporaryDirectory() as root:
        out = train_preferences(policy, ref, pairs, loss="dpo", beta=0.1, steps=steps, batch_size=16,
                                micro_batch_size=16, lr=1e-4, run_root=root, run_tag={"seed": seed},
                                progress=False)  # fmt: skip
        return [r["seconds"] for r in out.metrics if r["split"] == "train"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()}")
    context = multiprocessing.get_context("spawn")
    for processes in (1, 2):
        started = time.perf_counter()
        with context.Pool(processes) as pool:
            per_process = pool.map(_steps, [(args.steps, args.threads, seed) for seed in range(processes)])
        wall = time.perf_counter() - started
        medians = [statistics.median(s[1:]) for s in per_process]  # the first step pays allocations
        print(
            f"{processes} process(es) x {args.threads} thread(s): median s/step "
            f"{', '.join(f'{m:.2f}' for m in medians)}; {processes * args.steps} steps in {wall:.0f} s wall "
            f"(load average {os.getloadavg()[0]:.2f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
