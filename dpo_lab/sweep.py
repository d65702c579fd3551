"""The notebook-05 experiment: DPO and its baselines trained from pi_SFT, each run evaluated for the frontier.

Introduced in notebook 05. DPO paper Sec. 6.1 (Fig. 2) and ODPO paper Sec. 6.1: starting from pi_SFT
(``dpo_lab.sentiment.sft_policy``) and its preference pairs (``dpo_lab.sentiment.preference_data``),
train one policy per (method, hyperparameter, seed) and evaluate it every ``eval_every`` steps on the
same held-out prompts. Each evaluation is one point of the reward-KL frontier (``dpo_lab.frontier``).

The grid (:func:`grid`), with the losses of ``dpo_lab.losses`` (h = log-ratio margin, DPO Eq. 7):

=============  =================================  ======================================  =============
method         loss                               hyperparameter                          seeds
=============  =================================  ======================================  =============
dpo            -log sigmoid(beta h)               beta in ``profile.dpo_betas``           seeds[0]
odpo           -log sigmoid(beta h - Delta_r)     beta in ``profile.dpo_betas``;          seeds[0]
               Delta_r = alpha log(s_w - s_l)     alpha = ``profile.odpo_alpha``
ipo            (h - 1 / (2 beta))^2               beta = ``profile.ipo_beta``             seeds[0]
cdpo           DPO with label smoothing eps       beta = ``profile.cdpo_beta``,           seeds[0]
                                                  eps = ``profile.cdpo_label_smoothing``
preferred_ft   SFT on the chosen responses        none                                    every seed
unlikelihood   -log p(y_w) - alpha log(1 - p(y_l))  alpha in ``profile.unlikelihood_alphas``  seeds[0]
=============  =================================  ======================================  =============

A seed sets the order of the training pairs (nothing else in a step is random). Preferred-FT has no
hyperparameter, so its runs differ by seed (as in the DPO paper); the other methods run one seed per
setting, like the paper's 22-run sweep.

Optimisation (per profile, ``pref_*`` knobs): the gpu profile keeps the paper's defaults (RMSprop,
lr 1e-6 with 150 linear warmup steps, 64 pairs per step). The cpu and smoke profiles train a small
model for few steps, so they scale the recipe: AdamW, lr 2e-4 (REFERENCE.md 8 measured 1e-4 .. 3e-4
at cpu scale; 1e-6 would not move a small model in 100 steps), 10 (smoke: 2) warmup steps, 16 (smoke:
8) pairs per step. Every run trains on the same fixed subset of ``pref_steps * pref_batch_size``
pairs (:func:`training_pairs`), one pass over it, so the reference log-probs each run caches cover
only what it uses.

Evaluation (:class:`Evaluator`): ``eval_samples_per_prompt`` fresh samples per held-out prompt, by
plain ancestral sampling with one fixed seed (the same random numbers for every policy, so method
differences are not sampling luck), scored by the gold reward and by the second scorer on
prompt + response, and the sequence KL to pi_SFT by both estimators of ``dpo_lab.lm.estimate_kl``.
pi_SFT itself is evaluated once the same way (run kind ``sft_eval``): the level every method starts
from. Record format: ``dpo_lab.frontier``.

Runs are stored and resumable (``dpo_lab.runs``, run kind ``pref``): a finished run is loaded, not
retrained; an interrupted one continues from its last checkpoint. ``python -m dpo_lab.sweep`` runs
the whole sweep of the active profile (``DPO_LAB_PROFILE=gpu`` for paper scale) and
``--export data/runs`` copies the finished runs' configs and metrics (no models) for shipping.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import config as _config
from . import frontier as _frontier
from .runs import Run, list_runs, open_run

#: beta of the token-level losses (Preferred-FT, Unlikelihood): their loss has no beta; it only scales
#: the implicit rewards beta * log(pi / pi_ref) that the trainer logs for every loss.
LOGGING_BETA = 0.1
#: Rows per sampling / scoring batch during evaluation.
EVAL_BATCH_SIZE = 64
#: Files of a run that :func:`export_runs` copies: configuration, metrics and result, never models.
EXPORTED_FILES = ("config.json", "metrics.jsonl", "result.json")


@dataclass(frozen=True)
class RunSpec:
    """One cell of the grid: a method, its hyperparameter (None when it has none) and a seed.

    Introduced in notebook 05.
    """

    method: str
    hyper: float | None
    seed: int

    def __post_init__(self):
        if self.method not in _frontier.METHODS or self.method == _frontier.REFERENCE_METHOD:
            raise ValueError(f"method: need a trained method of {sorted(set(_frontier.METHODS) - {'sft'})}, "
                             f"got {self.method!r}")
        has_hyper = _frontier.METHODS[self.method].hyper_name is not None
        if has_hyper != (self.hyper is not None):
            raise ValueError(f"hyper: {self.method} {'needs' if has_hyper else 'takes no'} hyperparameter, "
                             f"got {self.hyper!r}")
        if self.hyper is not None and not (math.isfinite(self.hyper) and self.hyper > 0):
            raise ValueError(f"hyper: need a finite number > 0, got {self.hyper!r}")

    @property
    def label(self) -> str:
        """E.g. "DPO beta=0.1 seed 0"."""
        name = _frontier.METHODS[self.method]
        hyper = f" {name.hyper_name}={self.hyper:g}" if name.hyper_name else ""
        return f"{name.label}{hyper} seed {self.seed}"


def grid(profile: _config.Profile | None = None) -> list[RunSpec]:
    """Every run of the sweep (module table), in the order they are trained.

    Introduced in notebook 05.
    """
    p = profile or _config.get_profile()
    first = p.seeds[0]
    return ([RunSpec("dpo", b, first) for b in p.dpo_betas]
            + [RunSpec("odpo", b, first) for b in p.dpo_betas]
            + [RunSpec("unlikelihood", a, first) for a in p.unlikelihood_alphas]
            + [RunSpec("preferred_ft", None, s) for s in p.seeds]
            + [RunSpec("ipo", p.ipo_beta, first), RunSpec("cdpo", p.cdpo_beta, first)])


def trainer_settings(spec: RunSpec, profile: _config.Profile | None = None) -> dict:
    """Keyword arguments of ``lm.train_preferences`` for one run, except data, models and eval.

    Introduced in notebook 05. ``run_tag`` holds the frontier label (method, hyperparameter, seed,
    profile); :func:`run_spec` adds the evaluation settings to it.
    """
    p = profile or _config.get_profile()
    loss, beta, loss_kwargs = spec.method, spec.hyper, {}
    if spec.method == "cdpo":
        loss_kwargs = {"label_smoothing": p.cdpo_label_smoothing}
    elif spec.method == "unlikelihood":
        beta, loss_kwargs = LOGGING_BETA, {"alpha": spec.hyper}
    elif spec.method == "preferred_ft":
        beta = LOGGING_BETA
    tag = {"method": spec.method, "seed": spec.seed, "profile": p.name}
    if spec.hyper is not None:
        tag[_frontier.METHODS[spec.method].hyper_name] = spec.hyper
    if spec.method == "odpo":
        tag["odpo_alpha"] = p.odpo_alpha
    return {"loss": loss, "beta": beta, "loss_kwargs": loss_kwargs, "steps": p.pref_steps,
            "batch_size": p.pref_batch_size, "micro_batch_size": min(p.pref_micro_batch_size, p.pref_batch_size),
            "lr": p.pref_lr, "optimizer": p.pref_optimizer, "warmup_steps": p.pref_warmup_steps,
            "seed": spec.seed, "eval_every": p.eval_every, "add_eos": False, "run_tag": tag}


def training_pairs(pairs: list[dict], profile: _config.Profile | None = None, odpo: bool = False) -> list[dict]:
    """The fixed subset of pairs every run trains on, in ``lm.train_preferences`` format.

    Introduced in notebook 05. The first ``pref_steps * pref_batch_size`` pairs of a permutation
    seeded with ``profile.seed`` (all pairs when there are fewer). With ``odpo`` each pair carries its
    ODPO offset ``odpo_alpha * log(s_w - s_l)`` (``sentiment.pair_offsets``; the stored ``offset`` is
    alpha = 1).
    """
    from .sentiment import pair_offsets, trainer_pairs

    p = profile or _config.get_profile()
    if not pairs:
        raise ValueError("pairs: no preference pairs")
    keep = np.random.default_rng(p.seed).permutation(len(pairs))[:p.pref_steps * p.pref_batch_size]
    chosen = [pairs[i] for i in sorted(keep)]
    out = trainer_pairs(chosen, odpo=odpo)
    if odpo and p.odpo_alpha != 1.0:
        offsets = pair_offsets([q["score_chosen"] for q in chosen], [q["score_rejected"] for q in chosen],
                               alpha=p.odpo_alpha)
        for row, offset in zip(out, offsets):
            row["offset"] = float(offset)
    return out


class Evaluator:
    """The evaluation callback: ``evaluator(policy, step)`` -> the ``eval/*`` keys of one frontier record.

    Introduced in notebook 05. Samples ``num_samples`` responses per prompt from ``policy`` with a
    fixed ``seed`` (plain ancestral sampling), estimates KL(policy || ref) on them by both estimators,
    scores prompt + response with ``gold`` and ``second``, and adds the text statistics
    (``frontier.evaluation_record``). ``settings`` is what identifies the protocol; it is hashed into
    every run's tag, so changing the protocol makes new runs.

    ===========  ==========  ==============================================================
    argument     type        meaning
    ===========  ==========  ==============================================================
    ref          model       pi_SFT, frozen (a separate copy from the policy being trained)
    tokenizer    tokenizer   the policy's
    prompts      (P,) str    the held-out prompts, the same for every run
    gold         Scorer      texts -> (N,) P(positive); it built the preference pairs
    second       Scorer      texts -> (N,) scores in [0, 1]; it built nothing
    ===========  ==========  ==============================================================
    """

    def __init__(self, ref, tokenizer, prompts: list[str], gold, second, num_samples: int,
                 max_new_tokens: int, seed: int):
        from .sentiment import prompt_ids

        if not prompts:
            raise ValueError("prompts: need at least one held-out prompt")
        if num_samples * len(prompts) < 2:
            raise ValueError("num_samples: need at least 2 samples in all for a standard error")
        self.ref, self.tokenizer, self.prompts = ref, tokenizer, list(prompts)
        self.gold, self.second = gold, second
        self.num_samples, self.max_new_tokens, self.seed = num_samples, max_new_tokens, seed
        self.prompt_ids = prompt_ids(self.prompts, tokenizer)

    @property
    def settings(self) -> dict:
        """The evaluation protocol as a JSON-able dict."""
        return {"prompts_sha256": hashlib.sha256("\n".join(self.prompts).encode("utf-8")).hexdigest(),
                "n_prompts": len(self.prompts), "samples_per_prompt": self.num_samples,
                "max_new_tokens": self.max_new_tokens, "seed": self.seed, "gold": self.gold.name,
                "second": self.second.name}

    def samples(self, policy):
        """``lm.estimate_kl`` on the held-out prompts: the samples and both KL estimates."""
        from .lm import estimate_kl

        return estimate_kl(policy, self.ref, self.prompt_ids, self.num_samples, self.max_new_tokens, self.seed,
                           batch_size=EVAL_BATCH_SIZE, tokenizer=self.tokenizer)

    def __call__(self, policy, step: int) -> dict:
        est = self.samples(policy)
        s = est.samples
        full = [self.prompts[i] + text for i, text in zip(s.prompt_index, s.texts)]
        kl = {"kl_logratio": est.logratio_mean, "kl_logratio_se": est.logratio_se,
              "kl_exact": est.exact_mean, "kl_exact_se": est.exact_se}
        record = _frontier.evaluation_record(step, self.gold(full), self.second(full), kl, s.texts,
                                             s.response_ids, self.tokenizer.eos_token_id)
        del record["step"]  # the trainer adds it
        return record


@dataclass
class Context:
    """What every run of one profile shares: pi_SFT, a frozen copy of it as pi_ref, the training
    pairs (with and without ODPO offsets) and the evaluator. Build it with :func:`context`."""

    profile: _config.Profile
    sft: object  # sentiment.SFTPolicy
    ref: object
    pairs: list[dict]
    odpo_pairs: list[dict]
    evaluator: Evaluator


def context(profile: _config.Profile | None = None, progress: bool = True) -> Context:
    """Load (or build once: cached runs) pi_SFT, the preference data, the scorers and the evaluator.

    Introduced in notebook 05.
    """
    from .lm import load_model
    from .sentiment import heldout_prompts, load_gold_reward, load_second_scorer, preference_data, sft_policy

    p = profile or _config.get_profile()
    sft = sft_policy(p, progress=progress)
    data = preference_data(p, policy=sft, progress=progress)
    pairs = data.pairs()
    ref = load_model(sft.path, device=_config.device()).eval()
    evaluator = Evaluator(ref, sft.tokenizer, heldout_prompts(p), load_gold_reward(profile=p), load_second_scorer(),
                          p.eval_samples_per_prompt, p.max_new_tokens, p.seed)
    return Context(p, sft, ref, training_pairs(pairs, p), training_pairs(pairs, p, odpo=True), evaluator)


def evaluate_sft(ctx: Context) -> Run:
    """The evaluation of pi_SFT itself (step 0, run kind ``sft_eval``), computed once.

    Introduced in notebook 05. pi_SFT against its frozen copy: both KL estimates are exactly 0, since
    the two models compute identical log-probs.
    """
    tag = {"method": _frontier.REFERENCE_METHOD, "seed": ctx.profile.seeds[0], "profile": ctx.profile.name,
           "eval": ctx.evaluator.settings}
    run = open_run("sft_eval", {"tag": tag, "sft": ctx.sft.run.id})
    if not run.finished:
        record = ctx.evaluator(ctx.sft.model, 0)
        run.log({"split": "eval", "step": 0, **record})
        run.finish({"final_eval": record})
    return run


def train_run(spec: RunSpec, ctx: Context, progress: bool = True):
    """Train (or load, when finished) the run of ``spec``: an ``lm.TrainResult``.

    Introduced in notebook 05.
    """
    from .lm import train_preferences

    kwargs = trainer_settings(spec, ctx.profile)
    kwargs["run_tag"] = {**kwargs["run_tag"], "eval": ctx.evaluator.settings}
    pairs = ctx.odpo_pairs if spec.method == "odpo" else ctx.pairs
    return train_preferences(ctx.sft.model, ctx.ref, pairs, eval_fn=ctx.evaluator, tokenizer=ctx.sft.tokenizer,
                             progress=progress, **kwargs)


_WORKER: dict = {}


def _init_worker(profile_name: str, threads: int) -> None:
    """Per worker process: one torch thread count and one shared context, built once."""
    import torch

    torch.set_num_threads(threads)
    _WORKER["ctx"] = context(_config.get_profile(profile_name), progress=False)


def _train_one(spec: RunSpec, ctx: Context, progress: bool) -> tuple[str | None, float, str | None]:
    """``(run id, seconds, None)``, or ``(None, seconds, why)`` when the run diverged: a diverged run
    is a result (Unlikelihood with a large alpha can blow up), so the sweep keeps its evaluations so
    far and goes on."""
    started = time.perf_counter()
    try:
        return train_run(spec, ctx, progress=progress).run.id, time.perf_counter() - started, None
    except FloatingPointError as err:
        return None, time.perf_counter() - started, str(err)


def _train_in_worker(spec: RunSpec) -> tuple[str | None, float, str | None]:
    return _train_one(spec, _WORKER["ctx"], progress=False)


def _submission_order(specs: list[RunSpec]) -> list[RunSpec]:
    """The first run of each seed first. Runs of one seed share their reference log-probs (the
    trainer caches them per data order), so two workers starting together then compute two different
    caches instead of the same one twice."""
    firsts = list({spec.seed: spec for spec in reversed(specs)}.values())
    return sorted(specs, key=lambda spec: (spec not in firsts, specs.index(spec)))


def run_sweep(profile: _config.Profile | None = None, workers: int | None = None,
              progress: bool = True) -> dict:
    """Train every run of :func:`grid` (finished runs are loaded, interrupted ones resumed).

    Introduced in notebook 05. With ``workers`` > 1 (default ``profile.sweep_workers``) the runs are
    spread over that many processes; pi_SFT, the pairs and the pi_SFT evaluation are built first in
    this process so the workers only read them. Each training process uses ``profile.sweep_threads``
    torch threads (0 = ``cores // workers``): on 2 cores two one-thread processes beat one two-thread
    process (REFERENCE.md 8), and a second thread is what suffers most when other jobs share the
    cores. A run that stops on a non-finite loss is reported, not fatal: it stays unfinished in the
    store with the evaluations it made. Returns ``{"runs": {spec: Run}`` (finished runs),
    ``"failed": {spec: reason}, "seconds": {spec: seconds}, "wall_seconds": total}``.
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed
    import multiprocessing

    from tqdm.auto import tqdm

    from .lm import torch_threads

    p = profile or _config.get_profile()
    workers = p.sweep_workers if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers: need an integer >= 1, got {workers!r}")
    threads = p.sweep_threads or max(1, (os.cpu_count() or 1) // workers)
    started = time.perf_counter()
    specs = grid(p)
    outcome = {}
    bar = tqdm(total=len(specs), desc=f"sweep ({p.name} profile)", disable=not progress)
    with torch_threads(threads):
        ctx = context(p, progress=progress)
        evaluate_sft(ctx)
        if workers == 1:
            for spec in specs:
                outcome[spec] = _train_one(spec, ctx, progress)
                bar.update(1)
    if workers > 1:
        os.environ[_config.ENV_VAR] = p.name  # the spawned workers resolve the same profile and results
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(p.name, threads)) as pool:
            futures = {pool.submit(_train_in_worker, spec): spec for spec in _submission_order(specs)}
            for future in as_completed(futures):
                spec = futures[future]
                try:
                    outcome[spec] = future.result()
                except Exception as err:
                    raise RuntimeError(f"run {spec.label} failed: {err}") from err
                bar.update(1)
    bar.close()
    stored = {r.id: r for r in list_runs("pref")}
    return {"runs": {s: stored[outcome[s][0]] for s in specs if outcome[s][0]},
            "failed": {s: outcome[s][2] for s in specs if outcome[s][2]},
            "seconds": {s: outcome[s][1] for s in specs}, "wall_seconds": time.perf_counter() - started}


def policy_samples(ctx: Context, runs: dict[str, Run], n_prompts: int = 3) -> list[dict]:
    """One response per prompt from pi_SFT and from the final policy of each finished run, on the
    first ``n_prompts`` held-out prompts with the evaluation's seed: the same prompts and random
    numbers for every policy, so differences are the policies'.

    Introduced in notebook 05. ``runs`` maps a label to a finished run (its saved model is loaded).
    Returns one dict per (policy, prompt): ``policy``, ``prompt``, ``response``, ``reward`` (gold).
    """
    from .lm import load_model, sample

    ev = ctx.evaluator
    if isinstance(n_prompts, bool) or not isinstance(n_prompts, int) or not 1 <= n_prompts <= len(ev.prompts):
        raise ValueError(f"n_prompts: need an integer in [1, {len(ev.prompts)}], got {n_prompts!r}")
    unfinished = [label for label, run in runs.items() if not run.finished]
    if unfinished:
        raise ValueError(f"runs: {unfinished} have not finished; train them first (run_sweep)")
    policies = {"pi_SFT": ctx.sft.model}
    policies.update({label: load_model(run.artifact("model"), device=_config.device()) for label, run in runs.items()})
    rows = []
    for label, model in policies.items():
        s = sample(model, ev.tokenizer, ev.prompt_ids[:n_prompts], 1, ev.max_new_tokens, ev.seed)
        prompts = [ev.prompts[i] for i in s.prompt_index]
        rewards = ev.gold([x + y for x, y in zip(prompts, s.texts)])
        rows += [{"policy": label, "prompt": x, "response": y, "reward": float(r)}
                 for x, y, r in zip(prompts, s.texts, rewards)]
    return rows


def export_runs(dest: str | Path, root: str | Path | None = None) -> list[Path]:
    """Copy the finished frontier runs under ``root`` (default ``<results>/runs``) to ``dest``:
    :data:`EXPORTED_FILES` only (no checkpoints, models or cached log-probs). Returns the folders.

    Introduced in notebook 05; ``data/runs`` holds the cpu-profile runs made this way.
    """
    runs = [r for r in _frontier.frontier_runs(root) if r.finished]
    if not runs:
        raise ValueError(f"root: no finished frontier runs under {root or 'the results folder'}")
    dest = Path(dest)
    out = []
    for run in runs:
        folder = dest / run.id
        folder.mkdir(parents=True, exist_ok=True)
        for name in EXPORTED_FILES:
            shutil.copy2(run.path / name, folder / name)
        out.append(folder)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m dpo_lab.sweep [--workers N] [--export DIR]``: the whole sweep of the active profile."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None, help="training processes (default: the profile's)")
    parser.add_argument("--export", default=None, help="afterwards copy configs + metrics of the runs here")
    args = parser.parse_args(argv)
    profile = _config.get_profile()
    print(f"dpo_lab sweep: profile {profile.name}, {len(grid(profile))} runs -> {_config.results_dir(profile)}")
    out = run_sweep(profile, workers=args.workers)
    for spec, sec in out["seconds"].items():
        status = out["runs"][spec].id if spec in out["runs"] else f"DIVERGED: {out['failed'][spec]}"
        print(f"{spec.label:40s} {sec:7.0f} s  {status}")
    print(f"wall time {out['wall_seconds']:.0f} s")
    if args.export:
        folders = export_runs(args.export)
        print(f"exported {len(folders)} runs to {args.export}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
