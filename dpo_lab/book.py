"""``make book``: a static website of the executed notebooks (Jupyter Book 1.x), and its screenshot.

Introduced in notebook 00. The book's config, table of contents and front page live in ``book/``;
:func:`build` copies them to ``build/book/src``, executes every notebook there in the smoke profile
(:func:`dpo_lab.reproduce.execute`, working directory ``notebooks/``, results in ``build/book/results``)
and runs ``jupyter-book build``, which only renders (``execute_notebooks: off``): Sphinx with the book
theme and its search, math by a MathJax 3 copied into the site (``sphinx-mathjax-offline``), figures
embedded as PNG. Jupyter Book 1.x rather than MyST's ``mystmd``: it installs from PyPI and builds
with no network, where ``mystmd`` needs Node and fetches its theme.

:func:`screenshot` photographs a built page in a real headless browser (Debian's ``chromium``).

    python -m dpo_lab.book [--out build/book]
    python -m dpo_lab.book --screenshot PNG [--page notebooks/01_optimal_policy.html] [--height 1600]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import config as _config
from .reproduce import notebooks

BOOK_FILES = ("_config.yml", "_toc.yml", "intro.md")
CHROMIUM = "chromium"


def book_dir() -> Path:
    """``book/`` in the checkout: config, table of contents, front page."""
    return _config.project_root() / "book"


def toc_files(toc: Path | None = None) -> list[str]:
    """The files ``_toc.yml`` lists after its root, in order (``notebooks/00_start_here``, ...).
    ValueError naming the file when it lists none."""
    toc = Path(toc) if toc else book_dir() / "_toc.yml"
    files = re.findall(r"^\s*-\s*file:\s*(\S+)\s*$", toc.read_text(), re.M)
    if not files:
        raise ValueError(f"{toc}: no '- file:' entry")
    return files


def build(out_dir: Path | None = None, timeout: int = 600) -> Path:
    """Execute every numbered notebook (smoke profile unless ``DPO_LAB_PROFILE`` says otherwise) and
    build the book into ``out_dir`` (default ``build/book``); returns the front page
    (``out_dir/_build/html/index.html``). ``timeout``: seconds per cell. ValueError when ``book/_toc.yml``
    and ``notebooks/`` disagree; RuntimeError with jupyter-book's log when the build fails."""
    from .reproduce import execute

    out_dir = Path(out_dir or _config.project_root() / "build" / "book").resolve()
    sources = notebooks(required=True)
    listed = toc_files()
    wanted = [f"notebooks/{p.stem}" for p in sources]
    if listed != wanted:
        raise ValueError(f"{book_dir() / '_toc.yml'} lists {listed}, the notebooks are {wanted}")
    src = out_dir / "src"
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    for name in BOOK_FILES:
        shutil.copy(book_dir() / name, src / name)
    os.environ.setdefault(_config.ENV_VAR, "smoke")
    os.environ.setdefault(_config.RESULTS_ENV_VAR, str(out_dir / "results"))
    os.environ["MPLBACKEND"] = (
        "module://matplotlib_inline.backend_inline"  # figures become outputs, never Agg's nothing
    )
    for path in sources:
        seconds = execute(path, src / "notebooks", timeout)
        print(f"executed {path.name} in {seconds:.0f} s")
    done = subprocess.run(
        [str(Path(sys.executable).with_name("jupyter-book")), "build", str(src), "--path-output", str(out_dir)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"jupyter-book build failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}"
        )
    return out_dir / "_build" / "html" / "index.html"


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 1600, browser: str = CHROMIUM) -> Path:
    """Photograph ``page`` (an HTML file) in headless ``browser`` into ``png``; returns ``png``.
    FileNotFoundError names the page or the browser (``apt-get install chromium``) that is missing;
    RuntimeError with the browser's log when no image comes out."""
    page, png = Path(page).resolve(), Path(png).resolve()
    if not page.is_file():
        raise FileNotFoundError(f"page: {page} does not exist (run make book first)")
    exe = shutil.which(browser)
    if exe is None:
        raise FileNotFoundError(f"browser: {browser!r} is not on PATH (Debian: apt-get install -y chromium)")
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile:  # a new empty profile: nothing from earlier runs
        flags = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking"
        flags += " --disable-component-update --disable-sync --hide-scrollbars --virtual-time-budget=10000"
        done = subprocess.run(
            [
                exe,
                *flags.split(),
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                f"--window-size={width},{height}",
            ]
            + [page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
    if not png.is_file():
        raise RuntimeError(f"{browser} wrote no screenshot (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="build the book of executed notebooks; screenshot a page")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default build/book)")
    parser.add_argument("--screenshot", type=Path, default=None, help="PNG of a built page (skips the build)")
    parser.add_argument("--page", default="index.html", help="page to screenshot, relative to the built site")
    parser.add_argument("--height", type=int, default=1600, help="browser window height in pixels (default 1600)")
    args = parser.parse_args(argv)
    out_dir = args.out or _config.project_root() / "build" / "book"
    try:
        if args.screenshot:
            print(f"wrote {screenshot(out_dir / '_build' / 'html' / args.page, args.screenshot, height=args.height)}")
        else:
            print(f"wrote {build(out_dir)}")
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"dpo_lab book: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
