"""make assignment / make grade: the nbgrader release and its autograding.

The proof both ways runs nbgrader itself (generate_assignment, autograde, generate_feedback) on two fast
notebooks, 01_optimal_policy and 03_dpo_on_bandits, in the smoke profile (about 80 s, three submissions
each): the instructor's version scores full points; the student release, unchanged, scores 0 exactly
at the exercises and every other cell runs; a deliberately wrong answer scores 0 on that exercise with
the check's FAIL line (got / expected) in the CSV, the autograded notebook and the feedback. The
metadata the grader reads is checked on every notebook in tests/test_assignments.py.
"""

import csv
import html
import re
import shutil

import nbformat
import pytest
from traitlets.config.loader import PyFileConfigLoader

from dpo_lab import assignments, grading

PROVED = ["01_optimal_policy", "03_dpo_on_bandits"]
# one wrong answer per proved notebook: (grade_id of the solution cell, wrong body replacing the stub)
WRONG = {
    "01_optimal_policy": ("my_optimal_policy", "return 0.5 * reward"),
    "03_dpo_on_bandits": ("my_dpo_loss", "return 0.0 * beta"),
}


def test_write_config_is_a_config_nbgrader_reads(tmp_path):
    path = grading.write_config(tmp_path / "course")
    cfg = PyFileConfigLoader(path.name, path=str(path.parent)).load_config()
    assert cfg.CourseDirectory.root == str((tmp_path / "course").resolve())
    assert cfg.CourseDirectory.db_url == f"sqlite:///{(tmp_path / 'course').resolve() / 'gradebook.db'}"
    assert cfg.ClearSolutions.code_stub == {"python": assignments.STUB}
    assert cfg.Execute.timeout == grading.CELL_TIMEOUT


def _fake_course(tmp_path):
    course = tmp_path / "course"
    (course / "source" / "01_x").mkdir(parents=True)
    (course / "source" / "01_x" / "01_x.ipynb").write_text("{}")
    return course


def test_collect_places_each_notebook_under_its_assignment(tmp_path):
    course = _fake_course(tmp_path)
    (tmp_path / "subs" / "ada" / "deep").mkdir(parents=True)
    (tmp_path / "subs" / "ada" / "deep" / "01_x.ipynb").write_text("{}")
    (tmp_path / "subs" / "ada" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "subs" / "ada" / ".ipynb_checkpoints" / "01_x.ipynb").write_text("{}")
    (tmp_path / "subs" / "bob").mkdir()
    assert grading.collect(tmp_path / "subs", course) == {"01_x": ["ada"]}
    assert (course / "submitted" / "ada" / "01_x" / "01_x.ipynb").exists()


@pytest.mark.parametrize(
    "layout, message",
    [
        (None, "is not a folder (one subfolder per student)"),
        ({}, "no released notebook in any student folder"),
        ({"ada/02_y.ipynb": "{}"}, "02_y.ipynb: not a released notebook (expected one of 01_x.ipynb)"),
        ({"a b/01_x.ipynb": "{}"}, "a b: a student folder name may hold letters"),
    ],
)
def test_collect_refuses_bad_submissions_naming_the_file(tmp_path, layout, message):
    course = _fake_course(tmp_path)
    subs = tmp_path / "subs"
    if layout is not None:
        subs.mkdir()
        for rel, text in layout.items():
            (subs / rel).parent.mkdir(parents=True, exist_ok=True)
            (subs / rel).write_text(text)
    with pytest.raises(ValueError, match=re.escape(message)):
        grading.collect(subs, course)


def _cell(*texts, error=None):
    outputs = [nbformat.v4.new_output("stream", name="stdout", text=t) for t in texts]
    if error:
        outputs.append(nbformat.v4.new_output("error", ename=error[0], evalue=error[1], traceback=[]))
    return nbformat.v4.new_code_cell("x", outputs=outputs)


def test_verdict_reads_the_check_line_with_got_and_expected():
    fail = "FAIL  f (case 0): max abs error 1 > tolerance;\n  got      [1.]\n  expected [2.]\n"
    assert grading.verdict(_cell("noise\n", fail, error=("AssertionError", "f"))) == (
        "FAIL  f (case 0): max abs error 1 > tolerance; | got      [1.] | expected [2.]"
    )
    assert grading.verdict(_cell("PASS  f: all 3 random cases\n")) == "PASS  f: all 3 random cases"
    assert grading.verdict(_cell(error=("NameError", "name 'f' is not defined"))) == (
        "NameError: name 'f' is not defined"
    )
    assert grading.verdict(_cell("just output\n")) == ""


def test_main_reports_bad_submissions_without_a_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(grading, "release", lambda course_dir: [])  # the real release is tested below
    assert grading.main(["grade", str(tmp_path / "missing"), "--course", str(tmp_path / "c")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def _submissions(course, root):
    """Three students per proved notebook: the instructor's source, the release unchanged, one wrong answer."""
    for name in PROVED:
        for student in ("instructor", "release", "wrong"):
            (root / student).mkdir(parents=True, exist_ok=True)
        shutil.copy(course / "source" / name / f"{name}.ipynb", root / "instructor")
        shutil.copy(course / "release" / name / f"{name}.ipynb", root / "release")
        nb = nbformat.read(course / "release" / name / f"{name}.ipynb", as_version=4)
        grade_id, body = WRONG[name]
        cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
        assert assignments.STUB in cell.source
        cell.source = cell.source.replace(assignments.STUB, body)
        nbformat.write(nb, root / "wrong" / f"{name}.ipynb")


def _errors(path):
    nb = nbformat.read(path, as_version=4)
    return {i for i, c in enumerate(nb.cells) if any(o.output_type == "error" for o in c.get("outputs", []))}, nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("DPO_LAB_PROFILE", "smoke")
    tmp = tmp_path_factory.mktemp("grading")
    course = tmp / "course"
    released = grading.release(course)
    _submissions(course, tmp / "submissions")
    csv_path = grading.grade(tmp / "submissions", course, tmp / "grades.csv")
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    return course, released, rows


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_the_release_is_make_students_release_with_nbgrader_metadata(graded):
    course, released, _ = graded
    assert [p.name for p in released] == [p.name for p in assignments.assignment_notebooks()]
    for path in released:
        release = nbformat.read(path, as_version=4)
        student = assignments.student_notebook(assignments.assignment_notebooks()[released.index(path)])
        assert [c.source for c in release.cells] == [c.source for c in student.cells], path.name
        for cell in release.cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade") or (meta.get("locked") and not meta.get("solution")):
                assert cell.metadata["editable"] is False and len(meta["checksum"]) == 32, path.name


def test_csv_columns_and_one_row_per_student_notebook_and_check(graded):
    _, _, rows = graded
    assert list(rows[0]) == grading.CSV_COLUMNS
    assert len(rows) == 3 * 3 * len(PROVED)  # students x checks x notebooks
    assert {r["grade_id"] for r in rows if r["notebook"] == "01_optimal_policy"} == {
        "my_optimal_policy_check",
        "my_log_partition_check",
        "objective_at_optimum_check",
    }


def test_the_instructors_version_scores_full_points_and_nothing_fails(graded):
    course, _, rows = graded
    mine = [r for r in rows if r["student"] == "instructor"]
    assert all(float(r["points"]) == float(r["max_points"]) == assignments.POINTS for r in mine), mine
    assert all(r["verdict"].startswith("PASS") for r in mine), mine
    for name in PROVED:
        errors, _ = _errors(course / "autograded" / "instructor" / name / f"{name}.ipynb")
        assert errors == set(), name


def test_the_release_scores_zero_exactly_at_the_exercises_and_runs_every_other_cell(graded):
    course, _, rows = graded
    mine = [r for r in rows if r["student"] == "release"]
    assert all(float(r["points"]) == 0 and "not implemented yet" in r["verdict"] for r in mine), mine
    for name in PROVED:
        errors, nb = _errors(course / "autograded" / "release" / name / f"{name}.ipynb")
        checks = {i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade")}
        assert errors == checks, (name, sorted(errors), sorted(checks))


def test_a_wrong_answer_scores_zero_with_the_checkers_message_in_the_feedback(graded):
    course, _, rows = graded
    for name, (grade_id, _) in WRONG.items():
        (row,) = [r for r in rows if r["student"] == "wrong" and r["grade_id"] == grade_id + "_check"]
        assert float(row["points"]) == 0 and row["verdict"].startswith("FAIL") and "expected" in row["verdict"], row
        assert "not implemented yet" not in row["verdict"], row
        feedback = (course / "feedback" / "wrong" / name / f"{name}.html").read_text()
        for line in row["verdict"].split(" | "):  # the FAIL line, then got / expected
            assert html.escape(line, quote=False) in feedback, line
        others = [r for r in rows if r["student"] == "wrong" and r["notebook"] == name and r is not row]
        assert all(float(r["points"]) == 0 and "not implemented yet" in r["verdict"] for r in others)


def test_a_check_cell_missing_from_a_submission_scores_zero_and_says_why(graded, tmp_path):
    """A student who submits a notebook without the release's metadata (the source copy, say): nbgrader finds
    no check cell there; the CSV says so rather than failing on the lookup."""
    course = tmp_path / "course"
    shutil.copytree(graded[0], course)
    name = PROVED[0]
    path = course / "autograded" / "instructor" / name / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    nbformat.write(nb, path)
    rows = grading.scores(course, {name: ["instructor"]})
    assert rows and all(r["verdict"] == grading.MISSING_CELL for r in rows)
