"""``make student`` and the nbgrader sources of ``make assignment``, both from the solution markers.

Introduced in notebook 00. In a source notebook each exercise solution sits between two marker
lines::

    def optimal_policy(reward, ref_policy, beta):
        ### BEGIN SOLUTION
        ...the solution...
        ### END SOLUTION

The student copy replaces everything from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` (markers
included) by ``raise NotImplementedError()`` at the marker's indentation; nothing outside the
markers changes, and outputs are cleared.

    python -m dpo_lab.assignments [--out build/student]

For a course, :func:`nbgrader_notebook` turns a stored notebook into an nbgrader *source*: the
stored notebooks stay free of grader metadata and readable, and the metadata is generated from the
markers, so it cannot drift from them. The grader is nbgrader rather than otter-grader because it
consumes exactly these markers (its ``ClearSolutions`` step) and grades a test cell by whether it
raises, which is what a ``checks`` cell does; otter-grader would need its own assignment format and a
test file per exercise. Per notebook (an assignment of its own, named after the notebook):

- the code cell holding a solution block: a solution cell, ``grade_id`` the name the cell defines;
- the code cell right after it (it calls ``checks``): an autograded test cell worth :data:`POINTS`,
  locked, ``grade_id`` the same name + ``_check``;
- every markdown cell (the story: derivations, claims, instructions): locked read-only.

:mod:`dpo_lab.grading` runs nbgrader on these sources (``make assignment``, ``make grade``).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from . import config as _config

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB = "raise NotImplementedError()"
#: Points of one exercise's check cell.
POINTS = 1
#: The metadata schema the generated cells follow (nbgrader.nbgraderformat.v3).
NBGRADER_SCHEMA = 3


def strip_solutions(source: str, where: str = "<cell>") -> str:
    """``source`` with each solution block replaced by ``raise NotImplementedError()``.

    Raises ValueError naming ``where`` and the line for an unbalanced or nested marker.
    """
    out: list[str] = []
    inside_since = None
    for lineno, line in enumerate(source.split("\n"), start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside_since is not None:
                raise ValueError(f"{where}, line {lineno}: {BEGIN} inside the block opened on line {inside_since}")
            inside_since = lineno
            out.append(line[: len(line) - len(line.lstrip())] + STUB)
        elif stripped == END:
            if inside_since is None:
                raise ValueError(f"{where}, line {lineno}: {END} without {BEGIN}")
            inside_since = None
        elif inside_since is None:
            out.append(line)
    if inside_since is not None:
        raise ValueError(f"{where}, line {inside_since}: {BEGIN} is never closed")
    return "\n".join(out)


def student_notebook(path: Path):
    """The student version of the notebook at ``path`` (an nbformat NotebookNode)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        cell.source = strip_solutions(cell.source, where=f"{path.name}, cell {i}")
        cell.outputs = []
        cell.execution_count = None
    nbformat.validate(nb)
    return nb


def exercises(nb, where: str = "<notebook>") -> list[tuple[int, int, str]]:
    """``(solution cell, check cell, name)`` for every exercise of a notebook (an nbformat NotebookNode).

    The name is the first function the solution cell defines (else ``exercise_K``). Raises ValueError
    naming ``where`` and the cell for unbalanced markers, a solution cell not followed by a code cell
    calling ``checks``, or two exercises sharing a name.
    """
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or BEGIN not in cell.source and END not in cell.source:
            continue
        strip_solutions(cell.source, where=f"{where}, cell {i}")  # balanced markers, else ValueError
        following = nb.cells[i + 1] if i + 1 < len(nb.cells) else None
        if following is None or following.cell_type != "code" or "checks." not in following.source:
            raise ValueError(f"{where}, cell {i}: the exercise is not followed by a code cell calling dpo_lab.checks")
        if BEGIN in following.source:
            raise ValueError(f"{where}, cell {i + 1}: the check cell of cell {i} holds a solution itself")
        defined = re.search(r"^def (\w+)", cell.source, re.M)
        name = defined.group(1) if defined else f"exercise_{len(found) + 1}"
        if name in {n for _, _, n in found}:
            raise ValueError(f"{where}, cell {i}: a second exercise named {name!r}")
        found.append((i, i + 1, name))
    return found


def _nbgrader(grade_id: str, solution: bool = False, grade: bool = False, locked: bool = False) -> dict:
    meta = {"schema_version": NBGRADER_SCHEMA, "grade_id": grade_id}
    meta.update(solution=solution, grade=grade, locked=locked)
    if grade:
        meta["points"] = POINTS
    return meta


def nbgrader_notebook(path: Path):
    """The nbgrader source version of the notebook at ``path`` (solutions in, outputs cleared), with
    the cell metadata described in the module docstring. ValueError (see :func:`exercises`) names the
    file and cell of a malformed exercise, or says the notebook has none."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    found = exercises(nb, where=path.name)
    if not found:
        raise ValueError(f"{path.name}: no exercise (no {BEGIN} block), nothing to grade")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        elif "BEGIN SOLUTION" in cell.source or "END SOLUTION" in cell.source:
            # nbgrader's ClearSolutions would stub the text, and refuse a cell not marked as a solution
            raise ValueError(f"{path.name}, cell {i}: a {cell.cell_type} cell mentions a solution marker")
        if cell.cell_type == "markdown":
            story_id = re.sub(r"[^A-Za-z0-9_-]", "_", cell.get("id") or f"cell{i}")
            cell.metadata["nbgrader"] = _nbgrader(f"story_{story_id}", locked=True)
    for solution, check, name in found:
        nb.cells[solution].metadata["nbgrader"] = _nbgrader(name, solution=True)
        nb.cells[check].metadata["nbgrader"] = _nbgrader(f"{name}_check", grade=True, locked=True)
    nbformat.validate(nb)
    return nb


def assignment_notebooks(root: Path | None = None) -> list[Path]:
    """The numbered notebooks that hold at least one exercise: one nbgrader assignment each."""
    import nbformat

    from .reproduce import notebooks

    return [p for p in notebooks(root, required=True) if exercises(nbformat.read(p, as_version=4), where=p.name)]


def build_sources(course_dir: Path) -> list[Path]:
    """Write ``course_dir/source/<notebook stem>/<notebook>.ipynb`` for every assignment notebook."""
    import nbformat

    written = []
    for path in assignment_notebooks():
        target = Path(course_dir) / "source" / path.stem / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nbgrader_notebook(path), target)
        written.append(target)
    return written


def build(out_dir: Path | None = None) -> list[Path]:
    """Write the student copy of every numbered notebook to ``out_dir`` (default build/student)."""
    import nbformat

    from .reproduce import notebooks

    sources = notebooks(required=True)  # FileNotFoundError outside a checkout: nothing to release
    out_dir = Path(out_dir) if out_dir else _config.project_root() / "build" / "student"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sources:
        target = out_dir / path.name
        nbformat.write(student_notebook(path), target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write the student release of every notebook")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default build/student)")
    args = parser.parse_args(argv)
    try:
        written = build(args.out)
    except FileNotFoundError as err:
        print(f"dpo_lab assignments: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
