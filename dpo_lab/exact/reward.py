"""The gold reward r*(x, y) of the exact task: a word-sentiment score that a policy can game.

Introduced in notebook 04 (:mod:`dpo_lab.exact`). In the spirit of the IMDb task's gold reward
(a sentiment classifier's P(positive) of prompt + response), but a formula, so it is known exactly,
deterministic and cheap for all K responses of every prompt:

    S(text) = sum_i v(w_i) * n_i      over the words w_1, w_2, ... of a text,
                                      n_i = -1 if w_{i-1} is "not", else +1
    r*(x, y) = c * S(x + " " + y)     (prompt and response read as one text, like a classifier)

* ``v`` (:data:`WORD_VALUES`): good +1, great +2, bad -1, dull -1, every other word 0 (EOS has no
  value: it is not a word).
* a "not" flips the next word, across the prompt/response boundary too: "the film is not" + "good"
  scores -1 and "the film is not" + "bad" scores +1, so r* depends on x, not only on y. The
  default prompts hold no sentiment word, so S(x + y) is the response's part alone.
* ``c`` (:data:`DEFAULT_SCALE` = 1: r* = S, whole numbers in [-2L, 2L]). The optimum depends on r*/beta
  only, so c places the DPO paper's beta grid {0.05, 0.1, 1, 5} on the frontier, and it sets how
  informative a Bradley-Terry label is (P(the better of two responses wins) = sigmoid(c * gap)). At
  c = 1, beta = 5 sits near pi_ref, beta = 1 mid-frontier and beta <= 0.1 at the maximiser, and 83% of
  the labels of two pi_ref samples follow r*'s order. c = 1/6 (r* in [-1, 1]) spreads the four betas
  more evenly, but only 57% of its labels follow the order, and DPO then needs far more pairs to reach
  pi*_beta (notebook 04, section 3, measures both).

What can be gamed, on purpose: the score is a *sum*, so repeating a positive word keeps paying
("great great great" scores 6, any single word at most 2) and longer responses can score more.
Unlike the IMDb task's presence-based classifier, the exact optimum at small beta is therefore
degenerate repetition, the reward hacking the frontier is meant to expose.

==================  ========  ===============================================================
name                shape     meaning
==================  ========  ===============================================================
``values``          (V,)      v(w) of each word id
``last_prompt``     (P,)      word id of each prompt's last word
``words``           (K, L)    response word ids, -1 after the last word (``Responses.words``)
``scores``          (P, K)    S(x + y), the unscaled sum
``reward``          (P, K)    r*(x, y) = c S(x + y), float64
==================  ========  ===============================================================
"""

from __future__ import annotations

import math

import numpy as np

from .responses import Responses
from .vocab import check_prompts, check_words, word_ids

#: c: r* is the raw sum S (the module docstring says why 1 and not a scale that maps r* into [-1, 1]).
DEFAULT_SCALE = 1.0

WORD_VALUES = {"good": 1.0, "great": 2.0, "bad": -1.0, "dull": -1.0}
"""v(w) of the sentiment words; any other word is worth 0."""

NEGATOR = "not"
"""The word that flips the sign of the next word's value."""


def _number(value, name: str) -> float:
    """A finite real number (ValueError naming ``name`` for strings, bools, NaN, inf)."""
    if isinstance(value, (str, bytes, bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return value


def word_values(words, values=None) -> np.ndarray:
    """v(w) for each word id: ``values`` (default :data:`WORD_VALUES`) looked up, 0 when absent.

    words (V,) str, values {word: number} or None  ->  (V,) float64. A key that is not in ``words`` is
    a ValueError (a misspelt sentiment word would otherwise be silently worth 0).
    """
    words = check_words(words)
    values = WORD_VALUES if values is None else values
    if not isinstance(values, dict):
        raise ValueError(f"values: expected a dict word -> number, got {type(values).__name__}")
    unknown = [w for w in values if w not in words]
    if unknown and values is not WORD_VALUES:
        raise ValueError(f"values: {unknown[0]!r} is not in the vocabulary {words}")
    return np.array([_number(values.get(w, 0.0), f"values[{w!r}]") for w in words], dtype=np.float64)


def check_scale(scale) -> float:
    """``scale`` as a finite float > 0 (ValueError naming ``scale`` otherwise)."""
    c = _number(scale, "scale")
    if c <= 0:
        raise ValueError(f"scale: must be > 0 (a reward scale flips or erases the reward otherwise), got {c}")
    return c


def gold_reward(prompts, words, responses: Responses, values=None, scale=DEFAULT_SCALE) -> np.ndarray:
    """r*(x, y) = c * S(x + " " + y) for every prompt and response (module docstring), vectorised:
    c * S(x) plus the response's words, the first one negated when the prompt ends with "not".

    prompts (P,) str, words (V,) str, responses (K responses of ``enumerate_responses``),
    values {word: number} or None (:data:`WORD_VALUES`), scale c > 0 (default :data:`DEFAULT_SCALE`)
    ->  reward (P, K) float64.
    """
    words = check_words(words)
    prompts = check_prompts(prompts, words)
    if not isinstance(responses, Responses) or responses.n_words != len(words):
        raise ValueError(f"responses: expected the Responses of {len(words)} words (enumerate_responses)")
    v = word_values(words, values)
    c = check_scale(scale)
    neg = words.index(NEGATOR) if NEGATOR in words else -2  # -2: matches no word id and no padding
    own = np.array([score_texts([p], dict(zip(words, v)))[0] for p in prompts])  # S(x), (P,)
    last = np.array([word_ids(p, words)[-1] for p in prompts], dtype=np.int64)  # (P,)
    w = responses.words  # (K, L), -1 = no word
    value = np.where(w >= 0, v[np.maximum(w, 0)], 0.0)  # (K, L)
    # The word before position t: the prompt's last word at t = 1, the previous response word after.
    n_p, n_k = len(prompts), len(w)
    prev = np.concatenate(
        [
            np.broadcast_to(last[:, None, None], (n_p, n_k, 1)),
            np.broadcast_to(w[None, :, :-1], (n_p, n_k, w.shape[1] - 1)),
        ],
        axis=2,
    )
    sign = np.where(prev == neg, -1.0, 1.0)  # (P, K, L)
    return c * (own[:, None] + (value[None] * sign).sum(axis=-1))


def score_texts(texts, values=None, scale=DEFAULT_SCALE) -> np.ndarray:
    """c * S(text) for each text, word by word (module docstring): the gold reward as a scorer of
    prompt + response texts, and the reference that the vectorised :func:`gold_reward` is tested
    against. ``scale`` defaults to 1 (the raw sum S); words outside ``values`` are worth 0, any text is
    scored (no vocabulary check).

    texts (N,) str, values {word: number} or None (:data:`WORD_VALUES`), scale c > 0  ->  (N,) float64.
    """
    if isinstance(texts, (str, bytes)) or not hasattr(texts, "__iter__"):
        raise ValueError(f"texts: expected a list of strings, got {type(texts).__name__}")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValueError(f"texts[{i}]: expected a string, got {type(t).__name__}")
    values = WORD_VALUES if values is None else values
    c = check_scale(scale)
    out = np.zeros(len(texts))
    for i, text in enumerate(texts):
        before = None
        for word in text.split():
            out[i] += (-1.0 if before == NEGATOR else 1.0) * float(values.get(word, 0.0))
            before = word
    return c * out
