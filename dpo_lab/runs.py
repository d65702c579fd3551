"""The run store: what makes notebooks cheap to re-run.

Introduced in notebook 00. A run is identified by a hash of its full configuration (a JSON-able
dict). Its folder ``<results>/runs/<kind>-<hash12>/`` holds

================  =====================================================================
config.json       the configuration, exactly as hashed
metrics.jsonl     one JSON record per line, appended and flushed as training goes
checkpoint.pt     the latest resumable state (``torch.save``, read back ``weights_only``), replaced atomically
artifacts/        anything else the run keeps (a saved model, a JSONL of samples ...)
result.json       written last, atomically: its presence means "finished"
.lock             held (``flock``) by the process computing the run, from ``claim()`` to ``finish()``
================  =====================================================================

Asking for a finished run returns its stored result without recomputing; an interrupted run resumes
from its last checkpoint, dropping the metric records logged after it (they are recomputed, and with
a fixed seed on CPU recomputed identically). The store knows nothing about models: a checkpoint is
whatever dict the caller hands it.

Typical use::

    run = open_run("sft", config)
    if run.claim():                       # False when finished (by us, or by a process we waited for)
        state = run.resume()              # None on a fresh run
        ...train, run.log({...}), run.save_checkpoint({...}, step)...
        run.finish({"perplexity": ppl})
    run.result()
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import config as _config


def config_hash(cfg: dict) -> str:
    """sha256 of the canonical JSON of ``cfg`` (sorted keys, tuples as lists): the identity of a run
    (its folder is ``<kind>-<first 12 hex digits>``)."""
    return hashlib.sha256(_canonical(cfg).encode()).hexdigest()


def _canonical(cfg: dict) -> str:
    if not isinstance(cfg, dict):
        raise TypeError(f"run config must be a dict, got {type(cfg).__name__}")
    try:
        return json.dumps(cfg, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"run config must be JSON-serialisable with finite numbers: {err}") from err


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write to a temp file in the same folder, fsync, then os.replace: readers see old or new, never half.

    ``write(tmp_path)`` writes the content. Introduced in notebook 00."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_json(path: Path, obj: Any) -> None:
    """:func:`atomic_write` of ``obj`` as indented JSON with sorted keys. Introduced in notebook 00."""
    atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n"))


class Run:
    """One stored run. Create it with :func:`open_run`."""

    def __init__(self, path: Path, kind: str, cfg: dict):
        self.path = path
        self.kind = kind
        self.config = cfg

    def __repr__(self) -> str:
        state = "finished" if self.finished else "unfinished"
        return f"Run({self.path.name}, {state})"

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def finished(self) -> bool:
        return (self.path / "result.json").exists()

    # --- metrics -------------------------------------------------------------------------
    def log(self, record: dict) -> None:
        """Append one record to metrics.jsonl and flush it to disk at once."""
        line = json.dumps(record, sort_keys=True)
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def metrics(self) -> list[dict]:
        """All logged records, in order. A torn last line (a crash mid-write) is ignored; a malformed
        line elsewhere is an error naming the file and line."""
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
        records = []
        for i, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                if i == len(lines):
                    break
                raise ValueError(f"{path}, line {i}: malformed metrics record ({err})") from err
        return records

    # --- computing it once ----------------------------------------------------------------
    def claim(self) -> bool:
        """Hold this run for this process until it finishes; False when, after waiting for another
        process that held it, the run turned out finished (load it, do not compute it again). The
        trainers claim a run before they start or resume it, so a run started twice at once (two
        notebooks, two shells) is trained once. Reentrant within a process."""
        if self.finished:
            return False
        _claim(self.path)
        if self.finished:  # computed by the process we waited for
            _release(self.path)
            return False
        return True

    # --- checkpoints ---------------------------------------------------------------------
    def save_checkpoint(self, state: dict, step: int) -> None:
        """Atomically replace checkpoint.pt with ``state`` (any torch.save-able dict) taken after ``step``."""
        import torch

        payload = {"step": int(step), "state": state}
        atomic_write(self.path / "checkpoint.pt", lambda p: torch.save(payload, p))

    def checkpoint(self) -> tuple[int, dict] | None:
        """The last checkpoint as ``(step, state)``, or None when there is none; reads only (the other
        ranks of a ``torchrun`` run load rank 0's checkpoint this way, after rank 0's :meth:`resume`).
        Read with ``weights_only=True``: tensors, numbers, strings and containers of them, never
        arbitrary pickled objects, so a run folder from someone else cannot run code here."""
        import torch

        ckpt = self.path / "checkpoint.pt"
        try:
            payload = torch.load(ckpt, map_location="cpu", weights_only=True) if ckpt.exists() else None
        except Exception as err:  # noqa: BLE001 - torch raises UnpicklingError and others for refused content
            raise ValueError(f"{ckpt}: not a checkpoint of plain tensors and numbers, refused ({err})") from None
        return (payload["step"], payload["state"]) if payload else None

    def resume(self) -> tuple[int, dict] | None:
        """The last checkpoint as ``(step, state)`` (:meth:`checkpoint`), or None for a fresh start.

        Metric records logged after that checkpoint (records whose ``step`` is larger) are dropped,
        since the resumed run logs them again; with no checkpoint all records are dropped. Temporary
        files that a process killed in the middle of a write left behind are removed.
        """
        for stale in self.path.glob(".*.tmp"):  # atomic_write's temporaries of a killed writer
            stale.unlink(missing_ok=True)
        resumed = self.checkpoint()
        last = resumed[0] if resumed else None
        kept = [r for r in self.metrics() if last is not None and r.get("step", 0) <= last]
        lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept)
        atomic_write(self.path / "metrics.jsonl", lambda p: p.write_text(lines, encoding="utf-8"))
        return resumed

    # --- results -------------------------------------------------------------------------
    def artifact(self, name: str) -> Path:
        """Path of a named artifact inside the run (the folder is created; the file is not)."""
        folder = self.path / "artifacts"
        folder.mkdir(exist_ok=True)
        return folder / name

    def finish(self, result: dict, keep_checkpoint: bool = False) -> dict:
        """Mark the run finished with ``result`` (JSON-able). The checkpoint is removed unless kept."""
        _canonical(result)
        write_json(self.path / "result.json", result)
        if not keep_checkpoint:
            (self.path / "checkpoint.pt").unlink(missing_ok=True)
        _release(self.path)
        return result

    def result(self) -> dict:
        """The stored result of a finished run."""
        path = self.path / "result.json"
        if not path.exists():
            raise RuntimeError(f"run {self.id} has not finished (no {path})")
        return json.loads(path.read_text(encoding="utf-8"))


#: The folder that :func:`runs_root` falls back to inside :func:`profile_runs` (innermost last).
_DEFAULT_ROOTS: list[Path] = []


def runs_root(root: str | Path | None = None) -> Path:
    """``root``; else, inside :func:`profile_runs`, that profile's folder; else ``<results_dir()>/runs``
    (the profile of ``$DPO_LAB_PROFILE``)."""
    if root is not None:
        path = Path(root)
    elif _DEFAULT_ROOTS:
        path = _DEFAULT_ROOTS[-1]
    else:
        path = _config.results_dir() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def profile_runs(profile: _config.Profile):
    """Inside it, runs opened or listed without a ``root`` live in ``<results_dir(profile)>/runs``: the
    sweep of a profile object files its runs (and the task's cached ones) under that profile's results,
    whatever ``$DPO_LAB_PROFILE`` says. Introduced in notebook 06."""
    _DEFAULT_ROOTS.append(_config.results_dir(profile) / "runs")
    try:
        yield _DEFAULT_ROOTS[-1]
    finally:
        _DEFAULT_ROOTS.pop()


#: Run folders this process holds the lock of (path -> open lock file), until the run finishes.
_HELD: dict[Path, object] = {}


def _claim(path: Path) -> None:
    """Hold the lock of the unfinished run in ``path`` until it finishes (or this process ends), waiting
    while another process holds it: two notebooks or shells that start the same run do not both train
    it, the second finds it finished. Reentrant within a process. POSIX ``flock``; elsewhere no lock."""
    if path in _HELD:
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        return
    handle = open(path / ".lock", "a")  # noqa: SIM115 - held open as long as the lock is
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"run {path.name} is being computed by another process: waiting for it", file=sys.stderr, flush=True)
        fcntl.flock(handle, fcntl.LOCK_EX)
    _HELD[path] = handle


def _release(path: Path) -> None:
    handle = _HELD.pop(path, None)
    if handle is not None:
        handle.close()  # closing the file releases its flock


def open_run(kind: str, cfg: dict, root: str | Path | None = None) -> Run:
    """The run of ``kind`` with configuration ``cfg``: created if new, else the stored one."""
    if not kind or not kind.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"run kind must be a short alphanumeric name, got {kind!r}")
    path = runs_root(root) / f"{kind}-{config_hash(cfg)[:12]}"
    cfg = json.loads(_canonical(cfg))
    stored = path / "config.json"
    if stored.exists():
        existing = json.loads(stored.read_text(encoding="utf-8"))
        if existing != cfg:
            raise RuntimeError(f"{stored} holds another configuration than its hash says; move the folder away")
    else:
        path.mkdir(parents=True, exist_ok=True)
        write_json(stored, cfg)
    return Run(path, kind, cfg)


def cached(kind: str, cfg: dict, compute: Callable[[Run], dict], root: str | Path | None = None) -> dict:
    """The stored result of the run, computing it with ``compute(run)`` only if it never finished."""
    run = open_run(kind, cfg, root)
    if not run.finished:
        run.finish(compute(run))
    return run.result()


def list_runs(kind: str | None = None, root: str | Path | None = None) -> list[Run]:
    """Every stored run (of one kind), oldest folder name first."""
    base = runs_root(root)
    out = []
    for path in sorted(base.iterdir()):
        cfg_path = path / "config.json"
        if not path.is_dir() or not cfg_path.exists():
            continue
        run_kind = path.name.rsplit("-", 1)[0]
        if kind is None or run_kind == kind:
            out.append(Run(path, run_kind, json.loads(cfg_path.read_text(encoding="utf-8"))))
    return out
