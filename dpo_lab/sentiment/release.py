"""A released pi_SFT: the trained model in a folder that ships with the project, loaded instead of retrained.

Introduced in notebook 05. The DPO paper's authors never released their IMDb pi_SFT; training one costs a
2-core laptop most of a cpu-profile budget. A *release* is one trained pi_SFT, written once by
:func:`export_release` (``python -m dpo_lab.sentiment.release DEST``) and read back by
:func:`load_release`, which ``sft.sft_policy`` calls when the profile names one (``profile.sft_release``,
a folder under ``data/``) unless ``DPO_LAB_SFT=train`` asks for training from scratch.

==================  ==============================================================================
file                what it holds
==================  ==============================================================================
model.safetensors   the weights (``lm.save_model``: safetensors, no pickle), with ``config.json``
tokenizer files     the policy's tokenizer (``tokenizer.json`` ...)
metrics.jsonl       the training run's records: its loss curve and held-out perplexities
pairs.jsonl.gz      the preference pairs sampled from it (``sentiment.preference_data``), optional:
                    :func:`export_pairs` adds them, :func:`released_pairs` reads them back
release.json        ``recipe`` (every profile knob that shapes pi_SFT, :func:`recipe`), ``run`` (the
                    training run's id), ``result`` (its result: final perplexity ...), ``sha256`` of
                    the weights, ``command`` (how to rebuild it); ``pairs`` (file, checksum, count,
                    the pairs run and its settings) once pairs are added
==================  ==============================================================================

A release is only used for the profile it was made with: :func:`load_release` compares the recipe and
the weights' checksum and refuses (naming the file and the knobs) rather than silently using another
model. Loaded, it becomes a finished run of kind ``sft`` (``{"release": sha256, "recipe": ...}``), so
everything built on pi_SFT downstream (pairs, the sweep) is keyed to exactly these weights.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from .. import config as _config
from ..runs import open_run, write_json
from ..task import SFTPolicy

RELEASE_FILE = "release.json"
WEIGHTS_FILE = "model.safetensors"
PAIRS_FILE = "pairs.jsonl.gz"
#: ``DPO_LAB_SFT=train`` trains pi_SFT from scratch even where the profile names a release.
ENV_VAR = "DPO_LAB_SFT"
#: The profile knobs that shape pi_SFT (its data, tokenizer, sizes and training); a release is
#: valid for a profile only when all of them agree.
RECIPE_KNOBS = ("seed", "model_name", "tokenizer_name", "n_layer", "n_embd", "n_head", "n_positions",
                "dataset_name", "sft_steps", "sft_batch_size", "sft_lr", "sft_bpe_vocab", "sft_micro_batch_size",
                "sft_reviews")  # fmt: skip


def recipe(profile: _config.Profile) -> dict:
    """The knobs of ``profile`` that shape pi_SFT (:data:`RECIPE_KNOBS`), as a JSON-able dict.

    Introduced in notebook 05.
    """
    return {k: getattr(profile, k) for k in RECIPE_KNOBS}


def release_dir(profile: _config.Profile) -> Path | None:
    """``data/<profile.sft_release>`` of the checkout, or None when the profile names no release."""
    return _config.project_root() / "data" / profile.sft_release if profile.sft_release else None


def use_release(profile: _config.Profile) -> bool:
    """True when pi_SFT comes from the profile's release: it names one and ``DPO_LAB_SFT`` is not ``train``."""
    choice = os.environ.get(ENV_VAR, "").strip().lower()
    if choice not in ("", "release", "train"):
        raise ValueError(f"${ENV_VAR}: 'train' (retrain pi_SFT) or 'release' (the default), got {choice!r}")
    return bool(profile.sft_release) and choice != "train"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_release(sft: SFTPolicy, profile: _config.Profile, dest: str | Path, command: str = "") -> Path:
    """Write ``sft`` (trained with ``profile``) as a release in ``dest`` (module table); returns ``dest``.

    Introduced in notebook 05. An existing release in ``dest`` is replaced.
    """
    from ..lm import save_model

    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    save_model(sft.model, sft.tokenizer, dest)
    if not (dest / WEIGHTS_FILE).exists():
        raise RuntimeError(f"{dest}: save_model wrote no {WEIGHTS_FILE}")
    shutil.copy2(Path(sft.run.path) / "metrics.jsonl", dest / "metrics.jsonl")
    write_json(
        dest / RELEASE_FILE,
        {
            "recipe": recipe(profile),
            "profile": profile.name,
            "run": sft.run.id,
            "result": sft.result,
            "sha256": _sha256(dest / WEIGHTS_FILE),
            "command": command or f"python -m dpo_lab.sentiment.release {dest} --profile {profile.name}",
        },
    )
    return dest


def load_release(folder: str | Path, profile: _config.Profile) -> SFTPolicy:
    """The released pi_SFT in ``folder``, checked against ``profile`` (module docstring).

    Introduced in notebook 05. ValueError naming the file when the folder holds no release, when its
    recipe differs from the profile's (the differing knobs named) or when the weights do not match
    their checksum.
    """
    from ..lm import load_model, load_tokenizer

    folder = Path(folder)
    meta_file = folder / RELEASE_FILE
    if not meta_file.is_file():
        raise ValueError(f"{meta_file}: no pi_SFT release here (set {ENV_VAR}=train to train pi_SFT instead)")
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    want = recipe(profile)
    differ = sorted(k for k in want if meta.get("recipe", {}).get(k) != want[k])
    if differ:
        raise ValueError(
            f"{meta_file}: made with other settings than profile {profile.name!r} ({', '.join(differ)}); "
            f"rebuild it ({meta.get('command', 'see dpo_lab.sentiment.release')}) or set {ENV_VAR}=train"
        )
    if _sha256(folder / WEIGHTS_FILE) != meta["sha256"]:
        raise ValueError(f"{folder / WEIGHTS_FILE}: the weights do not match the checksum in {meta_file}")
    run = open_run("sft", {"release": meta["sha256"], "recipe": want, "trained_as": meta["run"]})
    if not run.finished:
        shutil.copy2(folder / "metrics.jsonl", run.path / "metrics.jsonl")
        run.finish(meta["result"])
    return SFTPolicy(load_model(folder, device=_config.device()), load_tokenizer(folder), folder, run, meta["result"])


def export_pairs(data, dest: str | Path) -> Path:
    """Add the preference pairs ``data`` (``sentiment.preference_data``, built from the release in
    ``dest``) to that release: ``pairs.jsonl.gz`` and its entry in ``release.json``. Returns the file.

    Introduced in notebook 05. ValueError naming the file when ``dest`` holds no release or the pairs
    were sampled from another pi_SFT.
    """
    dest = Path(dest)
    meta_file = dest / RELEASE_FILE
    if not meta_file.is_file():
        raise ValueError(f"{meta_file}: no pi_SFT release here to add pairs to")
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    policy = data.run.config["policy"]
    made_from = json.loads((data.run.path.parent / policy / "config.json").read_text(encoding="utf-8"))
    if made_from.get("release") != meta["sha256"]:
        raise ValueError(f"{meta_file}: the pairs of run {data.run.id} come from {policy}, not this release")
    out = dest / PAIRS_FILE
    with gzip.GzipFile(out, "wb", mtime=0) as fh:  # mtime 0: the same pairs give the same bytes
        fh.write(Path(data.path).read_bytes())
    settings = {k: v for k, v in data.run.config.items() if k != "policy"}
    meta["pairs"] = {"file": PAIRS_FILE, "sha256": _sha256(out), "n_pairs": data.result["n_pairs"],
                     "run": data.run.id, "settings": settings}  # fmt: skip
    write_json(meta_file, meta)
    return out


def released_pairs(profile: _config.Profile) -> list[dict] | None:
    """The preference pairs shipped with the profile's release (checked line by line and against
    their checksum), or None when the profile names no release or it ships no pairs.

    Introduced in notebook 05.
    """
    from .pairs import load_pairs

    folder = release_dir(profile)
    meta_file = folder / RELEASE_FILE if folder else None
    if meta_file is None or not meta_file.is_file():
        return None
    entry = json.loads(meta_file.read_text(encoding="utf-8")).get("pairs")
    if not entry:
        return None
    path = folder / entry["file"]
    if _sha256(path) != entry["sha256"]:
        raise ValueError(f"{path}: the pairs do not match the checksum in {meta_file}")
    return load_pairs(path)


def main(argv: list[str] | None = None) -> int:
    """``python -m dpo_lab.sentiment.release DEST [--profile P] [--pairs]``: train the profile's pi_SFT
    from scratch and write it as a release in DEST, with its preference pairs if asked."""
    import argparse

    from .sft import sft_policy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", help="the release folder to write (e.g. data/sft-cpu)")
    parser.add_argument("--profile", default=None, choices=sorted(_config.PROFILES))
    parser.add_argument("--pairs", action="store_true", help="also sample, score and ship its preference pairs")
    args = parser.parse_args(argv)
    profile = _config.get_profile(args.profile)
    os.environ[ENV_VAR] = "train"  # a release is made from a trained pi_SFT, never from another release
    sft = sft_policy(profile)
    folder = export_release(sft, profile, args.dest)
    print(f"released {sft.run.id} (held-out perplexity {sft.result['final_eval']['perplexity']:.1f}) to {folder}")
    if args.pairs:
        from .pairs import preference_data

        data = preference_data(profile, policy=load_release(folder, profile))  # sampled from the released weights
        print(f"added {data.result['n_pairs']} pairs: {export_pairs(data, folder)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
