import numpy as np
import pytest
import torch

from dpo_lab import checks


def test_check_close_passes_and_prints(capsys):
    checks.check_close("same", [1.0, 2.0], np.array([1.0, 2.0]))
    assert "PASS  same" in capsys.readouterr().out


def test_check_close_accepts_torch_tensors():
    checks.check_close("tensor", torch.tensor([0.5]), [0.5])


def test_check_close_fails_with_what_was_expected(capsys):
    with pytest.raises(AssertionError, match="max abs error"):
        checks.check_close("off", [1.0, 2.0], [1.0, 2.5])
    out = capsys.readouterr().out
    assert "FAIL  off" in out and "expected" in out


def test_check_close_fails_on_shape_mismatch():
    with pytest.raises(AssertionError, match=r"got shape \(2,\), expected shape \(1, 2\)"):
        checks.check_close("shape", [1.0, 2.0], [[1.0, 2.0]])


def test_check_close_rejects_nan():
    with pytest.raises(AssertionError):
        checks.check_close("nan", [np.nan], [np.nan])


def test_check_function_compares_on_every_case(capsys):
    checks.check_function("double", lambda x: 2 * x, lambda x: x + x, [(np.arange(3.0),), (np.ones(2),)])
    assert "all 2 random cases" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="case 1"):
        checks.check_function(
            "wrong", lambda x: x if x.size < 3 else 2 * x, lambda x: x, [(np.ones(2),), (np.ones(3),)]
        )


def test_check_function_explains_a_missing_solution():
    def stub(x):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="not implemented yet"):
        checks.check_function("stub", stub, lambda x: x, [(1.0,)])


def test_check_function_needs_cases():
    with pytest.raises(ValueError, match="at least one case"):
        checks.check_function("empty", lambda x: x, lambda x: x, [])


def test_check_true():
    checks.check_true("holds", 1 < 2, "never shown")
    with pytest.raises(AssertionError, match="expected a positive number"):
        checks.check_true("fails", False, "expected a positive number")


def test_student_code_that_raises_fails_with_the_checkers_message(capsys):
    def unfinished(x):
        raise NotImplementedError()

    def broken(x):
        return x["missing"]

    with pytest.raises(AssertionError, match="not implemented yet"):
        checks.call("exercise", unfinished, 1)
    with pytest.raises(AssertionError, match="your function raised TypeError"):
        checks.check_function("exercise", broken, lambda x: x, [(1,)])
    with pytest.raises(AssertionError, match="not implemented yet"):
        checks.check_close("exercise", lambda: unfinished(1), 1.0)
    with pytest.raises(AssertionError, match="your function raised TypeError"):
        checks.check_true("exercise", lambda: broken(1), "should hold")
    out = capsys.readouterr().out
    assert out.count("FAIL  exercise") == 4  # each one printed as a verdict, not a traceback
    checks.check_close("exercise", lambda: 1.0, 1.0)
    checks.check_true("exercise", lambda: True, "holds")


def _failure(check, *args, **kwargs) -> str:
    with pytest.raises(AssertionError) as err:
        check(*args, **kwargs)
    return str(err.value)


@pytest.mark.parametrize(
    "check, args, got, expected",
    [
        (checks.check_close, ("close", [1.0, 2.0], [1.0, 2.5]), "[1. 2.]", "[1.  2.5]"),
        (checks.check_close, ("scalar", 3.0, 4.0), "3", "4"),
        (checks.check_function, ("fn", lambda x: x, lambda x: x + 1, [(np.zeros(2),)]), "[0. 0.]", "[1. 1.]"),
        (checks.check_true, ("true", lambda: 0.0, "expected a positive number"), "0", None),
        (checks.check_true, ("true", False, "expected a positive number"), "False", None),
    ],
)
def test_every_failure_says_what_it_got_and_what_was_expected(check, args, got, expected):
    message = _failure(check, *args)
    assert f"got      {got}" in message, message
    if expected is not None:
        assert f"expected {expected}" in message, message
    else:
        assert "expected a positive number" in message, message


def test_a_raising_function_fails_with_the_exception_and_the_expected_value():
    def broken(x):
        return x["missing"]

    message = _failure(checks.check_function, "ex", broken, lambda x: 2 * x, [(np.ones(2),)])
    assert "your function raised IndexError" in message
    assert "got      IndexError: only integers" in message and "expected [2. 2.]" in message
    message = _failure(checks.check_close, "ex", lambda: broken(1.0), 0.5)
    assert "got      TypeError" in message and "expected 0.5" in message
    message = _failure(checks.check_true, "ex", lambda: broken(1.0), "expected a dict")
    assert "got      TypeError" in message and "expected expected a dict" in message
    message = _failure(checks.call, "ex", broken, 1.0)
    assert "got      TypeError" in message and "expected a return value" in message


def test_long_arrays_are_shown_on_one_line():
    message = _failure(checks.check_close, "wide", np.full(20, 1e-10 + 1 / 3), np.zeros(20))
    got_line = next(ln for ln in message.splitlines() if ln.strip().startswith("got"))
    assert got_line.count("0.333333") == 6, message  # the first six values, not wrapped onto a second line
