"""PPO on the engine: RLHF's second stage (DPO paper Eq. 3) for any reward of whole responses.

Introduced in notebook 04 (section 9, on the exact task, where the optimum is known); the sweep's PPO and
PPO-GT through ``dpo_lab.rlhf`` (notebook 06 walks through one on IMDb). One PPO iteration:

    prompts    <- the next ``batch_size`` prompts of a seeded shuffle
    rollout    <- one response per prompt from the current policy (``lm.sample``), scored by
                  ``reward_fn`` (a learned reward model, or the task's gold reward for PPO-GT);
                  scores whitened over the batch when ``normalize_scores`` (App. C.1's tuned PPO
                  "normalizes rewards")
    no grad:   old log-probs, values, pi_ref's log-probs of every response token
    rewards    <- ppo.shaped_rewards(scores, old, ref, kl_coef)  (the KL paid per token)
    advantages <- ppo.gae(rewards, values); whitened
    then ``ppo_epochs`` passes over the rollout in minibatches of ``minibatch_size`` responses, one
    optimiser step each (``train.train_loop``): loss = ppo.policy_loss + vf_coef * ppo.value_loss
    kl_coef    <- the KL controller, from the rollout's mean sequence KL (fixed, or towards a target)

=================  =================================================================================
choice             why
=================  =================================================================================
value head on the  a linear map of the policy's own final hidden states (as TRL's
policy's trunk     ``AutoModelForCausalLMWithValueHead``): one forward gives log-probs and values, and
                   the model stays one GPT-2 (a separate value network would double the memory of the
                   gpu profile's 774M-weight policy). The price: the value loss also moves the trunk,
                   which ``vf_coef`` (0.1) keeps small. The head starts at 0.
whole-response     the reward arrives at the last token (Ziegler et al. 2019); the KL penalty at every
reward             token, so their sum is Eq. 3's objective for that response
resuming           checkpoints fall on rollout boundaries and carry the KL coefficient, so a killed
                   run resumes where it stopped (the next rollout is sampled with the same seed)
=================  =================================================================================

Every optimiser step logs, TRL-style: ``objective/kl`` (the rollout's mean sequence KL to pi_ref),
``objective/kl_coef``, ``objective/scores``, ``objective/entropy`` (mean sequence entropy),
``policy/clipfrac``, ``policy/approxkl``, ``val/vpred``, ``val/error``, ``val/clipfrac``,
``loss/policy``, ``loss/value``, and ``loss`` (their weighted sum). The saved model is the policy (a
causal LM that ``load_model`` reads); the value head is saved next to it (``value_head.pt``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import distributed as _dist
from . import ppo
from .logprobs import PackedPairs, as_id_lists, pack_pairs, packing_capacity, per_sequence, token_logprobs
from .model import autocast, head_logits, hidden_size, model_device, quiet_weight_bars
from .sampling import sample
from .train import (
    Settings,
    TrainResult,
    batch_indices,
    check_settings,
    fingerprint,
    finished_result,
    open_claimed,
    run_identity,
    train_loop,
)

VALUE_HEAD_FILE = "value_head.pt"


class PolicyWithValue(torch.nn.Module):
    """A causal LM (``lm``) and a value head on its final hidden states (module table)."""

    def __init__(self, lm: torch.nn.Module, value_head: torch.nn.Linear):
        super().__init__()
        self.lm, self.value_head = lm, value_head

    @classmethod
    def from_policy(cls, policy) -> PolicyWithValue:
        """A copy of ``policy`` with a value head that predicts 0 everywhere."""
        head = torch.nn.Linear(hidden_size(policy), 1)
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
        return cls(copy.deepcopy(policy), head.to(model_device(policy)))

    def evaluate(self, batch: PackedPairs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per response token of ``batch``: log-prob of the token, value before it, entropy of the
        next-token distribution; each (B, L), 0 on padding."""
        with autocast(batch.input_ids.device):
            hidden = self.lm.base_model(
                input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False
            ).last_hidden_state
        states = hidden[batch.predict_mask]  # the positions that predict response tokens (module rule of logprobs)
        logp_all = torch.log_softmax(head_logits(self.lm, states), dim=-1)
        logps = logp_all.gather(1, batch.targets[:, None]).squeeze(1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        values = self.value_head(states.float()).squeeze(-1)
        return per_sequence(logps, batch), per_sequence(values, batch), per_sequence(entropy, batch)

    def save_pretrained(self, path) -> None:
        """The policy as a Hugging Face model folder, and the value head next to it."""
        with quiet_weight_bars():
            self.lm.save_pretrained(path)
        torch.save(self.value_head.state_dict(), Path(path) / VALUE_HEAD_FILE)


#: What one optimiser step logs besides the rollout's statistics: summed over the ranks under torchrun.
STEP_METRICS = ("loss", "loss/policy", "loss/value", "policy/clipfrac", "policy/approxkl", "val/clipfrac",
                "val/vpred", "val/error")  # fmt: skip


@dataclass
class _State:
    """What PPO keeps between optimiser steps: the update counter, the KL controller, the rollout."""

    controller: ppo.KLController
    step: int = 0
    rollout: dict | None = None

    def state(self) -> dict:
        return {"kl_coef": self.controller.value}

    def load(self, state: dict, step: int) -> None:
        self.controller.value, self.step, self.rollout = float(state["kl_coef"]), step, None


def call_reward(reward_fn, prompt_ids, response_ids) -> torch.Tensor:
    """(N,) float64 ``reward_fn(prompt_ids, response_ids)``, checked: one finite number per response
    (ValueError naming ``reward_fn`` for NaN, the wrong length or something that is not numbers)."""
    try:
        values = np.asarray(reward_fn(prompt_ids, response_ids), dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"reward_fn: must return one number per response ({err})") from None
    if values.shape != (len(response_ids),):
        raise ValueError(f"reward_fn: returned shape {values.shape} for {len(response_ids)} responses")
    if not np.isfinite(values).all():
        raise ValueError("reward_fn: returned NaN or infinite scores")
    return torch.from_numpy(values)


def train_ppo(
    policy,
    ref,
    prompt_ids,
    reward_fn,
    *,
    reward_name: str,
    iterations: int,
    batch_size: int,
    minibatch_size: int,
    max_new_tokens: int,
    lr: float,
    kl_coef: float = 0.1,
    target_kl: float | None = None,
    horizon: int = 10_000,
    ppo_epochs: int = 4,
    clip: float = 0.2,
    value_clip: float = 0.2,
    vf_coef: float = 0.1,
    gamma: float = 1.0,
    lam: float = 0.95,
    normalize_scores: bool = False,
    max_grad_norm: float = 1.0,
    seed: int = 0,
    eval_fn=None,
    eval_every: int = 0,
    checkpoint_every: int = 1,
    tokenizer=None,
    run_tag: dict | None = None,
    run_root=None,
    progress: bool | str = True,
) -> TrainResult:
    """PPO of ``policy`` against the frozen ``ref`` for ``iterations`` rollouts (module docstring).

    ``prompt_ids``: the prompts as token-id lists; ``reward_fn(prompt_ids, response_ids) -> (N,)``
    numbers, higher is better (responses carry their EOS when they have one); ``reward_name`` says
    which reward it is (a reward model's run id, "gold ..."): it is part of the run's identity, since
    the same settings with another reward are another run. ``kl_coef`` is beta of
    Eq. 3 (fixed), or the start of the adaptive controller when ``target_kl`` is set; ``eval_every``
    and ``checkpoint_every`` count rollouts and ``eval_fn(policy, step)`` sees the causal LM. ``batch_size`` must be a
    multiple of ``minibatch_size``. Returns the trained policy (a causal LM), its run (kind ``"ppo"``)
    and the run's result; a finished run is loaded, an interrupted one resumed. Under ``torchrun``
    (several processes) the ranks train this one run together: a rollout's sampling is split over them
    (``lm.sample``), every rank scores and evaluates the whole rollout (so all hold its advantages), and
    each optimiser step's minibatch is split, its loss a share of the minibatch's token mean, the
    gradients summed over the ranks (``dpo_lab.lm.distributed``).
    """
    _dist.init()
    if ref is policy or {p.data_ptr() for p in ref.parameters()} & {p.data_ptr() for p in policy.parameters()}:
        raise ValueError("ref is the policy (or shares its weights): load a separate frozen copy for pi_ref")
    prompts = as_id_lists("prompt_ids", prompt_ids)
    if not prompts or not all(prompts):
        raise ValueError("prompt_ids: need at least one prompt, each with at least one token")
    if not callable(reward_fn):
        raise ValueError(f"reward_fn: expected a callable (prompt_ids, response_ids) -> scores, got {reward_fn!r}")
    if not isinstance(reward_name, str) or not reward_name:
        raise ValueError(f"reward_name: expected a non-empty string naming the reward, got {reward_name!r}")
    for name, value in [("iterations", iterations), ("batch_size", batch_size), ("minibatch_size", minibatch_size),
                        ("max_new_tokens", max_new_tokens), ("ppo_epochs", ppo_epochs)]:  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    if batch_size % minibatch_size:
        raise ValueError(f"minibatch_size: {minibatch_size} does not divide batch_size {batch_size}")
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 0:
        raise ValueError(f"eval_every: expected an integer >= 0 (rollouts), got {eval_every!r}")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every: expected an integer >= 1 (rollouts), got {checkpoint_every!r}")
    controller = ppo.KLController(kl_coef, target_kl, horizon)
    per_rollout = ppo_epochs * (batch_size // minibatch_size)
    s = Settings(
        steps=iterations * per_rollout,
        batch_size=minibatch_size,
        micro_batch_size=minibatch_size,
        lr=lr,
        optimizer="adamw",
        warmup_steps=0,
        lr_schedule="constant",
        weight_decay=0.0,
        max_grad_norm=max_grad_norm,
        seed=seed,
        eval_every=eval_every * per_rollout,
    )
    policy_eval = (lambda model, step: eval_fn(model.lm, step)) if eval_fn is not None else None
    check_settings(s, policy_eval)
    model = PolicyWithValue.from_policy(policy)
    knobs = {"batch_size": batch_size, "max_new_tokens": max_new_tokens, "kl_coef": kl_coef, "target_kl": target_kl}
    knobs |= {"horizon": horizon, "ppo_epochs": ppo_epochs, "clip": clip, "value_clip": value_clip}
    knobs |= {"vf_coef": vf_coef, "gamma": gamma, "lam": lam, "normalize_scores": normalize_scores}
    cfg = {
        "trainer": "ppo",
        "reward": reward_name,
        "ppo": knobs,
        "ref": fingerprint(ref),
        **run_identity(model, s, fingerprint(prompts), run_tag, checkpoint_every * per_rollout),
    }
    run, claimed = open_claimed("ppo", cfg, run_root)  # under torchrun: rank 0 claims it for every rank
    if not claimed:  # finished, maybe by another process this one waited for (runs.Run.claim)
        return finished_result(run, policy)
    device, eos = model_device(policy), int(policy.config.eos_token_id)
    state = _State(controller)

    def rollout(m: PolicyWithValue, index: int) -> dict:
        chosen = [prompts[i] for i in batch_indices(len(prompts), batch_size, seed, index)]
        samples = sample(m.lm, None, chosen, 1, max_new_tokens, seed=seed * 1_000_003 + index)
        responses = [list(r) for r in samples.response_ids]
        batch = pack_pairs(chosen, responses, eos, packing_capacity(m.lm), device)
        scores = call_reward(reward_fn, chosen, responses)
        with torch.no_grad():
            old, values, entropy = m.evaluate(batch)
            reference = token_logprobs(ref, batch)
        mask = batch.response_mask.to(device)
        sequence_kl = float(((old - reference) * mask).sum(1).mean())
        shaped = scores.to(old.dtype).to(device)
        if normalize_scores and len(responses) > 1:
            shaped = (shaped - shaped.mean()) / (shaped.std() + 1e-8)
        rewards = ppo.shaped_rewards(shaped, old.double(), reference.double(), mask, controller.value).float()
        advantages, returns = ppo.gae(rewards, values, mask, gamma, lam)
        stats = {
            "objective/kl": sequence_kl,
            "objective/kl_coef": controller.value,
            "objective/scores": float(scores.mean()),
            "objective/entropy": float((entropy * mask).sum(1).mean()),
        }
        controller.update(sequence_kl, len(responses))
        return {
            "prompts": chosen,
            "responses": responses,
            "old": old,
            "values": values,
            "advantages": ppo.whiten(advantages, mask),
            "returns": returns,
            "tokens": mask.sum(1),  # response tokens per row: a minibatch's loss is a mean over its tokens
            "stats": stats,
        }

    def step_fn(m, _indices):
        index, update = divmod(state.step, per_rollout)
        if update == 0 or state.rollout is None:
            state.rollout = rollout(m, index)
        r = state.rollout
        epoch, part = divmod(update, batch_size // minibatch_size)
        order = np.random.default_rng([seed, index, epoch]).permutation(batch_size)
        rows = sorted(order[part * minibatch_size : (part + 1) * minibatch_size].tolist())
        tokens = float(r["tokens"][rows].sum())  # the whole minibatch's: every rank holds the whole rollout
        mine = _dist.share(rows)  # under torchrun: this rank's contiguous part of the minibatch
        sums = dict.fromkeys(STEP_METRICS, 0.0)  # a rank without rows (fewer rows than ranks) adds nothing
        if mine:
            batch = pack_pairs([r["prompts"][i] for i in mine], [r["responses"][i] for i in mine], eos,
                               packing_capacity(m.lm), device)  # fmt: skip
            logps, values, _ = m.evaluate(batch)
            mask, width = batch.response_mask.to(device), logps.shape[1]
            pick = {k: r[k][mine, :width] for k in ("old", "values", "advantages", "returns")}
            pg, pg_stats = ppo.policy_loss(logps, pick["old"], pick["advantages"], mask, clip, tokens)
            vf, vf_stats = ppo.value_loss(values, pick["values"], pick["returns"], mask, value_clip, tokens)
            loss = pg + vf_coef * vf  # this share's part of the minibatch's mean: the ranks' parts sum to it
            if torch.isfinite(loss):
                loss.backward()
            found = {"loss": float(loss), "loss/policy": float(pg), "loss/value": float(vf), **pg_stats, **vf_stats}
            sums = {key: found[key] for key in STEP_METRICS}  # one order on every rank for the sum
        sums = dict(zip(STEP_METRICS, _dist.sum_floats(*sums.values())))
        if not math.isfinite(sums["loss"]):  # on every rank at once
            raise FloatingPointError("PPO loss")
        state.step += 1
        return {**sums, **r["stats"]}

    every = checkpoint_every * per_rollout  # on rollout boundaries: the next rollout is re-sampled on resume
    result = train_loop(
        run, model, s, len(prompts), step_fn, policy_eval, tokenizer, every, progress, state, sharded=True
    )
    return TrainResult(result.policy.lm, run, result.result)
