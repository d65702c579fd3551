"""Every response the engine can produce, listed once: the arms of the exact task's bandit.

Introduced in notebook 04 (:mod:`dpo_lab.exact`). ``dpo_lab.lm.sample`` draws tokens until EOS or
until ``max_new_tokens`` tokens are out; a response that stops at EOS keeps its EOS as last token, a
response cut by the cap has none (``Samples.finished`` is False). With V words, EOS and a cap of L
tokens, the responses are therefore exactly

    k words then EOS, for k = 0 .. L-1        (V^k each; k = 0 is [EOS], the empty response)
    L words, no EOS                           (V^L; the cap was hit)

K = sum_{k=0..L} V^k of them (V = 10, L = 3: 1 + 10 + 100 + 1,000 = 1,111), and under any model
their probabilities sum to 1: each is a distinct leaf of the tree of token choices, and the tree is
complete (every node's children cover the whole vocabulary). Scoring them with
``sequence_logprobs(..., add_eos=False)`` is exactly how the engine scores sampled responses.

Order: by number of words, then lexicographic in word ids. Index 0 is always the empty response.

==============  ========  =====================================================================
name            shape     meaning
==============  ========  =====================================================================
``ids``         K lists   token ids as the engine takes them (EOS last when k < L)
``words``       (K, L)    word ids, -1 after the last word
``lengths``     (K,)      number of words k (EOS not counted)
``finished``    (K,)      True when the response ends with EOS (k < L), False when cut by the cap
==============  ========  =====================================================================
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass

import numpy as np

MAX_RESPONSES = 100_000
"""Cap on responses per prompt: beyond it, enumerating one policy takes minutes, not seconds."""


def check_max_len(max_len) -> int:
    """``max_len`` as an int >= 1 (ValueError naming it for 0, negatives, bools, floats, strings)."""
    if isinstance(max_len, (bool, np.bool_, str, bytes)):
        raise ValueError(f"max_len: expected an integer >= 1, got {max_len!r}")
    try:
        value = operator.index(max_len)
    except TypeError:
        raise ValueError(f"max_len: expected an integer >= 1, got {max_len!r}") from None
    if value < 1:
        raise ValueError(f"max_len: must be >= 1 (a response needs room for a word), got {value}")
    return value


def count_responses(n_words: int, max_len: int) -> int:
    """K = sum_{k=0..L} V^k, the number of responses of at most L words over V words (exact int)."""
    return sum(n_words**k for k in range(max_len + 1))


def check_size(n_words: int, max_len: int) -> int:
    """K for (V, L), or a ValueError naming ``words`` and ``max_len`` when K > :data:`MAX_RESPONSES`."""
    n_words, max_len = int(n_words), check_max_len(max_len)
    if n_words < 1:
        raise ValueError(f"words: need at least one word, got {n_words}")
    # Without the bound, 10 words and max_len = 30 would build a 31-digit count before failing.
    k = 0
    for length in range(max_len + 1):
        k += n_words**length
        if k > MAX_RESPONSES:
            raise ValueError(
                f"words / max_len: {n_words} words and max_len={max_len} give "
                f"{count_responses(n_words, max_len):,} responses per prompt, more than the "
                f"{MAX_RESPONSES:,} that can be enumerated; use fewer words or a smaller max_len"
            )
    return k


@dataclass(frozen=True, eq=False)
class Responses:
    """All K responses of at most ``max_len`` words (module docstring); arrays are read-only."""

    ids: tuple[tuple[int, ...], ...]
    words: np.ndarray
    lengths: np.ndarray
    finished: np.ndarray
    n_words: int
    max_len: int
    eos_id: int

    def __len__(self) -> int:
        return len(self.ids)

    def id_lists(self) -> list[list[int]]:
        """The token ids as fresh lists, the engine's input format."""
        return [list(r) for r in self.ids]

    def index(self, response_ids) -> int:
        """Position of a response given as token ids (with its EOS when it has one, as sampled).

        Raises ValueError naming ``response_ids`` when it is not one of the K responses (for example
        a response longer than max_len, or words after EOS).
        """
        key = tuple(int(t) for t in response_ids)
        lookup = self.__dict__.get("_lookup")
        if lookup is None:  # built on first use: the enumeration itself stays a pure function
            lookup = {r: i for i, r in enumerate(self.ids)}
            object.__setattr__(self, "_lookup", lookup)
        if key not in lookup:
            raise ValueError(
                f"response_ids: {list(key)} is not a response of at most {self.max_len} words "
                f"over {self.n_words} words (k < max_len words end with EOS {self.eos_id})"
            )
        return lookup[key]


def enumerate_responses(n_words: int, max_len: int, eos_id: int | None = None) -> Responses:
    """Every response of at most ``max_len`` words over word ids ``0 .. n_words-1`` (module docstring).

    n_words V >= 1, max_len L >= 1, eos_id (default V)  ->  :class:`Responses` of
    K = sum_{k<=L} V^k responses (at most :data:`MAX_RESPONSES`, else ValueError).
    """
    n_words = operator.index(n_words)
    check_size(n_words, max_len)
    max_len = int(max_len)
    eos = n_words if eos_id is None else operator.index(eos_id)
    if 0 <= eos < n_words:
        raise ValueError(f"eos_id: {eos} is a word id; EOS must lie outside 0 .. {n_words - 1}")
    ids, rows, lengths = [], [], []
    for k in range(max_len + 1):
        tail = (eos,) if k < max_len else ()  # cut by the cap: no EOS, as lm.sample returns it
        for body in itertools.product(range(n_words), repeat=k):
            ids.append(body + tail)
            rows.append(body + (-1,) * (max_len - k))
            lengths.append(k)
    words = np.array(rows, dtype=np.int64).reshape(len(rows), max_len)
    lengths = np.array(lengths, dtype=np.int64)
    finished = lengths < max_len
    for arr in (words, lengths, finished):
        arr.setflags(write=False)
    return Responses(tuple(ids), words, lengths, finished, n_words, max_len, eos)
