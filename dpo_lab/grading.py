"""``make assignment`` and ``make grade``: the course release and its autograding, with nbgrader.

Introduced in notebook 00. Both work in a self-contained nbgrader course folder (default
``build/course``), rebuilt on every call from the stored notebooks, so the release and the grader
never disagree with the solutions and checks in ``notebooks/``:

- ``source/<nb>/<nb>.ipynb``: the nbgrader sources :func:`dpo_lab.assignments.nbgrader_notebook`
  generates from the ``### BEGIN SOLUTION`` markers (one assignment per notebook with exercises);
- ``release/<nb>/<nb>.ipynb``: the student release, made by ``nbgrader generate_assignment`` (solutions
  replaced by ``raise NotImplementedError()``, check and story cells locked, checksums);
- ``submitted/``, ``autograded/``, ``feedback/``: filled by :func:`grade`, which copies a folder of
  submissions in, runs ``nbgrader autograde`` and ``nbgrader generate_feedback`` and writes a CSV with
  one row per student, notebook and exercise check (``grade_id``): points, max points and the check's
  verdict line (``FAIL  ...: what was expected, what it got``).

nbgrader, not otter-grader: see :mod:`dpo_lab.assignments`. Submissions are executed in the smoke
profile unless ``DPO_LAB_PROFILE`` says otherwise (the exercises do not depend on the profile; the
story cells only have to run), with their results in the course folder.

    python -m dpo_lab.grading release [--course build/course]
    python -m dpo_lab.grading grade SUBMISSIONS [--course build/course] [--csv build/course/grades.csv]
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from . import assignments
from . import config as _config

#: Seconds nbgrader lets one cell run while autograding (its default, 30, is too short for training cells).
CELL_TIMEOUT = 600
CSV_COLUMNS = ["student", "notebook", "grade_id", "points", "max_points", "verdict"]

CONFIG = """# Written by dpo_lab.grading on every make assignment / make grade: edit dpo_lab/grading.py instead.
c = get_config()  # noqa: F821 - nbgrader's config loader provides it
c.CourseDirectory.root = {root!r}
c.CourseDirectory.course_id = "dpo_lab"
c.CourseDirectory.db_url = {db_url!r}
# the same stub as make student, so both releases read the same
c.ClearSolutions.code_stub = {{"python": {stub!r}}}
c.Execute.timeout = {timeout}
"""


def default_course_dir() -> Path:
    """``build/course`` in the checkout."""
    return _config.project_root() / "build" / "course"


def write_config(course_dir: Path) -> Path:
    """Write ``course_dir/nbgrader_config.py`` (course root, gradebook, stub, cell timeout)."""
    course_dir = Path(course_dir).resolve()
    course_dir.mkdir(parents=True, exist_ok=True)
    path = course_dir / "nbgrader_config.py"
    db_url = f"sqlite:///{course_dir / 'gradebook.db'}"
    path.write_text(CONFIG.format(root=str(course_dir), db_url=db_url, stub=assignments.STUB, timeout=CELL_TIMEOUT))
    return path


def _search_path() -> str:
    """PATH with this interpreter's bin folder first: nbgrader's gradebook runs ``alembic`` from PATH,
    which a virtual environment used without activating it does not hold."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def _nbgrader(course_dir: Path, *args: str) -> None:
    """Run ``nbgrader ARGS`` in the course folder; RuntimeError with nbgrader's log when it fails."""
    env = dict(os.environ, MPLBACKEND="Agg", PATH=_search_path())
    env.setdefault(_config.ENV_VAR, "smoke")
    env[_config.RESULTS_ENV_VAR] = str(Path(course_dir).resolve() / "results")
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=course_dir, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")


def release(course_dir: Path | None = None) -> list[Path]:
    """Rebuild the course folder: nbgrader sources, config, gradebook and the student release made by
    ``nbgrader generate_assignment``. Returns the released notebooks."""
    course_dir = Path(course_dir) if course_dir else default_course_dir()
    if course_dir.exists():
        shutil.rmtree(course_dir)
    sources = assignments.build_sources(course_dir)
    write_config(course_dir)
    _nbgrader(course_dir, "generate_assignment", "*", "--force")  # the id is a glob: every assignment at once
    released = [course_dir / "release" / source.parent.name / source.name for source in sources]
    missing = [str(p) for p in released if not p.exists()]
    if missing:
        raise RuntimeError(f"nbgrader generate_assignment wrote none of {missing}")
    return released


def collect(submissions: Path, course_dir: Path) -> dict[str, list[str]]:
    """Copy ``submissions/<student>/**/<notebook>.ipynb`` to nbgrader's
    ``course_dir/submitted/<student>/<assignment>/``; returns the students of each assignment.

    ValueError names the file or folder: a notebook that is not a released one, a student folder name
    nbgrader cannot use, or a folder without any student notebook.
    """
    submissions = Path(submissions)
    if not submissions.is_dir():
        raise ValueError(f"submissions: {submissions} is not a folder (one subfolder per student)")
    known = {p.name: p.parent.name for p in sorted((Path(course_dir) / "source").glob("*/*.ipynb"))}
    by_assignment: dict[str, list[str]] = {}
    for student_dir in sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith(".")):
        student = student_dir.name
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", student):
            raise ValueError(f"{student_dir}: a student folder name may hold letters, digits, '_', '-', '.'")
        for nb in sorted(student_dir.rglob("*.ipynb")):
            if ".ipynb_checkpoints" in nb.parts:
                continue
            if nb.name not in known:
                raise ValueError(f"{nb}: not a released notebook (expected one of {', '.join(known)})")
            target = Path(course_dir) / "submitted" / student / known[nb.name] / nb.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(nb, target)
            by_assignment.setdefault(known[nb.name], []).append(student)
    if not by_assignment:
        raise ValueError(f"submissions: no released notebook in any student folder of {submissions}")
    return by_assignment


#: The verdict of a check cell that the submitted notebook no longer holds as one (nbgrader scores it 0).
MISSING_CELL = (
    "check cell not found in the submission (its nbgrader metadata is gone: was the released notebook submitted?)"
)


def verdict(cell) -> str:
    """The check's verdict in an autograded cell: its last ``PASS``/``FAIL`` line with the indented lines
    that follow it (got / expected), joined by " | "; else the error the cell raised; else ""."""
    text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
    lines = text.splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.startswith(("PASS  ", "FAIL  "))]
    if starts:
        end = starts[-1] + 1
        while end < len(lines) and lines[end].startswith(" "):
            end += 1
        return " | ".join(ln.strip() for ln in lines[starts[-1] : end])
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output['ename']}: {output['evalue']}"[:300]
    return ""


def scores(course_dir: Path, by_assignment: dict[str, list[str]]) -> list[dict]:
    """One row (see :data:`CSV_COLUMNS`) per student, notebook and check cell, read from nbgrader's
    gradebook; the verdict from the autograded notebook."""
    import nbformat
    from nbgrader.api import Gradebook

    course_dir = Path(course_dir).resolve()
    rows = []
    saved_path, os.environ["PATH"] = os.environ.get("PATH", ""), _search_path()
    try:
        gradebook = Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}")
    finally:
        os.environ["PATH"] = saved_path
    with gradebook:
        for assignment, students in sorted(by_assignment.items()):
            for student in students:
                path = course_dir / "autograded" / student / assignment / f"{assignment}.ipynb"
                cells = [c for c in nbformat.read(path, as_version=4).cells if "nbgrader" in c.metadata]
                order = [c.metadata["nbgrader"]["grade_id"] for c in cells]
                submitted = gradebook.find_submission_notebook(assignment, assignment, student)
                # a check cell the submission lost (its metadata stripped: not the released notebook) sorts last
                where = {name: i for i, name in enumerate(order)}
                for grade in sorted(submitted.grades, key=lambda g: (where.get(g.name, len(order)), g.name)):
                    found = verdict(cells[where[grade.name]]) if grade.name in where else MISSING_CELL
                    rows.append(
                        {
                            "student": student,
                            "notebook": assignment,
                            "grade_id": grade.name,
                            "points": grade.score,
                            "max_points": grade.max_score,
                            "verdict": found,
                        }
                    )
    return rows


def grade(submissions: Path, course_dir: Path | None = None, csv_path: Path | None = None) -> Path:
    """Autograde a folder of submissions (one subfolder per student holding released notebooks, any
    depth) with nbgrader, write the feedback (``course_dir/feedback/<student>/<notebook>/``) and the CSV
    of points per exercise (default ``course_dir/grades.csv``, see :data:`CSV_COLUMNS`); returns its path.
    The course folder is rebuilt first (:func:`release`)."""
    course_dir = Path(course_dir) if course_dir else default_course_dir()
    release(course_dir)
    by_assignment = collect(submissions, course_dir)
    _nbgrader(course_dir, "autograde", "*", "--force")
    _nbgrader(course_dir, "generate_feedback", "*", "--force")
    csv_path = Path(csv_path) if csv_path else course_dir / "grades.csv"
    rows = scores(course_dir, by_assignment)  # before the CSV is opened: a failure leaves an earlier CSV whole
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the nbgrader course release and its autograding")
    sub = parser.add_subparsers(dest="command", required=True)
    rel = sub.add_parser("release", help="make assignment: nbgrader sources and the student release")
    rel.add_argument("--course", type=Path, default=None, help="course folder (default build/course)")
    gra = sub.add_parser("grade", help="make grade: autograde a folder of submissions into a CSV")
    gra.add_argument("submissions", type=Path, help="one subfolder per student, holding released notebooks")
    gra.add_argument("--course", type=Path, default=None, help="course folder (default build/course)")
    gra.add_argument("--csv", type=Path, default=None, help="the CSV of points (default <course>/grades.csv)")
    args = parser.parse_args(argv)
    try:
        if args.command == "release":
            for path in release(args.course):
                print(f"released {path}")
        else:
            print(f"wrote {grade(args.submissions, args.course, args.csv)}")
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"dpo_lab grading: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
