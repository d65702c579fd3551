"""Prompts: the first 2-8 GPT-2 tokens of a review (DPO paper App. C.1).

Introduced in notebook 05. A prompt x is a short review prefix such as "I rented I AM"; the policy
continues it and the gold reward judges the continuation. Prompts are counted in tokens of GPT-2's
own BPE (the paper's tokenizer) whatever tokenizer the policy uses, so the prompts are task data:
the same text for every model, profile and run. Each review's prefix length is fixed by its digest
(:func:`prompt_length`), so no seed is involved either.

==============  =========  ===============================================================
name            shape      meaning
==============  =========  ===============================================================
texts           (N,) str   reviews to cut
lengths         (N,) int   prefix lengths in GPT-2 tokens, each in [2, 8]
prompts         (N,) str   decoded prefixes (a prefix may end inside a word, as in the paper)
==============  =========  ===============================================================
"""

from __future__ import annotations

from .. import config as _config
from .reviews import text_list
from .splits import load_parts, review_digest

MIN_TOKENS, MAX_TOKENS = 2, 8
_HEAD_WORDS = 16  # words tokenized per review: 16 words always give more than 8 GPT-2 tokens


def prompt_length(text: str) -> int:
    """The review's prefix length in GPT-2 tokens, in [2, 8], read from its digest (byte 8).

    Introduced in notebook 05.
    """
    return MIN_TOKENS + review_digest(text)[8] % (MAX_TOKENS - MIN_TOKENS + 1)


def make_prompts(texts, tokenizer) -> list[str]:
    """The prefix of :func:`prompt_length` GPT-2 tokens of each text, decoded.

    ``tokenizer`` is GPT-2's BPE (``dpo_lab.lm.load_tokenizer()``). BPE pre-splits text at spaces,
    so tokenizing only the first words of a review gives the same first tokens as the whole review.
    A text shorter than its prefix length becomes its own prompt.

    Introduced in notebook 05.
    """
    texts = text_list(texts, nonblank=True)
    heads = [" ".join(t.split()[:_HEAD_WORDS]) for t in texts]
    ids = tokenizer(heads, add_special_tokens=False)["input_ids"] if heads else []
    # A cut inside a multi-byte character decodes to U+FFFD; drop it with any trailing space.
    return [tokenizer.decode(row[: prompt_length(text)]).rstrip("\ufffd").strip() for row, text in zip(ids, texts)]


def _part_prompts(part: str, n: int, profile: _config.Profile | None) -> list[str]:
    from ..lm import load_tokenizer

    profile = profile or _config.get_profile()
    reviews = load_parts(profile)[part]
    if n > len(reviews):
        raise ValueError(
            f"the {part!r} part of {reviews.source} holds {len(reviews)} reviews; {n} prompts were asked for"
        )
    return make_prompts(reviews.texts[:n], load_tokenizer())


def train_prompts(profile: _config.Profile | None = None) -> list[str]:
    """The ``profile.n_prompts`` prompts whose samples become preference pairs (part "prompts").

    Introduced in notebook 05.
    """
    profile = profile or _config.get_profile()
    return _part_prompts("prompts", profile.n_prompts, profile)


def heldout_prompts(profile: _config.Profile | None = None) -> list[str]:
    """The ``profile.n_test_prompts`` held-out prompts every evaluation uses (part "test").

    The same list in every run of a profile; no policy ever trains on these reviews.

    Introduced in notebook 05.
    """
    profile = profile or _config.get_profile()
    return _part_prompts("test", profile.n_test_prompts, profile)
