"""Reviews: cleaning and the three loaders (dpo_lab.sentiment.reviews), on fixtures built here.

``write_aclimdb`` is also used by the other sentiment tests: a small synthetic aclImdb folder whose
reviews carry their sentiment in a few words, so a classifier can learn it in milliseconds.
"""

import sys
import tarfile
import types

import numpy as np
import pytest

from dpo_lab import config
from dpo_lab.sentiment import reviews as rv

POSITIVE = ["great", "wonderful", "excellent", "loved", "brilliant", "superb", "moving", "beautiful"]
NEGATIVE = ["awful", "terrible", "boring", "worst", "waste", "hated", "dull", "stupid"]
FILLER = [
    "the",
    "movie",
    "film",
    "plot",
    "actor",
    "scene",
    "story",
    "was",
    "and",
    "it",
    "this",
    "of",
    "director",
    "ending",
    "music",
    "cast",
    "with",
    "for",
    "about",
    "characters",
]


def synthetic_review(rng, label: int) -> str:
    """30-60 filler words with five words of the review's sentiment and one of the other."""
    own, other = (POSITIVE, NEGATIVE) if label == 1 else (NEGATIVE, POSITIVE)
    words = list(rng.choice(FILLER, size=int(rng.integers(30, 60))))
    for word in list(rng.choice(own, size=5)) + [rng.choice(other)]:
        words.insert(int(rng.integers(0, len(words))), str(word))
    words[int(rng.integers(5, len(words)))] += ".<br /><br />"
    return "This " + " ".join(words)


def write_aclimdb(root, n_per_folder: int = 60, seed: int = 0):
    """root/aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt (+ a few unsup); returns the folder."""
    rng = np.random.default_rng(seed)
    folder = root / "aclImdb"
    for split in ("train", "test"):
        for name, label in (("pos", 1), ("neg", 0)):
            (folder / split / name).mkdir(parents=True)
            for i in range(n_per_folder):
                rating = 8 if label else 2
                (folder / split / name / f"{i}_{rating}.txt").write_text(synthetic_review(rng, label))
    (folder / "train" / "unsup").mkdir()
    for i in range(3):
        (folder / "train" / "unsup" / f"{i}_0.txt").write_text(synthetic_review(rng, i % 2))
    (folder / "README").write_text("not a review")
    return folder


def test_clean_review_turns_line_breaks_and_runs_of_space_into_one_space():
    assert rv.clean_review("Great.<br /><br />Really  great<BR>fun<br/>\n end ") == "Great. Really great fun end"
    with pytest.raises(ValueError, match="text must be a string"):
        rv.clean_review(None)


def test_reviews_validates_labels_and_selects():
    r = rv.Reviews(("a", "b", "c"), np.array([1, 0, -1]), "x")
    sub = r.select([2, 0])
    assert sub.texts == ("c", "a") and sub.labels.tolist() == [-1, 1] and sub.source == "x"
    with pytest.raises(ValueError, match="labels has shape"):
        rv.Reviews(("a",), np.array([1, 0]), "x")
    with pytest.raises(ValueError, match="labels must be 1"):
        rv.Reviews(("a",), np.array([2]), "x")


def test_bundled_csv_keeps_imdb_rows_cleaned(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text('text,label,source\n"Good<br />film",1,imdb\nskip me,0,rotten_tomatoes\n"Bad, bad",0,imdb\n')
    r = rv.bundled_reviews(path)
    assert r.texts == ("Good film", "Bad, bad") and r.labels.tolist() == [1, 0]


@pytest.mark.parametrize(
    "content, message",
    [
        ("text,label\nx,1\n", "missing column"),
        ("text,label,source\nx,1,imdb\ny,7,imdb\n", "line 3: label must be 0 or 1"),
        ("text,label,source\nx,1,other\n", "no rows with source == 'imdb'"),
    ],
)
def test_bundled_csv_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        rv.bundled_reviews(path)
    assert str(path) in str(err.value)


def test_the_packaged_reviews_are_the_imdb_train_split():
    r = rv.bundled_reviews()
    assert len(r) == 25_000 and int(r.labels.sum()) == 12_500
    assert not any("<br" in t for t in r.texts[:500])


def test_aclimdb_folder_parent_and_tarball_give_the_same_reviews(tmp_path):
    folder = write_aclimdb(tmp_path / "data", n_per_folder=4)
    tarball = tmp_path / "aclImdb_v1.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(folder, arcname="aclImdb")
    a, b, c = rv.aclimdb_reviews(folder), rv.aclimdb_reviews(folder.parent), rv.aclimdb_reviews(tarball)
    assert a.texts == b.texts == c.texts and len(a) == 19
    assert a.labels.tolist() == b.labels.tolist() == c.labels.tolist()
    # fixed order: test (neg, pos), then train (neg, pos, unsup), ids ascending
    assert a.labels.tolist() == [0] * 4 + [1] * 4 + [0] * 4 + [1] * 4 + [-1] * 3
    assert all("<br" not in t for t in a.texts)


def test_aclimdb_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        rv.aclimdb_reviews(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no review files"):
        rv.aclimdb_reviews(tmp_path / "empty")
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"not a tar archive at all")
    with pytest.raises(ValueError, match="not a readable tar archive"):
        rv.aclimdb_reviews(broken)


class _FakeSplit:
    def __init__(self, columns):
        self.columns = columns
        self.column_names = list(columns)

    def __getitem__(self, key):
        return self.columns[key]


def _fake_datasets(calls, splits):
    def load_dataset(name):
        calls.append(name)
        return splits

    return types.SimpleNamespace(load_dataset=load_dataset)


def test_hub_loader_reads_every_split_with_unlabelled_as_minus_one(monkeypatch):
    calls = []
    splits = {
        "train": _FakeSplit({"text": ["Fine<br />film"], "label": [1]}),
        "test": _FakeSplit({"text": ["Dull"], "label": [0]}),
        "unsupervised": _FakeSplit({"text": ["Who knows"], "label": [-1]}),
    }
    monkeypatch.setitem(sys.modules, "datasets", _fake_datasets(calls, splits))
    r = rv.hub_reviews("stanfordnlp/imdb")
    assert calls == ["stanfordnlp/imdb"]
    assert r.texts == ("Fine film", "Dull", "Who knows") and r.labels.tolist() == [1, 0, -1]
    assert r.source == "hub stanfordnlp/imdb"


def test_hub_loader_errors(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", _fake_datasets([], {"train": _FakeSplit({"review": ["x"]})}))
    with pytest.raises(ValueError, match="needs columns text and label"):
        rv.hub_reviews("someone/reviews")
    monkeypatch.setitem(sys.modules, "datasets", _fake_datasets([], {"validation": _FakeSplit({})}))
    with pytest.raises(ValueError, match="none of the splits"):
        rv.hub_reviews("someone/reviews")
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if the package were not installed
    with pytest.raises(ImportError, match=r"dpo_lab\[hub\]"):
        rv.hub_reviews("stanfordnlp/imdb")


def test_load_reviews_dispatches_on_the_name(tmp_path, monkeypatch):
    folder = write_aclimdb(tmp_path, n_per_folder=2)
    monkeypatch.setattr(rv, "bundled_reviews", lambda: "bundled")
    monkeypatch.setattr(rv, "hub_reviews", lambda name: f"hub:{name}")
    cpu = config.get_profile("cpu")
    assert rv.load_reviews(profile=cpu) == "bundled"
    assert rv.load_reviews(profile=config.get_profile("gpu")) == "hub:stanfordnlp/imdb"
    assert len(rv.load_reviews(str(folder), profile=cpu)) == 11
    assert len(rv.load_reviews(profile=cpu.replace(dataset_name=str(folder)))) == 11
    with pytest.raises(FileNotFoundError, match="no aclImdb"):
        rv.load_reviews(str(tmp_path / "missing" / "aclImdb_v1.tar.gz"), profile=cpu)
    with pytest.raises(ValueError, match="name must be None"):
        rv.load_reviews("  ", profile=cpu)


def test_text_list_checks_lists_of_strings():
    assert rv.text_list(("a", "b")) == ["a", "b"] and rv.text_list([]) == []
    with pytest.raises(ValueError, match="prompts must be a list of strings, got a single string"):
        rv.text_list("a", "prompts")
    with pytest.raises(ValueError, match=r"texts\[1\] must be a string, got 3"):
        rv.text_list(["a", 3])
    with pytest.raises(ValueError, match=r"texts\[0\] must be a non-empty string"):
        rv.text_list([" "], nonblank=True)


def test_a_local_copy_of_the_hub_dataset_loads_through_datasets(tmp_path, monkeypatch):
    """A clone of stanfordnlp/imdb's repository (README.md configs + parquet, tests/hub_standins.py) and a
    save_to_disk folder both load with their three splits; an aclImdb folder still goes to the aclImdb reader."""
    import datasets
    from hub_standins import write_imdb

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    clone = write_imdb(tmp_path / "imdb", {"train": 6, "test": 4, "unsupervised": 3})
    assert rv.is_hub_dataset_copy(clone) and rv.is_hub_dataset_copy(str(clone))
    r = rv.load_reviews(str(clone), profile=config.get_profile("gpu"))
    assert len(r) == 13 and r.labels[-3:].tolist() == [-1, -1, -1] and set(r.labels[:10].tolist()) <= {0, 1}
    assert r.source == "local copy of a hub dataset (imdb)" and all("<br" not in t for t in r.texts)

    saved = tmp_path / "saved"
    datasets.load_dataset(str(clone), cache_dir=str(tmp_path / "cache-of-this-test")).save_to_disk(str(saved))
    assert rv.is_hub_dataset_copy(saved)
    again = rv.load_reviews(profile=config.get_profile("gpu").replace(dataset_name=str(saved)))
    assert again.texts == r.texts and again.labels.tolist() == r.labels.tolist()

    other = write_imdb(tmp_path / "elsewhere" / "imdb", {"train": 9, "test": 4, "unsupervised": 3})  # same name
    assert len(rv.load_reviews(str(other), profile=config.get_profile("gpu"))) == 16  # its own rows, not a cache's

    acl = write_aclimdb(tmp_path / "acl", n_per_folder=1)
    assert not rv.is_hub_dataset_copy(acl) and not rv.is_hub_dataset_copy(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert not rv.is_hub_dataset_copy(tmp_path / "empty")
    with pytest.raises(ValueError, match="none of the splits"):
        datasets.Dataset.from_dict({"text": ["x"], "label": [1]}).to_parquet(
            str(tmp_path / "odd" / "validation.parquet")
        )
        rv.hub_reviews(tmp_path / "odd")
