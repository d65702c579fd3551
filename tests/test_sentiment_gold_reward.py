"""The gold reward and the second scorer (dpo_lab.sentiment.gold_reward), on fixtures built here."""

import numpy as np
import pytest
import scipy.sparse as sp
from test_sentiment_reviews import synthetic_review, write_aclimdb

from dpo_lab import config
from dpo_lab.runs import list_runs
from dpo_lab.sentiment import (
    NgramClassifier,
    Reviews,
    load_gold_reward,
    load_second_scorer,
    pipeline_scorer,
    scorer_accuracy,
    train_ngram_classifier,
)
from dpo_lab.sentiment import gold_reward as gr
from dpo_lab.task import Scorer


def _corpus(n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    return [synthetic_review(rng, int(y)) for y in labels], labels


@pytest.fixture(scope="module")
def classifier():
    texts, labels = _corpus(300, seed=0)
    return train_ngram_classifier(texts, labels)


def test_classifier_learns_the_sentiment_of_held_out_reviews(classifier):
    texts, labels = _corpus(200, seed=1)
    p = classifier(texts)
    assert p.shape == (200,) and ((p > 0) & (p < 1)).all()
    # every synthetic review carries five words of its sentiment and one of the other
    assert np.mean((p > 0.5) == (labels == 1)) > 0.95


def test_stored_weights_are_the_nb_ratio_times_the_logistic_coefficients():
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    texts, labels = _corpus(120, seed=2)
    clf = train_ngram_classifier(texts, labels, C=0.5)
    vec = CountVectorizer(ngram_range=(1, 2), binary=True, min_df=2)
    x = vec.fit_transform(texts).astype(float)
    p = 1 + np.asarray(x[labels == 1].sum(0)).ravel()
    q = 1 + np.asarray(x[labels == 0].sum(0)).ravel()
    r = np.log(p / p.sum() / (q / q.sum()))
    reference = LogisticRegression(C=0.5, max_iter=2000).fit(x @ sp.diags(r), labels)
    assert list(clf.terms) == list(vec.get_feature_names_out())
    new, _ = _corpus(20, seed=3)
    # the same optimum reached by the same solver: agreement to solver tolerance
    np.testing.assert_allclose(
        clf.logits(new), reference.decision_function(vec.transform(new) @ sp.diags(r)), atol=1e-6
    )


def test_repeating_a_word_adds_nothing(classifier):
    # presence features: "great" x10 holds the same uni- and bigrams ("great", "great great") as x2
    two, four, ten = classifier(["great " * 2, "great " * 4, "great " * 10])
    assert two == pytest.approx(four, abs=1e-12) and two == pytest.approx(ten, abs=1e-12)
    assert ten < classifier(["great wonderful excellent brilliant superb"])[0]  # distinct evidence adds up
    assert classifier([""])[0] == pytest.approx(1 / (1 + np.exp(-classifier.bias)))


def test_vader_is_the_second_scorer_and_rises_with_repetition():
    vader = load_second_scorer()
    assert isinstance(vader, Scorer) and vader.name == "vader"
    good, bad, one, four = vader(
        ["A wonderful, moving film.", "A dull, awful film.", "great", "great great great great"]
    )
    assert good > 0.5 > bad and four > one  # the lexicon weakness the offline default avoids
    assert load_gold_reward("vader").name == "vader"


def test_save_and_load_round_trip(classifier, tmp_path):
    again = NgramClassifier.load(classifier.save(tmp_path / "clf.json"))
    texts, _ = _corpus(10, seed=4)
    np.testing.assert_array_equal(again(texts), classifier(texts))
    (tmp_path / "bad.json").write_text('{"terms": ["a"]}')
    with pytest.raises(ValueError, match="bad.json: not a saved NgramClassifier"):
        NgramClassifier.load(tmp_path / "bad.json")


@pytest.mark.parametrize(
    "args, message",
    [
        ((["a", "b"], [1.0], 0.0), "weights has shape"),
        ((["a"], [np.nan], 0.0), "must be finite"),
        ((["a", "a"], [1.0, 2.0], 0.0), "distinct"),
    ],
)
def test_classifier_rejects_bad_parameters(args, message):
    with pytest.raises(ValueError, match=message):
        NgramClassifier(*args)


@pytest.mark.parametrize(
    "texts, labels, kwargs, message",
    [
        ("a review", [1], {}, "single string"),
        (["good", "bad"], [1], {}, "labels has shape"),
        (["good", "bad"], [1, -1], {}, "labels must be 0"),
        (["good", "fine"], [1, 1], {}, "both classes"),
        (["good", "bad"], [1, 0], {"C": 0}, "C must be a positive"),
        (["good", 3], [1, 0], {}, r"texts\[1\] must be a string"),
    ],
)
def test_training_rejects_bad_inputs(texts, labels, kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_ngram_classifier(texts, np.array(labels), **kwargs)


def test_scorers_take_lists_only(classifier):
    scorer = Scorer("test", classifier)
    assert scorer([]).shape == (0,)
    with pytest.raises(ValueError, match="single string"):
        scorer("great")


@pytest.fixture(scope="module")
def tiny_hub_classifier(tmp_path_factory):
    """A 1-layer BERT text classifier saved to a folder, standing in for a hub model."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    def make(labels):
        words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "great", "awful", "movie", "the"]
        cfg = BertConfig(
            vocab_size=len(words),
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=16,
            max_position_embeddings=16,
            id2label=dict(enumerate(labels)),
            label2id={n: i for i, n in enumerate(labels)},
        )
        model = BertForSequenceClassification(cfg).eval()
        path = tmp_path_factory.mktemp("clf")
        model.save_pretrained(path)
        BertTokenizer(vocab={w: i for i, w in enumerate(words)}, model_max_length=16).save_pretrained(path)
        return path, model

    return make


def test_pipeline_scorer_returns_the_positive_class_probability(tiny_hub_classifier):
    import torch

    path, model = tiny_hub_classifier(["NEGATIVE", "POSITIVE"])
    scorer = load_gold_reward(str(path))
    assert scorer.name == str(path)
    texts = ["the great movie", "awful " * 40]  # the second is longer than the context: truncated
    with torch.no_grad():
        expected = model(input_ids=torch.tensor([[2, 8, 5, 7, 3]])).logits.softmax(-1)[0, 1].item()
    p = scorer(texts)
    assert p.shape == (2,) and p[0] == pytest.approx(expected, abs=1e-5)


def test_pipeline_scorer_errors(tiny_hub_classifier):
    path, _ = tiny_hub_classifier(["happy", "sad"])
    with pytest.raises(ValueError, match="no positive class"):
        pipeline_scorer(path)
    with pytest.raises(ValueError, match="batch_size"):
        pipeline_scorer(path, batch_size=0)
    with pytest.raises(ValueError, match="name must be None"):
        load_gold_reward("")


def test_offline_default_is_trained_once_on_the_reward_part(tmp_path, monkeypatch):
    profile = config.get_profile("smoke").replace(dataset_name=str(write_aclimdb(tmp_path, 60)))
    calls = []
    train = gr.train_ngram_classifier
    monkeypatch.setattr(gr, "train_ngram_classifier", lambda *a, **k: calls.append(1) or train(*a, **k))
    first = load_gold_reward(profile=profile)
    second = load_gold_reward("offline", profile=profile)
    assert calls == [1] and first.name == second.name and first.name.startswith("offline:gold_reward-")
    texts, _ = _corpus(30, seed=5)
    np.testing.assert_array_equal(first(texts), second(texts))
    _, run_id = gr.offline_classifier(profile.replace(gold_reward_reviews=20))
    assert calls == [1, 1] and run_id != first.name.split(":")[1]
    assert {r.id: r.result()["n_reviews"] for r in list_runs("gold_reward")}[run_id] == 20


def test_scorer_accuracy_counts_labelled_reviews_only():
    reviews = Reviews(
        ("good film here", "bad", "good but unlabelled", "bad film good"), np.array([1, 0, -1, 1]), "fixture"
    )

    def says_good(texts):
        return np.array([0.9 if "good" in t else 0.1 for t in texts])

    assert scorer_accuracy(says_good, reviews) == pytest.approx(1.0)
    assert scorer_accuracy(says_good, reviews, n_words=1) == pytest.approx(2 / 3)  # "bad film good" -> "bad"
    with pytest.raises(ValueError, match="n_words"):
        scorer_accuracy(says_good, reviews, n_words=0)
    with pytest.raises(ValueError, match="no labelled review"):
        scorer_accuracy(says_good, reviews.select([2]))
    with pytest.raises(ValueError, match="reviews must be a Reviews"):
        scorer_accuracy(says_good, ["good"])
