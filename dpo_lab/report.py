"""Figures and headline numbers that notebooks hand to ``results/``.

Introduced in notebook 00. ``save_figure`` writes a PNG under ``<results>/figures/`` with the profile
in its file name and title; ``record`` stores one headline number (notebook, name, value, what it
means) in ``<results>/headlines.json``; ``write_report`` turns those into ``REPORT.md``.
Every number carries the profile that produced it, so cpu-profile numbers are never read as
gpt2-large numbers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from . import config as _config
from .runs import write_json


def save_figure(fig, name: str, profile: _config.Profile | None = None) -> Path:
    """Save ``fig`` as ``<results>/figures/<name>__<profile>.png`` and label it with the profile."""
    profile = profile or _config.get_profile()
    folder = _config.results_dir(profile) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    fig.text(0.995, 0.005, f"dpo_lab profile: {profile.name}", ha="right", va="bottom", fontsize=7, color="0.4")
    path = folder / f"{name}__{profile.name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _headlines_path(profile: _config.Profile) -> Path:
    return _config.results_dir(profile) / "headlines.json"


def record(notebook: str, name: str, value: float, meaning: str, profile: _config.Profile | None = None) -> dict:
    """Store a headline number for REPORT.md (replacing an earlier value of the same name)."""
    profile = profile or _config.get_profile()
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"headline {name!r} must be finite, got {value}")
    path = _headlines_path(profile)
    table = json.loads(path.read_text()) if path.exists() else {}
    entry = {"notebook": notebook, "name": name, "value": value, "meaning": meaning, "profile": profile.name}
    table[f"{notebook}/{name}"] = entry
    write_json(path, table)
    return entry


def write_report(profile: _config.Profile | None = None, timings: dict[str, float] | None = None) -> Path:
    """Write ``<results>/REPORT.md``: headline numbers per notebook and notebook run times."""
    profile = profile or _config.get_profile()
    path = _headlines_path(profile)
    table = json.loads(path.read_text()) if path.exists() else {}
    lines = [
        f"# dpo_lab results, profile `{profile.name}`",
        "",
        f"Profile: {profile.description}. Numbers below come from this profile only.",
        "",
    ]
    if timings:
        lines += ["| notebook | run time (s) |", "| --- | --- |"]
        lines += [f"| {nb} | {sec:.0f} |" for nb, sec in timings.items()] + [""]
    lines += ["| notebook | number | value | meaning |", "| --- | --- | --- | --- |"]
    for entry in sorted(table.values(), key=lambda e: (e["notebook"], e["name"])):
        lines.append(f"| {entry['notebook']} | {entry['name']} | {entry['value']:.4g} | {entry['meaning']} |")
    out = _config.results_dir(profile) / "REPORT.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
