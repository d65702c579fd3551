"""Tasks: what a preference experiment needs from a task, and how a policy is evaluated on one.

Introduced in notebook 06. The experiment of ``dpo_lab.sweep`` (DPO paper Sec. 6.1, Fig. 2) is the
same for every task: start from pi_SFT, train one policy per (method, hyperparameter, seed) on the
task's preference pairs, and place every evaluation on the reward-KL frontier. A task supplies the
parts that differ; the IMDb controlled-sentiment task (``dpo_lab.sentiment.task.IMDbTask``) is one.

What a :class:`Task` supplies (its ``profile`` sets every size):

=====================================  =========================================================
member                                 what it gives
=====================================  =========================================================
``name``                               the task's key in :data:`TASKS`; runs of any task but
                                       ``evaluation.DEFAULT_TASK`` carry it in their tag
``build_reference(progress)``          pi_SFT as an :class:`SFTPolicy` (built once and stored by
                                       the task; ``reference()`` caches it per task object)
``train_prompts()``, ``test_prompts()``  prompts as text; no policy trains on a test prompt
``prompt_ids(prompts, tokenizer)``     prompts as the token ids the policy samples from
``preference_pairs(progress)``         pairs of pi_SFT responses (dicts with :data:`PAIR_KEYS`):
                                       token ids, the gold scores of both sides, and the ODPO
                                       offset at alpha = 1. A response keeps its EOS when it
                                       has one (the trainer appends none)
``gold_reward()``                      a :class:`Scorer` of prompt + response texts: the reward
                                       that ordered the pairs and that the frontier reports
``second_scorer()``                    a :class:`Scorer` that built nothing: a check on hacking
``fresh_pairs(n)``                     optional: n more pairs drawn apart from the others, to
                                       select the reward model on (default None: the pairs no
                                       run trains on serve, ``dpo_lab.rlhf``)
``exact_evaluation``                   None, or ``policy -> {"eval/...": number}``: quantities a
                                       task can compute exactly (by enumerating its responses)
``best_of_n_evaluation``               None, or ``(n, reward_fn) -> {"eval/...": number}``: the
                                       same for Best-of-n of pi_SFT under ``reward_fn``
=====================================  =========================================================

What the experiment does with them (``dpo_lab.sweep``): it loads a frozen copy of pi_SFT as pi_ref,
trains every cell of its grid from pi_SFT on one fixed subset of the pairs, and every ``eval_every``
steps calls an :class:`Evaluator` built by :meth:`Evaluator.for_task`: fresh samples on the test
prompts, both KL estimates against pi_ref, both scorers, the text statistics and the exact quantities
(``dpo_lab.evaluation`` documents the record). The frontier (``dpo_lab.frontier``) reads the records.

Tasks are found by name in :data:`TASKS` (module path and class), imported only when asked for, so
this module depends on no task.
"""

from __future__ import annotations

import abc
import hashlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import config as _config
from .evaluation import DEFAULT_TASK, evaluation_record

#: Task name -> "module:Class" of its implementation.
TASKS: dict[str, str] = {DEFAULT_TASK: "dpo_lab.sentiment.task:IMDbTask", "exact": "dpo_lab.exact.task:ExactTask"}

#: Keys every preference pair of a task carries (``score_*`` = gold reward of each side; ``offset`` =
#: ODPO offset alpha * f(score difference) at alpha = 1, ODPO paper Eq. 15).
PAIR_KEYS = ("prompt_ids", "chosen_ids", "rejected_ids", "score_chosen", "score_rejected", "offset")


@dataclass
class SFTPolicy:
    """pi_SFT as the experiment needs it: the model, its tokenizer, the folder both are saved in
    (``dpo_lab.lm.load_model(path)`` gives a fresh copy, e.g. a frozen pi_ref), the stored run
    (``run.metrics()`` holds the training curve) and its result.

    Introduced in notebook 05."""

    model: object
    tokenizer: object
    path: Path
    run: object  # dpo_lab.runs.Run
    result: dict


@dataclass(frozen=True)
class Scorer:
    """A reward of texts: ``scorer(texts)`` maps N prompt + response texts to an (N,) float64 array,
    higher = better. ``name`` identifies it in run configurations.

    Introduced in notebook 05.
    """

    name: str
    score: Callable[[list[str]], np.ndarray]

    def __call__(self, texts) -> np.ndarray:
        if isinstance(texts, (str, bytes)):
            raise ValueError("texts must be a list of strings, got a single string")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(f"texts[{i}] must be a string, got {text!r}")
        return np.asarray(self.score(texts), dtype=np.float64) if texts else np.zeros(0)


class Task(abc.ABC):
    """The parts of a preference experiment that a task supplies (module table).

    Introduced in notebook 06. Subclasses set ``name`` and implement the abstract methods; everything
    follows ``self.profile``, which a task may scale to its own sizes (the exact task does) but never
    rename: the sweep runs at the task's profile.
    """

    name: str = ""
    #: None, or a method ``policy -> {"eval/...": number}`` for tasks that can enumerate responses.
    exact_evaluation: Callable[[object], dict] | None = None
    #: None, or a method ``(n, reward_fn) -> {"eval/...": number}``: Best-of-n's exact quantities.
    best_of_n_evaluation: Callable[[int, object], dict] | None = None

    def __init__(self, profile: _config.Profile | None = None):
        self.profile = profile or _config.get_profile()
        self._reference: SFTPolicy | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(profile={self.profile.name!r})"

    def reference(self, progress: bool = True) -> SFTPolicy:
        """pi_SFT, built (or loaded from the run store) on first use and kept for this task object."""
        if self._reference is None:
            self._reference = self.build_reference(progress)
        return self._reference

    @abc.abstractmethod
    def build_reference(self, progress: bool = True) -> SFTPolicy:
        """Train pi_SFT once (stored and resumable) or load it, and return it."""

    @abc.abstractmethod
    def train_prompts(self) -> list[str]:
        """The prompts whose responses make the preference pairs."""

    @abc.abstractmethod
    def test_prompts(self) -> list[str]:
        """The held-out evaluation prompts, the same for every run."""

    @abc.abstractmethod
    def prompt_ids(self, prompts: list[str], tokenizer) -> list[list[int]]:
        """``prompts`` as the token ids the policy samples from and is scored on."""

    @abc.abstractmethod
    def preference_pairs(self, progress: bool = True) -> list[dict]:
        """Every preference pair of pi_SFT responses, each a dict with at least :data:`PAIR_KEYS`."""

    @abc.abstractmethod
    def gold_reward(self) -> Scorer:
        """The reward that ordered the pairs and that the frontier reports."""

    @abc.abstractmethod
    def second_scorer(self) -> Scorer:
        """An independent scorer that built no pairs."""

    def fresh_pairs(self, n: int) -> list[dict] | None:
        """``n`` pairs drawn independently of :meth:`preference_pairs` (the reward model's held-out
        set), or None when drawing more is not cheap for this task (the default)."""
        return None


def load_task(name: str | None = None, profile: _config.Profile | None = None) -> Task:
    """The task called ``name`` (default ``evaluation.DEFAULT_TASK``, IMDb) for ``profile``.

    Introduced in notebook 06.
    """
    name = DEFAULT_TASK if name is None else name
    if name not in TASKS:
        raise ValueError(f"task: unknown {name!r}; valid tasks: {', '.join(sorted(TASKS))}")
    module, cls = TASKS[name].split(":")
    task = getattr(importlib.import_module(module), cls)(profile)
    if not isinstance(task, Task) or task.name != name:
        raise TypeError(f"{TASKS[name]} is not a Task called {name!r}")
    return task


def check_pairs(pairs: list[dict], where: str = "pairs") -> None:
    """Raise a ValueError naming the first pair that lacks a key of :data:`PAIR_KEYS`.

    Introduced in notebook 06.
    """
    if not pairs:
        raise ValueError(f"{where}: no preference pairs")
    for i, pair in enumerate(pairs):
        missing = [k for k in PAIR_KEYS if k not in pair]
        if missing:
            raise ValueError(f"{where}[{i}]: lacks {missing}; a task's pairs carry {list(PAIR_KEYS)}")


#: Rows per sampling / scoring batch during evaluation.
EVAL_BATCH_SIZE = 64


class Evaluator:
    """The evaluation callback: ``evaluator(policy, step)`` -> the ``eval/*`` keys of one record.

    Introduced in notebook 06. Samples ``num_samples`` responses per prompt from ``policy`` with a
    fixed ``seed`` (plain ancestral sampling: the same random numbers for every policy, so method
    differences are not sampling luck), estimates KL(policy || ref) on them by both estimators, scores
    prompt + response with ``gold`` and ``second``, adds the text statistics and, when the task has
    them, its exact quantities (``evaluation.evaluation_record``). ``settings`` is what identifies the
    protocol; it is hashed into every run's tag, so changing the protocol makes new runs.

    ===========  ============  ==============================================================
    argument     type          meaning
    ===========  ============  ==============================================================
    ref          model         pi_SFT, frozen (a separate copy from the policy being trained)
    tokenizer    tokenizer     the policy's
    prompts      (P,) str      the held-out prompts, the same for every run
    prompt_ids   P x (T_p,)    the same prompts as token ids (``Task.prompt_ids``)
    gold         Scorer        texts -> (N,) gold reward; it built the preference pairs
    second       Scorer        texts -> (N,) scores; it built nothing
    exact        callable      optional: policy -> {"eval/...": number} (``Task.exact_evaluation``)
    ===========  ============  ==============================================================
    """

    def __init__(
        self,
        ref,
        tokenizer,
        prompts: list[str],
        prompt_ids: list[list[int]],
        gold: Scorer,
        second: Scorer,
        num_samples: int,
        max_new_tokens: int,
        seed: int,
        exact: Callable[[object], dict] | None = None,
    ):
        if not prompts:
            raise ValueError("prompts: need at least one held-out prompt")
        if len(prompt_ids) != len(prompts):
            raise ValueError(f"prompt_ids: has {len(prompt_ids)} rows for {len(prompts)} prompts")
        if num_samples * len(prompts) < 2:
            raise ValueError("num_samples: need at least 2 samples in all for a standard error")
        if exact is not None and not callable(exact):
            raise ValueError(f"exact: need None or a callable policy -> dict, got {type(exact).__name__}")
        self.ref, self.tokenizer, self.prompts, self.prompt_ids = ref, tokenizer, list(prompts), prompt_ids
        self.gold, self.second, self.exact = gold, second, exact
        self.num_samples, self.max_new_tokens, self.seed = num_samples, max_new_tokens, seed

    @classmethod
    def for_task(cls, task: Task, ref, tokenizer) -> Evaluator:
        """The evaluator of ``task`` at its profile's sizes (``eval_samples_per_prompt``,
        ``max_new_tokens``, ``seed``)."""
        p = task.profile
        prompts = task.test_prompts()
        return cls(
            ref,
            tokenizer,
            prompts,
            task.prompt_ids(prompts, tokenizer),
            task.gold_reward(),
            task.second_scorer(),
            p.eval_samples_per_prompt,
            p.max_new_tokens,
            p.sampling_seed,
            exact=task.exact_evaluation,
        )

    @property
    def settings(self) -> dict:
        """The evaluation protocol as a JSON-able dict (``exact`` only when there is one, so the
        protocol of a task without one, and so its run ids, stay as they were)."""
        out = {
            "prompts_sha256": hashlib.sha256("\n".join(self.prompts).encode("utf-8")).hexdigest(),
            "n_prompts": len(self.prompts),
            "samples_per_prompt": self.num_samples,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
            "gold": self.gold.name,
            "second": self.second.name,
        }
        if self.exact is not None:
            out["exact"] = True
        return out

    def samples(self, policy):
        """``lm.estimate_kl`` on the held-out prompts: the samples and both KL estimates."""
        from .lm import estimate_kl

        return estimate_kl(
            policy,
            self.ref,
            self.prompt_ids,
            self.num_samples,
            self.max_new_tokens,
            self.seed,
            batch_size=EVAL_BATCH_SIZE,
            tokenizer=self.tokenizer,
        )

    def __call__(self, policy, step: int) -> dict:
        est = self.samples(policy)
        s = est.samples
        full = [self.prompts[i] + text for i, text in zip(s.prompt_index, s.texts)]
        kl = {
            "kl_logratio": est.logratio_mean,
            "kl_logratio_se": est.logratio_se,
            "kl_exact": est.exact_mean,
            "kl_exact_se": est.exact_se,
        }
        record = evaluation_record(
            step,
            self.gold(full),
            self.second(full),
            kl,
            s.texts,
            s.response_ids,
            self.tokenizer.eos_token_id,
            exact=self.exact(policy) if self.exact else None,
        )
        del record["step"]  # the trainer adds it
        return record
