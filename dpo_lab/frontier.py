"""The reward-KL frontier: evaluation records, Pareto fronts, confidence tables, plots and a widget.

Introduced in notebook 06 (the evaluation record and the text statistics in notebook 05). This module
reads stored runs and trains nothing (ARCHITECTURE.md); it imports numpy, scipy and matplotlib only.

What is being measured (DPO paper Sec. 6.1, Fig. 2). Each policy pi_theta solves, more or less well,
the KL-constrained reward maximisation of DPO Eq. 3,

    max_pi  E_{x, y ~ pi}[ r(x, y) ]  -  beta * KL( pi(.|x) || pi_ref(.|x) ),

so it is judged by two numbers measured on the same held-out prompts: the mean gold reward of fresh
samples (higher is better) and the sequence-level KL to pi_ref = pi_SFT (lower is better). Every
evaluation of every run is one point in the (KL, reward) plane; an algorithm is more efficient when its
points reach higher reward at the same KL. A point is on the *Pareto front* when no other point has
KL <= its KL and reward >= its reward with one of them strict. ODPO (Amini et al. 2024, Sec. 6.1 and
App. D, Table 1) summarises a comparison by the share of Pareto points each method owns and by the mean
and 90% confidence interval of KL and reward per method.

The evaluation record
---------------------
An evaluation is one line of a run's ``metrics.jsonl`` (``dpo_lab.runs``) carrying ``"step"`` and the
keys below (build it with :func:`evaluation_record`; :data:`EVAL_KEYS` lists them):

=======================  =============================================================================
key                      meaning (means are over all samples: prompts x samples per prompt)
=======================  =============================================================================
eval/reward              mean gold reward r(x, y) in [0, 1] of samples y ~ pi(.|x)
eval/reward_se           its standard error, std / sqrt(n)
eval/kl_logratio         mean of sum_t [log pi(y_t|.) - log pi_ref(y_t|.)]  (REFERENCE.md 5a)
eval/kl_logratio_se      its standard error
eval/kl_exact            mean of sum_t KL(pi(.|y_<t) || pi_ref(.|y_<t)) over the whole vocabulary (5b)
eval/kl_exact_se         its standard error
eval/length              mean response length in tokens, EOS excluded
eval/eos_rate            share of responses that ended with EOS before the token cap
eval/distinct1           distinct-1: unique words / all words, pooled over the responses
eval/distinct2           distinct-2: the same for word bigrams
eval/second_reward       mean score in [0, 1] of a second, independent scorer not used to build the pairs
eval/second_reward_se    its standard error
eval/n_samples           number of samples n behind every mean above
=======================  =============================================================================

The two KL estimators have the same expectation (chain rule); the exact one has much lower variance.
Length, EOS rate, distinct-n and the second scorer are there to catch reward hacking: a policy that
games the gold reward (repeating "great") shows falling distinct-n, responses running to the cap, and a
second scorer that does not follow the gold reward.

A run says what it is in the ``tag`` of its ``config.json`` (the ``run_tag`` that the ``dpo_lab.lm``
trainers hash into a run's identity): ``method`` (a key of :data:`METHODS`), ``seed``, ``profile`` and
the method's hyperparameter (``beta`` or ``alpha``, see :data:`METHODS`). Training runs have the kind
``"pref"`` of ``lm.train_preferences``; the evaluation of pi_SFT itself (method ``"sft"``, the level
every method starts from, drawn as a dashed line) is a run of kind ``"sft_eval"`` (:data:`RUN_KINDS`).
Runs of those kinds without such a tag (a demonstration run, say) are not frontier runs.

Point tables
------------
:func:`load_points` turns runs into a list of *points*, one dict per evaluation, with the keys of the
record without the ``eval/`` prefix plus ``run``, ``method``, ``hyper_name``, ``hyper`` (NaN when the
method has none), ``seed``, ``profile`` and ``step``. Every other function takes such a list.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class Method:
    """How a training method is named, which hyperparameter tells its runs apart, and its colour."""

    label: str
    hyper_name: str | None
    color: str


#: Every method the sweep trains (notebook 05), plus the pi_SFT reference.
METHODS: dict[str, Method] = {
    "sft": Method("SFT (pi_ref)", None, "black"),
    "dpo": Method("DPO", "beta", "tab:blue"),
    "odpo": Method("ODPO", "beta", "tab:orange"),
    "ipo": Method("IPO", "beta", "tab:purple"),
    "cdpo": Method("conservative DPO", "beta", "tab:brown"),
    "preferred_ft": Method("Preferred-FT", None, "tab:green"),
    "unlikelihood": Method("Unlikelihood", "alpha", "tab:red"),
}
REFERENCE_METHOD = "sft"

#: Run-store kinds whose tagged runs make the frontier: training runs, and the evaluation of pi_SFT.
RUN_KINDS = ("pref", "sft_eval")

#: KL estimator name -> column of a point table.
KL_ESTIMATORS = {"exact": "kl_exact", "logratio": "kl_logratio"}

EVAL_PREFIX = "eval/"
EVAL_KEYS = tuple(EVAL_PREFIX + k for k in (
    "reward", "reward_se", "kl_logratio", "kl_logratio_se", "kl_exact", "kl_exact_se", "length",
    "eos_rate", "distinct1", "distinct2", "second_reward", "second_reward_se", "n_samples"))
_KL_KEYS = ("kl_logratio", "kl_logratio_se", "kl_exact", "kl_exact_se")


# --- statistics of one evaluation ------------------------------------------------------------
def mean_and_se(values: Sequence[float], name: str = "values") -> tuple[float, float]:
    """Mean and standard error std(ddof=1) / sqrt(n) of ``values``.

    Introduced in notebook 05.

    ======  =====  ==========================================
    values  (n,)   one number per sample, n >= 2, all finite
    ======  =====  ==========================================
    """
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size < 2:
        raise ValueError(f"{name}: need a 1-D sequence of at least 2 numbers for a standard error, "
                         f"got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return float(arr.mean()), float(arr.std(ddof=1) / math.sqrt(arr.size))


_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    """The lower-cased words of ``text`` (letters, digits, apostrophes): the unit of distinct-n.

    Introduced in notebook 05. Punctuation and ``<br />`` leftovers do not count as words, so a policy
    cannot look diverse by varying punctuation.
    """
    return _WORD.findall(text.lower())


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct-n (Li et al. 2016): unique word n-grams / all word n-grams, pooled over ``texts``.

    Introduced in notebook 05. 1.0 means no n-gram repeats anywhere in the batch; a policy that writes
    "a great, a great, a great" drives it towards 0. Pooling over the batch (not averaging per text)
    also catches a policy that writes the same response to every prompt. Returns 0.0 when no text
    has n words (nothing was written, so nothing is diverse).

    =====  ====  ========================================
    texts  (N,)  decoded responses (prompt not included)
    =====  ====  ========================================
    """
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise ValueError(f"texts: need a list of strings, got {type(texts).__name__}")
    if len(texts) == 0:
        raise ValueError("texts: need at least one text")
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n: need an integer >= 1, got {n!r}")
    grams: list[tuple[str, ...]] = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts[{i}]: need a string, got {type(text).__name__}")
        w = words(text)
        grams.extend(tuple(w[j:j + n]) for j in range(len(w) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0


def _check_ids(response_ids: Sequence[Sequence[int]]) -> None:
    if isinstance(response_ids, (str, bytes)) or len(response_ids) == 0:
        raise ValueError("response_ids: need a non-empty list of token-id lists")
    for i, ids in enumerate(response_ids):
        if isinstance(ids, (str, bytes)) or not all(isinstance(t, (int, np.integer)) for t in ids):
            raise ValueError(f"response_ids[{i}]: need a list of integer token ids")


def response_lengths(response_ids: Sequence[Sequence[int]], eos_token_id: int) -> np.ndarray:
    """Number of tokens of each response before its first EOS (all of them when there is no EOS).

    Introduced in notebook 05.

    ============  ===========  ===============================================
    response_ids  N x (T_i,)   sampled response token ids (prompt not included)
    returns       (N,) int     tokens before the first ``eos_token_id``
    ============  ===========  ===============================================
    """
    _check_ids(response_ids)
    return np.array([list(ids).index(eos_token_id) if eos_token_id in ids else len(ids)
                     for ids in response_ids], dtype=int)


def eos_rate(response_ids: Sequence[Sequence[int]], eos_token_id: int) -> float:
    """Share of responses that contain ``eos_token_id``, i.e. that ended before the token cap.

    Introduced in notebook 05. A policy that games a length-loving reward stops emitting EOS.
    """
    _check_ids(response_ids)
    return float(np.mean([eos_token_id in ids for ids in response_ids]))


def evaluation_record(step: int, rewards: Sequence[float], second_rewards: Sequence[float],
                      kl: Mapping[str, float], texts: Sequence[str],
                      response_ids: Sequence[Sequence[int]], eos_token_id: int) -> dict:
    """One evaluation of a policy on the held-out prompts, as a ``metrics.jsonl`` record.

    Introduced in notebook 05; the keys are documented in the module docstring (:data:`EVAL_KEYS`).

    ==============  ==========  ==================================================================
    rewards         (N,)        gold reward of each sample, in [0, 1]
    second_rewards  (N,)        the independent scorer's score of the same samples, in [0, 1]
    kl              mapping     kl_logratio, kl_logratio_se, kl_exact, kl_exact_se (sequence KL)
    texts           (N,)        decoded responses
    response_ids    N x (T_i,)  their token ids (EOS included when it was sampled)
    ==============  ==========  ==================================================================
    """
    if not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step: need an integer >= 0, got {step!r}")
    reward, reward_se = mean_and_se(rewards, "rewards")
    second, second_se = mean_and_se(second_rewards, "second_rewards")
    n = len(rewards)
    for name, seq in (("second_rewards", second_rewards), ("texts", texts), ("response_ids", response_ids)):
        if len(seq) != n:
            raise ValueError(f"{name}: has {len(seq)} entries, rewards has {n}")
    missing = [k for k in _KL_KEYS if k not in kl]
    if missing:
        raise ValueError(f"kl: missing {missing}; need {list(_KL_KEYS)}")
    bad = [k for k in _KL_KEYS if not math.isfinite(float(kl[k]))]
    if bad:
        raise ValueError(f"kl: non-finite values for {bad}")
    values = {"reward": reward, "reward_se": reward_se,
              **{k: float(kl[k]) for k in _KL_KEYS},
              "length": float(response_lengths(response_ids, eos_token_id).mean()),
              "eos_rate": eos_rate(response_ids, eos_token_id),
              "distinct1": distinct_n(texts, 1), "distinct2": distinct_n(texts, 2),
              "second_reward": second, "second_reward_se": second_se, "n_samples": n}
    return {"step": int(step), **{EVAL_PREFIX + k: v for k, v in values.items()}}


# --- from stored runs to points -----------------------------------------------------------------
def reference_dir() -> Path:
    """``<checkout>/data/runs``: the reference runs shipped with the package (data/README.md says
    which profile, model, data and command made them).

    Introduced in notebook 06.
    """
    from . import config

    return config.project_root() / "data" / "runs"


def frontier_runs(root: str | Path | None = None) -> list:
    """The runs under ``root`` (default ``<results>/runs``) whose evaluations belong on the frontier:
    kinds :data:`RUN_KINDS` with a ``tag`` naming a method of :data:`METHODS`.

    Introduced in notebook 06.
    """
    from .runs import list_runs

    return [r for r in list_runs(root=root)
            if r.kind in RUN_KINDS and isinstance(r.config.get("tag"), dict)
            and r.config["tag"].get("method") in METHODS]


def stored_runs(root: str | Path | None = None, reference: str | Path | None = None) -> tuple[list, str]:
    """The frontier runs to plot and a sentence saying where they come from.

    Introduced in notebook 06. The reader's own runs (``root``, default ``<results>/runs`` of the
    active profile) when there are any, else the reference runs (``reference``, default
    :func:`reference_dir`). Their profile travels with every point, so a figure of the reference
    runs says so even when another profile is active.
    """
    from .runs import runs_root

    own_root = runs_root(root)
    own = frontier_runs(own_root)
    if own:
        return own, f"your runs: {len(own)} frontier runs in {own_root}"
    ref_root = Path(reference) if reference is not None else reference_dir()
    ref = frontier_runs(ref_root) if ref_root.is_dir() else []
    if ref:
        return ref, f"reference runs: {len(ref)} frontier runs in {ref_root} (none of your own in {own_root})"
    raise FileNotFoundError(f"no frontier runs in {own_root} nor in {ref_root}: run notebook 05 "
                            "(or python -m dpo_lab.sweep) first")


def load_points(runs: Iterable) -> list[dict]:
    """Every evaluation record of ``runs`` (``dpo_lab.runs.Run`` objects) as a list of points.

    Introduced in notebook 06. Unfinished runs contribute the evaluations stored so far, so a sweep
    can be plotted while it runs. Records without ``eval/reward`` (training steps) are skipped; an
    evaluation record missing a key, or a config whose ``tag`` lacks ``method``/``seed``/``profile``/
    the hyperparameter, is an error naming the file.
    """
    points = []
    for run in runs:
        cfg_file = Path(run.path) / "config.json"
        tag = run.config.get("tag")
        method = tag.get("method") if isinstance(tag, dict) else None
        if method not in METHODS:
            raise ValueError(f"{cfg_file}: 'tag' must hold a 'method' of {sorted(METHODS)}, got {method!r}")
        hyper_name = METHODS[method].hyper_name
        needed = ["seed", "profile"] + ([hyper_name] if hyper_name else [])
        missing = [k for k in needed if k not in tag]
        if missing:
            raise ValueError(f"{cfg_file}: the tag of a {method} run lacks {missing}")
        for record in run.metrics():
            if EVAL_PREFIX + "reward" not in record:
                continue
            absent = [k for k in EVAL_KEYS if k not in record]
            if absent or "step" not in record:
                raise ValueError(f"{Path(run.path) / 'metrics.jsonl'}: evaluation record at step "
                                 f"{record.get('step')} lacks {absent or ['step']}")
            point = {k[len(EVAL_PREFIX):]: float(record[k]) for k in EVAL_KEYS}
            point.update(run=run.id, method=method, hyper_name=hyper_name,
                         hyper=float(tag[hyper_name]) if hyper_name else math.nan,
                         seed=int(tag["seed"]), profile=str(tag["profile"]), step=int(record["step"]))
            points.append(point)
    return points


def _kl_column(kl: str) -> str:
    if kl not in KL_ESTIMATORS:
        raise ValueError(f"kl: estimator must be one of {sorted(KL_ESTIMATORS)}, got {kl!r}")
    return KL_ESTIMATORS[kl]


def _column(points: Sequence[dict], key: str) -> np.ndarray:
    return np.array([p[key] for p in points], dtype=float)


def select_points(points: Sequence[dict], methods: Iterable[str] | None = None,
                  hyper_range: tuple[float, float] | None = None,
                  step_range: tuple[int, int] | None = None) -> list[dict]:
    """The points of the chosen ``methods`` whose hyperparameter lies in ``hyper_range`` and whose
    step lies in ``step_range`` (both inclusive; None = no limit).

    Introduced in notebook 06. Methods without a hyperparameter (Preferred-FT, the SFT reference)
    pass any ``hyper_range``; the SFT reference passes any ``step_range`` too, since it is the
    level every run starts from.
    """
    if methods is not None:
        methods = set(methods)
        unknown = methods - set(METHODS)
        if unknown:
            raise ValueError(f"methods: unknown {sorted(unknown)}; valid: {sorted(METHODS)}")
    for name, rng in (("hyper_range", hyper_range), ("step_range", step_range)):
        if rng is not None and (len(rng) != 2 or rng[0] > rng[1]):
            raise ValueError(f"{name}: need (low, high) with low <= high, got {rng!r}")
    out = []
    for p in points:
        if methods is not None and p["method"] not in methods:
            continue
        if hyper_range and p["hyper_name"] and not hyper_range[0] <= p["hyper"] <= hyper_range[1]:
            continue
        if step_range and p["method"] != REFERENCE_METHOD and not step_range[0] <= p["step"] <= step_range[1]:
            continue
        out.append(p)
    return out


def profile_of(points: Sequence[dict]) -> str:
    """The one profile that made ``points``; mixing profiles in one figure or table is an error.

    Introduced in notebook 06: it is how every figure says which profile made it (cpu-profile points
    must never be read as gpt2-large results).
    """
    profiles = sorted({p["profile"] for p in points})
    if len(profiles) != 1:
        raise ValueError(f"points: need the runs of exactly one profile, got {profiles or 'no points'}")
    return profiles[0]


# --- Pareto fronts --------------------------------------------------------------------------------
def pareto_mask(kl: Sequence[float], reward: Sequence[float]) -> np.ndarray:
    """True for the points on the Pareto front of (KL low, reward high).

    Introduced in notebook 06. Point i is dominated when some j has kl_j <= kl_i and
    reward_j >= reward_i, one of them strictly; the front is every point that is not dominated
    (identical points are all on it). O(N log N): sort by KL (ties: higher reward first) and keep a
    point when it beats the best reward of every point of strictly lower KL and ties the best reward
    of its own KL.

    =======  =======  ====================================
    kl       (N,)     KL(pi || pi_ref) of each point
    reward   (N,)     mean reward of each point
    returns  (N,)     bool, True on the front
    =======  =======  ====================================
    """
    kl_a, r_a = np.asarray(kl, dtype=float), np.asarray(reward, dtype=float)
    if kl_a.ndim != 1 or kl_a.shape != r_a.shape:
        raise ValueError(f"kl and reward: need 1-D arrays of equal length, got {kl_a.shape} and {r_a.shape}")
    for name, arr in (("kl", kl_a), ("reward", r_a)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: contains NaN or infinite values")
    order = np.lexsort((-r_a, kl_a))  # by KL, within equal KL by reward descending
    mask = np.zeros(kl_a.size, dtype=bool)
    best_lower = -np.inf  # best reward among points of strictly lower KL
    start = 0
    while start < order.size:
        stop = start
        while stop < order.size and kl_a[order[stop]] == kl_a[order[start]]:
            stop += 1
        group = order[start:stop]
        top = r_a[group[0]]
        if top > best_lower:
            mask[group[r_a[group] == top]] = True
            best_lower = top
        start = stop
    return mask


def pareto_share(points: Sequence[dict], kl: str = "exact") -> dict[str, float]:
    """Share of the Pareto points that each method owns (ODPO Sec. 6.1): the comparison's headline.

    Introduced in notebook 06. The front is computed over all points except the SFT reference
    (pi_SFT has KL 0 and would always sit on it). Every method present gets an entry, 0.0 when it
    owns no Pareto point; the shares sum to 1.
    """
    col = _kl_column(kl)
    pts = [p for p in points if p["method"] != REFERENCE_METHOD]
    if not pts:
        raise ValueError("points: no evaluation points besides the SFT reference")
    mask = pareto_mask(_column(pts, col), _column(pts, "reward"))
    owners = [p["method"] for p, on in zip(pts, mask) if on]
    present = [m for m in METHODS if any(p["method"] == m for p in pts)]
    return {m: owners.count(m) / len(owners) for m in present}


# --- mean and 90% confidence interval per method and hyperparameter --------------------------------
def mean_ci(values: Sequence[float], se: Sequence[float], confidence: float = 0.9) -> tuple[float, float, float, str]:
    """Mean of ``values`` and a two-sided ``confidence`` interval for it: ``(mean, low, high, basis)``.

    Introduced in notebook 06. With k >= 2 values (one per run: seeds) it is the Student-t interval
    mean +- t_{(1+c)/2, k-1} * std(ddof=1) / sqrt(k), whose spread holds both seed-to-seed variation and
    evaluation noise (basis "t over k runs"). With a single run there is no seed spread to measure,
    so it falls back on that run's own standard error, mean +- z_{(1+c)/2} * se, which covers the
    sampling noise of the evaluation only (basis "z from SE of 1 run").

    ======  ====  ==================================================
    values  (k,)  the number (reward or KL) measured in each run
    se      (k,)  its standard error within each run's evaluation
    ======  ====  ==================================================
    """
    from scipy import stats

    v, s = np.asarray(values, dtype=float), np.asarray(se, dtype=float)
    if v.ndim != 1 or v.size == 0 or v.shape != s.shape:
        raise ValueError(f"values and se: need equal-length non-empty 1-D arrays, got {v.shape}, {s.shape}")
    if not (np.all(np.isfinite(v)) and np.all(np.isfinite(s)) and np.all(s >= 0)):
        raise ValueError("values and se: need finite numbers and se >= 0")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: need a number in (0, 1), got {confidence!r}")
    mean = float(v.mean())
    if v.size >= 2:
        half = stats.t.ppf((1 + confidence) / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
        basis = f"t over {v.size} runs"
    else:
        half = stats.norm.ppf((1 + confidence) / 2) * s[0]
        basis = "z from SE of 1 run"
    return mean, mean - float(half), mean + float(half), basis


def last_points(points: Sequence[dict]) -> list[dict]:
    """The last evaluation (largest step) of every run among ``points``, in input order of runs.

    Introduced in notebook 06: with a step range chosen, this is "the policy at the end of that range".
    """
    last: dict[str, dict] = {}
    for p in points:
        if p["run"] not in last or p["step"] > last[p["run"]]["step"]:
            last[p["run"]] = p
    return list(last.values())


def _group_key(p: dict) -> tuple[int, float]:
    return list(METHODS).index(p["method"]), (0.0 if math.isnan(p["hyper"]) else p["hyper"])


def summary_table(points: Sequence[dict], kl: str = "exact", confidence: float = 0.9) -> list[dict]:
    """ODPO Table 1 style: per method and hyperparameter, mean and CI of reward and KL over runs.

    Introduced in notebook 06. Each run contributes its last evaluation among ``points`` (so the
    table describes the policies at the end of the selected step range); :func:`mean_ci` makes the
    interval. One dict per row with keys method, label, hyper_name, hyper, runs, step, reward,
    reward_lo, reward_hi, kl, kl_lo, kl_hi, basis; rows in :data:`METHODS` order, then by hyper.
    """
    col = _kl_column(kl)
    groups: dict[tuple, list[dict]] = {}
    for p in last_points(points):
        groups.setdefault((p["method"], p["hyper"] if p["hyper_name"] else None), []).append(p)
    rows = []
    for (method, hyper), grp in sorted(groups.items(), key=lambda kv: _group_key(kv[1][0])):
        reward = mean_ci(_column(grp, "reward"), _column(grp, "reward_se"), confidence)
        kl_ci = mean_ci(_column(grp, col), _column(grp, col + "_se"), confidence)
        rows.append({"method": method, "label": METHODS[method].label,
                     "hyper_name": METHODS[method].hyper_name, "hyper": hyper, "runs": len(grp),
                     "step": max(p["step"] for p in grp),
                     "reward": reward[0], "reward_lo": reward[1], "reward_hi": reward[2],
                     "kl": kl_ci[0], "kl_lo": kl_ci[1], "kl_hi": kl_ci[2], "basis": reward[3]})
    return rows


def format_table(rows: Sequence[dict], confidence: float = 0.9) -> str:
    """The rows of :func:`summary_table` as a fixed-width text table (prints in any notebook).

    Introduced in notebook 06.
    """
    pct = f"{confidence:.0%}"
    header = ["method", "hyper", "runs", "step", f"reward [{pct} CI]", f"KL [{pct} CI]", "CI from"]
    body = [[r["label"], f"{r['hyper_name']}={r['hyper']:g}" if r["hyper_name"] else "-",
             str(r["runs"]), str(r["step"]),
             f"{r['reward']:.3f} [{r['reward_lo']:.3f}, {r['reward_hi']:.3f}]",
             f"{r['kl']:.2f} [{r['kl_lo']:.2f}, {r['kl_hi']:.2f}]", r["basis"]] for r in rows]
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()
                     for line in [header, ["-" * w for w in widths]] + body)


# --- does one frontier dominate another? -----------------------------------------------------------
@dataclass(frozen=True)
class FrontierComparison:
    """Where the Pareto points of method ``worse`` lie relative to the frontier of method ``better``.

    For each Pareto point b of ``worse`` (its own front), the frontier of ``better`` at b's KL is the
    best reward any ``better`` point (or the SFT reference, where every run starts) reaches with
    KL <= kl_b; the gap is that reward minus b's reward, and the noise band is ``z`` times the two
    points' standard errors combined, sqrt(se_a^2 + se_b^2). KL noise is not part of the band.
    """

    better: str
    worse: str
    kl: str
    z: float
    n_points: int  # Pareto points of `worse`
    n_below: int  # below the frontier of `better` by more than the noise band
    n_tie: int  # within the noise band
    n_above: int  # above it by more than the noise band
    n_uncovered: int  # `better` has no point (and no SFT reference) at or below this KL

    @property
    def dominates(self) -> bool:
        """True when every Pareto point of ``worse`` lies clearly below the frontier of ``better``."""
        return self.n_points > 0 and self.n_below == self.n_points

    def sentence(self) -> str:
        """The comparison in one plain sentence, numbers included."""
        a, b = METHODS[self.better].label, METHODS[self.worse].label
        counts = (f"{b} Pareto points: {self.n_below} of {self.n_points} clearly below {a}'s frontier, "
                  f"{self.n_tie} within noise, {self.n_above} clearly above, {self.n_uncovered} at a KL "
                  f"{a} never reached; noise band z = {self.z:.3g} standard errors, {self.kl} KL")
        if self.dominates:
            return f"{a}'s frontier dominates {b} ({counts})."
        if self.n_above == 0 and self.n_uncovered == 0:
            return f"{a}'s frontier matches or beats {b} only within noise ({counts})."
        return f"{a}'s frontier does not dominate {b} ({counts})."


def frontier_at(points: Sequence[dict], kl_query: Sequence[float], kl: str = "exact") -> tuple[np.ndarray, np.ndarray]:
    """The frontier of ``points`` as a step function: at each query KL, the best reward of any point
    with KL <= it, and that point's standard error (-inf and NaN where no point qualifies).

    Introduced in notebook 06.

    ========  ====  =========================================
    kl_query  (Q,)  KL values at which to read the frontier
    returns   2 x (Q,)  best reward, its standard error
    ========  ====  =========================================
    """
    col = _kl_column(kl)
    q = np.asarray(kl_query, dtype=float)
    best, best_se = np.full(q.shape, -np.inf), np.full(q.shape, np.nan)
    for p in points:
        better = (p[col] <= q) & (p["reward"] > best)
        best[better], best_se[better] = p["reward"], p["reward_se"]
    return best, best_se


def compare_frontiers(points: Sequence[dict], better: str, worse: str, kl: str = "exact",
                      confidence: float = 0.9) -> FrontierComparison:
    """Place the Pareto points of method ``worse`` against the frontier of method ``better``.

    Introduced in notebook 06. ``confidence`` sets the two-sided noise band z (0.9 -> 1.645).
    SFT reference points in ``points`` join the frontier of ``better`` (every run starts there).
    """
    from scipy import stats

    for name, m in (("better", better), ("worse", worse)):
        if m not in METHODS or m == REFERENCE_METHOD:
            raise ValueError(f"{name}: need a trained method of {sorted(set(METHODS) - {REFERENCE_METHOD})}, got {m!r}")
    col = _kl_column(kl)
    z = float(stats.norm.ppf((1 + confidence) / 2))
    mine = [p for p in points if p["method"] == worse]
    if not mine:
        raise ValueError(f"points: no {worse} points to compare")
    front = [p for p, on in zip(mine, pareto_mask(_column(mine, col), _column(mine, "reward"))) if on]
    ref = [p for p in points if p["method"] in (better, REFERENCE_METHOD)]
    best, best_se = frontier_at(ref, _column(front, col), kl)
    rewards, ses = _column(front, "reward"), _column(front, "reward_se")
    covered = np.isfinite(best)
    gap = np.where(covered, best - rewards, 0.0)
    band = z * np.sqrt(np.where(covered, best_se, 0.0) ** 2 + ses ** 2)
    return FrontierComparison(
        better=better, worse=worse, kl=kl, z=z, n_points=len(front),
        n_below=int(np.sum(covered & (gap > band))), n_tie=int(np.sum(covered & (np.abs(gap) <= band))),
        n_above=int(np.sum(covered & (gap < -band))), n_uncovered=int(np.sum(~covered)))


def verdict(points: Sequence[dict], kl: str = "exact", confidence: float = 0.9) -> list[str]:
    """What the runs show, in sentences computed from them (never written by hand).

    Introduced in notebook 06. Answers the two questions of the DPO and ODPO papers for these runs:
    does DPO's frontier dominate Preferred-FT and Unlikelihood (DPO Fig. 2)? Does ODPO add to DPO,
    i.e. does it place Pareto points above DPO's frontier, and what share of the joint Pareto front
    does it own (ODPO Sec. 6.1)?
    """
    present = {p["method"] for p in points}
    out = [f"Profile {profile_of(points)}; KL estimator: {kl}; noise band: {confidence:.0%} two-sided."]
    for worse in ("preferred_ft", "unlikelihood"):
        missing = [m for m in ("dpo", worse) if m not in present]
        if missing:
            out.append(f"DPO vs {METHODS[worse].label}: no {', '.join(METHODS[m].label for m in missing)} "
                       "points in this selection, so no comparison.")
        else:
            out.append(compare_frontiers(points, "dpo", worse, kl, confidence).sentence())
    if not {"dpo", "odpo"} <= present:
        out.append("DPO vs ODPO: both are needed in the selection to ask whether ODPO adds to DPO.")
        return out
    c = compare_frontiers(points, "dpo", "odpo", kl, confidence)
    share = pareto_share([p for p in points if p["method"] in ("dpo", "odpo")], kl)["odpo"]
    counts = (f"ODPO Pareto points: {c.n_above} of {c.n_points} clearly above DPO's frontier, {c.n_tie} within "
              f"noise, {c.n_below} clearly below; ODPO owns {share:.0%} of the Pareto points of DPO and ODPO together")
    out.append(f"ODPO adds to DPO ({counts})." if c.n_above else f"ODPO does not add to DPO beyond noise ({counts}).")
    return out


# --- figures and the widget -------------------------------------------------------------------------
def plot_frontier(points: Sequence[dict], kl: str = "exact", log_kl: bool = False, ax=None):
    """Reward against KL for every evaluation point, coloured by method, Pareto front marked.

    Introduced in notebook 06. Pareto points get a black border (as in ODPO Fig. 2) and are joined
    by a black step line; the SFT reference is a dashed horizontal line. ``log_kl`` uses a symmetric
    log axis (linear within +-0.1 nats) because the log-ratio estimator can be slightly negative.
    The title names the profile that made the points. Returns the figure.
    """
    import matplotlib.pyplot as plt

    col = _kl_column(kl)
    profile = profile_of(points)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4.5))
    fig = ax.figure
    trained = [p for p in points if p["method"] != REFERENCE_METHOD]
    ref = [p for p in points if p["method"] == REFERENCE_METHOD]
    if ref:
        level = float(np.mean(_column(ref, "reward")))
        ax.axhline(level, color="0.3", ls="--", lw=1, label=f"{METHODS[REFERENCE_METHOD].label}: {level:.3f}")
    if trained:
        x, y = _column(trained, col), _column(trained, "reward")
        on = pareto_mask(x, y)
        for m in METHODS:
            idx = [i for i, p in enumerate(trained) if p["method"] == m]
            if idx:
                ax.scatter(x[idx], y[idx], s=28, color=METHODS[m].color, alpha=0.75, edgecolors="none",
                           label=METHODS[m].label, zorder=3)
        # Pareto points drawn again on top, opaque, with a black border
        ax.scatter(x[on], y[on], s=28, facecolors=[METHODS[p["method"]].color for p, o in zip(trained, on) if o],
                   edgecolors="black", linewidths=1.4, zorder=4)
        order = np.argsort(x[on])
        ax.step(x[on][order], y[on][order], where="post", color="black", lw=0.8, zorder=2,
                label=f"Pareto front ({int(on.sum())} points)")
    if log_kl:
        ax.set_xscale("symlog", linthresh=0.1)
    ax.set_xlabel(f"KL(pi || pi_SFT), {kl} estimator (nats){', symlog axis' if log_kl else ''}")
    ax.set_ylabel("mean gold reward of samples")
    ax.set_title(f"Reward-KL frontier, profile {profile}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def hacking_onset(points: Sequence[dict], kl: str = "exact", drop: float = 0.1) -> dict | None:
    """Where reward hacking by repetition starts on the frontier: the lowest-KL evaluation whose
    distinct-1 fell more than ``drop`` (a share) below pi_SFT's and stayed there at every later
    evaluation of its run. None when no run has such a point.

    Introduced in notebook 05. A lexicon-like gold reward is gamed by repeating its favourite words
    (REFERENCE.md 8: distinct-1 fell 0.40 -> 0.29 and never came back), and repetition shows first in
    distinct-1. ``drop`` = 0.1 sits well below that 28% fall. A fall must persist because a policy
    trained at a large learning rate also dips into repetition for an evaluation or two and recovers
    (the second cpu sweep in ``data/runs-replicate`` does, by up to 24%, with no gain in reward); a
    policy that has learned that repetition pays keeps repeating.
    """
    if not 0 < drop < 1:
        raise ValueError(f"drop: need a share in (0, 1), got {drop!r}")
    col = _kl_column(kl)
    ref = [p for p in points if p["method"] == REFERENCE_METHOD]
    if not ref:
        raise ValueError("points: need the SFT reference evaluation (method 'sft') as the baseline")
    floor = (1 - drop) * float(np.mean(_column(ref, "distinct1")))
    by_run: dict[str, list[dict]] = {}
    for p in points:
        if p["method"] != REFERENCE_METHOD:
            by_run.setdefault(p["run"], []).append(p)
    onsets = []
    for evaluations in by_run.values():
        evaluations.sort(key=lambda p: p["step"])
        # the first evaluation from which distinct-1 stays below the floor to the end of the run
        start = len(evaluations)
        while start > 0 and evaluations[start - 1]["distinct1"] < floor:
            start -= 1
        onsets.extend(evaluations[start:])
    return min(onsets, key=lambda p: p[col]) if onsets else None


def plot_hacking(points: Sequence[dict], kl: str = "exact", log_kl: bool = False):
    """Three signs of reward hacking against KL: the second scorer, distinct-1 and the EOS rate.

    Introduced in notebook 05. Read it next to :func:`plot_frontier`: where the gold reward still
    climbs but the independent scorer stays flat, distinct-1 falls and EOS disappears, the policy is
    gaming the gold reward rather than writing more positive reviews. Returns the figure.
    """
    import matplotlib.pyplot as plt

    col = _kl_column(kl)
    profile = profile_of(points)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharex=True)
    panels = [("second_reward", "second scorer, mean score"), ("distinct1", "distinct-1 (unique words / words)"),
              ("eos_rate", "share of responses ending with EOS")]
    ref = [p for p in points if p["method"] == REFERENCE_METHOD]
    for ax, (key, ylabel) in zip(axes, panels):
        for m in METHODS:
            mine = [p for p in points if p["method"] == m and m != REFERENCE_METHOD]
            if mine:
                ax.scatter(_column(mine, col), _column(mine, key), s=18, color=METHODS[m].color,
                           alpha=0.75, label=METHODS[m].label)
        if ref:
            ax.axhline(float(np.mean(_column(ref, key))), color="0.3", ls="--", lw=1, label="pi_SFT")
        if log_kl:
            ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xlabel(f"KL(pi || pi_SFT), {kl} estimator (nats)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Signs of reward hacking along the frontier, profile {profile}")
    fig.tight_layout()
    return fig


#: What the preference trainer logs each step (``losses.preference_metrics``), as plotted by
#: :func:`plot_training_curves`.
TRAIN_CURVE_KEYS = ("loss", "rewards/accuracies", "rewards/margins", "rewards/chosen", "logps/chosen",
                    "logps/rejected")


def run_label(run) -> str:
    """A run's frontier tag in words, e.g. "DPO beta=0.1 seed 0".

    Introduced in notebook 05.
    """
    tag = run.config.get("tag")
    if not isinstance(tag, dict) or tag.get("method") not in METHODS:
        raise ValueError(f"{Path(run.path) / 'config.json'}: no frontier tag with a method of {sorted(METHODS)}")
    method = METHODS[tag["method"]]
    hyper = f" {method.hyper_name}={tag[method.hyper_name]:g}" if method.hyper_name else ""
    return f"{method.label}{hyper} seed {tag['seed']}"


def plot_training_curves(runs: Sequence, keys: Sequence[str] = TRAIN_CURVE_KEYS, window: int = 5):
    """One panel per logged training quantity, one line per run (colours in the order of ``runs``),
    smoothed by a running mean over ``window`` steps (1 = raw). Returns the figure.

    Introduced in notebook 05. Chosen log-probs often fall while the margin rises: the loss only asks
    the chosen response to gain on the rejected one relative to pi_ref, and pushing the rejected
    response down also lowers similar (chosen) responses (REFERENCE.md 4.6).
    """
    import matplotlib.pyplot as plt

    if not runs:
        raise ValueError("runs: need at least one training run")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window: need an integer >= 1, got {window!r}")
    profiles = sorted({str(r.config.get("tag", {}).get("profile")) for r in runs})
    if len(profiles) != 1:
        raise ValueError(f"runs: need the runs of exactly one profile, got {profiles}")
    cols = min(3, len(keys))
    fig, axes = plt.subplots(math.ceil(len(keys) / cols), cols, figsize=(4.3 * cols, 3.2 * math.ceil(len(keys) / cols)),
                             squeeze=False)
    colors = plt.cm.viridis(np.linspace(0.0, 0.9, len(runs)))
    for run, color in zip(runs, colors):
        label = run_label(run)
        train = [r for r in run.metrics() if r.get("split") == "train"]
        steps = np.array([r["step"] for r in train])
        for ax, key in zip(axes.flat, keys):
            values = np.array([r[key] for r in train if key in r], dtype=float)
            if len(values) != len(steps):
                raise ValueError(f"{Path(run.path) / 'metrics.jsonl'}: {key!r} is missing from some training records")
            if len(values) >= window:
                smooth = np.convolve(values, np.ones(window) / window, mode="valid")
                ax.plot(steps[window - 1:], smooth, color=color, lw=1.2, alpha=0.85, label=label)
    for ax, key in zip(axes.flat, keys):
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("optimiser step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    smoothing = f"running mean over {window} steps" if window > 1 else "raw"
    fig.suptitle(f"Training curves ({smoothing}), profile {profiles[0]}")
    fig.tight_layout()
    return fig


def frontier_view(points: Sequence[dict]):
    """An ``ipywidgets.interactive`` view of the frontier: methods, beta/alpha range, step range,
    KL estimator, log or linear KL axis. The view only selects and calls this module's functions.

    Introduced in notebook 06. Runs headless: ``interactive`` calls the view once on creation, and
    ``view.result`` holds what the current selection gives (a dict with ``share``, ``table`` and
    ``verdict``, or None when nothing is selected), so a notebook can assert on it.
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    trained = [p for p in points if p["method"] != REFERENCE_METHOD]
    if not trained:
        raise ValueError("points: no evaluation points besides the SFT reference")
    present = [m for m in METHODS if m != REFERENCE_METHOD and any(p["method"] == m for p in trained)]
    hypers = sorted({p["hyper"] for p in trained if p["hyper_name"]}) or [0.0]
    steps = sorted({p["step"] for p in trained})

    def show(methods, hyper, step, kl, axis):
        sel = select_points(points, list(methods) + [REFERENCE_METHOD], hyper, step)
        if not any(p["method"] != REFERENCE_METHOD for p in sel):
            print("No evaluation points in this selection.")
            return None
        fig = plot_frontier(sel, kl, log_kl=axis == "log")
        display(fig)
        plt.close(fig)
        share = pareto_share(sel, kl)
        table = summary_table(sel, kl)
        said = verdict(sel, kl)
        print("Share of Pareto points: " + ", ".join(f"{METHODS[m].label} {s:.0%}" for m, s in share.items()))
        print(format_table(table))
        print("\n".join(said))
        return {"share": share, "table": table, "verdict": said}

    return w.interactive(
        show,
        methods=w.SelectMultiple(options=[(METHODS[m].label, m) for m in present], value=present,
                                 description="methods"),
        hyper=w.SelectionRangeSlider(options=[(f"{h:g}", h) for h in hypers],
                                     index=(0, len(hypers) - 1), description="beta/alpha"),
        step=w.SelectionRangeSlider(options=[(str(s), s) for s in steps], index=(0, len(steps) - 1),
                                    description="steps"),
        kl=w.ToggleButtons(options=list(KL_ESTIMATORS), description="KL"),
        axis=w.ToggleButtons(options=["linear", "log"], description="KL axis"))
