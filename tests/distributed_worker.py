"""Run by tests/test_lm_distributed.py under ``torchrun --standalone --nproc_per_node 2`` (gloo on the
CPU): the problem both the test (one process) and this script (two) train, and what the two ranks
do. One launch does everything, since starting the processes costs more than the tiny runs:

1. DPO for 5 steps with evaluations that sample (the uninterrupted run);
2. the same run stopped by an exception at step 4's evaluation, then resumed from step 3's checkpoint;
3. SFT for 3 steps;
4. PPO for 2 rollouts of 6 responses, minibatches of 3 (shares of 1 and 2 rows), evaluated after each;
5. ``lm.sample`` with shares of 2 and 3 rows, and with one row (a rank with none);
6. the tiny sweep of ``sweep_support`` (``sweep.run_sweep``, as ``torchrun -m dpo_lab.sweep`` runs it).

With the second argument ``kill`` it only starts the DPO run in ``OUT/killed``, and rank 1 kills itself (SIGKILL)
at step 4's evaluation, so torchrun tears the group down; the full launch that follows resumes that run first.
"""

import json
import os
import random
import signal
import sys
from pathlib import Path

import torch
from lm_support import EOS, TINY

from dpo_lab.lm import distributed, estimate_kl, load_model, sample, train_preferences, train_sft
from dpo_lab.lm.ppo_training import train_ppo
from dpo_lab.lm.train import fingerprint

DPO = dict(beta=0.5, steps=5, batch_size=8, micro_batch_size=2, lr=1e-2, eval_every=2, checkpoint_every=1)
SFT = dict(steps=3, batch_size=6, micro_batch_size=2, lr=1e-2)
PPO = dict(reward_name="length", iterations=2, batch_size=6, minibatch_size=3, max_new_tokens=5, lr=1e-2,
           target_kl=1.0, horizon=12, ppo_epochs=2, eval_every=1)  # fmt: skip


def length_reward(prompt_ids, response_ids):
    """A reward of whole responses: longer is better (deterministic, the same on every rank)."""
    return [float(len(r)) for r in response_ids]


def problem():
    """A policy, a different reference, 16 random pairs, 6 prompts and 12 SFT sequences."""
    rng = random.Random(0)

    def ids(low, high):
        return [rng.randrange(EOS) for _ in range(rng.randint(low, high))]

    pairs = [{"prompt_ids": ids(1, 4), "chosen_ids": ids(1, 9), "rejected_ids": ids(1, 9)} for _ in range(16)]
    prompts = [ids(1, 4) for _ in range(6)]
    sequences = [ids(2, 12) for _ in range(12)]
    return load_model(TINY, seed=1), load_model(TINY, seed=2), pairs, prompts, sequences


class Stop(Exception):
    """The stand-in for a kill: raised on every rank at once."""


def evaluation(ref, prompts, stop_at=None):
    """An ``eval_fn`` that samples (2 per prompt, batches of 4 rows: each split over the ranks)."""

    def evaluate(policy, step):
        if step == stop_at:
            raise Stop(step)
        est = estimate_kl(policy, ref, prompts, 2, 6, seed=0, batch_size=4)
        lengths = [len(r) for r in est.samples.response_ids]
        return {"kl": est.exact_mean, "logratio": est.logratio_mean, "length": sum(lengths) / len(lengths)}

    return evaluate


def samples(policy, ref, prompts) -> list[dict]:
    """Samples with uneven shares: 5 rows in one batch (2 + 3) and a single row (0 + 1)."""
    out = []
    for rows, batch in ((prompts[:5], 5), (prompts[:1], 4)):
        s = sample(policy, None, rows, 1, 6, seed=3, batch_size=batch, ref=ref)
        out.append({"response_ids": s.response_ids, "kl_exact": s.kl_exact.tolist(), "finished": s.finished})
    return out


def tiny_sweep() -> dict:
    """The tiny sweep's run ids by label (results under ``$DPO_LAB_RESULTS``)."""
    import sweep_support

    from dpo_lab import sweep

    tokenizer = sweep_support.make_tokenizer()
    ctx = sweep_support.make_tiny_context(sweep_support.make_sft_model(tokenizer), tokenizer)
    sweep.context = lambda profile, task=None, progress=True, variant=None: ctx
    out = sweep.run_sweep(sweep_support.TINY, progress=False)
    assert not out["failed"], out["failed"]
    return {spec.label: run.id for spec, run in out["runs"].items()}


def killed_at(step: int, evaluate):
    """``evaluate``, except that rank 1 dies at ``step`` (a real kill: no exception, no cleanup)."""

    def maybe_die(policy, at):
        if at == step and distributed.rank() == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return evaluate(policy, at)

    return maybe_die


def main(out: Path, mode: str = "all") -> None:
    rank, world = distributed.init()
    assert world == 2, world
    torch.set_num_threads(1)
    policy, ref, pairs, prompts, sequences = problem()
    eval_fn = killed_at(4, evaluation(ref, prompts)) if mode == "kill" else evaluation(ref, prompts)
    killed = train_preferences(policy, ref, pairs, **DPO, eval_fn=eval_fn, run_root=out / "killed", progress=False)
    whole = train_preferences(
        policy, ref, pairs, **DPO, eval_fn=evaluation(ref, prompts), run_root=out / "whole", progress=False
    )
    try:
        train_preferences(
            policy, ref, pairs, **DPO, eval_fn=evaluation(ref, prompts, 4), run_root=out / "resumed", progress=False
        )
    except Stop:
        pass
    resumed = train_preferences(
        policy, ref, pairs, **DPO, eval_fn=evaluation(ref, prompts), run_root=out / "resumed", progress=False
    )
    sft = train_sft(policy, sequences, **SFT, run_root=out / "sft", progress=False)
    rl = train_ppo(policy, ref, prompts, length_reward, **PPO, eval_fn=evaluation(ref, prompts), run_root=out / "ppo",
                   progress=False)  # fmt: skip
    record = {
        "sweep": tiny_sweep(),
        "whole": fingerprint(whole.policy),
        "resumed": fingerprint(resumed.policy),
        "killed": fingerprint(killed.policy),
        "sft": fingerprint(sft.policy),
        "ppo": fingerprint(rl.policy),
        "samples": samples(policy, ref, prompts),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(Path(sys.argv[1]), *sys.argv[2:])
