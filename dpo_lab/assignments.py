"""``make student``: the student release of every notebook (nbgrader convention).

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
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import config as _config

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB = "raise NotImplementedError()"


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
