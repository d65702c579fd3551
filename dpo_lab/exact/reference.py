"""pi_ref for the exact task: a tiny GPT-2 trained by the engine's own SFT on sentences of a Markov chain.

Introduced in notebook 04 (:mod:`dpo_lab.exact`). As in the IMDb task, pi_ref is pi_SFT: a GPT-2
built with ``dpo_lab.lm.gpt2_config`` / ``load_model`` and trained with ``dpo_lab.lm.train_sft``
(stored and resumable in the run store, kind ``"sft"``). Its corpus is synthetic, so that pi_ref has
structure (it is far from uniform) and that structure is known:

    y_t ~ T(. | w_{t-1}),   w_0 = the prompt's last word,   stop at EOS or after L words

with the transition table :data:`CHAIN` (unnormalised weights; every token also gets
:data:`FLOOR` so no response has probability 0). After "was"/"is"/"not" comes a sentiment word or
"not"; after a sentiment word mostly EOS, sometimes "film"/"movie" or a repeat; "great" is rare. So
"the film was" + "great great great", the reward maximiser, is very unlikely under pi_ref, and the
frontier needs a large KL to reach it. Each sentence is ``[EOS] + prompt + response + [EOS]`` (the
engine's convention: the leading EOS starts a text, the trailing one teaches stopping; after L words
the EOS is never used by the task, whose responses are cut at L words as ``lm.sample`` cuts them).

==================  ==========  ===========================================================
name                shape       meaning
==================  ==========  ===========================================================
``transitions``     (V, V+1)    T(next | previous word); column V is EOS; rows sum to 1
``chain_probs``     (P, K)      the corpus distribution over the K responses, exactly
``sentences``       N lists     SFT sequences (token ids)
==================  ==========  ===========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..runs import Run
from .space import Space, check_space
from .vocab import EOS, word_ids

_SENTIMENT = {"good": 3.0, "bad": 3.0, "dull": 2.0, "great": 0.7, "not": 2.0, EOS: 0.5}
CHAIN = {
    "was": _SENTIMENT,
    "is": _SENTIMENT,
    "not": {"good": 3.0, "bad": 2.0, "great": 0.7, "dull": 1.0, EOS: 0.5},
    "good": {EOS: 4.0, "film": 1.0, "movie": 1.0, "good": 0.3},
    "great": {EOS: 4.0, "film": 1.0, "movie": 1.0, "great": 0.3},
    "bad": {EOS: 4.0, "film": 1.0, "movie": 1.0, "bad": 0.5},
    "dull": {EOS: 4.0, "film": 1.0, "movie": 1.0, "dull": 0.5},
    "film": {EOS: 3.0, "was": 1.0, "is": 1.0},
    "movie": {EOS: 3.0, "was": 1.0, "is": 1.0},
    "the": {"film": 1.0, "movie": 1.0},
}
"""Unnormalised next-token weights after each word (EOS included); words without a row: uniform."""

FLOOR = 0.05
"""Weight every token gets in every row, so every response has probability > 0 under the chain."""


def transitions(space: Space) -> np.ndarray:
    """T(next | previous) over the task's words: (V, V+1), column V = EOS, rows summing to 1.

    Built from :data:`CHAIN` (entries for words outside the vocabulary are ignored) plus
    :data:`FLOOR`; a word without a row continues uniformly.
    """
    space = check_space(space)
    index = {w: i for i, w in enumerate(space.words)}
    index[EOS] = len(space.words)
    table = np.full((len(space.words), len(space.words) + 1), FLOOR)
    for prev, row in CHAIN.items():
        if prev in index:
            for nxt, weight in row.items():
                if nxt in index:
                    table[index[prev], index[nxt]] += weight
    return table / table.sum(axis=1, keepdims=True)


def chain_probs(space: Space) -> np.ndarray:
    """The corpus distribution over the K responses of each prompt (P, K), exactly:

    p(y|x) = prod_{t<=k} T(y_t | y_{t-1}) * (T(EOS | y_k) if k < L else 1),   y_0 = last word of x
    """
    space = check_space(space)
    table = transitions(space)
    eos = len(space.words)
    out = np.empty((space.n_prompts, space.n_responses))
    for p, prompt in enumerate(space.prompts):
        last = word_ids(prompt, space.words)[-1]
        for k, ids in enumerate(space.responses.ids):
            prev, prob = last, 1.0
            for token in ids:
                prob *= table[prev, token]
                prev = token if token != eos else prev
            out[p, k] = prob
    return out


def sentences(space: Space, n: int, seed: int) -> list[list[int]]:
    """``n`` SFT sentences ``[EOS] + prompt + response + [EOS]``: prompts uniform, responses from the
    chain (module docstring), drawn with ``numpy.random.default_rng(seed)``."""
    space = check_space(space)
    for name, value in (("n", n), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (1 if name == "n" else 0):
            raise ValueError(f"{name}: expected an integer >= {1 if name == 'n' else 0}, got {value!r}")
    rng = np.random.default_rng(seed)
    table = transitions(space)
    eos = len(space.words)
    out = []
    for p in rng.integers(space.n_prompts, size=int(n)):
        ids = list(space.prompt_ids[p])
        prev = ids[-1]
        for _ in range(space.max_len):
            token = int(rng.choice(eos + 1, p=table[prev]))
            if token == eos:
                break
            ids.append(token)
            prev = token
        out.append(ids + [eos])
    return out


@dataclass
class ReferencePolicy:
    """The trained pi_ref: ``model`` (eval mode), ``path`` (the saved model + tokenizer: ``load_model
    (path)`` gives a separate frozen copy), the stored ``run`` (``run.metrics()`` holds the loss
    curve) and its ``result``."""

    model: object
    path: Path
    run: Run
    result: dict


def train_reference(
    space: Space,
    *,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 3e-3,
    n_sentences: int = 4000,
    n_layer: int = 2,
    n_embd: int = 32,
    n_head: int = 2,
    n_positions: int = 32,
    seed: int = 0,
    run_root=None,
    device: str | None = None,
    progress: bool = False,
) -> ReferencePolicy:
    """Train pi_ref (module docstring) with ``dpo_lab.lm.train_sft``, or load it if that run finished.

    ==============  ===========================================================================
    argument        meaning
    ==============  ===========================================================================
    steps           optimiser steps (5% linear warmup, cosine decay), batch_size sentences each
    lr              peak learning rate (AdamW)
    n_sentences     corpus size (sentences drawn with ``seed``)
    n_layer ...     GPT-2 sizes for ``dpo_lab.lm.gpt2_config``; n_positions >= space.n_positions
    seed            corpus, data order and initial weights
    run_root        run store folder (default ``<results>/runs``; tests pass a tmp folder)
    device          where the model trains (default: the engine's, CUDA when visible)
    ==============  ===========================================================================

    Returns a :class:`ReferencePolicy`. Everything that shapes the model (space, corpus, sizes,
    settings) is in the run's identity, so a changed argument trains a new run and an interrupted
    run resumes from its last checkpoint.
    """
    from ..lm import gpt2_config, load_model, train_sft

    space = check_space(space)
    if isinstance(n_positions, int) and not isinstance(n_positions, bool) and n_positions < space.n_positions:
        raise ValueError(f"n_positions: {n_positions} < {space.n_positions}, the longest sentence of the task")
    corpus = sentences(space, n_sentences, seed)
    init = load_model(gpt2_config(space.tokenizer, n_layer, n_embd, n_head, n_positions), seed=seed, device=device)
    tag = {
        "task": "exact",
        "words": list(space.words),
        "prompts": list(space.prompts),
        "max_len": space.max_len,
        "chain": {k: v for k, v in CHAIN.items()},
        "floor": FLOOR,
        "n_sentences": n_sentences,
        "corpus_seed": seed,
    }
    trained = train_sft(
        init,
        corpus,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=max(1, steps // 20),
        lr_schedule="cosine",
        seed=seed,
        checkpoint_every=max(1, steps // 3),
        tokenizer=space.tokenizer,
        run_tag=tag,
        run_root=run_root,
        progress=progress,
    )
    return ReferencePolicy(trained.policy, trained.run.artifact("model"), trained.run, trained.result)
