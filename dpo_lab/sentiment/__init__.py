"""The IMDb controlled-sentiment task (DPO paper Sec. 6.1 and App. C.1), introduced in notebook 04.

A policy continues the first 2-8 tokens of a movie review; the gold reward is a sentiment
classifier's P(positive) of prompt + continuation. One module per concept:

=============  =================================================================================
module         what it holds
=============  =================================================================================
reviews        ``load_reviews``: bundled / aclImdb folder or tarball / hub; ``clean_review``
splits         ``split_reviews``, ``load_parts``: the digest-based split test / prompts / reward /
               sft (no review in two parts)
prompts        ``make_prompts`` (2-8 GPT-2 tokens), ``train_prompts``, ``heldout_prompts``
gold_reward    ``load_gold_reward`` (offline n-gram classifier / hub pipeline), ``load_second_scorer``
               (VADER), ``scorer_accuracy``
=============  =================================================================================
"""
from .gold_reward import PREFIX_WORDS, NgramClassifier, Scorer, load_gold_reward, load_second_scorer, \
    offline_classifier, pipeline_scorer, scorer_accuracy, train_ngram_classifier
from .prompts import heldout_prompts, make_prompts, prompt_length, train_prompts
from .reviews import Reviews, aclimdb_reviews, bundled_reviews, clean_review, hub_reviews, load_reviews
from .splits import PARTS, load_parts, part_of, review_digest, split_reviews

__all__ = ["Reviews", "clean_review", "load_reviews", "bundled_reviews", "aclimdb_reviews", "hub_reviews",
           "PARTS", "review_digest", "part_of", "split_reviews", "load_parts",
           "prompt_length", "make_prompts", "train_prompts", "heldout_prompts",
           "PREFIX_WORDS", "Scorer", "NgramClassifier", "train_ngram_classifier", "offline_classifier",
           "pipeline_scorer", "load_gold_reward", "load_second_scorer", "scorer_accuracy"]
