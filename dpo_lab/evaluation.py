"""What an evaluation of a policy is: the method registry, the evaluation record and its text statistics.

Introduced in notebook 06. Both sides of the experiment import this module: the sweep
(``dpo_lab.sweep``, through the task's evaluator ``dpo_lab.task.Evaluator``) writes records, and the
analysis (``dpo_lab.frontier``) and figures (``dpo_lab.plots``) read them. It imports numpy only,
so reading results never pulls in the training stack.

Methods
-------
:data:`METHODS` names every method a sweep trains (and the pi_SFT reference, method ``"sft"``), the
hyperparameter that tells its runs apart (``beta``, ``alpha`` or none) and its colour in figures.
A run says what it is in the ``tag`` of its ``config.json`` (the ``run_tag`` the ``dpo_lab.lm``
trainers hash into a run's identity): ``method`` (a key of :data:`METHODS`), ``seed``, ``profile``,
the method's hyperparameter, and ``task`` for every task but the default one (``dpo_lab.task``).

The evaluation record
---------------------
An evaluation is one line of a run's ``metrics.jsonl`` (``dpo_lab.runs``) carrying ``"step"`` and the
keys below (build it with :func:`evaluation_record`; :data:`EVAL_KEYS` lists them):

=======================  =============================================================================
key                      meaning (means are over all samples: prompts x samples per prompt)
=======================  =============================================================================
eval/reward              mean gold reward r(x, y) of samples y ~ pi(.|x)
eval/reward_se           its standard error, std / sqrt(n)
eval/kl_logratio         mean of sum_t [log pi(y_t|.) - log pi_ref(y_t|.)]  (docs/background.md 3)
eval/kl_logratio_se      its standard error
eval/kl_exact            mean of sum_t KL(pi(.|y_<t) || pi_ref(.|y_<t)) over the whole vocabulary (5b)
eval/kl_exact_se         its standard error
eval/length              mean response length in tokens, EOS excluded
eval/eos_rate            share of responses that ended with EOS before the token cap
eval/distinct1           distinct-1: unique words / all words, pooled over the responses
eval/distinct2           distinct-2: the same for word bigrams
eval/second_reward       mean score of a second, independent scorer not used to build the pairs
eval/second_reward_se    its standard error
eval/n_samples           number of samples n behind every mean above
=======================  =============================================================================

The two KL estimators have the same expectation (chain rule); the "exact" one (exact per token, still
sampled over sequences) has much lower variance. Length, EOS rate, distinct-n and the second scorer
are there to catch reward hacking: a policy that games the gold reward (repeating "great") shows
falling distinct-n, responses running to the cap, and a second scorer that does not follow the gold
reward. A task that can enumerate its responses adds its exact quantities as further ``eval/`` keys.

Best-of-N
---------
A Best-of-N "run" trains nothing: for each held-out prompt it keeps the best of N samples of pi_SFT
under a reward (the learned reward model, or the gold reward as an upper reference). That policy has
no per-token log-probs, so neither estimator applies: its ``eval/kl_logratio`` and ``eval/kl_exact``
hold the analytic KL log N - (N - 1)/N (DPO paper Sec. 6.1; exact when no two responses of a prompt
tie, an upper bound otherwise, Beirami et al. 2024), with standard error 0, and ``eval/bon_n`` holds N.
Where the gold reward is the selector, ``eval/reward`` is still measured on the kept samples.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Method:
    """How a training method is named, which hyperparameter tells its runs apart, and its colour."""

    label: str
    hyper_name: str | None
    color: str


#: Every method the sweep trains (notebook 06), plus the pi_SFT reference. The order is the order of
#: legends and tables.
METHODS: dict[str, Method] = {
    "sft": Method("SFT (pi_ref)", None, "black"),
    "dpo": Method("DPO", "beta", "tab:blue"),
    "odpo": Method("ODPO", "beta", "tab:orange"),
    "ipo": Method("IPO", "beta", "tab:purple"),
    "cdpo": Method("conservative DPO", "beta", "tab:brown"),
    "preferred_ft": Method("Preferred-FT", None, "tab:green"),
    "unlikelihood": Method("Unlikelihood", "alpha", "tab:red"),
    "ppo": Method("PPO", "target_kl", "tab:pink"),
    "ppo_gt": Method("PPO-GT", "target_kl", "tab:olive"),
    "best_of_n": Method("Best-of-N", "n", "tab:gray"),
    "best_of_n_gt": Method("Best-of-N (gold)", "n", "tab:cyan"),
}
REFERENCE_METHOD = "sft"
#: Methods drawn as reference curves, not competitors: Best-of-N picks among pi_SFT's samples (no
#: training), and its KL is the analytic log N - (N - 1)/N, not an estimate (see "Best-of-N" above).
#: They stay off Pareto fronts and verdicts (``dpo_lab.frontier``).
REFERENCE_CURVES = ("best_of_n", "best_of_n_gt")

#: The task of a run whose tag names none: runs made before tasks existed are IMDb runs, and IMDb runs
#: keep tags without a ``task`` key so that their run ids (hashes of the tag) stay what they were.
DEFAULT_TASK = "imdb"

EVAL_PREFIX = "eval/"
EVAL_KEYS = tuple(
    EVAL_PREFIX + k
    for k in (
        "reward",
        "reward_se",
        "kl_logratio",
        "kl_logratio_se",
        "kl_exact",
        "kl_exact_se",
        "length",
        "eos_rate",
        "distinct1",
        "distinct2",
        "second_reward",
        "second_reward_se",
        "n_samples",
    )
)
_KL_KEYS = ("kl_logratio", "kl_logratio_se", "kl_exact", "kl_exact_se")


def describe(method: str, hyper: float | None, seed: int) -> str:
    """A grid cell in words, e.g. "DPO beta=0.1 seed 0" or "Preferred-FT seed 2".

    Introduced in notebook 06.
    """
    if method not in METHODS:
        raise ValueError(f"method: need one of {sorted(METHODS)}, got {method!r}")
    name = METHODS[method]
    return f"{name.label}{f' {name.hyper_name}={hyper:g}' if name.hyper_name else ''} seed {seed}"


def run_label(run) -> str:
    """A run's frontier tag in words (:func:`describe`).

    Introduced in notebook 06.
    """
    tag = run.config.get("tag")
    if not isinstance(tag, dict) or tag.get("method") not in METHODS:
        raise ValueError(f"{Path(run.path) / 'config.json'}: no frontier tag with a method of {sorted(METHODS)}")
    hyper_name = METHODS[tag["method"]].hyper_name
    return describe(tag["method"], tag[hyper_name] if hyper_name else None, tag["seed"])


#: Run-store kinds whose tagged runs make the frontier: preference training, PPO, Best-of-N, and the
#: evaluation of pi_SFT.
RUN_KINDS = ("pref", "ppo", "best_of_n", "sft_eval")


def frontier_runs(root: str | Path | None = None, task: str | None = DEFAULT_TASK) -> list:
    """The runs under ``root`` (default ``<results>/runs``) whose evaluations belong on the frontier:
    kinds :data:`RUN_KINDS` (``lm.train_preferences`` runs and the evaluation of pi_SFT) with a
    ``tag`` naming a method of :data:`METHODS`; a demonstration run without such a tag is not one.
    ``task``: only the runs of that task (default IMDb, whose tags name no task), None for every task;
    the rewards of two tasks are never comparable.

    Introduced in notebook 06.
    """
    from .runs import list_runs

    return [
        r
        for r in list_runs(root=root)
        if r.kind in RUN_KINDS
        and isinstance(r.config.get("tag"), dict)
        and r.config["tag"].get("method") in METHODS
        and (task is None or r.config["tag"].get("task", DEFAULT_TASK) == task)
    ]


# --- statistics of one evaluation ------------------------------------------------------------
def mean_and_se(values: Sequence[float], name: str = "values") -> tuple[float, float]:
    """Mean and standard error std(ddof=1) / sqrt(n) of ``values``.

    Introduced in notebook 06.

    ======  =====  ==========================================
    values  (n,)   one number per sample, n >= 2, all finite
    ======  =====  ==========================================
    """
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size < 2:
        raise ValueError(
            f"{name}: need a 1-D sequence of at least 2 numbers for a standard error, got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return float(arr.mean()), float(arr.std(ddof=1) / math.sqrt(arr.size))


_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    """The lower-cased words of ``text`` (letters, digits, apostrophes): the unit of distinct-n.

    Introduced in notebook 06. Punctuation and ``<br />`` leftovers do not count as words, so a policy
    cannot look diverse by varying punctuation.
    """
    return _WORD.findall(text.lower())


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct-n (Li et al. 2016): unique word n-grams / all word n-grams, pooled over ``texts``.

    Introduced in notebook 06. 1.0 means no n-gram repeats anywhere in the batch; a policy that writes
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
        grams.extend(tuple(w[j : j + n]) for j in range(len(w) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0


def _check_ids(response_ids: Sequence[Sequence[int]]) -> None:
    if isinstance(response_ids, (str, bytes)) or len(response_ids) == 0:
        raise ValueError("response_ids: need a non-empty list of token-id lists")
    for i, ids in enumerate(response_ids):
        if isinstance(ids, (str, bytes)) or not all(isinstance(t, (int, np.integer)) for t in ids):
            raise ValueError(f"response_ids[{i}]: need a list of integer token ids")


def response_lengths(response_ids: Sequence[Sequence[int]], eos_token_id: int) -> np.ndarray:
    """Number of tokens of each response before its first EOS (all of them when there is no EOS).

    Introduced in notebook 06.

    ============  ===========  ===============================================
    response_ids  N x (T_i,)   sampled response token ids (prompt not included)
    returns       (N,) int     tokens before the first ``eos_token_id``
    ============  ===========  ===============================================
    """
    _check_ids(response_ids)
    return np.array(
        [list(ids).index(eos_token_id) if eos_token_id in ids else len(ids) for ids in response_ids], dtype=int
    )


def eos_rate(response_ids: Sequence[Sequence[int]], eos_token_id: int) -> float:
    """Share of responses that contain ``eos_token_id``, i.e. that ended before the token cap.

    Introduced in notebook 06. A policy that games a length-loving reward stops emitting EOS.
    """
    _check_ids(response_ids)
    return float(np.mean([eos_token_id in ids for ids in response_ids]))


def evaluation_record(
    step: int,
    rewards: Sequence[float],
    second_rewards: Sequence[float],
    kl: Mapping[str, float],
    texts: Sequence[str],
    response_ids: Sequence[Sequence[int]],
    eos_token_id: int,
    exact: Mapping[str, float] | None = None,
) -> dict:
    """One evaluation of a policy on the held-out prompts, as a ``metrics.jsonl`` record.

    Introduced in notebook 06; the keys are documented in the module docstring (:data:`EVAL_KEYS`).
    ``exact`` adds the keys of a task's exact evaluation (``Task.exact_evaluation``), each
    starting with ``eval/`` and none of them one of :data:`EVAL_KEYS`.

    ==============  ==========  ==================================================================
    rewards         (N,)        gold reward of each sample
    second_rewards  (N,)        the independent scorer's score of the same samples
    kl              mapping     kl_logratio, kl_logratio_se, kl_exact, kl_exact_se (sequence KL)
    texts           (N,)        decoded responses
    response_ids    N x (T_i,)  their token ids (EOS included when it was sampled)
    exact           mapping     optional ``eval/...`` -> number: the task's exact quantities
    ==============  ==========  ==================================================================
    """
    exact = dict(exact or {})
    clash = [k for k in exact if not isinstance(k, str) or not k.startswith(EVAL_PREFIX) or k in EVAL_KEYS]
    if clash:
        raise ValueError(f"exact: keys must start with {EVAL_PREFIX!r} and differ from EVAL_KEYS, got {clash}")
    bad = [
        k
        for k, v in exact.items()
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not math.isfinite(v)
    ]
    if bad:
        raise ValueError(f"exact: need finite numbers, got non-numbers or non-finite values for {bad}")
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
    values = {
        "reward": reward,
        "reward_se": reward_se,
        **{k: float(kl[k]) for k in _KL_KEYS},
        "length": float(response_lengths(response_ids, eos_token_id).mean()),
        "eos_rate": eos_rate(response_ids, eos_token_id),
        "distinct1": distinct_n(texts, 1),
        "distinct2": distinct_n(texts, 2),
        "second_reward": second,
        "second_reward_se": second_se,
        "n_samples": n,
    }
    return {
        "step": int(step),
        **{EVAL_PREFIX + k: v for k, v in values.items()},
        **{k: float(v) for k, v in exact.items()},
    }
