"""The deterministic four-part split of the reviews (dpo_lab.sentiment.splits)."""

import hashlib

import numpy as np
import pytest
from test_sentiment_reviews import write_aclimdb

from dpo_lab import config
from dpo_lab.sentiment import Reviews, load_parts, part_of, review_digest, split_reviews
from dpo_lab.sentiment.splits import PARTS


def _reviews(n, seed=0):
    rng = np.random.default_rng(seed)
    return Reviews(
        tuple(f"review {i} {rng.integers(1_000_000)}" for i in range(n)), rng.integers(0, 2, size=n), "synthetic"
    )


def test_parts_are_disjoint_cover_everything_and_have_the_documented_sizes():
    reviews = _reviews(100_000)
    parts = split_reviews(reviews)
    assert set(parts) == set(PARTS)
    members = [set(p.texts) for p in parts.values()]
    assert sum(len(m) for m in members) == len(set().union(*members)) == len(reviews)
    for name, (lo, hi) in PARTS.items():
        share = (hi - lo) / 100
        # a binomial share: 5 standard deviations never flakes, and with 100,000 reviews it is below
        # 0.008 for every part, so a bucket off by one percentage point fails
        tolerance = 5 * np.sqrt(share * (1 - share) / len(reviews))
        assert abs(len(parts[name]) / len(reviews) - share) < tolerance, name
        assert all(part_of(t) == name for t in parts[name].texts[:200])


def test_split_does_not_depend_on_order_and_keeps_duplicates_together():
    reviews = _reviews(500)
    doubled = Reviews(
        reviews.texts + reviews.texts[:50], np.concatenate([reviews.labels, reviews.labels[:50]]), "synthetic"
    )
    shuffled = doubled.select(np.random.default_rng(1).permutation(len(doubled)))
    a, b = split_reviews(doubled), split_reviews(shuffled)
    for name in PARTS:
        assert a[name].texts == b[name].texts
        assert a[name].labels.tolist() == b[name].labels.tolist()
        digests = [review_digest(t) for t in a[name].texts]
        assert digests == sorted(digests)  # ordered by digest within a part
    for text in reviews.texts[:50]:
        assert sum(text in p.texts for p in a.values()) == 1


def test_digest_is_sha256_of_utf8():
    assert review_digest("é") == hashlib.sha256("é".encode()).digest()


def test_bad_inputs():
    with pytest.raises(ValueError, match="text must be a string"):
        part_of(3)
    with pytest.raises(ValueError, match="reviews must be a Reviews"):
        split_reviews(["a", "b"])


def test_load_parts_reads_the_profiles_dataset(tmp_path):
    folder = write_aclimdb(tmp_path, n_per_folder=30)
    profile = config.get_profile("smoke").replace(dataset_name=str(folder))
    parts = load_parts(profile)
    assert sum(len(p) for p in parts.values()) == 123
    assert load_parts(profile) is parts  # loaded once per process
