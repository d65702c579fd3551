"""The exact task in one object: vocabulary, tokenizer, prompts, every response and the gold reward.

Introduced in notebook 04 (:mod:`dpo_lab.exact`). :func:`make_space` checks its arguments once and
builds everything the other modules need; an :class:`Space` is read-only. Seen as a bandit
(``dpo_lab.bandits``), the prompts are the contexts and the K enumerated responses are the arms:
``space.bandit(ref_probs)`` is that bandit with pi_ref's exact probabilities.

==================  ==========  =============================================================
field               shape       meaning
==================  ==========  =============================================================
``words``           (V,) str    vocabulary (token ids 0 .. V-1); EOS has id V
``prompts``         (P,) str    the prompts (contexts x), uniform over them
``max_len``         int         L: the engine's ``max_new_tokens`` for this task
``tokenizer``                   word-level fast tokenizer (:func:`dpo_lab.exact.vocab.build_tokenizer`)
``prompt_ids``      P lists     ``[EOS] + word ids`` of each prompt
``responses``       K           every response (:class:`dpo_lab.exact.responses.Responses`)
``reward``          (P, K)      r*(x, y), float64 (:mod:`dpo_lab.exact.reward`)
``scale``           float       c, the reward scale used
==================  ==========  =============================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bandits import Bandit
from .responses import Responses, check_max_len, check_size, enumerate_responses
from .reward import DEFAULT_SCALE, gold_reward, score_texts, word_values
from .vocab import PROMPTS, WORDS, build_tokenizer, check_prompts, check_words, prompt_ids

DEFAULT_MAX_LEN = 3
"""L = 3 with the 10 default words: 1,111 responses per prompt."""


@dataclass(frozen=True, eq=False)
class Space:
    """An exactly solvable language-model task (module docstring). Build it with :func:`make_space`."""

    words: tuple[str, ...]
    prompts: tuple[str, ...]
    max_len: int
    tokenizer: object
    prompt_ids: tuple[tuple[int, ...], ...]
    responses: Responses
    reward: np.ndarray
    scale: float
    values: np.ndarray

    @property
    def eos_id(self) -> int:
        return self.responses.eos_id

    @property
    def n_prompts(self) -> int:
        return len(self.prompts)

    @property
    def n_responses(self) -> int:
        return len(self.responses)

    @property
    def n_positions(self) -> int:
        """Context length a model of this task needs: the longest ``[EOS] + prompt + L words + EOS``
        (the SFT sentences; sampling needs one token less)."""
        return max(len(p) for p in self.prompt_ids) + self.max_len + 1

    def prompt_id_lists(self) -> list[list[int]]:
        """The prompts' token ids as fresh lists (the engine's input format)."""
        return [list(p) for p in self.prompt_ids]

    def text(self, k: int) -> str:
        """Response number ``k`` as text, without its EOS ("" for the empty response)."""
        return " ".join(self.words[w] for w in self.responses.words[k] if w >= 0)

    def score(self, texts) -> np.ndarray:
        """r* of prompt + response texts, c * S(text) (``reward.score_texts``): the gold reward as a
        scorer of texts, as the IMDb task's classifier is. texts (N,) str  ->  (N,) float64."""
        return score_texts(texts, dict(zip(self.words, self.values.tolist())), self.scale)

    def bandit(self, ref_probs) -> Bandit:
        """The task as a ``dpo_lab.bandits.Bandit``: contexts = prompts (uniform), arms = responses.

        ref_probs (P, K) pi_ref(y|x), rows summing to 1  ->  Bandit(reward (P, K), ref_policy (P, K)).
        """
        return Bandit(self.reward, ref_probs, name=f"exact_{self.n_prompts}x{self.n_responses}")

    def __repr__(self) -> str:
        return (
            f"Space(V={len(self.words)}, L={self.max_len}, prompts={self.n_prompts}, "
            f"responses per prompt={self.n_responses}, scale={self.scale:.4g})"
        )


def make_space(words=WORDS, prompts=PROMPTS, max_len=DEFAULT_MAX_LEN, values=None, scale=DEFAULT_SCALE) -> Space:
    """Build and check the exact task.

    ==========  ===================================================================================
    argument    meaning
    ==========  ===================================================================================
    words       the vocabulary (default :data:`dpo_lab.exact.vocab.WORDS`, V = 10)
    prompts     strings of vocabulary words (default :data:`dpo_lab.exact.vocab.PROMPTS`, P = 4)
    max_len     L >= 1, the longest response in words (default 3)
    values      {word: v(w)} of the gold reward (default :data:`dpo_lab.exact.reward.WORD_VALUES`)
    scale       reward scale c > 0 (default :data:`DEFAULT_SCALE` = 1: r* = S, whole numbers in [-2L, 2L])
    ==========  ===================================================================================

    Raises ValueError naming the argument: a bad word list, a prompt with an unknown word, max_len
    < 1 or not an integer, more than ``MAX_RESPONSES`` responses per prompt, a non-numeric value or
    scale.
    """
    words = check_words(words)
    max_len = check_max_len(max_len)
    check_size(len(words), max_len)  # before building anything large
    prompts = check_prompts(prompts, words)
    v = word_values(words, values)
    tokenizer = build_tokenizer(words)
    responses = enumerate_responses(len(words), max_len, tokenizer.eos_token_id)
    reward = gold_reward(prompts, words, responses, values, scale)
    reward.setflags(write=False)
    v.setflags(write=False)
    c = float(scale)
    ids = tuple(tuple(p) for p in prompt_ids(prompts, tokenizer))
    return Space(words, prompts, max_len, tokenizer, ids, responses, reward, c, v)


def check_space(space) -> Space:
    """``space`` itself when it is a :class:`Space`, else a ValueError naming the argument."""
    if not isinstance(space, Space):
        raise ValueError(f"space: expected a Space (dpo_lab.exact.make_space), got {type(space).__name__}")
    return space
