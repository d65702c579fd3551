"""The student release: solution blocks become `raise NotImplementedError()`, nothing else changes."""

import difflib
import re

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


# nbgrader sources (make assignment): metadata generated from the markers, checked on every notebook.

ASSIGNMENT_NOTEBOOKS = [p for p in notebooks() if not p.name.startswith("00_")]


def test_every_notebook_that_teaches_is_an_assignment_and_00_is_not():
    assert assignments.assignment_notebooks() == ASSIGNMENT_NOTEBOOKS


@pytest.mark.parametrize("path", ASSIGNMENT_NOTEBOOKS, ids=lambda p: p.name)
def test_nbgrader_source_metadata(path):
    from nbgrader.nbgraderformat import MetadataValidator

    stored = nbformat.read(path, as_version=4)
    assert not any("nbgrader" in c.metadata for c in stored.cells), "stored notebooks carry no grader metadata"
    nb = assignments.nbgrader_notebook(path)
    MetadataValidator().validate_nb(nb)  # nbgrader's own schema (v3) and its unique grade_id rule
    assert [c.source for c in nb.cells] == [c.source for c in stored.cells], "the source keeps every cell as stored"
    meta = [c.metadata.get("nbgrader") for c in nb.cells]
    solutions = [i for i, m in enumerate(meta) if m and m["solution"]]
    graded = [i for i, m in enumerate(meta) if m and m["grade"]]
    assert len(solutions) >= 3, "at least 3 exercises in every notebook that teaches"
    assert graded == [i + 1 for i in solutions], "each solution cell is followed at once by its graded check"
    for i in solutions:
        assert assignments.BEGIN in nb.cells[i].source and meta[i]["grade"] is False and meta[i]["locked"] is False
        check = nb.cells[i + 1]
        assert check.cell_type == "code" and "checks." in check.source and assignments.BEGIN not in check.source
        assert meta[i + 1]["locked"] is True and meta[i + 1]["grade_id"] == meta[i]["grade_id"] + "_check"
    assert sum(m["points"] for m in meta if m and m["grade"]) == assignments.POINTS * len(solutions)
    ids = [m["grade_id"] for m in meta if m]
    assert len(ids) == len(set(ids))
    for cell, m in zip(nb.cells, meta):
        if cell.cell_type == "markdown":
            assert m == {
                "schema_version": 3,
                "grade_id": m["grade_id"],
                "solution": False,
                "grade": False,
                "locked": True,
            }
        elif m is None:
            assert assignments.BEGIN not in cell.source
        assert cell.get("outputs", []) == []


def _nb(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(s[3:]) if s.startswith("md:") else nbformat.v4.new_code_cell(s) for s in cells
    ]
    return nb


EXERCISE = "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION"
CHECK = "checks.check_function('f', f, lambda x: x, [(1.0,)])"


def test_exercises_names_each_exercise_by_the_function_it_defines():
    nb = _nb("md:# t", EXERCISE, CHECK, "x = 1\n### BEGIN SOLUTION\ny = 2\n### END SOLUTION", CHECK)
    assert assignments.exercises(nb) == [(1, 2, "f"), (3, 4, "exercise_2")]


@pytest.mark.parametrize(
    "cells, message",
    [
        ((EXERCISE,), "nb.ipynb, cell 0: the exercise is not followed by a code cell calling dpo_lab.checks"),
        ((EXERCISE, "md:text"), "cell 0: the exercise is not followed by a code cell"),
        ((EXERCISE, "print(1)"), "cell 0: the exercise is not followed by a code cell"),
        ((EXERCISE, CHECK + "\n" + EXERCISE), "cell 1: the check cell of cell 0 holds a solution itself"),
        ((EXERCISE, CHECK, EXERCISE, CHECK), "cell 2: a second exercise named 'f'"),
        (("### BEGIN SOLUTION\nx = 1", CHECK), "cell 0, line 1: ### BEGIN SOLUTION is never closed"),
    ],
)
def test_malformed_exercises_name_the_file_and_cell(cells, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        assignments.exercises(_nb(*cells), where="nb.ipynb")


@pytest.mark.parametrize(
    "cells, message",
    [
        (("md:# t", "x = 1"), "nb.ipynb: no exercise (no ### BEGIN SOLUTION block), nothing to grade"),
        (
            ("md:write `### END SOLUTION` here", EXERCISE, CHECK),
            "nb.ipynb, cell 0: a markdown cell mentions a solution",
        ),
    ],
)
def test_nbgrader_notebook_refuses_what_nbgrader_would_break_on(cells, message, tmp_path):
    path = tmp_path / "nb.ipynb"
    nbformat.write(_nb(*cells), path)
    with pytest.raises(ValueError, match=re.escape(message)):
        assignments.nbgrader_notebook(path)


def test_build_sources_writes_one_assignment_folder_per_notebook(tmp_path):
    written = assignments.build_sources(tmp_path / "course")
    assert [p.relative_to(tmp_path / "course").as_posix() for p in written] == [
        f"source/{p.stem}/{p.name}" for p in ASSIGNMENT_NOTEBOOKS
    ]
    for path in written:
        assert any(c.metadata.get("nbgrader", {}).get("grade") for c in nbformat.read(path, as_version=4).cells)
