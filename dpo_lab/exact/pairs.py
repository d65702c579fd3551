"""Preference pairs for the exact task: two responses from pi_ref, labelled by the known gold reward.

Introduced in notebook 04 (:mod:`dpo_lab.exact`). For each pair, as in the DPO paper's
controlled-sentiment setup (Sec. 6.1: completions from pi_SFT, labelled by the gold reward):

    x ~ uniform over the prompts
    y_1, y_2 ~ pi_ref(. | x), two distinct responses (without replacement)
    labels="bt":    y_1 preferred with probability sigmoid(r*(x, y_1) - r*(x, y_2))     (Eq. 1)
    labels="order": the response with the larger r* is preferred; pairs with equal r* are
                    redrawn (an exact tie carries no preference)

This is ``dpo_lab.preferences.sample_preferences`` (the toy-bandit sampler, formerly in
``dpo_lab.bandits``) on the task's bandit (prompts = contexts, responses = arms; Gumbel-max for both
the without-replacement draw and the Bradley-Terry label), not a second sampler.

Why exact sampling from the enumerated pi_ref rather than ``dpo_lab.lm.sample``: the enumeration *is*
pi_ref (its sum to 1, its agreement with ``sequence_logprobs`` and with ``lm.sample``'s frequencies
are tested), so the law is the same; a numpy Generator makes the pairs a pure function of ``seed``
(``lm.sample`` also depends on the batch size through float rounding), costs milliseconds instead of
a model run, and gives each response's index for exact analysis. Distinct responses: a pair of
identical responses teaches DPO nothing (its loss gradient is 0).

Each pair is a dict (the IMDb task's pair fields, plus indices into the enumeration):

==================  =========  ===============================================================
key                 type       meaning
==================  =========  ===============================================================
``prompt``          str        the prompt x
``chosen``          str        y_w as text ("" for the empty response)
``rejected``        str        y_l as text
``score_chosen``    float      r*(x, y_w)
``score_rejected``  float      r*(x, y_l) (may exceed score_chosen with labels="bt")
``offset``          float      ODPO offset at alpha = 1, ``losses.odpo_offset(..., f=offset)``:
                               f = "identity" (default) r*(x, y_w) - r*(x, y_l), or f = "log"
                               (the ODPO paper's) its log, which needs labels="order" because a
                               Bradley-Terry label can make the difference <= 0 (ODPO Eq. 15)
``prompt_ids``      list[int]  ``[EOS] + prompt ids``
``chosen_ids``      list[int]  y_w's token ids, EOS last when it has one (as ``lm.sample`` returns)
``rejected_ids``    list[int]  y_l's token ids, same convention
``prompt_index``    int        p in 0 .. P-1
``chosen_index``    int        k of y_w in ``space.responses``
``rejected_index``  int        k of y_l
==================  =========  ===============================================================

``dpo_lab.lm.train_preferences`` takes only the id columns: pass ``trainer_pairs(pairs)`` and
``add_eos=False`` (responses carry their own EOS; a response cut at L words has none).
"""

from __future__ import annotations

import numpy as np

from .. import losses as _losses
from .. import preferences as _preferences
from .enumeration import as_probs
from .space import Space, check_space

LABELS = ("bt", "order")
OFFSETS = ("identity", "log")
TRAINER_KEYS = ("prompt_ids", "chosen_ids", "rejected_ids")
CHUNK = 2048  # pairs drawn at a time


def _count(n, name: str) -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {n!r}")
    return int(n)


def sample_pairs(space: Space, ref, n: int, seed: int, labels: str = "bt", offset: str = "identity") -> list[dict]:
    """``n`` preference pairs (module docstring) drawn with ``numpy.random.default_rng(seed)``.

    task, ref (P, K) pi_ref probabilities (or a model, enumerated), n >= 1, seed int >= 0,
    labels "bt" (Bradley-Terry on r*) or "order" (deterministic order of r*, ties redrawn),
    offset "identity" or "log" (the ODPO offset function f; "log" only with labels="order")
    ->  n dicts (module docstring), in draw order.
    """
    space = check_space(space)
    ref = as_probs(ref, space, "ref")
    n = _count(n, "n")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
    if labels not in LABELS:
        raise ValueError(f"labels: expected one of {LABELS}, got {labels!r}")
    if offset not in OFFSETS:
        raise ValueError(f"offset: expected one of {OFFSETS}, got {offset!r}")
    if offset == "log" and labels != "order":
        raise ValueError(
            "offset: 'log' needs r*(y_w) > r*(y_l) in every pair, which only labels='order' guarantees "
            "(a Bradley-Terry label prefers the lower reward in some pairs)"
        )
    bandit = space.bandit(ref)
    rng = np.random.default_rng(seed)
    parts, missing = [], n
    for _ in range(100 + n // CHUNK):  # "order": ties are a minority, a few extra rounds suffice
        # In chunks: the sampler builds (pairs, K) Gumbel keys, 180 MB for 20,000 pairs at once.
        c, a, b = _preferences.sample_preferences(
            bandit, min(CHUNK, 2 * missing if labels == "order" else missing), rng
        )
        if labels == "order":
            ra, rb = space.reward[c, a], space.reward[c, b]
            keep = ra != rb
            # Ordered by r*, whatever the Bradley-Terry draw said: only the pair's content is used.
            c, a, b = c[keep], np.where(ra > rb, a, b)[keep], np.where(ra > rb, b, a)[keep]
        parts.append((c[:missing], a[:missing], b[:missing]))
        missing -= len(parts[-1][0])
        if missing == 0:
            break
    else:
        raise RuntimeError("labels='order': could not find enough pairs with unequal rewards")
    context, chosen, rejected = (np.concatenate(col) for col in zip(*parts))
    offsets = _losses.odpo_offset(space.reward[context, chosen], space.reward[context, rejected], f=offset)
    return [
        _pair(space, int(p), int(w), int(rej), float(o))
        for p, w, rej, o in zip(context, chosen, rejected, offsets.tolist())
    ]


def with_offset(pairs, offset: str) -> list[dict]:
    """The same pairs with the ODPO offset of another function f (``offset``, :data:`OFFSETS`): new
    dicts, ``pairs`` unchanged. ValueError naming ``offset`` for an unknown f, or for "log" when a
    pair's chosen response does not have the larger reward."""
    if offset not in OFFSETS:
        raise ValueError(f"offset: expected one of {OFFSETS}, got {offset!r}")
    chosen, rejected = (np.array([p[k] for p in pairs], dtype=np.float64) for k in ("score_chosen", "score_rejected"))
    if offset == "log" and not (chosen > rejected).all():
        raise ValueError("offset: 'log' needs r*(y_w) > r*(y_l) in every pair (pairs with labels='order')")
    offsets = _losses.odpo_offset(chosen, rejected, f=offset).tolist()
    return [dict(p, offset=float(o)) for p, o in zip(pairs, offsets)]


def _pair(space: Space, p: int, w: int, rej: int, offset: float) -> dict:
    return {
        "prompt": space.prompts[p],
        "chosen": space.text(w),
        "rejected": space.text(rej),
        "score_chosen": float(space.reward[p, w]),
        "score_rejected": float(space.reward[p, rej]),
        "offset": offset,
        "prompt_ids": list(space.prompt_ids[p]),
        "chosen_ids": list(space.responses.ids[w]),
        "rejected_ids": list(space.responses.ids[rej]),
        "prompt_index": p,
        "chosen_index": w,
        "rejected_index": rej,
    }


def trainer_pairs(pairs, odpo: bool = False) -> list[dict]:
    """``pairs`` in the format of ``dpo_lab.lm.train_preferences``: dicts of ``prompt_ids``,
    ``chosen_ids``, ``rejected_ids`` (+ ``offset`` when ``odpo``, for ``loss="odpo"``), nothing else
    (the trainer refuses other keys). Train with ``add_eos=False``."""
    if isinstance(pairs, dict) or not all(isinstance(p, dict) for p in pairs):
        raise ValueError("pairs: expected a list of pair dicts (sample_pairs)")
    keys = TRAINER_KEYS + (("offset",) if odpo else ())
    missing = [k for k in keys if any(k not in p for p in pairs)]
    if missing:
        raise ValueError(f"pairs: a pair lacks {missing[0]!r}")
    return [{k: (float(p[k]) if k == "offset" else list(p[k])) for k in keys} for p in pairs]


def pair_arrays(pairs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prompt_index, chosen_index, rejected_index) of ``pairs`` as (n,) int arrays: the bandit
    form of the data (``preferences.Preferences`` order), e.g. for ``preferences.fit_reward``."""
    cols = [np.array([p[k] for p in pairs], dtype=np.int64) for k in ("prompt_index", "chosen_index", "rejected_index")]
    return cols[0], cols[1], cols[2]
