"""xent.checks' value checks: the one place config values are checked, and their messages."""

from __future__ import annotations

import numpy as np
import pytest

from xent import checks
from xent.errors import ConfigError


def fails(fn, *args, **kwargs) -> str:
    """The message `fn` fails with, checking it raises the `error` it was given (ConfigError)."""
    error = kwargs.get("error", ConfigError)
    with pytest.raises(error) as info:
        fn(*args, **kwargs)
    assert type(info.value) is error
    return str(info.value)


# -- integer ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "bounds", "message"),
    [
        (0, {"at_least": 1}, "k=0 must be an integer >= 1"),
        (True, {"at_least": 0}, "k=True must be an integer >= 0"),  # a bool is no count
        (False, {}, "k=False must be an integer"),
        (1.0, {"at_least": 1}, "k=1.0 must be an integer >= 1"),
        ("3", {"at_least": 1}, "k='3' must be an integer >= 1"),
        (None, {"at_least": 1}, "k=None must be an integer >= 1"),
        (6, {"at_most": 5}, "k=6 must be an integer <= 5"),
        (0, {"at_least": 1, "at_most": 5}, "k=0 must be an integer in [1, 5]"),
        (1, {"at_least": 2, "optional": True}, "k=1 must be null or an integer >= 2"),
        (0, {"at_least": 1, "what": "a positive integer"}, "k=0 must be a positive integer"),
    ],
)
def test_integer_messages(value, bounds, message):
    assert fails(checks.integer, "k", value, **bounds) == message


def test_integer_values():
    assert checks.integer("k", 3, at_least=1, at_most=3) == 3
    assert checks.integer("k", -7) == -7
    out = checks.integer("k", np.int64(2), at_least=1)
    assert out == 2 and type(out) is int  # numpy ints count, returned as int
    assert checks.integer("k", None, optional=True) is None
    assert checks.integer("k", 5, optional=True, at_least=1) == 5


# -- number -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "bounds", "message"),
    [
        (0, {"above": 0}, "x=0 must be > 0"),
        (-1.5, {"at_least": 0}, "x=-1.5 must be >= 0"),
        (1, {"below": 1}, "x=1 must be < 1"),
        (2, {"at_most": 1}, "x=2 must be <= 1"),
        (0.0, {"above": 0, "at_most": 1}, "x=0.0 must be in (0, 1]"),
        (1.0, {"at_least": 0.0, "below": 1.0}, "x=1.0 must be in [0, 1)"),
        (1.5, {"at_least": 0.5, "at_most": 1.25}, "x=1.5 must be in [0.5, 1.25]"),
        (float("nan"), {}, "x=nan must be a finite number"),
        (float("inf"), {"above": 0}, "x=inf must be > 0"),
        (float("-inf"), {}, "x=-inf must be a finite number"),
        (True, {}, "x=True must be a finite number"),  # a bool is no number
        ("0.5", {"above": 0}, "x='0.5' must be > 0"),
        (None, {"above": 0}, "x=None must be > 0"),
        (1.0, {"above": 0, "below": 1, "optional": True}, "x=1.0 must be null or in (0, 1)"),
        (float("nan"), {"optional": True}, "x=nan must be null or a finite number"),
        (0, {"above": 0, "what": "a number > 0"}, "x=0 must be a number > 0"),
    ],
)
def test_number_messages(value, bounds, message):
    assert fails(checks.number, "x", value, **bounds) == message


def test_number_values():
    out = checks.number("x", 1, above=0, at_most=1)
    assert out == 1.0 and type(out) is float
    assert checks.number("x", np.float32(0.5), above=0) == 0.5
    assert checks.number("x", -3.0) == -3.0
    assert checks.number("x", None, optional=True) is None
    assert checks.number("x", 0, at_least=0) == 0.0


# -- one_of, flag -------------------------------------------------------------------------------
def test_one_of():
    assert checks.one_of("mode", "a", ("a", "b")) == "a"
    assert fails(checks.one_of, "mode", "c", ("a", "b")) == "mode='c' must be one of a, b"
    assert fails(checks.one_of, "mode", ["a"], {"a", "b"}).startswith("mode=['a'] must be one of")
    words = "auto, true or false"
    assert fails(checks.one_of, "n", "x", (True, False, "auto"), what=words) == (
        "n='x' must be auto, true or false"
    )


def test_flag():
    assert checks.flag("f", True) is True and checks.flag("f", False) is False
    assert fails(checks.flag, "f", 1) == "f=1 must be true or false"
    assert fails(checks.flag, "f", "yes") == "f='yes' must be true or false"


# -- the caller's error class and rendering -----------------------------------------------------
def test_error_class_and_show():
    assert fails(checks.integer, "loss.k", 0, at_least=1, error=ValueError) == (
        "loss.k=0 must be an integer >= 1"
    )
    assert fails(checks.number, "x", 1.0, below=1, error=ValueError) == "x=1.0 must be < 1"
    assert fails(checks.flag, "f", 0, error=TypeError) == "f=0 must be true or false"
    # tta writes floats with :g and strings without quotes
    assert fails(checks.number, "tta.m", 1.0, below=1.0, show=checks.plain) == "tta.m=1 must be < 1"
    assert fails(checks.integer, "tta.s", "x", show=checks.plain) == "tta.s=x must be an integer"
    err = checks.bad_value("a.b", 3, "odd", error=KeyError)
    assert isinstance(err, KeyError) and err.args == ("a.b=3 must be odd",)


def test_predicates_and_words():
    assert checks.is_integer(3) and checks.is_integer(np.int8(3))
    assert not checks.is_integer(True) and not checks.is_integer(3.0)
    assert checks.is_number(3) and checks.is_number(0.5) and checks.is_number(np.float64(1))
    for bad in (True, float("nan"), float("inf"), "1", None):
        assert not checks.is_number(bad)
    assert checks.range_words() == ""
    assert checks.range_words(above=0, below=1) == "in (0, 1)"
    assert checks.range_words(at_least=1e-3) == ">= 0.001"
    assert checks.plain(1.0) == "1" and checks.plain("s") == "s" and checks.plain(2) == "2"


def test_messages_name_their_key():
    """A check's message starts `key=`: root_message shows it without a type prefix."""
    from xent.errors import root_message

    with pytest.raises(ValueError) as info:
        checks.number("loss.q", 2, above=0, at_most=1, error=ValueError)
    assert root_message(info.value) == "loss.q=2 must be in (0, 1]"
