"""Throughput of the language-model engine (dpo_lab.lm) on the cpu-profile GPT-2.

For the cpu profile's model (``n_layer`` x ``n_embd``, ``n_head`` heads, ``n_positions`` context)
with the profile's vocabulary (its BPE of ``sft_bpe_vocab`` tokens) and GPT-2's 50,257 tokens, on
preference batches shaped like the IMDb task (prompts of 3-9 tokens, responses of 8-48 tokens +
EOS), this prints

* the machine: load average, threads, and the measured fp32 matmul peak (best of several sizes),
  measured again around every timed run ("peak now"), since other jobs change it minute by minute;
* preference training (DPO) with ``train_preferences``: pairs/s, seconds per step, and the FLOP/s
  of the matmuls it performs as a fraction of that peak;
* the same steps done the straightforward way (chosen and rejected in separate forwards, the
  reference model run on every step, full ``log_softmax`` over (B, T, V) + ``gather``): pairs/s,
  and the largest difference between its per-step losses and the trainer's (they must agree);
* sampling throughput of ``sample`` (new tokens/s, batch of 64 prompts, 48 new tokens).

Targets (issue 5): the trainer's step at >= 35% of the fp32 matmul peak and >= 2x the pairs/s of the
straightforward implementation, with identical losses. The machine is shared: read the load
average printed with every measurement. Not a test; run it by hand:

    .venv/bin/python benchmarks/bench_lm.py [--threads 1] [--vocab 8192 50257] [--micro 8 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from dpo_lab import config
from dpo_lab.lm import gpt2_config, load_model, sample, train_preferences
from dpo_lab.lm.logprobs import pack_pairs, packing_capacity
from dpo_lab.lm.train import batch_indices


class _Vocab:
    """Just what ``gpt2_config`` reads from a tokenizer: its size and EOS id."""

    def __init__(self, size: int):
        self.size, self.eos_token_id = size, size - 1

    def __len__(self) -> int:
        return self.size


def load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def matmul_peak(repeats: int = 5) -> float:
    """Best fp32 GFLOP/s over square matmuls of a few sizes."""
    best = 0.0
    for n in (512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def synthetic_pairs(n: int, vocab: int, seed: int = 0) -> list[dict]:
    """IMDb-shaped pairs: prompt = EOS + 2-8 tokens, responses of 8-48 tokens (EOS appended later)."""
    rng = random.Random(seed)
    eos = vocab - 1

    def ids(low, high):
        return [rng.randrange(eos) for _ in range(rng.randint(low, high))]

    return [{"prompt_ids": [eos] + ids(2, 8), "chosen_ids": ids(8, 48), "rejected_ids": ids(8, 48)} for _ in range(n)]


def step_flops(model, pairs: list[dict], indices: list[int], micro: int) -> float:
    """Matmul FLOPs of one trainer step, on the packed rows the trainer builds: forward + backward
    (3x the forward) of the body over every row position (padding included) and of the LM head
    over the response tokens only."""
    cfg = model.config
    d, layers, vocab, eos = cfg.n_embd, cfg.n_layer, cfg.vocab_size, cfg.eos_token_id
    indices = sorted(
        indices,
        key=lambda i: max(len(pairs[i]["chosen_ids"]), len(pairs[i]["rejected_ids"])) + len(pairs[i]["prompt_ids"]),
    )
    forward = 0.0
    for start in range(0, len(indices), micro):
        rows = indices[start : start + micro]
        responses = [pairs[i][k] + [eos] for k in ("chosen_ids", "rejected_ids") for i in rows]
        prompts = [pairs[i]["prompt_ids"] for i in rows] * 2
        batch = pack_pairs(prompts, responses, eos, packing_capacity(model))
        n_rows, width = batch.input_ids.shape
        # per position and layer: QKV, output projection and MLP (24 d^2) + scores and mixing (4 T d)
        forward += n_rows * width * layers * (24 * d * d + 4 * width * d)
        forward += len(batch.targets) * 2 * d * vocab
    return 3 * forward


def trainer_steps(policy, ref, pairs, steps: int, micro: int, root: str, tag: str) -> tuple[list[float], list[float]]:
    """Per-step seconds and losses of ``train_preferences`` (DPO, beta 0.1, AdamW)."""
    out = train_preferences(
        policy,
        ref,
        pairs,
        loss="dpo",
        beta=0.1,
        steps=steps,
        batch_size=32,
        micro_batch_size=micro,
        lr=1e-4,
        run_root=root,
        run_tag={"bench": tag},
        progress=False,
    )
    train = [r for r in out.metrics if r["split"] == "train"]
    return [r["seconds"] for r in train], [r["loss"] for r in train]


def naive_steps(policy, ref, pairs, steps: int) -> tuple[list[float], list[float]]:
    """The straightforward DPO step, on the trainer's batches: separate chosen / rejected forwards,
    the reference run every step, full log_softmax + gather, same optimiser and clipping."""
    import copy

    policy = copy.deepcopy(policy)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-4, weight_decay=0.0)
    eos = policy.config.eos_token_id

    def logps(model, rows, key):
        seqs = [pairs[i]["prompt_ids"] + pairs[i][key] + [eos] for i in rows]
        width = max(len(s) for s in seqs)
        ids = torch.tensor([s + [eos] * (width - len(s)) for s in seqs])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        labels = torch.zeros_like(mask, dtype=torch.bool)
        for row, i in enumerate(rows):
            labels[row, len(pairs[i]["prompt_ids"]) : len(seqs[row])] = True
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        token = logits.log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        return (token * labels[:, 1:]).sum(-1)

    seconds, losses = [], []
    for step in range(steps):
        start = time.perf_counter()
        rows = batch_indices(len(pairs), 32, 0, step)
        with torch.no_grad():
            ref_c, ref_r = logps(ref, rows, "chosen_ids"), logps(ref, rows, "rejected_ids")
        pol_c, pol_r = logps(policy, rows, "chosen_ids"), logps(policy, rows, "rejected_ids")
        loss = -F.logsigmoid(0.1 * ((pol_c - ref_c) - (pol_r - ref_r))).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        seconds.append(time.perf_counter() - start)
        losses.append(loss.item())
    return seconds, losses


def peak_now(measure):
    """Run ``measure()`` between two matmul-peak measurements; the peak at the time is their mean
    (the machine is shared, so a peak taken minutes earlier can be far off)."""
    before = matmul_peak()
    out = measure()
    return out, (before + matmul_peak()) / 2


def bench_training(profile, vocab: int, steps: int, micros: list[int], rounds: int) -> None:
    cfg = gpt2_config(_Vocab(vocab), **profile.model_sizes)
    policy, ref = load_model(cfg, seed=0, device="cpu"), load_model(cfg, seed=1, device="cpu")
    pairs = synthetic_pairs(512, vocab)
    params = sum(p.numel() for p in policy.parameters())
    print(
        f"\n== GPT-2 {cfg.n_layer} x {cfg.n_embd}, {cfg.n_head} heads, context {cfg.n_positions}, "
        f"vocab {vocab}: {params / 1e6:.1f}M parameters; 32 pairs per step ({load()})"
    )
    with tempfile.TemporaryDirectory() as root:
        for round_ in range(rounds):
            (naive_seconds, naive_losses), peak = peak_now(lambda: naive_steps(policy, ref, pairs, steps))
            naive_step = statistics.median(naive_seconds[1:])  # the first step pays one-off allocations
            print(
                f"round {round_ + 1}, straightforward:          {32 / naive_step:6.1f} pairs/s, "
                f"{naive_step:5.2f} s/step (peak now {peak:.1f} GFLOP/s; {load()})"
            )
            for micro in micros:
                tag = f"{round_}-{micro}"
                (seconds, losses), peak = peak_now(
                    lambda micro=micro, tag=tag: trainer_steps(policy, ref, pairs, steps, micro, root, tag)
                )
                step = statistics.median(seconds[1:])
                flops = statistics.median(
                    step_flops(policy, pairs, batch_indices(len(pairs), 32, 0, k), micro) for k in range(1, steps)
                )
                diff = max(abs(a - b) for a, b in zip(losses, naive_losses))
                rate = flops / step / 1e9
                print(
                    f"round {round_ + 1}, trainer, micro-batch {micro:>2}: {32 / step:6.1f} pairs/s, "
                    f"{step:5.2f} s/step, {rate:6.1f} GFLOP/s = {rate / peak:5.1%} of the peak now "
                    f"({peak:.1f}), {naive_step / step:.2f}x the straightforward pairs/s, "
                    f"max |loss difference| {diff:.1e} ({load()})"
                )


def bench_sampling(profile, vocab: int) -> None:
    cfg = gpt2_config(_Vocab(vocab), **profile.model_sizes)
    model = load_model(cfg, seed=0, device="cpu")
    prompts = [p["prompt_ids"] for p in synthetic_pairs(64, vocab, seed=1)]
    start = time.perf_counter()
    out = sample(model, None, prompts, num_samples=1, max_new_tokens=48, seed=0, batch_size=64)
    seconds = time.perf_counter() - start
    tokens = sum(len(r) for r in out.response_ids)
    print(
        f"sampling, vocab {vocab}: {tokens / seconds:7.1f} new tokens/s ({tokens} tokens, batch 64, "
        f"{seconds:.1f} s; {load()})"
    )


def bench_kl(profile, vocab: int, rows: int = 256) -> None:
    """One evaluation's KL estimate (cpu sizes: 256 prompts, 48 new tokens): the sampler's own logits
    with pi_ref stepping along (``estimate_kl`` now) against sampling then scoring every sample again
    with both models (``sequence_kl``, before)."""
    from dpo_lab.lm import estimate_kl, sequence_kl

    cfg = gpt2_config(_Vocab(vocab), **profile.model_sizes)
    policy, ref = load_model(cfg, seed=0, device="cpu"), load_model(cfg, seed=1, device="cpu")
    prompts = [p["prompt_ids"] for p in synthetic_pairs(rows, vocab, seed=1)]
    timings = {}
    for name in ("sample, then sequence_kl", "estimate_kl (sampler's logits)", "sample alone"):
        start = time.perf_counter()
        if name.startswith("estimate"):
            est = estimate_kl(policy, ref, prompts, 1, 48, seed=0)
        else:
            s = sample(policy, None, prompts, num_samples=1, max_new_tokens=48, seed=0)
            if name.startswith("sample, then"):
                sequence_kl(policy, ref, s.prompt_ids, s.response_ids)
        timings[name] = time.perf_counter() - start
    print(
        f"KL of {rows} samples x 48 tokens, vocab {vocab}: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
        + f" (KL {est.exact_mean:.2f}; {load()})"
    )


def main(argv: list[str] | None = None) -> int:
    profile = config.get_profile("cpu")
    vocabs = sorted({profile.sft_bpe_vocab or 50257, 50257})
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--vocab", type=int, nargs="+", default=vocabs)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--micro", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--kl-only", action="store_true", help="only the KL-estimate timing")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} cores; {load()}")
    print(f"fp32 matmul peak: {matmul_peak():.1f} GFLOP/s")
    for vocab in args.vocab:
        if not args.kl_only:
            bench_training(profile, vocab, args.steps, args.micro, args.rounds)
            bench_sampling(profile, vocab)
        bench_kl(profile, vocab)
    print(f"\nfp32 matmul peak at the end: {matmul_peak():.1f} GFLOP/s ({load()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
