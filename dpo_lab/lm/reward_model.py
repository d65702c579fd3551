"""The reward model of two-stage RLHF: a GPT-2 trunk with a scalar head, fitted to preference pairs by
Bradley-Terry maximum likelihood (DPO paper Eq. 2).

Introduced in notebook 04 (section 9); the reward model that PPO optimises and Best-of-N selects by, one
of the RLHF baselines of Fig. 2 (the sweep's, through ``dpo_lab.rlhf``).
Stage 1 of RLHF (DPO paper Sec. 3) fits r_phi to the pairs by minimising

    L_R(r_phi) = -E_{(x, y_w, y_l)} [ log sigmoid( r_phi(x, y_w) - r_phi(x, y_l) ) ]          (Eq. 2)

=================  ==================================================================================
piece              choice, and why
=================  ==================================================================================
trunk              a copy of pi_SFT's transformer (``policy.base_model``): the reward model starts from
                   the SFT model, as in the paper's pipeline (App. C.1, following Ziegler et al. 2019)
head               a linear map of the hidden state at the **last token** of prompt + response (its EOS
                   when the response has one) to one number; weights ~ N(0, 1 / (d + 1)), bias 0
padding            right-padding only, so causal attention keeps padding out of the last real token's
                   state: a score does not depend on what it is batched with (tested to 1e-5)
training           ``lm.train.train_loop`` (the loop of SFT and DPO), up to ``epochs`` passes over the
                   pairs, evaluated on held-out pairs every epoch; the weights with the best held-out
                   accuracy are kept (App. C.1), stored as the run's artifact ``best``
=================  ==================================================================================

============================  =========  =========================================================
name                          shape      meaning
============================  =========  =========================================================
``prompt_ids``                N lists    token ids of each prompt (as the task gives them)
``response_ids``              N lists    token ids of each response, EOS included when it has one
``scores``                    (N,)       r_phi(x, y), float32
``chosen``, ``rejected``      (B,)       scores of y_w and y_l of B pairs
============================  =========  =========================================================
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import runs as _runs
from .logprobs import as_id_lists
from .model import hidden_size, model_device, quiet_weight_bars
from .train import Settings, check_settings, fingerprint, run_identity, train_loop

HEAD_FILE = "score_head.pt"


class RewardModel(torch.nn.Module):
    """r_phi(x, y): a transformer trunk and a scalar head on the last token (module table)."""

    def __init__(self, trunk: torch.nn.Module, head: torch.nn.Linear):
        super().__init__()
        self.trunk, self.head = trunk, head

    @classmethod
    def from_policy(cls, policy, seed: int = 0) -> RewardModel:
        """A reward model whose trunk is a copy of ``policy``'s (pi_SFT) and whose head is fresh."""
        width = hidden_size(policy)
        trunk = copy.deepcopy(policy.base_model)
        head = torch.nn.Linear(width, 1)
        with torch.no_grad():
            head.weight.normal_(0.0, 1.0 / math.sqrt(width + 1), generator=torch.Generator().manual_seed(seed))
            head.bias.zero_()
        return cls(trunk, head.to(model_device(trunk)))

    @property
    def config(self):
        return self.trunk.config

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B,) scores of right-padded ``input_ids`` (B, T) whose real tokens are the first ``lengths``."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        hidden = self.trunk(input_ids=input_ids, position_ids=positions, use_cache=False).last_hidden_state
        last = hidden[torch.arange(len(lengths), device=input_ids.device), lengths - 1]
        return self.head(last).squeeze(-1).float()

    def save_pretrained(self, path) -> None:
        """The trunk as a Hugging Face model folder plus the head's weights (:data:`HEAD_FILE`)."""
        path = Path(path)
        with quiet_weight_bars():
            self.trunk.save_pretrained(path)
        torch.save(self.head.state_dict(), path / HEAD_FILE)

    @classmethod
    def load(cls, path, device: str | torch.device = "cpu") -> RewardModel:
        """Read back what :meth:`save_pretrained` wrote."""
        from transformers import AutoModel

        path = Path(path)
        if not (path / HEAD_FILE).exists():
            raise ValueError(f"path: {path} holds no reward model (no {HEAD_FILE})")
        with quiet_weight_bars():
            trunk = AutoModel.from_pretrained(str(path), dtype=torch.float32)
        state = torch.load(path / HEAD_FILE, map_location="cpu", weights_only=True)
        head = torch.nn.Linear(state["weight"].shape[1], 1)
        head.load_state_dict(state)
        return cls(trunk, head).to(device).eval()


def _batch(prompt_ids, response_ids, pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt + response of each row, right-padded with ``pad_id``, and the real lengths."""
    rows = [list(p) + list(r) for p, r in zip(prompt_ids, response_ids)]
    lengths = torch.tensor([len(r) for r in rows], device=device)
    width = int(lengths.max())
    ids = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], device=device)
    return ids, lengths


def _pad_id(model: RewardModel) -> int:
    eos = model.config.eos_token_id
    return int(eos if eos is not None else 0)  # any id: padding sits after every real token


def reward_scores(model: RewardModel, prompt_ids, response_ids, batch_size: int = 32) -> torch.Tensor:
    """(N,) r_phi(x, y) of each prompt + response, float32 CPU, no gradient; the order and the batch
    size do not change a score (module table). ValueError naming the argument on bad input."""
    if not isinstance(model, RewardModel):
        raise ValueError(f"model: expected a RewardModel, got {type(model).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
    prompts = as_id_lists("prompt_ids", prompt_ids)
    responses = as_id_lists("response_ids", response_ids)
    if len(prompts) != len(responses):
        raise ValueError(f"prompt_ids has {len(prompts)} rows but response_ids has {len(responses)}")
    vocab = model.trunk.get_input_embeddings().num_embeddings
    bad = [i for i, row in enumerate(prompts + responses) if any(t >= vocab for t in row)]
    if bad:
        raise ValueError(f"token ids: row {bad[0] % max(1, len(prompts))} has an id >= the vocabulary size {vocab}")
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(responses[i]))
    out = torch.zeros(len(prompts))
    device, was_training = model_device(model), model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                ids, lengths = _batch([prompts[i] for i in rows], [responses[i] for i in rows], _pad_id(model), device)
                out[rows] = model(ids, lengths).cpu()
    finally:
        model.train(was_training)
    return out


def _check_scores(chosen, rejected) -> None:
    if not isinstance(chosen, torch.Tensor) or not isinstance(rejected, torch.Tensor) or chosen.shape != rejected.shape:
        raise ValueError("chosen, rejected: expected two score tensors of one shape")
    if not (torch.isfinite(chosen).all() and torch.isfinite(rejected).all()):
        raise ValueError("chosen, rejected: scores must be finite")


def reward_model_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """(B,) Bradley-Terry negative log-likelihood of each pair, -log sigmoid(r_w - r_l) (Eq. 2)."""
    _check_scores(chosen, rejected)
    return -torch.nn.functional.logsigmoid(chosen - rejected)


def pair_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> float:
    """Share of pairs the model orders as labelled, r(y_w) > r(y_l) (a tie counts as half)."""
    return float(((chosen > rejected).float() + 0.5 * (chosen == rejected).float()).mean())


def implicit_rewards(policy, ref, pairs: list[dict], batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """DPO's implicit reward of the chosen and of the rejected response of every pair, (B,) each: the
    log-ratio log pi(y | x) - log pi_ref(y | x). A policy pi is optimal (Eq. 4) for the reward
    beta * log pi / pi_ref (DPO paper Eq. 5, Theorem 1); the factor beta > 0 changes no ordering, so
    ``pair_accuracy(*implicit_rewards(pi, pi_ref, pairs))`` is how often pi's implicit reward model
    orders held-out pairs as labelled.

    Introduced in notebook 06. ``pairs``: dicts with ``prompt_ids``, ``chosen_ids`` and
    ``rejected_ids``, responses as the preference trainer sees them (no EOS appended).
    """
    from .logprobs import sequence_logprobs

    if not isinstance(pairs, list) or not pairs:
        raise ValueError(f"pairs: need a non-empty list of pairs, got {type(pairs).__name__} of {len(pairs or [])}")
    for i, pair in enumerate(pairs):
        missing = [k for k in ("prompt_ids", "chosen_ids", "rejected_ids") if k not in pair]
        if missing:
            raise ValueError(f"pairs[{i}]: missing {', '.join(missing)}")
    prompts = [q["prompt_ids"] for q in pairs]

    def log_ratio(key: str) -> torch.Tensor:
        responses = [q[key] for q in pairs]
        return sequence_logprobs(policy, prompts, responses, batch_size, add_eos=False) - sequence_logprobs(
            ref, prompts, responses, batch_size, add_eos=False
        )

    return log_ratio("chosen_ids"), log_ratio("rejected_ids")


def calibration(chosen: torch.Tensor, rejected: torch.Tensor, bins: int = 10) -> list[dict]:
    """How well the model's Bradley-Terry probabilities match how often the labels agree with it.

    Each held-out pair is seen from the side the model prefers: its predicted probability
    p = sigmoid(|r_w - r_l|) >= 1/2 that this side is the labelled winner. The pairs are grouped
    into ``bins`` equal-width bins of p over [0.5, 1]; each non-empty bin gives ``predicted`` (mean p),
    ``observed`` (share of its pairs whose label agrees with the model) and ``pairs``. A calibrated
    model has predicted = observed in every bin (within sampling noise).
    """
    _check_scores(chosen, rejected)
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins: expected an integer >= 1, got {bins!r}")
    gap = (chosen - rejected).double()
    p = torch.sigmoid(gap.abs())
    agrees = (gap > 0).double() + 0.5 * (gap == 0).double()  # a tie: either side, half the time
    index = torch.clamp(((p - 0.5) * 2 * bins).long(), max=bins - 1)
    rows = []
    for b in range(bins):
        members = index == b
        if members.any():
            rows.append(
                {
                    "predicted": float(p[members].mean()),
                    "observed": float(agrees[members].mean()),
                    "pairs": int(members.sum()),
                }
            )
    return rows


@dataclass
class RewardModelResult:
    """What :func:`train_reward_model` returns: the best model (by held-out accuracy), its run and
    the run's result (``best_accuracy``, ``best_step``, ``final_eval``)."""

    model: RewardModel
    run: object  # dpo_lab.runs.Run
    result: dict


def _pair_columns(pairs, name: str) -> tuple[list, list, list]:
    if not isinstance(pairs, list) or not pairs or not all(isinstance(p, dict) for p in pairs):
        raise ValueError(f"{name}: expected a non-empty list of pair dicts with prompt_ids, chosen_ids, rejected_ids")
    missing = [k for k in ("prompt_ids", "chosen_ids", "rejected_ids") if any(k not in p for p in pairs)]
    if missing:
        raise ValueError(f"{name}: a pair lacks {missing[0]!r}")
    columns = [
        as_id_lists(f"{name}[*].{k}", [p[k] for p in pairs]) for k in ("prompt_ids", "chosen_ids", "rejected_ids")
    ]
    empty = [i for i, p in enumerate(pairs) if not columns[0][i] or not columns[1][i] or not columns[2][i]]
    if empty:
        raise ValueError(f"{name}[{empty[0]}]: a prompt or response without tokens")
    return columns[0], columns[1], columns[2]


def train_reward_model(
    policy,
    pairs,
    heldout,
    *,
    epochs: int = 3,
    batch_size: int = 32,
    lr: float = 1e-4,
    seed: int = 0,
    warmup_steps: int = 0,
    max_grad_norm: float = 1.0,
    run_tag: dict | None = None,
    run_root=None,
    progress: bool = True,
) -> RewardModelResult:
    """Fit a reward model, initialised from ``policy`` (pi_SFT), to ``pairs`` by Eq. 2 for ``epochs``
    passes, evaluating on ``heldout`` pairs after every epoch; returns the weights of the best
    held-out accuracy (module table). ``pairs`` and ``heldout``: lists of dicts with
    ``prompt_ids``, ``chosen_ids``, ``rejected_ids`` (responses with their own EOS). Stored as a run
    of kind ``"reward_model"``; a finished run is loaded, an interrupted one resumed.
    """
    prompts, chosen, rejected = _pair_columns(pairs, "pairs")
    held = _pair_columns(heldout, "heldout")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    model = RewardModel.from_policy(policy, seed=seed)
    device, pad = model_device(model), _pad_id(model)

    def step_fn(m, indices):
        responses = [chosen[i] for i in indices] + [rejected[i] for i in indices]
        scores = m(*_batch([prompts[i] for i in indices] * 2, responses, pad, device))
        loss = reward_model_loss(scores[: len(indices)], scores[len(indices) :]).mean()
        loss.backward()
        scores = scores.detach()
        return {"loss": float(loss.detach()), "accuracy": pair_accuracy(scores[: len(indices)], scores[len(indices) :])}

    def eval_fn(m, step):  # best_dir and best_file: the run's, known once it is opened below
        w, rej = reward_scores(m, held[0], held[1]), reward_scores(m, held[0], held[2])
        record = {"heldout/accuracy": pair_accuracy(w, rej), "heldout/loss": float(reward_model_loss(w, rej).mean())}
        best = json.loads(best_file.read_text()) if best_file.exists() else {"accuracy": -1.0}
        if record["heldout/accuracy"] > best["accuracy"]:  # App. C.1: keep the best held-out checkpoint
            m.save_pretrained(best_dir)
            _runs.write_json(best_file, {"accuracy": record["heldout/accuracy"], "step": step})
        return record

    per_epoch = math.ceil(len(prompts) / batch_size)
    s = Settings(
        steps=epochs * per_epoch,
        batch_size=batch_size,
        micro_batch_size=batch_size,
        lr=lr,
        optimizer="adamw",
        warmup_steps=warmup_steps,
        lr_schedule="constant",
        weight_decay=0.0,
        max_grad_norm=max_grad_norm,
        seed=seed,
        eval_every=per_epoch,
    )
    check_settings(s, eval_fn)
    fingerprints = fingerprint([prompts, chosen, rejected, *held])
    cfg = {"trainer": "reward_model", **run_identity(model, s, fingerprints, run_tag, per_epoch)}
    run = _runs.open_run("reward_model", cfg, root=run_root)
    best_dir, best_file = run.artifact("best"), run.path / "best.json"
    if not run.claim():  # finished, maybe by another process this one waited for (runs.Run.claim)
        return RewardModelResult(RewardModel.load(best_dir, device), run, _with_best(run, best_file))
    train_loop(run, model, s, len(prompts), step_fn, eval_fn, None, per_epoch, progress)
    return RewardModelResult(RewardModel.load(best_dir, device), run, _with_best(run, best_file))


def _with_best(run, best_file: Path) -> dict:
    best = json.loads(best_file.read_text())
    return {**run.result(), "best_accuracy": best["accuracy"], "best_step": best["step"]}
