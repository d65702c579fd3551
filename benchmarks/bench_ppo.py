"""PPO's cost against DPO's on the exact task, and how close PPO with the gold reward gets to pi*_beta.

Trains, in a results folder of its own, the exact task's DPO run at beta = 1 (the grid's, through
``dpo_lab.sweep``) and PPO with the gold reward r* at a fixed KL coefficient beta = 1 (PPO-GT,
``dpo_lab.lm.ppo_training``) from the same pi_ref, one thread each, and prints the seconds per
optimiser step of both, PPO's seconds per iteration (a rollout plus its minibatch updates), and each
policy's exact KL(pi || pi*_beta) relative to KL(pi_ref || pi*_beta).

    .venv/bin/python benchmarks/bench_ppo.py [--profile cpu] [--iterations 30]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    parser.add_argument("--iterations", type=int, default=30, help="PPO rollouts of 256 responses")
    args = parser.parse_args(argv)
    os.environ.update({"DPO_LAB_PROFILE": args.profile, "DPO_LAB_RESULTS": tempfile.mkdtemp(prefix="bench-ppo-")})

    from dpo_lab import config, exact, lm, sweep
    from dpo_lab.lm.ppo_training import train_ppo

    profile, beta = config.get_profile(), 1.0
    load_before = os.getloadavg()
    with lm.torch_threads(1):
        ctx = sweep.context(profile, "exact", progress=False)
        task = exact.ExactTask(profile)
        space, ref_probs = task.space, task.ref_probs()
        star = exact.optimal_policy(ref_probs, space, beta)
        start = exact.exact_kl(ref_probs, star, space).mean()
        dpo = sweep.train_run(sweep.RunSpec("dpo", beta, profile.seeds[0]), ctx, progress=False)
        prompt_of = {tuple(p): i for i, p in enumerate(space.prompt_id_lists())}

        def gold(prompts, responses):
            return [space.reward[prompt_of[tuple(p)], space.responses.index(r)] for p, r in zip(prompts, responses)]

        started = time.perf_counter()
        ppo = train_ppo(
            lm.load_model(ctx.sft.path),
            lm.load_model(ctx.sft.path),
            space.prompt_id_lists(),
            gold,
            reward_name="gold r*",
            iterations=args.iterations,
            batch_size=256,
            minibatch_size=64,
            max_new_tokens=space.max_len,
            lr=1e-3,
            kl_coef=beta,
            progress=False,
        )
        ppo_seconds = time.perf_counter() - started
    dpo_steps = [m["seconds"] for m in dpo.run.metrics() if m.get("split") == "train"]
    ppo_steps = [m["seconds"] for m in ppo.run.metrics() if m.get("split") == "train"]
    ratio = {name: exact.exact_kl(exact.as_probs(r.policy, space), star, space).mean() / start for name, r in
             (("DPO", dpo), ("PPO-GT", ppo))}  # fmt: skip
    print(f"exact task, profile {profile.name}, beta {beta}, one thread")
    print(f"load average before {load_before}, after {os.getloadavg()}")
    pairs = profile.exact_pref_batch_size
    print(f"DPO    : {len(dpo_steps)} steps of {pairs} pairs, {1000 * np.mean(dpo_steps):.1f} ms/step")
    print(f"PPO-GT : {len(ppo_steps)} updates of 64 responses, {1000 * np.mean(ppo_steps):.1f} ms/update (the rollout "
          f"is paid in an iteration's first update); {ppo_seconds / args.iterations:.2f} s per iteration of 256 "
          f"responses, {ppo_seconds:.0f} s in all")  # fmt: skip
    for name, value in ratio.items():
        print(f"{name:7s}: KL(pi || pi*_beta) / KL(pi_ref || pi*_beta) = {value:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
