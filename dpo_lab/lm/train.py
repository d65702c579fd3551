"""One training loop for SFT, Preferred-FT, Unlikelihood and every pairwise loss of ``dpo_lab.losses``.

Introduced in notebook 04 (SFT) and notebook 05 (preference training). The loss is a parameter, not
a new trainer: :func:`train_sft` and :func:`train_preferences` only say how a micro-batch turns into
a loss; the loop, the optimiser, the checkpoints and the logging are shared.

Key equation (DPO paper Eq. 7), for a batch of B preference pairs ``(x, y_w, y_l)``::

    loss = mean_i  -log sigmoid( beta * [ (log pi(y_w|x) - log pi_ref(y_w|x))
                                        - (log pi(y_l|x) - log pi_ref(y_l|x)) ] )

with ``log pi(y|x)`` the summed response log-prob of :func:`dpo_lab.lm.sequence_logprobs`.

Pseudocode of one optimiser step (``B = batch_size`` pairs, ``m = micro_batch_size``)::

    pairs   <- the next B indices of a seeded shuffle (epoch e uses permutation(seed, e))
    lr      <- linear warmup 0 -> lr over warmup_steps, then constant (or cosine decay)
    for each micro-batch of m pairs:
        one forward over [chosen_1..m, rejected_1..m]   (concatenated, then packed into rows:
                                                         dpo_lab.lm.logprobs, rule 3)
        loss_i  <- chosen loss(policy logps, CACHED reference logps)
        backward(sum_i loss_i / B)                      (gradient accumulation)
    stop with FloatingPointError if a log-prob or the loss is not finite (checkpoint kept)
    clip the gradient norm to max_grad_norm; AdamW or RMSprop step
    log {"split": "train", "step", "loss", "lr", "grad_norm", rewards/..., logps/...}
    every eval_every steps (and at the end): log {"split": "eval", "step", **eval_fn(policy, step)}
    every checkpoint_every steps: save model + optimiser state

Design choices, each for a reason:

* Reference log-probs are computed once, before the first step, for the pairs the run will visit,
  and stored in the run store (artifact ``ref_logps.pt`` of a ``"reflogps"`` run keyed by the
  reference weights, the data and the data order): pi_ref is frozen, so a forward of it on every
  step is wasted work, and runs of a sweep that share reference, data and order share the file.
* Dropout is off in every forward (the model stays in eval mode). With dropout, pi_theta would differ
  from pi_ref at step 0 and the log-ratios would be noisy; it also keeps a step free of randomness.
* The data order is a pure function of ``(seed, step)`` and nothing else in a step is random, so a
  checkpoint is just the model and optimiser state, and a killed run resumed from it ends with the
  same model as an uninterrupted run (bit for bit on CPU).
* The model you pass in is never modified: training works on a copy, so re-running a notebook cell
  finds the same run (the run is keyed by a fingerprint of the initial weights and of the data).
* A finished run returns its saved model (artifact ``model``) without training again.

Data formats:

==================  ========================================================================
trainer             data
==================  ========================================================================
train_sft           a list of token-id lists; every token after the first is trained on
                    (put a BOS such as EOS first, and EOS last if the model should learn to stop)
train_preferences   a list of dicts, or a dict of equal-length lists, with keys ``prompt_ids``,
                    ``chosen_ids``, ``rejected_ids`` (token-id lists) and, for ``loss="odpo"``
                    only, ``offset`` (a float per pair, e.g. from ``losses.odpo_offset``)
==================  ========================================================================

Losses of :func:`train_preferences` (``loss=``): every name in ``losses.PAIRWISE_LOSSES``
("dpo", "cdpo", "ipo", "hinge", "odpo"), plus "preferred_ft" (SFT on y_w) and "unlikelihood".
Extra arguments of a loss go in ``loss_kwargs`` (``{"label_smoothing": 0.1}`` for cdpo,
``{"alpha": 0.5}`` for unlikelihood). Every loss is averaged over the pairs of a step.

Shapes inside a preference micro-batch (m pairs, L = longest response in it):

====================  ======  ==========================================================
tensor                shape   meaning
====================  ======  ==========================================================
token_logps           (2m, L) per-token log-probs, rows 0..m-1 chosen, m..2m-1 rejected
policy_chosen_logps   (m,)    summed over the chosen response (EOS included)
ref_chosen_logps      (m,)    from the cache, computed before training
offset                (m,)    ODPO offsets (loss="odpo" only)
====================  ======  ==========================================================
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import json
import math
import time
from typing import Callable

import numpy as np
import torch

from .. import losses as _losses
from .. import runs as _runs
from .logprobs import (as_id_lists, eos_id_of, pack_pairs, packing_capacity, prepare_pairs, sequence_logprobs,
                       token_logprobs)
from .model import load_model, model_device, save_model

TOKEN_LOSSES = ("preferred_ft", "unlikelihood")
OPTIMIZERS = ("adamw", "rmsprop")
LR_SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass
class TrainResult:
    """What a trainer returns: the trained policy (loaded from the run when it had finished
    earlier), the run (``run.metrics()`` holds every logged record) and its stored result."""

    policy: torch.nn.Module
    run: _runs.Run
    result: dict

    @property
    def metrics(self) -> list[dict]:
        return self.run.metrics()


@dataclasses.dataclass(frozen=True)
class _Settings:
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


def _check_settings(s: _Settings, eval_fn) -> None:
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


def learning_rate(step: int, lr: float, steps: int, warmup_steps: int = 0,
                  schedule: str = "constant") -> float:
    """Learning rate of update ``step`` (1-based) out of ``steps``: linear warmup from 0 to ``lr``
    over ``warmup_steps`` (DPO paper App. B), then constant or a cosine decay to 0 at the last step.

    Introduced in notebook 04.
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
        out += perm[offset:offset + batch_size - len(out)].tolist()
    return out


def _fingerprint(obj) -> str:
    """sha256 of token data (nested lists of ints / floats) or of a model's weights."""
    digest = hashlib.sha256()
    if isinstance(obj, torch.nn.Module):
        for name, tensor in obj.state_dict().items():
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    else:
        digest.update(json.dumps(obj, separators=(",", ":")).encode())
    return digest.hexdigest()


def _make_optimizer(model, s: _Settings) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if s.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    return torch.optim.RMSprop(params, lr=s.lr, weight_decay=s.weight_decay)


def _not_finite(what: str, step: int, run: _runs.Run) -> FloatingPointError:
    ckpt = run.path / "checkpoint.pt"
    kept = f"the last checkpoint ({ckpt}) is kept" if ckpt.exists() else "no checkpoint was saved yet"
    return FloatingPointError(f"non-finite {what} at step {step}: training stopped before the update; "
                              f"{kept}. Lower the learning rate or check the data.")


def _finished(run: _runs.Run, policy) -> TrainResult:
    """A finished run's saved model, on the device of the model that was passed in."""
    return TrainResult(load_model(run.artifact("model"), device=str(model_device(policy))), run, run.result())


def _train_loop(run: _runs.Run, policy, s: _Settings, n_examples: int,
                step_fn: Callable[[torch.nn.Module, list[int]], dict], eval_fn, tokenizer,
                checkpoint_every: int, progress: bool) -> TrainResult:
    """The shared loop (module docstring). ``step_fn(model, indices)`` runs forward and backward
    over the micro-batches of one step and returns its metrics (``loss`` included); it raises
    ``FloatingPointError(what)`` when a log-prob is not finite."""
    from tqdm.auto import tqdm

    policy = copy.deepcopy(policy).eval()
    optimizer = _make_optimizer(policy, s)
    step = 0
    resumed = run.resume()
    if resumed is not None:
        step, state = resumed
        policy.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    params = [p for p in policy.parameters() if p.requires_grad]
    last: dict = {}
    evaluated: dict = {}
    bar = tqdm(total=s.steps, initial=step, desc=run.id, disable=not progress)
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
            grad_norm = torch.nn.utils.clip_grad_norm_(params, s.max_grad_norm).item()
            if not math.isfinite(grad_norm):
                raise _not_finite(f"gradient norm ({grad_norm})", step + 1, run)
            optimizer.step()
            step += 1
            last = {"split": "train", "step": step, "lr": lr, "grad_norm": grad_norm, **metrics}
            run.log({**last, "seconds": time.perf_counter() - started})
            if eval_fn is not None and ((s.eval_every and step % s.eval_every == 0) or step == s.steps):
                with torch.no_grad():
                    evaluated = eval_fn(policy, step)
                if not isinstance(evaluated, dict):
                    raise ValueError(f"eval_fn must return a dict of numbers, got {type(evaluated).__name__}")
                run.log({"split": "eval", "step": step, **evaluated})
            if step % checkpoint_every == 0 and step < s.steps:
                run.save_checkpoint({"model": policy.state_dict(), "optimizer": optimizer.state_dict()}, step)
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.4f}")
    finally:
        bar.close()
    save_model(policy, tokenizer, run.artifact("model"))
    result = {"steps": s.steps, "final_train": last, "final_eval": evaluated}
    return TrainResult(policy, run, run.finish(result))


def _common_config(policy, s: _Settings, data_fingerprint: str, run_tag, checkpoint_every) -> dict:
    """The part of a run's identity that both trainers share (checks the last two arguments)."""
    if run_tag is not None and not isinstance(run_tag, dict):
        raise ValueError(f"run_tag must be a JSON-able dict or None, got {type(run_tag).__name__}")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be an integer >= 1, got {checkpoint_every!r}")
    return {"settings": dataclasses.asdict(s), "data": data_fingerprint, "policy_init": _fingerprint(policy),
            "tag": run_tag or {}}


def train_sft(model, sequences, *, steps: int, batch_size: int, lr: float,
              micro_batch_size: int | None = None, optimizer: str = "adamw", warmup_steps: int = 0,
              lr_schedule: str = "constant", weight_decay: float = 0.0, max_grad_norm: float = 1.0,
              seed: int = 0, eval_fn=None, eval_every: int = 0, checkpoint_every: int = 50,
              tokenizer=None, run_tag: dict | None = None, run_root=None,
              progress: bool = True) -> TrainResult:
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
    ==================  =============================================================================

    Returns a :class:`TrainResult`; the run kind is ``"sft"``. Raises ``ValueError`` for bad
    arguments or data (naming them) and ``FloatingPointError`` naming the step whose loss is not
    finite.

    Introduced in notebook 04.
    """
    micro = batch_size if micro_batch_size is None else micro_batch_size
    s = _Settings(steps, batch_size, micro, lr, optimizer, warmup_steps, lr_schedule, weight_decay,
                  max_grad_norm, seed, eval_every)
    _check_settings(s, eval_fn)
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
        n_tokens = sum(len(targets[i]) for i in indices)
        total = 0.0
        for start in range(0, len(indices), s.micro_batch_size):
            rows = indices[start:start + s.micro_batch_size]
            batch = pack_pairs([prompts[i] for i in rows], [targets[i] for i in rows], eos,
                               packing_capacity(policy), device)
            nll = -token_logprobs(policy, batch).sum() / n_tokens
            nll.backward()
            total += nll.item()
        return {"loss": total, "tokens": n_tokens}

    cfg = {"trainer": "sft", **_common_config(model, s, _fingerprint(seqs), run_tag, checkpoint_every)}
    run = _runs.open_run("sft", cfg, root=run_root)
    if run.finished:
        return _finished(run, model)
    return _train_loop(run, model, s, len(seqs), sft_step, eval_fn, tokenizer, checkpoint_every, progress)


def _preference_columns(pairs, loss: str) -> dict[str, list]:
    """``pairs`` (list of dicts, or dict of lists) as columns; checks keys, lengths and offsets."""
    keys = ("prompt_ids", "chosen_ids", "rejected_ids")
    if isinstance(pairs, dict):
        columns = {k: list(v) for k, v in pairs.items()}
    elif isinstance(pairs, (list, tuple)) and all(isinstance(p, dict) for p in pairs):
        names = set().union(*(p.keys() for p in pairs)) if pairs else set(keys)
        columns = {k: [p.get(k) for p in pairs] for k in names}
    else:
        raise ValueError("pairs must be a list of dicts or a dict of lists with keys "
                         f"{', '.join(keys)} (+ offset for odpo), got {type(pairs).__name__}")
    missing = [k for k in keys if k not in columns or any(v is None for v in columns[k])]
    if missing:
        raise ValueError(f"pairs lack {missing[0]!r} (every pair needs {', '.join(keys)})")
    unknown = sorted(set(columns) - set(keys) - {"offset"})
    if unknown:
        raise ValueError(f"pairs have unknown key {unknown[0]!r}; expected {', '.join(keys)} and offset")
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"pairs columns differ in length: {lengths}")
    if not columns["prompt_ids"]:
        raise ValueError("pairs is empty")
    if loss == "odpo":
        offsets = columns.get("offset")
        if offsets is None or any(o is None for o in offsets):
            raise ValueError("loss='odpo' needs an 'offset' for every pair (see losses.odpo_offset)")
        columns["offset"] = [float(o) for o in offsets]
        if not all(math.isfinite(o) for o in columns["offset"]):
            raise ValueError("pairs hold a NaN or infinite offset (ties with f='log' give -inf: drop them)")
    elif "offset" in columns:
        raise ValueError(f"pairs carry offsets but loss={loss!r} ignores them; use loss='odpo' or drop them")
    return columns


def _check_loss_kwargs(loss: str, loss_kwargs: dict) -> None:
    """Bind ``loss_kwargs`` to the loss's signature now, so a missing ``alpha`` or a misspelt
    ``label_smoothing`` fails before the reference pass instead of at step 1."""
    if loss in _losses.PAIRWISE_LOSSES:
        fn, given = _losses.PAIRWISE_LOSSES[loss], 5 + (loss == "odpo")  # 4 logps, beta (, offset)
    else:
        fn = getattr(_losses, f"{loss}_loss")
        given = 2 if loss == "preferred_ft" else 4  # token log-probs and masks
    try:
        inspect.signature(fn).bind(*[None] * given, **loss_kwargs)
    except TypeError as err:
        raise ValueError(f"loss_kwargs {loss_kwargs} do not fit loss {loss!r}: {err}") from None


def _reference_logps(ref, identity: dict, s: _Settings, prompts, chosen, rejected, run_root,
                     progress: bool) -> torch.Tensor:
    """(N, 2) reference log-probs [chosen, rejected] of every pair the run will visit, NaN elsewhere.

    Computed once, before training, and stored as the artifact ``ref_logps.pt`` of a run of kind
    ``"reflogps"`` keyed by the reference weights, the data and the visited pairs (``identity`` +
    seed, steps, batch_size): every preference run that shares them (a whole beta / loss sweep)
    reads the same file instead of running pi_ref again.
    """
    cfg = {**identity, "seed": s.seed, "steps": s.steps, "batch_size": s.batch_size}
    run = _runs.open_run("reflogps", cfg, root=run_root)
    if not run.finished:
        visited = sorted(set().union(*(batch_indices(len(prompts), s.batch_size, s.seed, k)
                                       for k in range(s.steps))))
        both = sequence_logprobs(ref, [prompts[i] for i in visited] * 2,
                                 [chosen[i] for i in visited] + [rejected[i] for i in visited],
                                 add_eos=False, progress=progress)
        logps = torch.full((len(prompts), 2), math.nan)
        logps[visited] = torch.stack([both[:len(visited)], both[len(visited):]], dim=1)
        torch.save(logps, run.artifact("ref_logps.pt"))
        run.finish({"pairs": len(visited)})  # only after the save: a killed pass is simply redone
    return torch.load(run.artifact("ref_logps.pt"))


def train_preferences(policy, ref, pairs, *, loss: str = "dpo", beta: float = 0.1,
                      loss_kwargs: dict | None = None, steps: int, batch_size: int, lr: float,
                      micro_batch_size: int | None = None, add_eos: bool = True,
                      optimizer: str = "adamw", warmup_steps: int = 0, lr_schedule: str = "constant",
                      weight_decay: float = 0.0, max_grad_norm: float = 1.0, seed: int = 0,
                      eval_fn=None, eval_every: int = 0, checkpoint_every: int = 50, tokenizer=None,
                      run_tag: dict | None = None, run_root=None,
                      progress: bool = True) -> TrainResult:
    """Preference training of ``policy`` against the frozen ``ref`` with the loss named ``loss``.

    ``beta`` is the loss's beta (larger = stay closer to pi_ref) and the scale of the logged
    implicit rewards ``rewards/* = beta * log-ratio`` for every loss, token-level ones included.
    ``add_eos`` appends EOS to chosen and rejected responses (as in ``sequence_logprobs``); pass
    False for sampled responses that carry their own EOS. ``pairs``, ``loss`` and ``loss_kwargs``:
    module docstring. The remaining arguments are those of :func:`train_sft`; ``batch_size`` and
    ``micro_batch_size`` count pairs.

    Every step logs ``loss`` and the six metrics of ``losses.preference_metrics``. The run kind is
    ``"pref"``; the reference log-probs live in a shared run of kind ``"reflogps"`` (module
    docstring). Raises ``ValueError``
    when ``ref`` is ``policy`` (or shares its weights), for unknown losses, missing offsets and
    malformed data; ``FloatingPointError`` naming the step whose loss is not finite.

    Introduced in notebook 05.
    """
    shared = {p.data_ptr() for p in ref.parameters()} & {p.data_ptr() for p in policy.parameters()}
    if ref is policy or shared:
        raise ValueError("ref is the policy (or shares its weights): pi_ref must stay frozen while pi "
                         "trains; load a separate copy, e.g. load_model(path) twice")
    valid = tuple(_losses.PAIRWISE_LOSSES) + TOKEN_LOSSES
    if loss not in valid:
        raise ValueError(f"loss must be one of {valid}, got {loss!r}")
    loss_kwargs = dict(loss_kwargs or {})
    if loss_kwargs.keys() & {"beta", "offset"}:
        raise ValueError("loss_kwargs must not hold beta (an argument) or offset (a data column)")
    _check_loss_kwargs(loss, loss_kwargs)
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    micro = batch_size if micro_batch_size is None else micro_batch_size
    s = _Settings(steps, batch_size, micro, lr, optimizer, warmup_steps, lr_schedule, weight_decay,
                  max_grad_norm, seed, eval_every)
    _check_settings(s, eval_fn)
    columns = _preference_columns(pairs, loss)
    prompts, chosen = prepare_pairs(policy, columns["prompt_ids"], columns["chosen_ids"], add_eos)
    _, rejected = prepare_pairs(policy, prompts, columns["rejected_ids"], add_eos)
    eos = eos_id_of(policy)
    offsets = torch.tensor(columns["offset"]) if loss == "odpo" else None
    data = [prompts, chosen, rejected, columns.get("offset")]
    cfg = {"trainer": "preferences", "loss": loss, "beta": beta, "loss_kwargs": loss_kwargs,
           "ref": _fingerprint(ref),
           **_common_config(policy, s, _fingerprint(data), run_tag, checkpoint_every)}
    run = _runs.open_run("pref", cfg, root=run_root)
    if run.finished:
        return _finished(run, policy)
    # Keyed without the ODPO offsets: the reference log-probs do not depend on them.
    identity = {"ref": cfg["ref"], "data": _fingerprint([prompts, chosen, rejected])}
    ref_logps = _reference_logps(ref, identity, s, prompts, chosen, rejected, run_root, progress)

    def preference_step(model, indices):
        device = model_device(model)
        # Similar lengths in one micro-batch waste less padding; the sum over pairs is unchanged.
        indices = sorted(indices, key=lambda i: max(len(chosen[i]), len(rejected[i])) + len(prompts[i]))
        policy_logps, total = [], 0.0
        for start in range(0, len(indices), s.micro_batch_size):
            rows = indices[start:start + s.micro_batch_size]
            m = len(rows)
            responses = [chosen[i] for i in rows] + [rejected[i] for i in rows]
            batch = pack_pairs([prompts[i] for i in rows] * 2, responses, eos, packing_capacity(model),
                               device)
            token = token_logprobs(model, batch)
            logps = token.sum(dim=1)
            if not torch.isfinite(logps).all():
                raise FloatingPointError("policy log-probs")
            ref_rows = ref_logps[rows].to(device)
            if loss in _losses.PAIRWISE_LOSSES:
                extra = {"offset": offsets[rows].to(device)} if loss == "odpo" else {}
                per_pair = _losses.PAIRWISE_LOSSES[loss](logps[:m], logps[m:], ref_rows[:, 0],
                                                         ref_rows[:, 1], beta, **loss_kwargs, **extra)
            elif loss == "preferred_ft":
                per_pair = _losses.preferred_ft_loss(token[:m], batch.response_mask[:m])
            else:
                per_pair = _losses.unlikelihood_loss(token[:m], batch.response_mask[:m], token[m:],
                                                     batch.response_mask[m:], **loss_kwargs)
            contribution = per_pair.sum() / len(indices)
            contribution.backward()
            total += contribution.item()
            policy_logps.append(logps.detach().view(2, m).T.cpu())
        step_logps = torch.cat(policy_logps)
        ref_step = ref_logps[indices]
        return {"loss": total, **_losses.preference_metrics(step_logps[:, 0], step_logps[:, 1],
                                                           ref_step[:, 0], ref_step[:, 1], beta)}

    return _train_loop(run, policy, s, len(prompts), preference_step, eval_fn, tokenizer,
                       checkpoint_every, progress)
