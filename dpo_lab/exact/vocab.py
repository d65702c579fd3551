"""The exact task's vocabulary: a handful of real words plus EOS, a word-level tokenizer, the prompts.

Introduced in notebook 04 (:mod:`dpo_lab.exact`). The vocabulary is small enough that every
response of at most ``max_len`` words can be listed, yet made of real words, so samples read like
"the film was good good". The tokenizer is a ``transformers.PreTrainedTokenizerFast`` over a
``tokenizers`` WordLevel model: one token per word, split on whitespace. It behaves like the IMDb
task's tokenizers towards the engine (``dpo_lab.lm``): ``len()``, ``eos_token_id``, ``decode``,
``__call__(texts, add_special_tokens=False)``, ``save_pretrained`` and ``dpo_lab.lm.load_tokenizer(folder)``.

==============  ==========  ==============================================================
name            shape       meaning
==============  ==========  ==============================================================
``words``       (V,) str    the response vocabulary; word i has token id i
EOS             ()          ``<|endoftext|>``, token id V (the last id, as in GPT-2): end of a
                            response, beginning of a text, and padding
``prompt_ids``  (P,) lists  ``[EOS] + word ids of the prompt`` (the engine's convention, as in
                            ``dpo_lab.sentiment.sft.prompt_ids``: a leading EOS marks "a text
                            starts here")
==============  ==========  ==============================================================

There is no unknown-word token on purpose: the model's vocabulary is exactly ``words + [EOS]``, so the
responses enumerated in :mod:`dpo_lab.exact.responses` are *all* the responses the model can emit, and
their probabilities sum to 1. A word outside the vocabulary is a ValueError, never a silent UNK.
"""

from __future__ import annotations

EOS = "<|endoftext|>"

WORDS = ("the", "film", "movie", "was", "is", "not", "good", "great", "bad", "dull")
"""V = 10 words: neutral words that build the prompts, a negator and four sentiment words."""

PROMPTS = ("the film was", "the movie is", "the movie was not", "the film is not")
"""P = 4 prompts; two end with "not", which flips the sentiment of the first response word. No prompt is a
prefix of another, so the corpus continues each prompt only with its own responses."""


def check_words(words) -> tuple[str, ...]:
    """``words`` as a tuple of distinct, non-empty, whitespace-free strings other than EOS.

    Raises ValueError naming ``words`` for a string (not a list of words), an empty list, a non-string
    entry, a word with whitespace, EOS itself, or a repeated word.
    """
    if isinstance(words, (str, bytes)) or not hasattr(words, "__iter__"):
        raise ValueError(
            f"words: expected a list of word strings, got {type(words).__name__} "
            "(a single string is not a vocabulary: pass words.split())"
        )
    words = tuple(words)
    if not words:
        raise ValueError("words: the vocabulary is empty; give at least one word")
    for i, w in enumerate(words):
        if not isinstance(w, str) or not w or any(c.isspace() for c in w):
            raise ValueError(f"words[{i}]: expected a non-empty string without whitespace, got {w!r}")
        if w == EOS:
            raise ValueError(f"words[{i}]: {EOS} is the EOS token and is added by the task; leave it out")
    if len(set(words)) != len(words):
        repeated = next(w for w in words if words.count(w) > 1)
        raise ValueError(f"words: {repeated!r} appears more than once")
    return words


def build_tokenizer(words=WORDS):
    """A word-level fast tokenizer with ids ``0 .. V-1`` for ``words`` and id V for EOS.

    EOS is also BOS and padding (the engine's convention, ``dpo_lab.lm.tokenizer``). Decoding joins
    words with single spaces; unknown words raise an error from the tokenizer (there is no UNK).

    words (V,) str  ->  tokenizer with ``len(tokenizer) == V + 1`` and ``eos_token_id == V``.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = check_words(words)
    vocab = {w: i for i, w in enumerate(words)}
    vocab[EOS] = len(words)
    word_level = Tokenizer(models.WordLevel(vocab=vocab))  # no unk_token: an unknown word is an error
    word_level.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=word_level, eos_token=EOS, bos_token=EOS, pad_token=EOS)
    if len(tokenizer) != len(words) + 1 or tokenizer.eos_token_id != len(words):
        raise RuntimeError(
            f"word-level tokenizer has {len(tokenizer)} tokens and EOS id "
            f"{tokenizer.eos_token_id}; expected {len(words) + 1} and {len(words)}"
        )
    return tokenizer


def word_ids(text: str, words, name: str = "text") -> list[int]:
    """Token ids of a whitespace-separated ``text`` of vocabulary words (no tokenizer needed).

    Raises ValueError naming ``name`` for a non-string or a word outside ``words``.
    """
    if not isinstance(text, str):
        raise ValueError(f"{name}: expected a string of words, got {type(text).__name__}")
    index = {w: i for i, w in enumerate(words)}
    ids = []
    for w in text.split():
        if w not in index:
            raise ValueError(f"{name}: {w!r} is not in the vocabulary {tuple(words)}")
        ids.append(index[w])
    return ids


def check_prompts(prompts, words) -> tuple[str, ...]:
    """``prompts`` as a tuple of non-empty strings made of vocabulary words (ValueError naming
    ``prompts`` otherwise). Repeats are allowed but pointless."""
    if isinstance(prompts, (str, bytes)) or not hasattr(prompts, "__iter__"):
        raise ValueError(f"prompts: expected a list of prompt strings, got {type(prompts).__name__}")
    prompts = tuple(prompts)
    if not prompts:
        raise ValueError("prompts: empty; give at least one prompt")
    for i, p in enumerate(prompts):
        if not word_ids(p, words, f"prompts[{i}]"):
            raise ValueError(f"prompts[{i}]: empty prompt (the first response word needs a context)")
    return prompts


def prompt_ids(prompts, tokenizer) -> list[list[int]]:
    """``[EOS] + tokens`` of each prompt, the form in which pi_ref saw sentence beginnings.

    prompts (P,) str, tokenizer (from :func:`build_tokenizer`)  ->  P lists of token ids.
    """
    words = [tokenizer.convert_ids_to_tokens(i) for i in range(tokenizer.eos_token_id)]
    prompts = check_prompts(prompts, words)
    eos = tokenizer.eos_token_id
    return [[eos] + row for row in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]
