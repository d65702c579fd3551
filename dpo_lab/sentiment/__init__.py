"""The IMDb controlled-sentiment task (DPO paper Sec. 6.1 and App. C.1), introduced in notebook 05.

A policy continues the first 2-8 GPT-2 tokens of a movie review; the gold reward is a sentiment
classifier's P(positive) of prompt + continuation; preference pairs come from pi_SFT's own samples
ordered by that reward. One module per concept:

=============  =================================================================================
module         what it holds
=============  =================================================================================
reviews        ``load_reviews``: bundled / aclImdb folder or tarball / hub; ``clean_review``
splits         ``split_reviews``, ``load_parts``: the digest-based split into test / prompts /
               reward / sft (no review in two parts)
prompts        ``make_prompts`` (2-8 GPT-2 tokens), ``train_prompts``, ``heldout_prompts``
gold_reward    ``load_gold_reward`` (offline n-gram classifier or hub pipeline),
               ``load_second_scorer`` (VADER), ``scorer_accuracy``
sft            ``sft_policy`` (pi_SFT, trained once and stored), ``prompt_ids``, ``perplexity``
release        ``export_release``, ``load_release``: a trained pi_SFT shipped in a folder, loaded
               instead of retrained where the profile names one (``DPO_LAB_SFT=train`` retrains);
               ``export_pairs``, ``released_pairs``: the preference pairs shipped with it
pairs          ``preference_data`` (samples, 6 ordered pairs per prompt, ODPO offsets),
               ``load_pairs``, ``trainer_pairs``
task           ``IMDbTask``: all of the above as the ``dpo_lab.task.Task`` the sweep runs
=============  =================================================================================

Entry points for preference training (notebook 06); all are cached, so calling them again costs
seconds, and all follow the active profile unless a ``profile`` is passed:

==========================================  ======================================================
call                                        gives
==========================================  ======================================================
``heldout_prompts()``                       the ``n_test_prompts`` evaluation prompts (str), the
                                            same list in every run; no policy trains on them
``sft_policy()``                            ``task.SFTPolicy``: ``.model``, ``.tokenizer``, ``.path``
                                            (``lm.load_model(path)`` = a fresh copy, e.g. the frozen
                                            pi_ref), ``.run`` (kind ``sft``)
``prompt_ids(prompts, tokenizer)``          prompts as the policy's token ids (``[EOS] + tokens``):
                                            sample and score with these, never with bare tokens
``preference_data()``                       :class:`PreferenceData`: ``.path`` of pairs.jsonl,
                                            ``.pairs()``, ``.samples()``, ``.run`` (kind ``pairs``)
``trainer_pairs(data.pairs(), odpo=...)``   the pairs as ``lm.train_preferences`` takes them
                                            (``offset`` = ODPO alpha 1, f = log; other alphas:
                                            ``pair_offsets``). Responses carry their own EOS:
                                            train with ``add_eos=False``
``load_gold_reward()``                      the gold reward that built the pairs: texts -> P(pos)
``load_second_scorer()``                    VADER: an independent scorer that built no pairs
==========================================  ======================================================

Scorers (``dpo_lab.task.Scorer``) take ``prompt + response`` texts (the strings concatenated as they are).
"""

from .gold_reward import (
    PREFIX_WORDS,
    NgramClassifier,
    load_gold_reward,
    load_second_scorer,
    offline_classifier,
    pipeline_scorer,
    scorer_accuracy,
    train_ngram_classifier,
)
from .pairs import (
    PreferenceData,
    generate_samples,
    load_pairs,
    odpo_score,
    ordered_pairs,
    pair_offsets,
    pairs_from_samples,
    preference_data,
    read_samples,
    trainer_pairs,
    write_pairs,
)
from .prompts import heldout_prompts, make_prompts, prompt_length, train_prompts
from .release import export_pairs, export_release, load_release, released_pairs
from .reviews import (
    Reviews,
    aclimdb_reviews,
    bundled_reviews,
    clean_review,
    hub_reviews,
    is_hub_dataset_copy,
    load_reviews,
)
from .sft import (
    heldout_windows,
    perplexity,
    prompt_ids,
    review_windows,
    sft_policy,
    sft_reviews,
    sft_tokenizer,
    train_bpe,
)
from .splits import PARTS, load_parts, part_of, review_digest, split_reviews
from .task import IMDbTask

__all__ = [
    "Reviews",
    "clean_review",
    "load_reviews",
    "bundled_reviews",
    "aclimdb_reviews",
    "hub_reviews",
    "is_hub_dataset_copy",
    "PARTS",
    "review_digest",
    "part_of",
    "split_reviews",
    "load_parts",
    "prompt_length",
    "make_prompts",
    "train_prompts",
    "heldout_prompts",
    "export_release",
    "load_release",
    "export_pairs",
    "released_pairs",
    "PREFIX_WORDS",
    "NgramClassifier",
    "train_ngram_classifier",
    "offline_classifier",
    "pipeline_scorer",
    "load_gold_reward",
    "load_second_scorer",
    "scorer_accuracy",
    "train_bpe",
    "sft_reviews",
    "sft_tokenizer",
    "review_windows",
    "prompt_ids",
    "perplexity",
    "heldout_windows",
    "sft_policy",
    "ordered_pairs",
    "odpo_score",
    "pair_offsets",
    "read_samples",
    "generate_samples",
    "pairs_from_samples",
    "write_pairs",
    "load_pairs",
    "trainer_pairs",
    "PreferenceData",
    "preference_data",
    "IMDbTask",
]
