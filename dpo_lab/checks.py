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
    return _call(name, fn, args, kwargs)


def _call(name: str, fn: Callable, args: tuple, kwargs: dict, expected: Any = None) -> Any:
    """:func:`call`, with the expected value (when the check knows it) in the failure message."""
    try:
        return fn(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - any error of the student's code becomes the check's verdict
        if isinstance(err, NotImplementedError):
            why = "not implemented yet: replace `raise NotImplementedError()` with your code"
        else:
            why = f"your function raised {type(err).__name__}"
        got = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        wanted = _show(expected) if expected is not None else "a return value"
        _fail(name, f"{why};\n  got      {got}\n  expected {wanted}")


def _show(x: Any) -> str:
    """The first values of ``x`` on one line (numbers), else its repr, cut to 200 characters."""
    if isinstance(x, str):
        return x
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    try:
        values = _as_numpy(x)
    except (TypeError, ValueError):
        return repr(x)[:200]
    if values.ndim == 0:
        return f"{values.item():.6g}"
    return np.array2string(values.ravel()[:6], precision=6, max_line_width=1000)


def check_close(name: str, got: Any, expected: Any, atol: float = 1e-8, rtol: float = 1e-6) -> None:
    """Pass when ``got`` equals ``expected`` elementwise within ``atol + rtol * |expected|``. ``got`` may be
    a function of no arguments (``lambda: my_fn(x)``), called through :func:`call`."""
    if callable(got):
        got = _call(name, got, (), {}, expected)
    _compare(name, got, expected, atol, rtol)
    _pass(name)


def _compare(name: str, got: Any, expected: Any, atol: float, rtol: float) -> None:
    got_a, exp_a = _as_numpy(got), _as_numpy(expected)
    if got_a.shape != exp_a.shape:
        _fail(name, f"got shape {got_a.shape}, expected shape {exp_a.shape}")
    if not np.allclose(got_a, exp_a, atol=atol, rtol=rtol, equal_nan=False):
        err = np.max(np.abs(got_a - exp_a)) if got_a.size else 0.0
        _fail(
            name,
            f"max abs error {err:.3g} > tolerance (atol={atol:g}, rtol={rtol:g});\n"
            f"  got      {_show(got_a)}\n"
            f"  expected {_show(exp_a)}",
        )


def check_function(
    name: str, fn: Callable, reference: Callable, cases: Iterable[tuple], atol: float = 1e-8, rtol: float = 1e-6
) -> None:
    """Pass when ``fn(*case)`` matches ``reference(*case)`` on every case (tuples of arguments)."""
    cases = list(cases)
    if not cases:
        raise ValueError("check_function needs at least one case")
    for i, case in enumerate(cases):
        expected = reference(*case)
        got = _call(f"{name} (case {i})", fn, case, {}, expected)
        _compare(f"{name} (case {i})", got, expected, atol, rtol)
    _pass(f"{name}: all {len(cases)} random cases")


def check_true(name: str, condition: bool, explanation: str) -> None:
    """Pass when ``condition`` holds; otherwise fail with ``explanation`` (say what was expected) and the
    value it got. ``condition`` may be a function of no arguments, called through :func:`call`."""
    if callable(condition):
        condition = _call(name, condition, (), {}, expected=explanation)
    if not bool(condition):
        _fail(name, f"{explanation};\n  got      {_show(condition)}")
    _pass(name)


def _pass(name: str) -> None:
    print(f"PASS  {name}")


def _fail(name: str, why: str) -> None:
    print(f"FAIL  {name}: {why}")
    raise AssertionError(f"{name}: {why}")
