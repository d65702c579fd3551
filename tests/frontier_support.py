"""Synthetic evaluation points, records and stored runs for the tests of evaluation, frontier and plots."""

import itertools
import math

import numpy as np

from dpo_lab import evaluation as ev
from dpo_lab import plots, runs

EOS = 0


def point(
    method="dpo", kl=1.0, reward=0.5, se=0.01, step=10, run=None, hyper=0.1, seed=0, profile="smoke", task="imdb"
):
    """A point as load_points makes it (the fields the analysis functions read)."""
    hyper_name = ev.METHODS[method].hyper_name
    return {
        "run": run or f"{method}-{hyper}-{seed}",
        "method": method,
        "hyper_name": hyper_name,
        "hyper": hyper if hyper_name else math.nan,
        "seed": seed,
        "profile": profile,
        "task": task,
        "step": step,
        "reward": reward,
        "reward_se": se,
        "kl_exact": kl,
        "kl_exact_se": 0.05,
        "kl_logratio": kl + 0.1,
        "kl_logratio_se": 0.2,
    }


def record(step, reward, kl, n=8):
    """A valid evaluation record with mean reward `reward` and exact KL `kl`."""
    rewards = reward + np.linspace(-0.05, 0.05, n)
    return ev.evaluation_record(
        step,
        rewards,
        rewards[::-1],
        {"kl_logratio": kl + 0.1, "kl_logratio_se": 0.2, "kl_exact": kl, "kl_exact_se": 0.05},
        ["a great film"] * n,
        [[5, 6, EOS]] * (n // 2) + [[5, 6, 7, 8]] * (n - n // 2),
        EOS,
    )


def make_run(root, method, hyper, seed, curve, profile="smoke", train_records=True, finish=True, extra_tag=None):
    """A stored run of `method` whose evaluations follow `curve` = [(step, reward, kl), ...]."""
    tag = {"method": method, "seed": seed, "profile": profile, **(extra_tag or {})}
    if ev.METHODS[method].hyper_name:
        tag[ev.METHODS[method].hyper_name] = hyper
    kind = "sft_eval" if method == "sft" else "pref"
    run = runs.open_run(kind, {"tag": tag, "trainer": "test"}, root)
    for step, reward, kl in curve:
        if train_records:
            run.log({"split": "train", "step": step, **{k: 0.5 + step / 100 for k in plots.TRAIN_CURVE_KEYS}})
        run.log(record(step, reward, kl))
    if finish:
        run.finish({"steps": curve[-1][0]})
    return run


def sweep(dpo_shift=0.0, odpo_shift=0.0, pft_reward=0.52, ul_reward=0.52):
    """Synthetic points of a whole sweep: DPO and ODPO climb with KL, the baselines stay near SFT."""
    pts = [point("sft", kl=0.0, reward=0.5, step=0, hyper=None)]
    for beta, step in itertools.product([0.1, 1.0], [10, 20, 30]):
        kl = step / (10 * beta)
        pts.append(point("dpo", kl=kl, reward=0.5 + 0.1 * math.log1p(kl) + dpo_shift, step=step, hyper=beta))
        pts.append(point("odpo", kl=kl, reward=0.5 + 0.1 * math.log1p(kl) + odpo_shift, step=step, hyper=beta))
    for step in (10, 20, 30):
        pts.append(point("preferred_ft", kl=1.0 + step / 100, reward=pft_reward, step=step))
        pts.append(point("unlikelihood", kl=1.0 + step / 50, reward=ul_reward, step=step, hyper=0.5))
    return pts
