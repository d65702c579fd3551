"""Preference training: DPO and its family on pairs, on the shared loop of ``dpo_lab.lm.train``.

Introduced in notebook 06. Key equation (DPO paper Eq. 7), for a batch of B preference pairs
``(x, y_w, y_l)``::

    loss = mean_i  -log sigmoid( beta * [ (log pi(y_w|x) - log pi_ref(y_w|x))
                                        - (log pi(y_l|x) - log pi_ref(y_l|x)) ] )

with ``log pi(y|x)`` the summed response log-prob of :func:`dpo_lab.lm.sequence_logprobs`.

Reference log-probs are computed once, before the first step, for the pairs the run will visit,
and stored in the run store (artifact ``ref_logps.pt`` of a ``"reflogps"`` run keyed by the
reference weights, the data and the data order): pi_ref is frozen, so a forward of it on every
step is wasted work, and runs of a sweep that share reference, data and order share the file.

Data: a list of dicts, or a dict of equal-length lists, with keys ``prompt_ids``, ``chosen_ids``,
``rejected_ids`` (token-id lists) and, for ``loss="odpo"`` only, ``offset`` (a float per pair, e.g.
from ``losses.odpo_offset``).

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

import inspect
import math

import torch

from .. import losses as _losses
from .. import runs as _runs
from . import distributed as _dist
from .logprobs import eos_id_of, pack_pairs, packing_capacity, prepare_pairs, sequence_logprobs, token_logprobs
from .model import model_device
from .train import (
    Settings,
    TrainResult,
    batch_indices,
    fingerprint,
    finished_result,
    make_settings,
    open_claimed,
    run_identity,
    train_loop,
)

#: Losses on token log-probs rather than on summed sequence log-probs.
TOKEN_LOSSES = ("preferred_ft", "unlikelihood")


def _preference_columns(pairs, loss: str) -> dict[str, list]:
    """``pairs`` (list of dicts, or dict of lists) as columns; checks keys, lengths and offsets."""
    keys = ("prompt_ids", "chosen_ids", "rejected_ids")
    if isinstance(pairs, dict):
        columns = {k: list(v) for k, v in pairs.items()}
    elif isinstance(pairs, (list, tuple)) and all(isinstance(p, dict) for p in pairs):
        names = set().union(*(p.keys() for p in pairs)) if pairs else set(keys)
        columns = {k: [p.get(k) for p in pairs] for k in names}
    else:
        raise ValueError(
            "pairs must be a list of dicts or a dict of lists with keys "
            f"{', '.join(keys)} (+ offset for odpo), got {type(pairs).__name__}"
        )
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


def _reference_logps(
    ref, identity: dict, s: Settings, prompts, chosen, rejected, run_root, progress: bool
) -> torch.Tensor:
    """(N, 2) reference log-probs [chosen, rejected] of every pair the run will visit, NaN elsewhere.

    Computed once, before training, and stored as the artifact ``ref_logps.pt`` of a run of kind
    ``"reflogps"`` keyed by the reference weights, the data and the visited pairs (``identity`` +
    seed, steps, batch_size): every preference run that shares them (a whole beta / loss sweep)
    reads the same file instead of running pi_ref again. Under ``torchrun`` rank 0 computes it, the
    other ranks read it.
    """
    return _dist.rank_zero_first(
        lambda: _stored_reference_logps(ref, identity, s, prompts, chosen, rejected, run_root, progress)
    )


def _stored_reference_logps(ref, identity, s, prompts, chosen, rejected, run_root, progress) -> torch.Tensor:
    """:func:`_reference_logps` in one process."""
    cfg = {**identity, "seed": s.seed, "steps": s.steps, "batch_size": s.batch_size}
    run = _runs.open_run("reflogps", cfg, root=run_root)
    if not run.finished:
        visited = sorted(set().union(*(batch_indices(len(prompts), s.batch_size, s.seed, k) for k in range(s.steps))))
        both = sequence_logprobs(
            ref,
            [prompts[i] for i in visited] * 2,
            [chosen[i] for i in visited] + [rejected[i] for i in visited],
            batch_size=2 * s.micro_batch_size,  # the sequences of one training forward: known to fit
            add_eos=False,
            progress=progress,
        )
        logps = torch.full((len(prompts), 2), math.nan)
        logps[visited] = torch.stack([both[: len(visited)], both[len(visited) :]], dim=1)
        torch.save(logps, run.artifact("ref_logps.pt"))
        run.finish({"pairs": len(visited)})  # only after the save: a killed pass is simply redone
    return torch.load(run.artifact("ref_logps.pt"))


def train_preferences(
    policy,
    ref,
    pairs,
    *,
    loss: str = "dpo",
    beta: float = 0.1,
    loss_kwargs: dict | None = None,
    steps: int,
    batch_size: int,
    lr: float,
    micro_batch_size: int | None = None,
    add_eos: bool = True,
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
    progress: bool | str = True,
    keep_model: bool = True,
) -> TrainResult:
    """Preference training of ``policy`` against the frozen ``ref`` with the loss named ``loss``.

    ``beta`` is the loss's beta (larger = stay closer to pi_ref) and the scale of the logged
    implicit rewards ``rewards/* = beta * log-ratio`` for every loss, token-level ones included.
    ``add_eos`` appends EOS to chosen and rejected responses (as in ``sequence_logprobs``); pass
    False for sampled responses that carry their own EOS. ``pairs``, ``loss`` and ``loss_kwargs``:
    module docstring. The remaining arguments are those of ``train.train_sft`` (``keep_model``
    included); ``batch_size`` and ``micro_batch_size`` count pairs. Under ``torchrun`` the ranks train
    this one run together, each on its share of every step's pairs (``dpo_lab.lm.distributed``).

    Every step logs ``loss`` and the six metrics of ``losses.preference_metrics``. The run kind is
    ``"pref"``; the reference log-probs live in a shared run of kind ``"reflogps"`` (module
    docstring). Raises ``ValueError``
    when ``ref`` is ``policy`` (or shares its weights), for unknown losses, missing offsets and
    malformed data; ``FloatingPointError`` naming the step whose loss is not finite.

    Introduced in notebook 06.
    """
    shared = {p.data_ptr() for p in ref.parameters()} & {p.data_ptr() for p in policy.parameters()}
    if ref is policy or shared:
        raise ValueError(
            "ref is the policy (or shares its weights): pi_ref must stay frozen while pi "
            "trains; load a separate copy, e.g. load_model(path) twice"
        )
    valid = tuple(_losses.PAIRWISE_LOSSES) + TOKEN_LOSSES
    if loss not in valid:
        raise ValueError(f"loss must be one of {valid}, got {loss!r}")
    loss_kwargs = dict(loss_kwargs or {})
    if loss_kwargs.keys() & {"beta", "offset"}:
        raise ValueError("loss_kwargs must not hold beta (an argument) or offset (a data column)")
    _check_loss_kwargs(loss, loss_kwargs)
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    s = make_settings(locals(), eval_fn)
    columns = _preference_columns(pairs, loss)
    prompts, chosen = prepare_pairs(policy, columns["prompt_ids"], columns["chosen_ids"], add_eos)
    _, rejected = prepare_pairs(policy, prompts, columns["rejected_ids"], add_eos)
    eos = eos_id_of(policy)
    offsets = torch.tensor(columns["offset"]) if loss == "odpo" else None
    data = [prompts, chosen, rejected, columns.get("offset")]
    cfg = {
        "trainer": "preferences",
        "loss": loss,
        "beta": beta,
        "loss_kwargs": loss_kwargs,
        "ref": fingerprint(ref),
        **run_identity(policy, s, fingerprint(data), run_tag, checkpoint_every),
    }
    run, claimed = open_claimed("pref", cfg, run_root)
    if not claimed:  # finished, maybe by another process this one waited for (runs.Run.claim)
        return finished_result(run, policy)
    # Keyed without the ODPO offsets: the reference log-probs do not depend on them.
    identity = {"ref": cfg["ref"], "data": fingerprint([prompts, chosen, rejected])}
    ref_logps = _reference_logps(ref, identity, s, prompts, chosen, rejected, run_root, progress)

    def preference_step(model, indices):
        device = model_device(model)
        # Similar lengths in one micro-batch waste less padding; the sum over pairs is unchanged.
        indices = sorted(indices, key=lambda i: max(len(chosen[i]), len(rejected[i])) + len(prompts[i]))
        mine = _dist.share(indices)  # under torchrun: this rank's contiguous part of the sorted step
        policy_logps, total = [torch.zeros(0, 2)], 0.0
        for start in range(0, len(mine), s.micro_batch_size):
            rows = mine[start : start + s.micro_batch_size]
            m = len(rows)
            responses = [chosen[i] for i in rows] + [rejected[i] for i in rows]
            batch = pack_pairs([prompts[i] for i in rows] * 2, responses, eos, packing_capacity(model), device)
            token = token_logprobs(model, batch)
            logps = token.sum(dim=1)
            policy_logps.append(logps.detach().view(2, m).T.cpu())
            if not torch.isfinite(logps).all():
                break  # raised below, once every rank can know
            ref_rows = ref_logps[rows].to(device)
            if loss in _losses.PAIRWISE_LOSSES:
                extra = {"offset": offsets[rows].to(device)} if loss == "odpo" else {}
                per_pair = _losses.PAIRWISE_LOSSES[loss](
                    logps[:m], logps[m:], ref_rows[:, 0], ref_rows[:, 1], beta, **loss_kwargs, **extra
                )
            elif loss == "preferred_ft":
                per_pair = _losses.preferred_ft_loss(token[:m], batch.response_mask[:m])
            else:
                per_pair = _losses.unlikelihood_loss(
                    token[:m], batch.response_mask[:m], token[m:], batch.response_mask[m:], **loss_kwargs
                )
            contribution = per_pair.sum() / len(indices)
            contribution.backward()
            total += contribution.item()
        # checked once every rank has them, so that all ranks stop together, before the update
        step_logps = _dist.gather_rows(torch.cat(policy_logps))
        if not torch.isfinite(step_logps).all():
            raise FloatingPointError("policy log-probs")
        [total] = _dist.sum_floats(total)
        ref_step = ref_logps[indices]
        return {
            "loss": total,
            **_losses.preference_metrics(step_logps[:, 0], step_logps[:, 1], ref_step[:, 0], ref_step[:, 1], beta),
        }

    return train_loop(
        run, policy, s, len(prompts), preference_step, eval_fn, tokenizer, checkpoint_every, progress,
        keep_model=keep_model, sharded=True,
    )  # fmt: skip
