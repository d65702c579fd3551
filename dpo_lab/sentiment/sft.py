"""The SFT recipe: pi_SFT, the model every preference method starts from and stays close to.

Introduced in notebook 05. DPO paper App. C.1: gpt2-large fine-tuned one epoch on IMDb reviews.
Here the recipe is the same in every profile, only the sizes differ:

=======  ===============================  =====================================================
profile  tokenizer                        model and training
=======  ===============================  =====================================================
gpu      gpt2-large's BPE                 gpt2-large from the hub, one epoch over the sft part
cpu      byte-level BPE, 8,192 tokens,    a GPT-2 trained from scratch on the sft part (sizes in
         trained here on the sft part     the profile: ``n_layer``, ``n_embd``, ``sft_steps`` ...)
smoke    byte-level BPE, 512 tokens       a tiny GPT-2, a few steps: proves the machinery only
=======  ===============================  =====================================================

SFT minimises the mean next-token negative log-likelihood -(1/T) sum_t log pi(s_t | s_<t) over
windows s of review text (``dpo_lab.lm.train_sft``). Measured for the cpu profile (4 layers x 256,
5.3M parameters, 4,000 steps of 16 windows of 128 tokens = 8.2M tokens, about 2.7 epochs over the sft
part; 74 minutes on one core, so it ships in ``data/sft-cpu``, ``dpo_lab.sentiment.release``):
held-out perplexity 105 in its own 8k tokens (230 / 155 / 123 / 108 at steps 800 / 1,600 / 2,400 /
3,200; 288 after 600); samples read as review-like English that wanders. A small vocabulary makes
the LM head, the largest matmul of a small model, 6x cheaper than GPT-2's 50,257 tokens
(docs/background.md 5-6). Every review becomes
``[EOS] + tokens + [EOS]``: the leading EOS says "a review starts here" (prompts get it too, see
:func:`prompt_ids`) and the trailing one teaches the model to stop. Reviews are cut into windows of
``n_positions`` tokens:

==============  ==========  ===========================================================
name            shape       meaning
==============  ==========  ===========================================================
windows         (W,) lists  token ids, each of 2 .. n_positions tokens; the first window of
                            a review starts with EOS
prompt_ids      (N,) lists  ``[EOS] + tokens of the prompt``
perplexity      ()          exp(mean next-token NLL) over held-out windows, in the
                            policy's own tokens (not comparable across vocabularies)
==============  ==========  ===========================================================
"""

from __future__ import annotations

import math

from .. import config as _config
from ..runs import open_run
from ..task import SFTPolicy
from .reviews import text_list
from .splits import PARTS, load_parts

EOS = "<|endoftext|>"
HELDOUT_REVIEWS = 128  # held-out reviews (test part) whose first window measures perplexity


def train_bpe(texts, vocab_size: int):
    """A byte-level BPE (GPT-2's pre-tokenizer and decoder) with ``vocab_size`` tokens, trained on
    ``texts``, whose only special token ``<|endoftext|>`` is EOS, BOS and padding.

    Introduced in notebook 05.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 257:
        raise ValueError(f"vocab_size must be an integer >= 257 (256 bytes + EOS), got {vocab_size!r}")
    texts = text_list(texts)
    if not texts:
        raise ValueError("texts is empty: nothing to train the BPE on")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, bos_token=EOS, pad_token=EOS)


def sft_reviews(profile: _config.Profile | None = None):
    """The reviews pi_SFT learns from: the sft part, or its first ``profile.sft_reviews`` reviews
    when that is > 0 (smoke: a few hundred are all 20 steps can use).

    Introduced in notebook 05.
    """
    profile = profile or _config.get_profile()
    texts = load_parts(profile)["sft"]
    return texts.select(range(min(len(texts), profile.sft_reviews or len(texts))))


def sft_tokenizer(profile: _config.Profile | None = None):
    """The policy's tokenizer: with ``profile.sft_bpe_vocab > 0`` a BPE trained on
    :func:`sft_reviews` (stored once as run kind ``bpe``), else
    ``dpo_lab.lm.load_tokenizer(profile.tokenizer_name)``.

    Introduced in notebook 05.
    """
    from ..lm import load_tokenizer

    profile = profile or _config.get_profile()
    if not profile.sft_bpe_vocab:
        return load_tokenizer(profile.tokenizer_name)
    texts = sft_reviews(profile)
    run = open_run(
        "bpe",
        {
            "vocab_size": profile.sft_bpe_vocab,
            "reviews": texts.source,
            "part": "sft",
            "parts": PARTS,
            "n_reviews": len(texts),
        },
    )
    folder = run.artifact("tokenizer")
    if not run.finished:
        train_bpe(texts.texts, profile.sft_bpe_vocab).save_pretrained(folder)
        run.finish({"vocab_size": profile.sft_bpe_vocab})
    return load_tokenizer(folder)


def review_windows(texts, tokenizer, window: int) -> list[list[int]]:
    """Each text as ``[EOS] + tokens + [EOS]``, cut into consecutive windows of at most ``window``
    tokens; a last piece shorter than 2 tokens (nothing to predict) is dropped.

    Introduced in notebook 05.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise ValueError(f"window must be an integer >= 2, got {window!r}")
    texts = text_list(texts)
    eos = tokenizer.eos_token_id
    windows = []
    for row in tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []:
        ids = [eos] + row + [eos]
        windows += [ids[i : i + window] for i in range(0, len(ids), window) if len(ids) - i >= 2]
    return windows


def prompt_ids(prompts, tokenizer) -> list[list[int]]:
    """``[EOS] + tokens`` of each prompt: the form in which pi_SFT saw review beginnings.

    Introduced in notebook 05.
    """
    prompts = text_list(prompts, "prompts", nonblank=True)
    eos = tokenizer.eos_token_id
    return [[eos] + row for row in tokenizer(prompts, add_special_tokens=False)["input_ids"]] if prompts else []


def perplexity(model, windows, batch_size: int = 32) -> float:
    """exp(mean NLL per predicted token) of ``model`` on token windows (every token after the first).

    Introduced in notebook 05.
    """
    from ..lm import sequence_logprobs

    windows = [list(w) for w in windows]
    if not windows or any(len(w) < 2 for w in windows):
        raise ValueError("windows must be a non-empty list of token-id lists of >= 2 tokens each")
    logps = sequence_logprobs(
        model, [w[:1] for w in windows], [w[1:] for w in windows], add_eos=False, batch_size=batch_size
    )
    return math.exp(-float(logps.sum()) / sum(len(w) - 1 for w in windows))


def heldout_windows(tokenizer, profile: _config.Profile | None = None) -> list[list[int]]:
    """The first window of each of the first :data:`HELDOUT_REVIEWS` reviews of the test part: the
    review openings on which perplexity is measured (no policy trains on them).

    Introduced in notebook 05.
    """
    profile = profile or _config.get_profile()
    texts = load_parts(profile)["test"].texts[:HELDOUT_REVIEWS]
    return [review_windows([t], tokenizer, profile.n_positions)[0] for t in texts]


def sft_policy(profile: _config.Profile | None = None, progress: bool = True) -> SFTPolicy:
    """Train pi_SFT on the sft part once (run kind ``sft``) and return it; later calls load it.

    ========================  =================================================================
    profile field             use
    ========================  =================================================================
    model_name                start from these weights (gpu: gpt2-large); None = a fresh GPT-2
                              of n_layer x n_embd, n_head heads, n_positions context
    sft_bpe_vocab             see :func:`sft_tokenizer`
    sft_reviews               see :func:`sft_reviews`
    sft_steps                 optimiser steps; 0 = one epoch over the windows (paper)
    sft_batch_size, sft_lr    windows per step, peak learning rate (5% linear warmup, cosine)
    sft_micro_batch_size      windows per forward (gradient accumulation); 0 = sft_batch_size
    ========================  =================================================================

    Held-out perplexity (:func:`heldout_windows`) is logged 5 times during training and after it.
    Where the profile names a released pi_SFT (``sft_release``), that release is loaded instead
    (``dpo_lab.sentiment.release``), unless ``DPO_LAB_SFT=train``.

    Introduced in notebook 05.
    """
    from ..lm import gpt2_config, load_model, train_sft
    from .release import load_release, release_dir, use_release

    profile = profile or _config.get_profile()
    if use_release(profile):  # the profile's released pi_SFT, unless DPO_LAB_SFT=train
        return load_release(release_dir(profile), profile)
    tokenizer = sft_tokenizer(profile)
    sft_texts = sft_reviews(profile)
    windows = review_windows(sft_texts.texts, tokenizer, profile.n_positions)
    heldout = heldout_windows(tokenizer, profile)
    init = (
        load_model(profile.model_name)
        if profile.model_name
        else load_model(gpt2_config(tokenizer, **profile.model_sizes), seed=profile.seed)
    )
    steps = profile.sft_steps or math.ceil(len(windows) / profile.sft_batch_size)
    trained = train_sft(
        init,
        windows,
        steps=steps,
        batch_size=profile.sft_batch_size,
        lr=profile.sft_lr,
        micro_batch_size=profile.sft_micro_batch_size or None,
        warmup_steps=max(1, steps // 20),
        lr_schedule="cosine",
        seed=profile.seed,
        eval_fn=lambda policy, step: {"perplexity": perplexity(policy, heldout)},
        eval_every=max(1, steps // 5),
        tokenizer=tokenizer,
        progress=progress,
        run_tag={"task": "imdb sentiment", "reviews": sft_texts.source, "parts": PARTS},
    )
    return SFTPolicy(trained.policy, tokenizer, trained.run.artifact("model"), trained.run, trained.result)
