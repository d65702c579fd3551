"""The RLHF baselines of the experiment: a reward model, PPO, PPO-GT and Best-of-N, from a task's context.

Introduced in notebook 06 (the two-stage pipeline on IMDb; notebook 04 runs the same on the exact task,
against the known optimum). DPO paper Sec. 6.1 and App. C.1: the methods Fig. 2 compares DPO with, on
the same pi_SFT, pairs and evaluation as every other run of ``dpo_lab.sweep``:

=============  ===========================================================  ========================
method         what it is                                                   hyperparameter
=============  ===========================================================  ========================
ppo            PPO (``lm.train_ppo``) on the learned reward model's score   target KL, adaptive
               of whole responses, KL to pi_SFT paid per token (Eq. 3)      controller (profile
                                                                            ``ppo_target_kls``)
ppo_gt         the same with the task's gold reward (an oracle)             the same
best_of_n      per held-out prompt, the best of N samples of pi_SFT under   N in ``best_of_ns``
               the reward model (no training; a reference curve)
best_of_n_gt   the same under the gold reward (the upper reference)        the same
=============  ===========================================================  ========================

The reward model (:func:`reward_model`, stage 1, Eq. 2) is a copy of pi_SFT's trunk with a scalar head
(``lm.reward_model``), fitted for ``rm_epochs`` passes to the very pairs the DPO runs train on
(``Context.pairs``), keeping the epoch with the best accuracy on held-out pairs (App. C.1): the task's
``fresh_pairs`` when it can draw them, else ``rm_heldout`` pairs that no run trains on. It is trained
once per context and stored like every run (kind ``reward_model``).

PPO follows the paper's tuned variant: scores normalised per rollout (App. C.1, "normalizes rewards"),
an adaptive KL coefficient steered to the target KL (starting at ``ppo_kl_coef``), ``ppo_epochs``
clipped passes over each rollout of ``ppo_batch_size`` training prompts; every ``ppo_eval_every``
rollouts the sweep's evaluator measures it like any run. A run whose loss turns non-finite raises
``FloatingPointError``, which the sweep reports as diverged (its evaluations so far stay stored,
unfinished, off the frontier).

Best-of-N draws ``max(best_of_ns)`` samples of pi_SFT per evaluation slot (the evaluator's prompts
times its samples per prompt, with its seed) once per context; Best-of-N for a smaller N keeps the best
of the first N draws of each slot (the first N of M independent draws are N independent draws). Its
record is an ordinary evaluation record at step 0 with the analytic KL (``dpo_lab.evaluation``,
"Best-of-N"), plus the exact quantities of a task that enumerates its responses
(``Task.best_of_n_evaluation``), stored as a run of kind ``best_of_n``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bandits import best_of_n_kl_bound
from .evaluation import evaluation_record
from .runs import Run, open_run

#: The methods of this module (module table); ``evaluation.METHODS`` names and colours them.
PPO_METHODS = ("ppo", "ppo_gt")
BEST_OF_N_METHODS = ("best_of_n", "best_of_n_gt")


def heldout_pairs(ctx) -> list[dict]:
    """The pairs that select the reward model's epoch (module docstring): ``task.fresh_pairs`` when the
    task draws them, else the first ``rm_heldout`` pairs (in the seeded order of ``sweep.training_pairs``)
    that no run trains on. ValueError naming ``rm_heldout`` when there are not that many.

    Introduced in notebook 06.
    """
    p = ctx.profile
    fresh = ctx.source.fresh_pairs(p.rm_heldout)
    if fresh is not None:
        return fresh
    pairs = ctx.source.preference_pairs(progress=False)
    order = np.random.default_rng(p.sampling_seed).permutation(len(pairs))
    unused = order[p.pref_steps * p.pref_batch_size :]
    if len(unused) < p.rm_heldout:
        raise ValueError(
            f"rm_heldout: {p.rm_heldout} held-out pairs wanted, but only {len(unused)} of the task's "
            f"{len(pairs)} pairs are not trained on"
        )
    return [{k: pairs[i][k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")} for i in unused[: p.rm_heldout]]


def reward_model(ctx, progress: bool = True):
    """The context's reward model (``lm.reward_model.RewardModelResult``): trained once, then loaded.

    Introduced in notebook 06. Fitted to ``ctx.pairs`` (the DPO runs' pairs) with the DPO runs' batch
    size, ``rm_epochs`` passes at ``rm_lr``; its tag names the task and profile.
    """
    from .lm.reward_model import train_reward_model

    if "reward_model" not in ctx.cache:
        p = ctx.profile
        tag = {"model": "reward_model", "task": ctx.task, "profile": p.name}
        ctx.cache["reward_model"] = train_reward_model(
            ctx.sft.model,
            ctx.pairs,
            heldout_pairs(ctx),
            epochs=p.rm_epochs,
            batch_size=p.pref_batch_size,
            lr=p.rm_lr,
            seed=p.seed,
            run_tag=tag,
            progress="reward model (Eq. 2)" if progress else False,
        )
    return ctx.cache["reward_model"]


@dataclass(frozen=True)
class Reward:
    """A reward of whole responses for PPO and Best-of-N: ``fn(prompt_ids, response_ids) -> (N,)`` and
    the name that goes into a run's identity."""

    name: str
    fn: object


def gold_reward(ctx) -> Reward:
    """The task's gold reward on token ids: the prompt's text (as the task wrote it) + the decoded
    response (without its EOS), scored as the evaluator scores samples.

    Introduced in notebook 06.
    """
    ev, tok = ctx.evaluator, ctx.sft.tokenizer
    texts = dict(zip(map(tuple, ctx.train_prompt_ids), ctx.train_prompts))
    texts.update(zip(map(tuple, ev.prompt_ids), ev.prompts))
    eos = tok.eos_token_id

    def fn(prompt_ids, response_ids):
        missing = [x for x in prompt_ids if tuple(x) not in texts]
        if missing:
            raise ValueError(f"prompt_ids: {missing[0]} is not a prompt of the task")
        responses = tok.batch_decode([list(r[:-1]) if len(r) and r[-1] == eos else list(r) for r in response_ids])
        return ev.gold([texts[tuple(x)] + y for x, y in zip(prompt_ids, responses)])

    return Reward(f"gold {ev.gold.name}", fn)


def learned_reward(ctx, progress: bool = True) -> Reward:
    """The reward model's score (:func:`reward_model`), named by its run id.

    Introduced in notebook 06.
    """
    from .lm.reward_model import reward_scores

    rm = reward_model(ctx, progress)
    return Reward(rm.run.id, lambda xs, ys: reward_scores(rm.model, xs, ys).numpy())


def reward_for(method: str, ctx, progress: bool = True) -> Reward:
    """The reward a method of this module optimises or selects by: gold for ``*_gt``, else learned."""
    if method not in PPO_METHODS + BEST_OF_N_METHODS:
        raise ValueError(f"method: need one of {PPO_METHODS + BEST_OF_N_METHODS}, got {method!r}")
    return gold_reward(ctx) if method.endswith("_gt") else learned_reward(ctx, progress)


def train_ppo_run(spec, ctx, tag: dict, progress: bool = True):
    """PPO or PPO-GT (``spec.method``) at target KL ``spec.hyper``: an ``lm.TrainResult``.

    Introduced in notebook 06. ``tag``: the run's frontier tag (``sweep.run_tag``), evaluation included.
    """
    from .lm.ppo_training import train_ppo

    p = ctx.profile
    reward = reward_for(spec.method, ctx, progress)
    return train_ppo(
        ctx.sft.model,
        ctx.ref,
        ctx.train_prompt_ids,
        reward.fn,
        reward_name=reward.name,
        iterations=p.ppo_iterations,
        batch_size=p.ppo_batch_size,
        minibatch_size=p.ppo_minibatch_size,
        max_new_tokens=p.max_new_tokens,
        lr=p.ppo_lr,
        kl_coef=p.ppo_kl_coef,
        target_kl=spec.hyper,
        horizon=p.ppo_horizon,
        ppo_epochs=p.ppo_epochs,
        normalize_scores=True,
        seed=spec.seed,
        eval_fn=ctx.evaluator,
        eval_every=p.ppo_eval_every,
        checkpoint_every=p.ppo_checkpoint_every,
        tokenizer=ctx.sft.tokenizer,
        run_tag=tag,
        progress=progress,
    )


@dataclass
class Draws:
    """pi_SFT's samples for Best-of-N: ``m`` per evaluation slot, slot-major (row ``slot * m + j``)."""

    m: int
    samples: object  # lm.Samples
    gold: np.ndarray  # (slots * m,) gold reward of each draw
    scores: dict  # reward name -> (slots * m,) its scores


def _draws(ctx, reward: Reward) -> Draws:
    """The shared draws of the context, scored by ``reward`` too (each computed once per context)."""
    from .lm import sample

    ev, m = ctx.evaluator, max(ctx.profile.best_of_ns)
    if "draws" not in ctx.cache:
        s = sample(ctx.sft.model, ev.tokenizer, ev.prompt_ids, ev.num_samples * m, ev.max_new_tokens, ev.seed)
        full = [ev.prompts[i] + text for i, text in zip(s.prompt_index, s.texts)]
        gold = np.asarray(ev.gold(full), dtype=float)
        ctx.cache["draws"] = Draws(m, s, gold, {gold_reward(ctx).name: gold})  # gold selects too: scored once
    draws = ctx.cache["draws"]
    if reward.name not in draws.scores:
        from .lm.ppo_training import call_reward

        draws.scores[reward.name] = call_reward(reward.fn, draws.samples.prompt_ids, draws.samples.response_ids).numpy()
    return draws


def best_of_n_run(spec, ctx, tag: dict, progress: bool = True) -> Run:
    """Best-of-N (``spec.method``) with N = ``spec.hyper``: its run (kind ``best_of_n``), evaluated once.

    Introduced in notebook 06. ``tag``: the run's frontier tag, evaluation included.
    """
    from .lm.best_of_n import select_best

    n = int(spec.hyper)
    if n != spec.hyper or n > max(ctx.profile.best_of_ns):
        raise ValueError(
            f"spec: N = {spec.hyper!r} must be an integer <= max(best_of_ns) {max(ctx.profile.best_of_ns)}"
        )
    reward = reward_for(spec.method, ctx, progress)
    run = open_run("best_of_n", {"tag": tag, "sft": ctx.sft.run.id, "selector": reward.name})
    if run.finished:
        return run
    draws = _draws(ctx, reward)
    slots = len(draws.gold) // draws.m
    rows = np.arange(slots)[:, None] * draws.m + np.arange(n)[None, :]  # the first n draws of each slot
    kept = rows[np.arange(slots), select_best(draws.scores[reward.name][rows], spec.seed)]
    s, ev = draws.samples, ctx.evaluator
    texts = [s.texts[i] for i in kept]
    full = [ev.prompts[s.prompt_index[i]] + text for i, text in zip(kept, texts)]
    extra = {"eval/bon_n": n, "eval/bon_selector_score": float(draws.scores[reward.name][kept].mean())}
    if ctx.source is not None and ctx.source.best_of_n_evaluation is not None:  # a task that enumerates
        extra.update(ctx.source.best_of_n_evaluation(n, reward.fn))
    bound = best_of_n_kl_bound(n)
    kl = {"kl_logratio": bound, "kl_logratio_se": 0.0, "kl_exact": bound, "kl_exact_se": 0.0}
    record = evaluation_record(
        0,
        draws.gold[kept],
        ev.second(full),
        kl,
        texts,
        [s.response_ids[i] for i in kept],
        ev.tokenizer.eos_token_id,
        exact=extra,
    )
    run.log({"split": "eval", **record})
    run.finish({"final_eval": record})
    return run
