"""GPU acceptance check of the gpu profile: what one GPU does with gpt2-large-sized DPO, in under 10 minutes.

Run it on a machine with a CUDA GPU (no network needed: the model is a randomly initialised GPT-2 of the gpu
profile's sizes, since speed and memory do not depend on the weights)::

    .venv/bin/python benchmarks/gpu_check.py [--steps 50] [--out gpu_check.json]

It prints, and writes as JSON: the environment (GPU, driver, torch, CUDA, bf16 support), then ``--steps`` DPO
steps of the gpu profile's recipe (``lm.train_preferences``: RMSprop, lr 1e-6, 150 warmup steps, 64 pairs per step
in micro-batches of ``pref_micro_batch_size``, bf16 autocast) on synthetic IMDb-shaped pairs (prompts of 3-9
tokens, responses of 8-48 tokens + EOS, GPT-2's 50,257-token vocabulary): median seconds per step, tokens per
second, the share of the device's bf16 peak that the step's matmul FLOPs reach (``--peak-tflops``, default: the
H100/H200 dense bf16 figure, 989), ``torch.cuda.max_memory_allocated`` next to the plan of ``lm.memory``
(``planned_memory_gb``, notebook 06's plan cell); then one evaluation of the profile's
protocol shape (``--eval-prompts`` prompts x 4 samples x 48 new tokens, both KL estimators). Compare the seconds
per step with README's estimate ("On a GPU").

On a machine without CUDA it refuses with a message (exit 2). ``--cpu-dry-run`` runs the same code path on the
CPU with a tiny model, which is how the tests keep this script working.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

H100_BF16_DENSE_TFLOPS = 989.0


def environment(torch) -> dict:
    """What ran the check."""
    out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out |= {"gpu": props.name, "memory_gb": props.total_memory / 2**30, "bf16": torch.cuda.is_bf16_supported()}
    return out


def synthetic_pairs(n: int, vocab: int, seed: int = 0) -> list[dict]:
    """IMDb-shaped pairs of random token ids (EOS = the last id)."""
    import random

    rng, eos = random.Random(seed), vocab - 1
    out = []
    for _ in range(n):
        prompt = [eos] + [rng.randrange(eos) for _ in range(rng.randint(2, 8))]
        chosen, rejected = ([rng.randrange(eos) for _ in range(rng.randint(8, 48))] + [eos] for _ in range(2))
        out.append({"prompt_ids": prompt, "chosen_ids": chosen, "rejected_ids": rejected})
    return out


def check(steps: int, eval_prompts: int, peak_tflops: float, dry_run: bool) -> dict:
    import torch
    from transformers import GPT2Config

    from dpo_lab import config
    from dpo_lab.lm import estimate_kl, load_model, train_preferences
    from dpo_lab.lm.model import model_device

    p = config.get_profile("gpu")
    sizes = p.model_sizes if not dry_run else {"n_layer": 2, "n_embd": 64, "n_head": 2, "n_positions": 128}
    vocab = 50257 if not dry_run else 512
    batch, micro = (p.pref_batch_size, p.pref_micro_batch_size) if not dry_run else (8, 4)
    device = "cuda" if not dry_run else "cpu"
    cfg = GPT2Config(vocab_size=vocab, bos_token_id=vocab - 1, eos_token_id=vocab - 1, **sizes)
    policy, ref = load_model(cfg, seed=0, device=device), load_model(cfg, seed=1, device=device)
    n_params = sum(t.numel() for t in policy.parameters())
    pairs = synthetic_pairs(batch * steps, vocab)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        out = train_preferences(policy, ref, pairs, loss="dpo", beta=0.1, steps=steps, batch_size=batch,
                                micro_batch_size=micro, lr=p.pref_lr, optimizer=p.pref_optimizer,
                                warmup_steps=p.pref_warmup_steps, add_eos=False, run_root=root,
                                run_tag={"gpu_check": True}, progress=False)  # fmt: skip
        wall = time.perf_counter() - started
        train = [r for r in out.metrics if r.get("split") == "train"]
    step_s = statistics.median(r["seconds"] for r in train[1:] or train)
    tokens = statistics.median(
        sum(
            len(q["prompt_ids"]) * 2 + len(q["chosen_ids"]) + len(q["rejected_ids"])
            for q in pairs[k * batch : (k + 1) * batch]
        )
        for k in range(steps)
    )
    flops = 6 * n_params * tokens  # forward + backward of the policy; pi_ref's log-probs are computed once, cached
    record = {
        "model_parameters": n_params,
        "steps": steps,
        "pairs_per_step": batch,
        "micro_batch_pairs": micro,
        "seconds_per_step": step_s,
        "training_wall_seconds": wall,
        "tokens_per_second": tokens / step_s,
        "tflops_per_second": flops / step_s / 1e12,
        "share_of_bf16_peak": flops / step_s / 1e12 / peak_tflops,
        "max_memory_allocated_gb": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
    }
    # the plan of lm.memory (notebook 06's plan cell) for what ran: 3 float32 copies (the policy passed in, the
    # reference, the trainer's copy), gradients, optimiser state, activations of a median micro-batch
    from dpo_lab.lm import memory

    micro_tokens = statistics.median(
        sum(len(q["prompt_ids"]) * 2 + len(q["chosen_ids"]) + len(q["rejected_ids"]) for q in pairs[k : k + micro])
        for k in range(0, len(pairs) - micro + 1, micro)
    )
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    measured = memory.measure(sizes["n_embd"], sizes["n_head"], vocab, bf16)
    plan = memory.memory_plan(sizes["n_layer"], sizes["n_embd"], sizes["n_positions"], vocab, p.pref_optimizer,
                              int(micro_tokens), measured)  # fmt: skip
    record |= {"planned_memory_gb": plan["total"], "memory_plan_gb": plan}
    prompts = [q["prompt_ids"] for q in pairs[:eval_prompts]]
    started = time.perf_counter()
    kl = estimate_kl(out.policy, ref, prompts, p.eval_samples_per_prompt, p.max_new_tokens, seed=0)
    record |= {"evaluation_seconds": time.perf_counter() - started, "evaluation_samples": len(kl.samples),
               "evaluation_kl_exact": kl.exact_mean, "device": str(model_device(out.policy))}  # fmt: skip
    return record


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--eval-prompts", type=int, default=512)
    parser.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE_TFLOPS)
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--cpu-dry-run", action="store_true", help="the same code path with a tiny model on the CPU")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() and not args.cpu_dry_run:
        print("gpu_check: no CUDA GPU is visible here; run it on a machine with one (or --cpu-dry-run to test "
              "the script itself with a tiny model)", file=sys.stderr)  # fmt: skip
        return 2
    report = {"environment": environment(torch), "dry_run": args.cpu_dry_run}
    report |= check(args.steps, args.eval_prompts, args.peak_tflops, args.cpu_dry_run)
    for key, value in report.items():
        print(f"{key:28s} {value}")
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
