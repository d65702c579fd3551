"""The reward-KL frontier: Pareto fronts, confidence tables, verdicts and where hacking starts.

Introduced in notebook 07 (the hacking onset in notebook 06). It works on the point tables of
``dpo_lab.results`` and trains nothing: it imports numpy and scipy, never torch, the language-model
engine or a task (``pyproject.toml``'s import contracts hold it to that). The figures and the widget
that show its results live in ``dpo_lab.plots``.

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

Every function takes a list of points (``dpo_lab.results.load_points``: one dict per evaluation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .evaluation import METHODS, REFERENCE_CURVES, REFERENCE_METHOD
from .results import column, kl_column, last_points, profile_of


# --- Pareto fronts --------------------------------------------------------------------------------
def pareto_mask(kl: Sequence[float], reward: Sequence[float]) -> np.ndarray:
    """True for the points on the Pareto front of (KL low, reward high).

    Introduced in notebook 07. Point i is dominated when some j has kl_j <= kl_i and
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


def competitors(points: Sequence[dict]) -> list[dict]:
    """The points of trained policies: all but the SFT reference and the reference curves.

    Introduced in notebook 07.
    """
    return [p for p in points if p["method"] != REFERENCE_METHOD and p["method"] not in REFERENCE_CURVES]


def pareto_share(points: Sequence[dict], kl: str = "exact") -> dict[str, float]:
    """Share of the Pareto points that each method owns (ODPO Sec. 6.1): the comparison's headline.

    Introduced in notebook 07. The front is computed over all points except the SFT reference
    (pi_SFT has KL 0 and would always sit on it) and the reference curves (Best-of-N, placed at an
    analytic KL: ``evaluation.REFERENCE_CURVES``). Every method present gets an entry, 0.0 when it
    owns no Pareto point; the shares sum to 1.
    """
    col = kl_column(kl)
    pts = competitors(points)
    if not pts:
        raise ValueError("points: no evaluation points besides the SFT reference")
    mask = pareto_mask(column(pts, col), column(pts, "reward"))
    owners = [p["method"] for p, on in zip(pts, mask) if on]
    present = [m for m in METHODS if any(p["method"] == m for p in pts)]
    return {m: owners.count(m) / len(owners) for m in present}


# --- mean and 90% confidence interval per method and hyperparameter --------------------------------
def mean_ci(values: Sequence[float], se: Sequence[float], confidence: float = 0.9) -> tuple[float, float, float, str]:
    """Mean of ``values`` and a two-sided ``confidence`` interval for it: ``(mean, low, high, basis)``.

    Introduced in notebook 07. With k >= 2 values (one per run: seeds) it is the Student-t interval
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


def _fixed_width(header: list[str], body: list[list[str]]) -> str:
    """Left-aligned columns under a dashed rule: a table that prints the same in any notebook."""
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()
        for line in [header, ["-" * w for w in widths]] + body
    )


def _group_key(p: dict) -> tuple[int, float]:
    return list(METHODS).index(p["method"]), (0.0 if math.isnan(p["hyper"]) else p["hyper"])


def summary_table(points: Sequence[dict], kl: str = "exact", confidence: float = 0.9) -> list[dict]:
    """ODPO Table 1 style: per method and hyperparameter, mean and CI of reward and KL over runs.

    Introduced in notebook 07. Each run contributes its last evaluation among ``points`` (so the
    table describes the policies at the end of the selected step range); :func:`mean_ci` makes the
    interval. One dict per row with keys method, label, hyper_name, hyper, runs, step, reward,
    reward_lo, reward_hi, kl, kl_lo, kl_hi, basis; rows in :data:`METHODS` order, then by hyper.
    """
    col = kl_column(kl)
    groups: dict[tuple, list[dict]] = {}
    for p in last_points(points):
        groups.setdefault((p["method"], p["hyper"] if p["hyper_name"] else None), []).append(p)
    rows = []
    for (method, hyper), grp in sorted(groups.items(), key=lambda kv: _group_key(kv[1][0])):
        reward = mean_ci(column(grp, "reward"), column(grp, "reward_se"), confidence)
        kl_ci = mean_ci(column(grp, col), column(grp, col + "_se"), confidence)
        rows.append(
            {
                "method": method,
                "label": METHODS[method].label,
                "hyper_name": METHODS[method].hyper_name,
                "hyper": hyper,
                "runs": len(grp),
                "step": max(p["step"] for p in grp),
                "reward": reward[0],
                "reward_lo": reward[1],
                "reward_hi": reward[2],
                "kl": kl_ci[0],
                "kl_lo": kl_ci[1],
                "kl_hi": kl_ci[2],
                "basis": reward[3],
            }
        )
    return rows


def format_table(rows: Sequence[dict], confidence: float = 0.9) -> str:
    """The rows of :func:`summary_table` as a fixed-width text table (prints in any notebook).

    Introduced in notebook 07.
    """
    pct = f"{confidence:.0%}"
    header = ["method", "hyper", "runs", "step", f"reward [{pct} CI]", f"KL [{pct} CI]", "CI from"]
    body = [
        [
            r["label"],
            f"{r['hyper_name']}={r['hyper']:g}" if r["hyper_name"] else "-",
            str(r["runs"]),
            str(r["step"]),
            f"{r['reward']:.3f} [{r['reward_lo']:.3f}, {r['reward_hi']:.3f}]",
            f"{r['kl']:.2f} [{r['kl_lo']:.2f}, {r['kl_hi']:.2f}]",
            r["basis"],
        ]
        for r in rows
    ]
    return _fixed_width(header, body)


# --- distance to a known optimum ------------------------------------------------------------------
def deficit_table(points: Sequence[dict]) -> list[dict]:
    """How far below the exact optimal frontier each run's policies lie (tasks with exact evaluation).

    Introduced in notebook 04. The deficit of a point is R*(KL) - E_pi[r*]: the reward the best
    policy with the same exact KL has, minus this policy's (the evaluator's ``enum_frontier_gap``
    with the sign flipped; >= 0 by theorem, 0 only on the frontier). One dict per run, in
    :data:`METHODS` order then by hyperparameter: ``method``, ``label`` ("DPO beta=0.1"), ``seed``,
    ``step``, ``kl``, ``reward`` and ``deficit`` of its last evaluation among ``points``, and
    ``best_deficit`` with its ``best_kl``, the smallest deficit over all its evaluations, and
    ``gain_share``: the share of the best possible reward gain at the last point's KL that it
    achieved, (reward - R_ref) / (R*(KL) - R_ref) with R_ref the SFT reference's reward (NaN without
    an SFT point among ``points``, or where the possible gain is below 1e-9). The SFT reference
    itself is skipped (its KL is 0, where the frontier is pi_ref itself).
    """
    missing = [p["run"] for p in points if "enum_frontier_gap" not in p]
    if missing:
        raise ValueError(f"points: run {missing[0]} has no exact quantities (enum_frontier_gap)")
    runs: dict[str, list[dict]] = {}
    for p in points:
        if p["method"] != REFERENCE_METHOD:
            runs.setdefault(p["run"], []).append(p)
    refs = [p["reward"] for p in points if p["method"] == REFERENCE_METHOD]
    base = float(np.mean(refs)) if refs else math.nan
    rows = []
    for grp in sorted(runs.values(), key=lambda g: (_group_key(g[0]), g[0]["seed"])):
        last = max(grp, key=lambda p: p["step"])
        best = min(grp, key=lambda p: -p["enum_frontier_gap"])
        hyper = "" if not last["hyper_name"] else f" {last['hyper_name']}={last['hyper']:g}"
        possible = last["enum_reward"] - last["enum_frontier_gap"] - base  # R*(KL) - R_ref
        rows.append(
            {
                "method": last["method"],
                "label": METHODS[last["method"]].label + hyper,
                "seed": last["seed"],
                "step": last["step"],
                "kl": last["enum_kl"],
                "reward": last["enum_reward"],
                "deficit": -last["enum_frontier_gap"],
                "best_deficit": -best["enum_frontier_gap"],
                "best_kl": best["enum_kl"],
                "gain_share": (last["enum_reward"] - base) / possible if possible > 1e-9 else math.nan,
            }
        )
    return rows


def format_deficits(rows: Sequence[dict]) -> str:
    """The rows of :func:`deficit_table` as a fixed-width text table.

    Introduced in notebook 04.
    """
    header = ["run", "seed", "step", "KL", "E[r*]", "deficit", "share of best gain", "best deficit (at KL)"]
    body = [
        [
            r["label"],
            str(r["seed"]),
            str(r["step"]),
            f"{r['kl']:.3f}",
            f"{r['reward']:.3f}",
            f"{r['deficit']:.3f}",
            "-" if math.isnan(r["gain_share"]) else f"{r['gain_share']:.0%}",
            f"{r['best_deficit']:.3f} ({r['best_kl']:.3f})",
        ]
        for r in rows
    ]
    return _fixed_width(header, body)


# --- does one frontier dominate another? -----------------------------------------------------------
@dataclass(frozen=True)
class FrontierComparison:
    """Where the Pareto points of method ``worse`` lie relative to the frontier of method ``better``.

    For each Pareto point b of ``worse`` (its own front), the frontier of ``better`` at b's KL is the
    best reward that ``better``'s policies (and the SFT reference, where every run starts) reach with
    KL <= kl_b, mixtures of two of them included (:func:`frontier_envelope`); the gap is that reward
    minus b's reward, and the noise band is ``z`` times the two standard errors combined,
    sqrt(se_a^2 + se_b^2). KL noise is not part of the band.
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
        counts = (
            f"{b} Pareto points: {self.n_below} of {self.n_points} clearly below {a}'s frontier, "
            f"{self.n_tie} within noise, {self.n_above} clearly above, {self.n_uncovered} at a KL "
            f"{a} never reached; noise band z = {self.z:.3g} standard errors, {self.kl} KL"
        )
        if self.dominates:
            return f"{a}'s frontier dominates {b} ({counts})."
        if self.n_above == 0 and self.n_uncovered == 0:
            return f"{a}'s frontier matches or beats {b} only within noise ({counts})."
        return f"{a}'s frontier does not dominate {b} ({counts})."


def frontier_at(points: Sequence[dict], kl_query: Sequence[float], kl: str = "exact") -> tuple[np.ndarray, np.ndarray]:
    """The frontier of ``points`` as a step function: at each query KL, the best reward of any point
    with KL <= it, and that point's standard error (-inf and NaN where no point qualifies).

    Introduced in notebook 07.

    ========  ====  =========================================
    kl_query  (Q,)  KL values at which to read the frontier
    returns   2 x (Q,)  best reward, its standard error
    ========  ====  =========================================
    """
    col = kl_column(kl)
    q = np.asarray(kl_query, dtype=float)
    best, best_se = np.full(q.shape, -np.inf), np.full(q.shape, np.nan)
    for p in points:
        better = (p[col] <= q) & (p["reward"] > best)
        best[better], best_se[better] = p["reward"], p["reward_se"]
    return best, best_se


def _rising_hull(kl: np.ndarray, reward: np.ndarray) -> np.ndarray:
    """Indices of the upper concave hull of the points, from the smallest KL up to the best reward."""
    order = np.lexsort((-reward, kl))  # by KL, the best reward first among equal KLs
    hull: list[int] = []
    for i in order:
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # b lies on or under the segment from a to i: never a vertex of the upper hull
            if (kl[b] - kl[a]) * (reward[i] - reward[a]) - (reward[b] - reward[a]) * (kl[i] - kl[a]) >= 0:
                hull.pop()
            else:
                break
        if not hull or kl[i] > kl[hull[-1]]:
            hull.append(i)
    top = int(np.argmax(reward[hull]))
    return np.asarray(hull[: top + 1])


def frontier_envelope(
    points: Sequence[dict], kl_query: Sequence[float], kl: str = "exact"
) -> tuple[np.ndarray, np.ndarray]:
    """The frontier of ``points`` as the policies they reach by mixing: at each query KL, the best
    reward on the upper concave envelope of the points at KL <= it, and its standard error (-inf and
    NaN below the smallest KL).

    Introduced in notebook 07. Why mixing counts: the policy that answers each prompt with pi_1 with
    probability lam and with pi_2 otherwise, pi_lam = lam pi_1 + (1 - lam) pi_2, has mean reward
    exactly lam R_1 + (1 - lam) R_2, and KL(pi_lam || pi_ref) <= lam KL_1 + (1 - lam) KL_2 because KL
    is jointly convex. So every point under the segment joining two evaluated policies is reachable
    by a policy built from them, and the envelope is a lower bound on what the method's policies
    reach at each KL (:func:`frontier_at` counts the evaluated points only). Between two hull
    vertices the standard error is sqrt(lam^2 se_1^2 + (1 - lam)^2 se_2^2).

    ========  ========  =========================================
    kl_query  (Q,)      KL values at which to read the envelope
    returns   2 x (Q,)  its reward, its standard error
    ========  ========  =========================================
    """
    col = kl_column(kl)
    q = np.asarray(kl_query, dtype=float)
    best, best_se = np.full(q.shape, -np.inf), np.full(q.shape, np.nan)
    if not len(points):
        return best, best_se
    x, y, se = column(points, col), column(points, "reward"), column(points, "reward_se")
    h = _rising_hull(x, y)
    hx, hy, hse = x[h], y[h], se[h]
    past = q >= hx[-1]
    best[past], best_se[past] = hy[-1], hse[-1]
    inside = (q >= hx[0]) & ~past
    j = np.searchsorted(hx, q[inside], side="right") - 1  # the vertex at or left of each query
    lam = (hx[j + 1] - q[inside]) / (hx[j + 1] - hx[j])  # weight of vertex j in the mixture
    best[inside] = lam * hy[j] + (1 - lam) * hy[j + 1]
    best_se[inside] = np.sqrt((lam * hse[j]) ** 2 + ((1 - lam) * hse[j + 1]) ** 2)
    return best, best_se


def compare_frontiers(
    points: Sequence[dict], better: str, worse: str, kl: str = "exact", confidence: float = 0.9
) -> FrontierComparison:
    """Place the Pareto points of method ``worse`` against the frontier of method ``better``.

    Introduced in notebook 07. ``confidence`` sets the two-sided noise band z (0.9 -> 1.645).
    SFT reference points in ``points`` join the frontier of ``better`` (every run starts there).
    """
    from scipy import stats

    trained = sorted(set(METHODS) - {REFERENCE_METHOD, *REFERENCE_CURVES})
    for name, m in (("better", better), ("worse", worse)):
        if m not in trained:
            raise ValueError(f"{name}: need a trained method of {trained}, got {m!r}")
    col = kl_column(kl)
    z = float(stats.norm.ppf((1 + confidence) / 2))
    mine = [p for p in points if p["method"] == worse]
    if not mine:
        raise ValueError(f"points: no {worse} points to compare")
    front = [p for p, on in zip(mine, pareto_mask(column(mine, col), column(mine, "reward"))) if on]
    ref = [p for p in points if p["method"] in (better, REFERENCE_METHOD)]
    best, best_se = frontier_envelope(ref, column(front, col), kl)
    rewards, ses = column(front, "reward"), column(front, "reward_se")
    covered = np.isfinite(best)
    gap = np.where(covered, best - rewards, 0.0)
    band = z * np.sqrt(np.where(covered, best_se, 0.0) ** 2 + ses**2)
    return FrontierComparison(
        better=better,
        worse=worse,
        kl=kl,
        z=z,
        n_points=len(front),
        n_below=int(np.sum(covered & (gap > band))),
        n_tie=int(np.sum(covered & (np.abs(gap) <= band))),
        n_above=int(np.sum(covered & (gap < -band))),
        n_uncovered=int(np.sum(~covered)),
    )


#: The baselines whose domination by DPO's frontier :func:`verdict` decides (DPO paper Fig. 2).
VERDICT_BASELINES = ("preferred_ft", "unlikelihood", "ppo", "ppo_gt")


def verdict(points: Sequence[dict], kl: str = "exact", confidence: float = 0.9) -> list[str]:
    """What the runs show, in sentences computed from them (never written by hand).

    Introduced in notebook 07. Answers the two questions of the DPO and ODPO papers for these runs:
    does DPO's frontier dominate Preferred-FT, Unlikelihood, PPO and PPO-GT (DPO Fig. 2; a method
    absent from ``points`` is said to be absent)? Does ODPO add to DPO, i.e. does it place Pareto
    points above DPO's frontier, and what share of the joint Pareto front does it own (ODPO Sec. 6.1)?
    """
    present = {p["method"] for p in points}
    out = [f"Profile {profile_of(points)}; KL estimator: {kl}; noise band: {confidence:.0%} two-sided."]
    for worse in VERDICT_BASELINES:
        missing = [m for m in ("dpo", worse) if m not in present]
        if missing:
            out.append(
                f"DPO vs {METHODS[worse].label}: no {', '.join(METHODS[m].label for m in missing)} "
                "points in this selection, so no comparison."
            )
        else:
            out.append(compare_frontiers(points, "dpo", worse, kl, confidence).sentence())
    if not {"dpo", "odpo"} <= present:
        out.append("DPO vs ODPO: both are needed in the selection to ask whether ODPO adds to DPO.")
        return out
    c = compare_frontiers(points, "dpo", "odpo", kl, confidence)
    share = pareto_share([p for p in points if p["method"] in ("dpo", "odpo")], kl)["odpo"]
    counts = (
        f"ODPO Pareto points: {c.n_above} of {c.n_points} clearly above DPO's frontier, {c.n_tie} within "
        f"noise, {c.n_below} clearly below; ODPO owns {share:.0%} of the Pareto points of DPO and ODPO together"
    )
    out.append(f"ODPO adds to DPO ({counts})." if c.n_above else f"ODPO does not add to DPO beyond noise ({counts}).")
    return out


def hacking_onset(points: Sequence[dict], kl: str = "exact", drop: float = 0.1) -> dict | None:
    """Where reward hacking by repetition starts on the frontier: the lowest-KL evaluation whose
    distinct-1 fell more than ``drop`` (a share) below pi_SFT's and stayed there at every later
    evaluation of its run. None when no run has such a point.

    Introduced in notebook 06. A lexicon-like gold reward is gamed by repeating its favourite words
    (docs/background.md 6: distinct-1 fell 0.40 -> 0.29 and never came back), and repetition shows first in
    distinct-1. ``drop`` = 0.1 sits well below that 28% fall. A fall must persist because a policy
    trained at a large learning rate also dips into repetition for an evaluation or two and recovers
    (the first cpu sweeps did, by up to 24%, with no gain in reward); a policy that has learned that
    repetition pays keeps repeating. Only trained methods count (:func:`competitors`): Best-of-N
    learns nothing, and the best of 16 samples of pi_SFT can be plainer text than one sample.
    """
    if not 0 < drop < 1:
        raise ValueError(f"drop: need a share in (0, 1), got {drop!r}")
    col = kl_column(kl)
    ref = [p for p in points if p["method"] == REFERENCE_METHOD]
    if not ref:
        raise ValueError("points: need the SFT reference evaluation (method 'sft') as the baseline")
    floor = (1 - drop) * float(np.mean(column(ref, "distinct1")))
    by_run: dict[str, list[dict]] = {}
    for p in competitors(points):
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
