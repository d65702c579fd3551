"""The gold reward: r(x, y) = P(positive | x + y), a sentiment classifier's probability in [0, 1].

Introduced in notebook 05. In the DPO paper's sentiment task (Sec. 6.1, App. C.1) the "ground-truth"
reward is a sentiment classifier applied to prompt + completion. It builds the preference pairs
(``p(positive | x, y_w) > p(positive | x, y_l)``) and scores every evaluation sample. Three scorers:

===========================  ==================================================================
``load_gold_reward(name)``   scorer
===========================  ==================================================================
None                         the profile's ``gold_reward_name``; None there = "offline"
"offline"                    :class:`NgramClassifier` trained here on the "reward" part of the
                             reviews (held out from everything the policy sees), cached in the
                             run store. Default of the cpu and smoke profiles.
"vader"                      VADER's lexicon score mapped to [0, 1]: no training at all
a hub name or folder         a transformers text-classification pipeline; gpu profile:
                             ``siebert/sentiment-roberta-large-english`` (the paper's)
===========================  ==================================================================

Why the offline default is this classifier (measured by ``benchmarks/bench_gold_reward.py`` against
2,560 real gpt2-large SFT samples scored by a hub classifier): it ranks them like the hub classifier
(Spearman 0.85, sign agreement 0.85) where VADER reaches 0.66 / 0.75; and its features are
*presence* of words and word pairs, so repeating "great" adds nothing. A lexicon (VADER) or a
count/tf-idf model gets more positive with every repetition, and a policy trained against it learns
to write "great great great" (docs/background.md 6). VADER stays available as the second, independent
scorer (:func:`load_second_scorer`): it never builds pairs, so a policy that games the gold reward
does not automatically please it.

The classifier (Wang and Manning's NB-weighted logistic regression, "NBSVM"):

==========  ======  ==================================================================
name        shape   meaning
==========  ======  ==================================================================
x           (F,)    1 where a unigram / bigram of the vocabulary occurs in the text, else 0
rho         (F,)    Naive-Bayes log-count ratio log((p / |p|_1) / (q / |q|_1)), with p, q
                    = 1 + number of positive / negative training reviews holding the n-gram
c, b        (F,),   logistic regression fitted on x * rho (L2, ``C``)
            ()
w           (F,)    c * rho: the stored weights
P(pos)      ()      sigmoid(w . x + b)
==========  ======  ==================================================================

It is trained on full reviews, so its threshold 0.5 is a full-review threshold; on short texts the
score sits near sigmoid(b) and carries little evidence either way, which is what a scorer should say
about a few words. Recalibrating it on held-out 48-word prefixes (Platt scaling) was tried: prefix
accuracy rose by about 0.02, but the threshold moved away from where full-review classifiers such as
the hub ones put it (sign agreement on the benchmark fell from 0.85 to 0.83), so scores are used as
trained. Notebook 05 shows its accuracy on full reviews and on 48-word prefixes, and where it is
wrong.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import config as _config
from ..runs import open_run
from ..task import Scorer
from .reviews import Reviews, text_list
from .splits import PARTS, load_parts

OFFLINE, VADER = "offline", "vader"
NGRAM_C = 0.1  # best of {0.01, 0.03, 0.1, 0.3} in bench_gold_reward.py; all within 0.015 Spearman
NGRAM_MIN_DF = 2  # an n-gram seen in one review only is noise
PREFIX_WORDS = 48  # about the length of the policy's completions


def _vectorizer(vocabulary=None, min_df: int = NGRAM_MIN_DF):
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(
        ngram_range=(1, 2),
        binary=True,
        dtype=np.float64,
        vocabulary=vocabulary,
        min_df=1 if vocabulary is not None else min_df,
    )


class NgramClassifier:
    """P(positive | text) from the presence of uni- and bigrams (module docstring: x, w, b).

    Call it on a list of texts; ``logits`` gives w . x + b. Introduced in notebook 05.
    """

    def __init__(self, terms, weights, bias: float):
        terms = list(terms)
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (len(terms),):
            raise ValueError(f"weights has shape {weights.shape}; expected ({len(terms)},), one per term")
        if not (np.isfinite(weights).all() and math.isfinite(bias)):
            raise ValueError("weights and bias must be finite")
        if len(set(terms)) != len(terms):
            raise ValueError("terms must be distinct")
        self.terms, self.weights, self.bias = terms, weights, float(bias)
        self._vec = _vectorizer(vocabulary={t: i for i, t in enumerate(terms)})

    def logits(self, texts) -> np.ndarray:
        """(N,) float64 logits w . x + b."""
        texts = text_list(texts)
        if not texts:
            return np.zeros(0)
        return self._vec.transform(texts) @ self.weights + self.bias

    def __call__(self, texts) -> np.ndarray:
        """(N,) float64 P(positive)."""
        from scipy.special import expit  # sigmoid without overflow warnings for large |logit|

        return expit(self.logits(texts))

    def save(self, path: str | Path) -> Path:
        """Write the classifier as JSON (terms, weights, bias): no pickle, readable anywhere."""
        path = Path(path)
        payload = {"terms": self.terms, "weights": self.weights.tolist(), "bias": self.bias}
        path.write_text(json.dumps(payload), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> NgramClassifier:
        """Read a classifier written by :meth:`save`."""
        path = Path(path)
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            return cls(payload["terms"], payload["weights"], payload["bias"])
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: not a saved NgramClassifier ({err!r})") from err


def train_ngram_classifier(texts, labels, C: float = NGRAM_C, min_df: int = NGRAM_MIN_DF) -> NgramClassifier:
    """Fit the NB-weighted logistic regression on labelled texts (labels 1 / 0).

    Introduced in notebook 05.
    """
    from sklearn.linear_model import LogisticRegression

    texts = text_list(texts)
    labels = np.asarray(labels)
    if labels.shape != (len(texts),):
        raise ValueError(f"labels has shape {labels.shape}; expected ({len(texts)},) to match texts")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (negative) or 1 (positive); drop unlabelled reviews first")
    if len(np.unique(labels)) < 2:
        raise ValueError("labels must contain both classes")
    if not (isinstance(C, (int, float)) and C > 0):
        raise ValueError(f"C must be a positive number, got {C!r}")
    vec = _vectorizer(min_df=min_df)
    x = vec.fit_transform(texts)
    p = 1.0 + np.asarray(x[labels == 1].sum(axis=0)).ravel()
    q = 1.0 + np.asarray(x[labels == 0].sum(axis=0)).ravel()
    rho = np.log(p / p.sum()) - np.log(q / q.sum())
    model = LogisticRegression(C=C, max_iter=2000).fit(x.multiply(rho).tocsr(), labels)
    return NgramClassifier(vec.get_feature_names_out(), model.coef_[0] * rho, model.intercept_[0])


def offline_classifier(profile: _config.Profile | None = None) -> tuple[NgramClassifier, str]:
    """The classifier trained on the "reward" part of the profile's reviews, and its run id.

    Trained once on the labelled reviews of the part (the first ``profile.gold_reward_reviews`` of
    them when that is > 0; about 20 s for 10,000 reviews) and stored as run kind ``gold_reward``;
    later calls load it.

    Introduced in notebook 05.
    """
    profile = profile or _config.get_profile()
    reviews = load_parts(profile)["reward"]
    labelled = reviews.select(np.flatnonzero(reviews.labels >= 0)[: profile.gold_reward_reviews or None])
    cfg = {
        "classifier": "binary uni+bigram NB logistic regression",
        "C": NGRAM_C,
        "min_df": NGRAM_MIN_DF,
        "reviews": reviews.source,
        "part": "reward",
        "parts": PARTS,
        "n_reviews": len(labelled),
    }
    run = open_run("gold_reward", cfg)
    if not run.finished:
        classifier = train_ngram_classifier(labelled.texts, labelled.labels)
        classifier.save(run.artifact("classifier.json"))
        run.finish({"n_reviews": len(labelled), "n_features": len(classifier.terms), "bias": classifier.bias})
        return classifier, run.id
    return NgramClassifier.load(run.artifact("classifier.json")), run.id


def _positive_label(id2label: dict) -> str:
    names = {str(label) for label in id2label.values()}
    for candidate in names:
        if candidate.lower() in ("positive", "pos", "label_1"):
            return candidate
    raise ValueError(
        f"the classifier's labels {sorted(names)} have no positive class (expected one of POSITIVE, POS, LABEL_1)"
    )


def pipeline_scorer(name: str | Path, batch_size: int = 32) -> Scorer:
    """P(positive) from a transformers text-classification pipeline (a hub name or a saved folder).

    Texts longer than the classifier's context are truncated. Introduced in notebook 05.
    """
    from transformers import pipeline

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    pipe = pipeline("text-classification", model=str(name), top_k=None, truncation=True, device=_config.device())
    positive = _positive_label(pipe.model.config.id2label)

    def score(texts: list[str]) -> np.ndarray:
        out = pipe(texts, batch_size=batch_size)
        return np.array([next(d["score"] for d in row if d["label"] == positive) for row in out])

    return Scorer(str(name), score)


def load_gold_reward(name: str | Path | None = None, profile: _config.Profile | None = None) -> Scorer:
    """The gold-reward :class:`Scorer`: maps a list of N texts to an (N,) array of P(positive).

    ``name``: None (the profile's ``gold_reward_name``, offline when that is None), "offline",
    "vader", or a hub name / folder of a text-classification model (module table).

    Introduced in notebook 05.
    """
    profile = profile or _config.get_profile()
    name = profile.gold_reward_name if name is None else name
    if name is None or name == OFFLINE:
        classifier, run_id = offline_classifier(profile)
        return Scorer(f"{OFFLINE}:{run_id}", classifier)
    if not isinstance(name, (str, Path)) or not str(name).strip():
        raise ValueError(
            f"name must be None, {OFFLINE!r}, {VADER!r} or a classifier's hub name or folder, got {name!r}"
        )
    if name == VADER:
        return load_second_scorer()
    return pipeline_scorer(name)


def load_second_scorer() -> Scorer:
    """VADER, the independent check on a policy trained against the gold reward: it builds no pairs
    in any profile and needs no training. Its compound score c in [-1, 1] is mapped to (c + 1) / 2
    in [0, 1] (not a probability, but ordered like one).

    Introduced in notebook 05.
    """
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return Scorer(VADER, lambda texts: np.array([(analyzer.polarity_scores(t)["compound"] + 1.0) / 2.0 for t in texts]))


def scorer_accuracy(scorer: Callable, reviews: Reviews, n_words: int | None = None) -> float:
    """Share of the labelled ``reviews`` on whose sign (P(positive) > 0.5) ``scorer`` agrees with the
    label; with ``n_words``, each review is first cut to its first ``n_words`` words.

    Introduced in notebook 05.
    """
    if not isinstance(reviews, Reviews):
        raise ValueError(f"reviews must be a Reviews collection, got {type(reviews).__name__}")
    if n_words is not None and (isinstance(n_words, bool) or not isinstance(n_words, int) or n_words < 1):
        raise ValueError(f"n_words must be None or an integer >= 1, got {n_words!r}")
    keep = np.flatnonzero(reviews.labels >= 0)
    if keep.size == 0:
        raise ValueError(f"reviews from {reviews.source} hold no labelled review")
    texts = [reviews.texts[i] if n_words is None else " ".join(reviews.texts[i].split()[:n_words]) for i in keep]
    return float(np.mean((np.asarray(scorer(texts)) > 0.5) == (reviews.labels[keep] == 1)))
