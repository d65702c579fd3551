import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402

from dpo_lab import config, report, reproduce  # noqa: E402


@pytest.fixture
def smoke(monkeypatch):
    monkeypatch.setenv("DPO_LAB_PROFILE", "smoke")
    return config.get_profile()


def test_save_figure_names_the_profile(smoke):
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    path = report.save_figure(fig, "00_demo")
    plt.close(fig)
    assert path.name == "00_demo__smoke.png" and path.stat().st_size > 1000
    assert any("profile: smoke" in t.get_text() for t in fig.texts)


def test_record_and_write_report(smoke):
    report.record("01", "max_error", 1e-10, "closed form vs optimiser")
    report.record("01", "max_error", 2e-10, "closed form vs optimiser")  # replaced, not duplicated
    out = report.write_report(timings={"01_optimal_policy.ipynb": 12.3})
    text = out.read_text()
    assert "profile `smoke`" in text and "| 01 | max_error | 2e-10 |" in text
    assert "| 01_optimal_policy.ipynb | 12 |" in text
    stored = json.loads((config.results_dir() / "headlines.json").read_text())
    assert list(stored) == ["01/max_error"]


def test_record_rejects_non_finite(smoke):
    with pytest.raises(ValueError, match="finite"):
        report.record("01", "bad", float("nan"), "")


def test_notebooks_are_in_reading_order(tmp_path):
    (tmp_path / "notebooks").mkdir()
    for name in ("02_b.ipynb", "00_a.ipynb", "notes.ipynb", "01_c.ipynb"):
        (tmp_path / "notebooks" / name).write_text("{}")
    assert [p.name for p in reproduce.notebooks(tmp_path)] == ["00_a.ipynb", "01_c.ipynb", "02_b.ipynb"]


def test_execute_writes_the_executed_copy(tmp_path, smoke):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 6 * 7\nprint(x)")])
    src = tmp_path / "01_t.ipynb"
    nbformat.write(nb, src)
    out = tmp_path / "out"
    out.mkdir()
    seconds = reproduce.execute(src, out, timeout=60)
    executed = nbformat.read(out / "01_t.ipynb", as_version=4)
    assert seconds > 0 and executed.cells[0].outputs[0]["text"].strip() == "42"


def test_execute_keeps_the_failing_copy(tmp_path, smoke):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("raise RuntimeError('boom')")])
    nbformat.write(nb, tmp_path / "01_f.ipynb")
    with pytest.raises(Exception, match="boom"):
        reproduce.execute(tmp_path / "01_f.ipynb", tmp_path, timeout=60)
    assert "boom" in json.dumps(nbformat.read(tmp_path / "01_f.ipynb", as_version=4).cells[0].outputs)


@pytest.mark.parametrize("name,expected", [("gpu", None), ("cpu", 7_200), ("smoke", 600)])
def test_reproduce_gives_each_cell_the_profiles_time(name, expected, monkeypatch, tmp_path):
    """The gpu sweep runs for hours in one cell: its profile sets no limit (0), the others a generous one."""
    from dpo_lab import reproduce

    seen = []
    monkeypatch.setenv("DPO_LAB_PROFILE", name)
    monkeypatch.setattr(reproduce, "execute", lambda path, out_dir, timeout: seen.append(timeout) or 0.0)
    assert reproduce.main(["--only", "00"]) == 0 and seen == [expected]
    assert reproduce.main(["--only", "00", "--timeout", "5"]) == 0 and seen[-1] == 5
    assert reproduce.main(["--only", "99"]) == 2  # names no notebook: said, not an empty report
