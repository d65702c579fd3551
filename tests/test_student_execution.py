"""Executing a student notebook fails exactly at its exercises.

Exercises are self-contained (the Exercises section imports what it uses), so an instructor can hand
them out alone and this test only has to execute the notebook's setup cell and its Exercises section,
not the whole notebook (nbmake already executes every source notebook in full):
- the source version of that section runs without error;
- in the student version each exercise (its solution cell or the check cell right after it) fails with
  NotImplementedError (or the check's AssertionError saying "not implemented yet"), and no other cell fails.
"""

import re

import nbformat
import pytest
from nbclient import NotebookClient

from dpo_lab import assignments
from dpo_lab.reproduce import notebooks

EXERCISE_NOTEBOOKS = [p for p in notebooks() if not p.name.startswith("00_")]


def _exercise_section(nb):
    """The first code cell (config.setup) plus every cell from the '## Exercises' heading on."""
    start = next(
        (
            i
            for i, c in enumerate(nb.cells)
            if c.cell_type == "markdown" and re.search(r"^## Exercises", c.source, re.M)
        ),
        None,
    )
    assert start is not None, "no '## Exercises' section"
    setup = next(c for c in nb.cells if c.cell_type == "code")
    nb.cells = [setup] + nb.cells[start:]
    return nb


def _run(nb, path):
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", allow_errors=True, resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    failed = {}
    for i, cell in enumerate(nb.cells):
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            failed[i] = (errors[0]["ename"], errors[0]["evalue"][:200], cell.source[:160])
    return failed


@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=lambda p: p.name)
def test_exercises_fail_exactly_in_the_student_copy(path, monkeypatch):
    monkeypatch.setenv("DPO_LAB_PROFILE", "smoke")
    source = _exercise_section(nbformat.read(path, as_version=4))
    assert _run(source, path) == {}, "the Exercises section must run on its own (self-contained)"

    student = _exercise_section(assignments.student_notebook(path))
    exercises = {i for i, c in enumerate(student.cells) if c.cell_type == "code" and assignments.STUB in c.source}
    assert exercises, "no exercise in the Exercises section"
    failed = _run(student, path)
    allowed = exercises | {i + 1 for i in exercises}
    assert set(failed) <= allowed, {i: failed[i] for i in set(failed) - allowed}
    for i in exercises:
        errors = [failed[j] for j in (i, i + 1) if j in failed]
        assert errors, f"exercise cell {i} ran without error in the student copy"
        ename, evalue, _ = errors[0]
        assert ename == "NotImplementedError" or "not implemented yet" in evalue, errors[0]
