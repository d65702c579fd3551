"""The student release: solution blocks become `raise NotImplementedError()`, nothing else changes."""

import difflib

import nbformat
import pytest

from dpo_lab import assignments
from dpo_lab.reproduce import notebooks

SOURCE = """import numpy as np

def f(x):
    \"\"\"Double x.\"\"\"
    ### BEGIN SOLUTION
    y = 2 * x
    return y
    ### END SOLUTION

answer = 3"""


def test_strip_solutions_keeps_indentation_and_surroundings():
    out = assignments.strip_solutions(SOURCE)
    assert out == SOURCE.replace(
        "    ### BEGIN SOLUTION\n    y = 2 * x\n    return y\n    ### END SOLUTION", "    raise NotImplementedError()"
    )
    namespace = {}
    exec(out, namespace)
    with pytest.raises(NotImplementedError):
        namespace["f"](1)
    assert namespace["answer"] == 3


def test_strip_solutions_leaves_cells_without_markers_alone():
    assert assignments.strip_solutions("x = 1\nprint(x)") == "x = 1\nprint(x)"


@pytest.mark.parametrize(
    "source, message",
    [
        ("### BEGIN SOLUTION\nx = 1", "line 1: ### BEGIN SOLUTION is never closed"),
        ("x = 1\n### END SOLUTION", "line 2: ### END SOLUTION without"),
        (
            "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION",
            "line 2: ### BEGIN SOLUTION inside the block opened on line 1",
        ),
    ],
)
def test_unbalanced_markers_name_the_cell_and_line(source, message):
    with pytest.raises(ValueError, match="nb.ipynb, cell 4, " + message):
        assignments.strip_solutions(source, where="nb.ipynb, cell 4")


def _changed_lines_are_solution_blocks(source: str, student: str) -> bool:
    """Independent of strip_solutions: every difflib hunk must replace a whole marker block by the stub."""
    src, stu = source.split("\n"), student.split("\n")
    matcher = difflib.SequenceMatcher(a=src, b=stu, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        removed = [ln.strip() for ln in src[i1:i2]]
        added = [ln.strip() for ln in stu[j1:j2]]
        if removed.count(assignments.BEGIN) != len([a for a in added if a == assignments.STUB]):
            return False
        if any(a != assignments.STUB for a in added) or removed[-1] != assignments.END:
            return False
    return True


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name)
def test_student_notebook_differs_only_inside_solution_blocks(path, tmp_path):
    source = nbformat.read(path, as_version=4)
    student = assignments.student_notebook(path)
    nbformat.validate(student)
    assert len(source.cells) == len(student.cells)
    n_blocks = 0
    for src, stu in zip(source.cells, student.cells):
        assert src.cell_type == stu.cell_type
        if src.cell_type != "code":
            assert src.source == stu.source
            continue
        n_blocks += src.source.count(assignments.BEGIN)
        assert _changed_lines_are_solution_blocks(src.source, stu.source), src.source[:200]
        assert assignments.BEGIN not in stu.source and assignments.END not in stu.source
    if not path.name.startswith("00_"):
        assert n_blocks >= 1, f"{path.name} has no exercise"


def test_build_writes_every_student_notebook(tmp_path):
    written = assignments.build(tmp_path / "student")
    assert [p.name for p in written] == [p.name for p in notebooks()]
    for path in written:
        nbformat.validate(nbformat.read(path, as_version=4))


def test_module_entry_point(tmp_path, capsys):
    assert assignments.main(["--out", str(tmp_path / "s")]) == 0
    assert "wrote" in capsys.readouterr().out
