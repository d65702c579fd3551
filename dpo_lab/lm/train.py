"""One training loop for SFT and for every preference loss (``dpo_lab.lm.preference_training``).

Introduced in notebook 05 (SFT) and notebook 06 (preference training). The loss is a parameter, not
a new trainer: :func:`train_sft` and ``preference_training.train_preferences`` only say how a micro-batch turns
into a loss; the loop (:func:`train_loop`), the optimiser, the checkpoints and the logging are shared,
and so is what makes a run's identity (:func:`run_identity`).

Pseudocode of one optimiser step (``B = batch_size`` pairs, ``m = micro_batch_size``)::

    pairs   <- the next B indices of a seeded shuffle (epoch e uses permutation(seed, e))
    lr      <- linear warmup 0 -> lr over warmup_steps, then constant (or cosine decay)
    mine    <- this rank's contiguous share of the B pairs (under torchrun with K ranks: about B/K
               of them, dpo_lab.lm.distributed; all B in one process)
    for each micro-batch of m pairs of mine:
        one forward over [chosen_1..m, rejected_1..m]   (concatenated, then packed into rows:
                                                         dpo_lab.lm.logprobs, rule 3; SFT: the m
                                                         sequences)
        loss_i  <- chosen loss(policy logps, CACHED reference logps)  (SFT: next-token NLL)
        backward(sum_i loss_i / B)                      (gradient accumulation; B global)
    loss, metrics <- summed / gathered over the ranks   (torchrun only)
    stop with FloatingPointError if a log-prob or the loss is not finite (checkpoint kept, the
    reason logged as a `"split": "diverged"` record)
    grad    <- all-reduce(sum) of every rank's grad     (torchrun only: then every rank holds
                                                         one process's gradient, and identical weights)
    clip the gradient norm to max_grad_norm; AdamW or RMSprop step
    log {"split": "train", "step", "loss", "lr", "grad_norm", rewards/..., logps/...}
    every eval_every steps (and at the end): log {"split": "eval", "step", **eval_fn(policy, step)}
                                                        (every rank evaluates; lm.sample splits the
                                                         sampling over them and gathers it)
    every checkpoint_every steps: save model + optimiser state
    (torchrun: only rank 0 logs and writes the run store; the others read rank 0's checkpoint)

Design choices, each for a reason:

* Dropout is off in every forward (the model stays in eval mode). With dropout, pi_theta would differ
  from pi_ref at step 0 and the log-ratios would be noisy; it also keeps a step free of randomness.
* The data order is a pure function of ``(seed, step)`` and nothing else in a step is random, so a
  checkpoint is just the model and optimiser state, and a killed run resumed from it ends with the
  same model as an uninterrupted run (bit for bit on CPU).
* The model you pass in is never modified: training works on a copy, so re-running a notebook cell
  finds the same run (the run is keyed by a fingerprint of the initial weights and of the data).
* A finished run returns its saved model (artifact ``model``) without training again; a run trained
  with ``keep_model=False`` stored none (a sweep's frontier needs only the metrics), and is still
  found finished.

:func:`train_sft` takes a list of token-id lists; every token after the first is trained on (put a
BOS such as EOS first, and EOS last if the model should learn to stop).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable

import numpy as np
import torch

from .. import runs as _runs
from . import distributed as _dist
from .logprobs import as_id_lists, eos_id_of, pack_pairs, packing_capacity, prepare_pairs, token_logprobs
from .model import load_model, model_device, save_model

OPTIMIZERS = ("adamw", "rmsprop")
LR_SCHEDULES = ("constant", "cosine")


class TrainResult:
    """What a trainer returns: the trained policy, the run (``run.metrics()`` holds every logged record)
    and its stored result. A run that had finished earlier loads its saved model (artifact ``model``)
    when ``policy`` is first read, onto ``device``; one trained with ``keep_model=False`` kept none,
    and reading its ``policy`` raises ``FileNotFoundError`` saying so."""

    def __init__(self, policy: torch.nn.Module | None, run: _runs.Run, result: dict, device: str = "cpu"):
        self._policy, self.run, self.result, self._device = policy, run, result, device

    @property
    def policy(self) -> torch.nn.Module:
        if self._policy is None:
            path = self.run.artifact("model")
            if not path.exists():
                raise FileNotFoundError(
                    f"run {self.run.id} finished without keeping its final model (trained with keep_model=False): "
                    f"no {path}. Its metrics and result are stored; to get the model, move {self.run.path} away "
                    "and train it again with keep_model=True"
                )
            self._policy = load_model(path, device=self._device)
        return self._policy

    @property
    def metrics(self) -> list[dict]:
        return self.run.metrics()


@dataclasses.dataclass(frozen=True)
class Settings:
    """The hyperparameters that decide a run's result (hashed into its identity)."""

    steps: int
    batch_size: int
    micro_batch_size: int
    lr: float
    optimizer: str
    warmup_steps: int
    lr_schedule: str
    weight_decay: float
    max_grad_norm: float
    seed: int
    eval_every: int


def check_settings(s: Settings, eval_fn) -> None:
    """Raise a ValueError naming the first bad setting (or an ``eval_fn`` that cannot be called)."""
    for name in ("steps", "batch_size", "micro_batch_size"):
        value = getattr(s, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    for name in ("warmup_steps", "eval_every", "seed"):
        value = getattr(s, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    for name in ("lr", "max_grad_norm"):
        value = getattr(s, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    decay = s.weight_decay
    if not (isinstance(decay, (int, float)) and math.isfinite(decay) and decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {s.weight_decay!r}")
    if s.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {s.optimizer!r}")
    if s.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {s.lr_schedule!r}")
    if s.eval_every and eval_fn is None:
        raise ValueError("eval_every is set but eval_fn is None; pass an eval_fn(policy, step) -> dict")
    if eval_fn is not None and not callable(eval_fn):
        raise ValueError(f"eval_fn must be callable, got {type(eval_fn).__name__}")


def make_settings(args: dict, eval_fn) -> Settings:
    """The checked :class:`Settings` of a trainer call from its arguments (its ``locals()``, taken
    before any argument is reassigned): each field by name, ``micro_batch_size`` None = ``batch_size``."""
    values = {field.name: args[field.name] for field in dataclasses.fields(Settings)}
    if values["micro_batch_size"] is None:
        values["micro_batch_size"] = values["batch_size"]
    s = Settings(**values)
    check_settings(s, eval_fn)
    return s


def learning_rate(step: int, lr: float, steps: int, warmup_steps: int = 0, schedule: str = "constant") -> float:
    """Learning rate of update ``step`` (1-based) out of ``steps``: linear warmup from 0 to ``lr``
    over ``warmup_steps`` (DPO paper App. B), then constant or a cosine decay to 0 at the last step.

    Introduced in notebook 05.
    """
    if step <= warmup_steps:
        return lr * step / warmup_steps
    if schedule == "constant":
        return lr
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    return lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Indices of the examples of update ``step`` (0-based): consecutive slices of an endless
    stream of permutations, epoch e shuffled by ``default_rng([seed, e])``."""
    out: list[int] = []
    position = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(position + len(out), n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        out += perm[offset : offset + batch_size - len(out)].tolist()
    return out


def fingerprint(obj) -> str:
    """sha256 of token data (nested lists of ints / floats) or of a model's weights."""
    digest = hashlib.sha256()
    if isinstance(obj, torch.nn.Module):
        for name, tensor in obj.state_dict().items():
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    else:
        digest.update(json.dumps(obj, separators=(",", ":")).encode())
    return digest.hexdigest()


def make_optimizer(model, s: Settings) -> torch.optim.Optimizer:
    """AdamW or RMSprop (``s.optimizer``) over the trainable parameters of ``model``."""
    params = [p for p in model.parameters() if p.requires_grad]
    if s.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    return torch.optim.RMSprop(params, lr=s.lr, weight_decay=s.weight_decay)


def _not_finite(what: str, step: int, run: _runs.Run) -> FloatingPointError:
    """The error that stops a diverged run, recorded in its metrics first (``"split": "diverged"``), so
    that whoever reads the run later (the frontier) knows it diverged rather than stopped."""
    ckpt = run.path / "checkpoint.pt"
    kept = f"the last checkpoint ({ckpt}) is kept" if ckpt.exists() else "no checkpoint was saved yet"
    message = f"non-finite {what} at step {step}: training stopped before the update; {kept}."
    if _dist.rank() == 0:
        run.log({"split": "diverged", "step": step, "reason": message})
    return FloatingPointError(f"{message} Lower the learning rate or check the data.")


def finished_result(run: _runs.Run, policy) -> TrainResult:
    """A finished run: its result now, its saved model (on the device of the model that was passed in)
    when :attr:`TrainResult.policy` is read."""
    return TrainResult(None, run, run.result(), device=str(model_device(policy)))


def open_claimed(kind: str, cfg: dict, run_root) -> tuple[_runs.Run, bool]:
    """``open_run`` and ``Run.claim`` (True: train it; False: it finished). Under ``torchrun`` rank 0
    opens and claims the run, the other ranks open it after (the same fingerprint, so the same folder)
    and follow rank 0's answer: they never take the run's lock, which rank 0 holds for all of them."""
    _dist.init()
    run = _dist.rank_zero_first(lambda: _runs.open_run(kind, cfg, root=run_root))
    if _dist.world_size() == 1:
        return run, run.claim()
    return run, _dist.broadcast(run.claim() if _dist.rank() == 0 else None)


def train_loop(
    run: _runs.Run,
    policy,
    s: Settings,
    n_examples: int,
    step_fn: Callable[[torch.nn.Module, list[int]], dict],
    eval_fn,
    tokenizer,
    checkpoint_every: int,
    progress: bool | str,
    extra_state=None,
    keep_model: bool = True,
    sharded: bool = False,
) -> TrainResult:
    """The shared loop (module docstring). ``step_fn(model, indices)`` runs forward and backward
    over the micro-batches of one step and returns its metrics (``loss`` included); it raises
    ``FloatingPointError(what)`` when a log-prob is not finite. ``extra_state``: None, or an object
    whose ``state()`` dict is saved with every checkpoint and handed back to ``load(state, step)``
    on resume (what a trainer keeps besides the weights and the optimiser). ``keep_model=False``
    stores no final model (the run is finished all the same). ``sharded``: ``step_fn`` runs only this
    rank's share of ``indices`` (``distributed.share``), divides by the global batch and returns metrics
    reduced over the ranks (raising, if at all, on every rank at once); under ``torchrun`` a trainer
    whose ``step_fn`` does not is refused: run it in one process (``distributed.solo``)."""
    from tqdm.auto import tqdm

    world, main = _dist.world_size(), _dist.rank() == 0
    if world > 1 and not sharded:
        raise ValueError(
            f"this trainer ({run.kind}) does not split its steps over processes; run it in one process "
            "(dpo_lab.lm.distributed.solo() on rank 0), not on all ranks of torchrun"
        )
    _dist.check_device(policy)
    policy = copy.deepcopy(policy).eval()
    optimizer = make_optimizer(policy, s)
    step = 0
    # rank 0 trims the metrics to its checkpoint; the others then read that checkpoint (a shared filesystem)
    resumed = _dist.rank_zero_first(lambda: run.resume() if main else run.checkpoint())
    if resumed is not None:
        step, state = resumed
        policy.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if extra_state is not None:
            extra_state.load(state["extra"], step)
    params = [p for p in policy.parameters() if p.requires_grad]
    last: dict = {}
    evaluated: dict = {}
    # progress: True names the bar by the run id; a string names it (the sweep passes "DPO beta=0.1 seed 0")
    name = progress if isinstance(progress, str) else run.id
    bar = tqdm(total=s.steps, initial=step, desc=name, disable=not (progress and main))
    try:
        while step < s.steps:
            started = time.perf_counter()
            lr = learning_rate(step + 1, s.lr, s.steps, s.warmup_steps, s.lr_schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            try:
                metrics = step_fn(policy, batch_indices(n_examples, s.batch_size, s.seed, step))
            except FloatingPointError as err:
                raise _not_finite(str(err), step + 1, run) from None
            if not math.isfinite(metrics["loss"]):
                raise _not_finite(f"loss ({metrics['loss']})", step + 1, run)
            _dist.all_reduce_grads(params)  # the sum over ranks: each divided by the global batch
            grad_norm = torch.nn.utils.clip_grad_norm_(params, s.max_grad_norm).item()
            if not math.isfinite(grad_norm):
                raise _not_finite(f"gradient norm ({grad_norm})", step + 1, run)
            optimizer.step()
            step += 1
            last = {"split": "train", "step": step, "lr": lr, "grad_norm": grad_norm, **metrics}
            if main:
                run.log({**last, "seconds": time.perf_counter() - started})
            if eval_fn is not None and ((s.eval_every and step % s.eval_every == 0) or step == s.steps):
                with torch.no_grad():  # every rank: lm.sample shares the sampling out and gathers it
                    evaluated = eval_fn(policy, step)
                if not isinstance(evaluated, dict):
                    raise ValueError(f"eval_fn must return a dict of numbers, got {type(evaluated).__name__}")
                if main:
                    run.log({"split": "eval", "step": step, **evaluated})
            if step % checkpoint_every == 0 and step < s.steps and main:
                state = {"model": policy.state_dict(), "optimizer": optimizer.state_dict()}
                if extra_state is not None:  # what else a trainer needs to resume exactly (PPO: its KL coefficient)
                    state["extra"] = extra_state.state()
                run.save_checkpoint(state, step)
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.4f}")
    finally:
        bar.close()
    result = {"steps": s.steps, "final_train": last, "final_eval": evaluated}
    if main:
        if keep_model:
            save_model(policy, tokenizer, run.artifact("model"))
        result = run.finish(result)
    _dist.barrier()  # the other ranks return once the run is stored
    return TrainResult(policy, run, result)


def run_identity(policy, s: Settings, data_fingerprint: str, run_tag, checkpoint_every) -> dict:
    """The part of a run's identity that both trainers share (checks the last two arguments)."""
    if run_tag is not None and not isinstance(run_tag, dict):
        raise ValueError(f"run_tag must be a JSON-able dict or None, got {type(run_tag).__name__}")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be an integer >= 1, got {checkpoint_every!r}")
    return {
        "settings": dataclasses.asdict(s),
        "data": data_fingerprint,
        "policy_init": fingerprint(policy),
        "tag": run_tag or {},
    }


def train_sft(
    model,
    sequences,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    micro_batch_size: int | None = None,
    optimizer: str = "adamw",
    warmup_steps: int = 0,
    lr_schedule: str = "constant",
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
    seed: int = 0,
    eval_fn=None,
    eval_every: int = 0,
    checkpoint_every: int = 50,
    tokenizer=None,
    run_tag: dict | None = None,
    run_root=None,
    progress: bool = True,
    keep_model: bool = True,
) -> TrainResult:
    """Supervised fine-tuning: minimise the mean next-token NLL of ``sequences``.

    ``loss = -(1 / n_tokens) * sum over the step's sequences s and positions t >= 2 of
    log pi(s_t | s_<t)`` (every token after the first is a target; the first conditions).

    ==================  =============================================================================
    argument            meaning
    ==================  =============================================================================
    model               the initial model (never modified; training works on a copy)
    sequences           a list of token-id lists, each of 2 .. context tokens
    steps, batch_size   optimiser updates; sequences per update
    lr                  peak learning rate (after ``warmup_steps`` of linear warmup)
    micro_batch_size    sequences per forward (gradient accumulation); default = batch_size
    optimizer           "adamw" or "rmsprop"; ``weight_decay`` applies to either
    lr_schedule         "constant" or "cosine" (decay to 0 at the last step) after warmup
    max_grad_norm       gradient-norm clipping threshold
    seed                the data order (nothing else is random)
    eval_fn             ``eval_fn(policy, step) -> dict`` of numbers, logged with ``split="eval"``
                        every ``eval_every`` steps and after the last one; keep it deterministic
    checkpoint_every    steps between resumable checkpoints
    tokenizer           saved with the final model when given
    run_tag             extra JSON-able dict hashed into the run's identity (e.g. the profile name,
                        a version of eval_fn): change it to force a new run
    run_root            where runs are stored (default ``<results>/runs``)
    keep_model          False: store no final model (not part of the run's identity; reading
                        ``policy`` of the finished run later raises ``FileNotFoundError``)
    ==================  =============================================================================

    Under ``torchrun`` the ranks train this one run together (``dpo_lab.lm.distributed``; call its
    ``init()`` before loading the model). Returns a :class:`TrainResult`; the run kind is ``"sft"``.
    Raises ``ValueError`` for bad arguments or data (naming them) and ``FloatingPointError`` naming
    the step whose loss is not finite.

    Introduced in notebook 05.
    """
    s = make_settings(locals(), eval_fn)
    seqs = as_id_lists("sequences", sequences)
    if not seqs:
        raise ValueError("sequences is empty; pass a list of token-id lists")
    short = [i for i, seq in enumerate(seqs) if len(seq) < 2]
    if short:
        raise ValueError(f"sequences[{short[0]}] has fewer than 2 tokens: nothing to predict")
    prompts, targets = prepare_pairs(model, [q[:1] for q in seqs], [q[1:] for q in seqs], add_eos=False)
    eos = eos_id_of(model)

    def sft_step(policy, indices):
        device = model_device(policy)
        n_tokens = sum(len(targets[i]) for i in indices)  # of the whole step: every rank divides by it
        total = 0.0
        mine = _dist.share(indices)
        for start in range(0, len(mine), s.micro_batch_size):
            rows = mine[start : start + s.micro_batch_size]
            batch = pack_pairs(
                [prompts[i] for i in rows], [targets[i] for i in rows], eos, packing_capacity(policy), device
            )
            nll = -token_logprobs(policy, batch).sum() / n_tokens
            nll.backward()
            total += nll.item()
        [total] = _dist.sum_floats(total)
        return {"loss": total, "tokens": n_tokens}

    cfg = {"trainer": "sft", **run_identity(model, s, fingerprint(seqs), run_tag, checkpoint_every)}
    run, claimed = open_claimed("sft", cfg, run_root)
    if not claimed:  # finished, maybe by another process this one waited for (runs.Run.claim)
        return finished_result(run, model)
    return train_loop(
        run, model, s, len(seqs), sft_step, eval_fn, tokenizer, checkpoint_every, progress,
        keep_model=keep_model, sharded=True,
    )  # fmt: skip
