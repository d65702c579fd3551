"""The package's shape: README's module map matches the tree, and the import contracts can fail."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dpo_lab"


def _layout_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Layout")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def test_readme_layout_names_every_module_and_nothing_else():
    named = set(re.findall(r"^\| `([\w/]+\.py)` \|", _layout_section(), re.M))
    actual = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    assert named == actual, f"README lacks {sorted(actual - named)}; README names missing {sorted(named - actual)}"


def test_no_module_is_over_500_lines():
    long = {
        p.relative_to(ROOT).as_posix(): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 500
    }
    assert not long, f"split these modules along their concepts: {long}"


def _lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """lint-imports on a copy of the package in ``tree`` (the contracts of pyproject.toml)."""
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(exe)],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory):
    tree = tmp_path_factory.mktemp("tree")
    shutil.copytree(PACKAGE, tree / "dpo_lab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


@pytest.mark.parametrize(
    "module, line, contract",
    [
        ("lm/model.py", "from ..sentiment import prompts", "engine imports no task"),
        ("lm/model.py", "from .. import config", "reads no project profile"),
        ("frontier.py", "import torch", "Analysis and plots train nothing"),
        ("sweep.py", "from . import plots", "training side imports the analysis"),
        ("bandits.py", "from .lm import sampling", "Theory"),
    ],
)
def test_a_broken_contract_fails_lint_imports(package_copy, module, line, contract):
    assert _lint_imports(package_copy).returncode == 0  # the copy as it is keeps every contract
    path = package_copy / "dpo_lab" / module
    original = path.read_text()
    try:
        path.write_text(original + f"\n{line}  # a forbidden import\n")
        out = _lint_imports(package_copy)
    finally:
        path.write_text(original)
    assert out.returncode != 0 and contract in out.stdout and "BROKEN" in out.stdout, out.stdout[-2000:]


def test_cited_background_lives_in_the_repository():
    """Docstrings and notebooks cite docs/background.md by section, never a file outside the repository."""
    root = Path(__file__).resolve().parent.parent
    sections = set(re.findall(r"^## (\d+)\.", (root / "docs" / "background.md").read_text(), re.M))
    tracked = subprocess.check_output(["git", "ls-files", "dpo_lab", "notebooks", "README.md", "data/README.md"],
                                      cwd=root, text=True).split()  # fmt: skip
    for name in tracked:
        text = (root / name).read_text(encoding="utf-8", errors="ignore")
        assert "REFERENCE.md" not in text, name
        for first, also in re.findall(r"docs/background\.md (\d+)(?:\.\d+)?(?:(?:-| and )(\d+))?", text):
            assert {first, also or first} <= sections, (name, first, also)
