"""The conventions every notebook follows (issue 2, item 5), checked on the stored sources."""

import json
import re

import pytest

from dpo_lab import assignments
from dpo_lab.reproduce import notebooks

NOTEBOOKS = notebooks()
MAX_CODE_LINES = 30  # short cells: a reader sees one idea and its check at a time


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def _src(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_notebooks_exist_in_reading_order():
    names = [p.name for p in NOTEBOOKS]
    assert names and names[0].startswith("00_")
    numbers = [int(n[:2]) for n in names]
    assert numbers == sorted(set(numbers)), "notebook numbers must be unique"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_clean(path):
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name)
    for i, cell in enumerate(_load(path)["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"cell {i} has outputs"
            assert cell.get("execution_count") is None, f"cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_skeleton(path):
    cells = _load(path)["cells"]
    first = _src(cells[0])
    assert cells[0]["cell_type"] == "markdown" and first.lstrip().startswith(f"# {path.name[:2]} · ")  # its number
    assert re.search(r"learning goals", first, re.I), "title cell lists learning goals"
    assert re.search(r"prerequisites", first, re.I), "title cell lists prerequisites"
    code = [c for c in cells if c["cell_type"] == "code"]
    assert "config.setup()" in _src(code[0]), "first code cell prints profile and device"
    markdown = "\n".join(_src(c) for c in cells if c["cell_type"] == "markdown")
    if not path.name.startswith("00_"):
        assert re.search(r"^## Summary", markdown, re.M)
        assert re.search(r"^## Exercises", markdown, re.M)
    for i, cell in enumerate(code):
        n_lines = len(_src(cell).strip().splitlines())
        assert n_lines <= MAX_CODE_LINES, f"code cell {i} has {n_lines} lines"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exercises_are_followed_by_a_check(path):
    cells = _load(path)["cells"]
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code" and assignments.BEGIN in _src(cell):
            assert _src(cell).count(assignments.BEGIN) == _src(cell).count(assignments.END)
            following = cells[i + 1] if i + 1 < len(cells) else None
            assert following is not None and following["cell_type"] == "code", f"cell {i}: no check cell after it"
            assert "checks.check_" in _src(following), f"cell {i + 1} should call a dpo_lab.checks function"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_widgets_run_headless(path):
    code = "\n".join(_src(c) for c in _load(path)["cells"] if c["cell_type"] == "code")
    assert "interact_manual" not in code


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_claims_are_asserted(path):
    if path.name.startswith("00_"):
        return
    code = "\n".join(_src(c) for c in _load(path)["cells"] if c["cell_type"] == "code")
    assert len(re.findall(r"\bassert\b|assert_allclose|assert_close|testing\.", code)) >= 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_control_characters_in_sources(path):
    """A literal backspace once stood where LaTeX's \\beta was meant ("\\b" in a Python string)."""
    for i, cell in enumerate(_load(path)["cells"]):
        bad = sorted({repr(ch) for ch in _src(cell) if ord(ch) < 32 and ch not in "\n\t"})
        assert not bad, f"cell {i} holds control characters {bad}"
