"""Checks for the exercises in the notebooks.

Introduced in notebook 00. Each exercise cell holds a solution between ``### BEGIN SOLUTION`` and
``### END SOLUTION`` (nbgrader convention; ``make student`` replaces it by ``raise NotImplementedError()``)
and is followed by a check cell calling one of these functions. A check prints a one-line verdict
and raises ``AssertionError`` on failure, so executing the source notebook tests the solution and a
wrong answer stops a student's run at the cell that needs work.

Spinning Up style: a student's function is compared with the library's on random inputs. Student code
runs inside the check (:func:`call`, or a function passed to a check), so a function that raises
fails with the checker's message, never a bare traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=float)


def call(name: str, fn: Callable, *args, **kwargs) -> Any:
    """``fn(*args, **kwargs)`` for a check: a student's function that raises fails the check with the
    checker's message (what it raised, and what is expected of it) instead of a bare traceback."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        _fail(name, "not implemented yet: replace `raise NotImplementedError()` with your code")
    except Exception as err:  # noqa: BLE001 - any error of the student's code becomes the check's verdict
        _fail(name, f"your function raised {type(err).__name__}: {err}")


def check_close(name: str, got: Any, expected: Any, atol: float = 1e-8, rtol: float = 1e-6) -> None:
    """Pass when ``got`` equals ``expected`` elementwise within ``atol + rtol * |expected|``. ``got`` may be
    a function of no arguments (``lambda: my_fn(x)``), called through :func:`call`."""
    if callable(got):
        got = call(name, got)
    _compare(name, got, expected, atol, rtol)
    _pass(name)


def _compare(name: str, got: Any, expected: Any, atol: float, rtol: float) -> None:
    got_a, exp_a = _as_numpy(got), _as_numpy(expected)
    if got_a.shape != exp_a.shape:
        _fail(name, f"shape {got_a.shape}, expected shape {exp_a.shape}")
    if not np.allclose(got_a, exp_a, atol=atol, rtol=rtol, equal_nan=False):
        err = np.max(np.abs(got_a - exp_a)) if got_a.size else 0.0
        _fail(
            name,
            f"max abs error {err:.3g} > tolerance (atol={atol:g}, rtol={rtol:g});\n"
            f"  got      {np.array2string(got_a.ravel()[:6], precision=6)}\n"
            f"  expected {np.array2string(exp_a.ravel()[:6], precision=6)}",
        )


def check_function(
    name: str, fn: Callable, reference: Callable, cases: Iterable[tuple], atol: float = 1e-8, rtol: float = 1e-6
) -> None:
    """Pass when ``fn(*case)`` matches ``reference(*case)`` on every case (tuples of arguments)."""
    cases = list(cases)
    if not cases:
        raise ValueError("check_function needs at least one case")
    for i, case in enumerate(cases):
        got = call(f"{name} (case {i})", fn, *case)
        _compare(f"{name} (case {i})", got, reference(*case), atol, rtol)
    _pass(f"{name}: all {len(cases)} random cases")


def check_true(name: str, condition: bool, explanation: str) -> None:
    """Pass when ``condition`` holds; otherwise fail with ``explanation`` (say what was expected).
    ``condition`` may be a function of no arguments, called through :func:`call`."""
    if callable(condition):
        condition = call(name, condition)
    if not bool(condition):
        _fail(name, explanation)
    _pass(name)


def _pass(name: str) -> None:
    print(f"PASS  {name}")


def _fail(name: str, why: str) -> None:
    print(f"FAIL  {name}: {why}")
    raise AssertionError(f"{name}: {why}")
