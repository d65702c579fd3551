"""make book: the config lists every notebook; the build and the screenshot refuse what they cannot use.

The build itself (every notebook executed, then jupyter-book; about 2 min 10 s) is not part of make test;
README's "For instructors" gives its time and the screenshot it was checked by.
"""

import pytest

from dpo_lab import book
from dpo_lab.reproduce import notebooks


def test_the_table_of_contents_lists_every_numbered_notebook_in_order():
    assert book.toc_files() == [f"notebooks/{p.stem}" for p in notebooks()]


def test_the_front_page_links_every_notebook_and_the_config_executes_nothing():
    intro = (book.book_dir() / "intro.md").read_text()
    for path in notebooks():
        assert f"(notebooks/{path.name})" in intro, path.name
    config = (book.book_dir() / "_config.yml").read_text()
    assert 'execute_notebooks: "off"' in config  # dpo_lab.book executes them first, in the smoke profile
    assert "sphinx-mathjax-offline" in config  # equations render without a network


def test_toc_files_refuses_a_toc_without_entries(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text("format: jb-book\nroot: intro\n")
    with pytest.raises(ValueError, match="_toc.yml: no '- file:' entry"):
        book.toc_files(toc)


def test_build_refuses_a_toc_that_disagrees_with_the_notebooks(tmp_path, monkeypatch):
    (tmp_path / "_toc.yml").write_text("root: intro\nchapters:\n  - file: notebooks/01_optimal_policy\n")
    monkeypatch.setattr(book, "book_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match=r"_toc.yml lists \['notebooks/01_optimal_policy'\], the notebooks are"):
        book.build(tmp_path / "out")
    assert not (tmp_path / "out" / "src").exists()  # refused before executing anything


def test_screenshot_names_the_missing_page_or_browser(tmp_path):
    with pytest.raises(FileNotFoundError, match="page: .*missing.html does not exist"):
        book.screenshot(tmp_path / "missing.html", tmp_path / "x.png")
    page = tmp_path / "page.html"
    page.write_text("<h1>hi</h1>")
    with pytest.raises(FileNotFoundError, match="browser: 'no-such-browser' is not on PATH"):
        book.screenshot(page, tmp_path / "x.png", browser="no-such-browser")


def test_main_reports_a_missing_page_without_a_traceback(tmp_path, capsys):
    assert book.main(["--out", str(tmp_path), "--screenshot", str(tmp_path / "x.png")]) == 2
    assert "does not exist (run make book first)" in capsys.readouterr().err
