"""Tests of automl.checks: what each check accepts, what it refuses, and the exact message it gives."""

from __future__ import annotations

import doctest
import math
import re

import numpy as np
import pytest

import automl.checks
from automl.checks import boolean, integer, number, one_of


def message(check, *args, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        check(*args, **kwargs)
    return str(info.value)


def test_exports_exactly_the_checks():
    assert sorted(automl.checks.__all__) == ["boolean", "integer", "number", "one_of"]


def test_the_module_example_holds():
    result = doctest.testmod(automl.checks)
    assert result.attempted >= 1 and result.failed == 0


# integer


@pytest.mark.parametrize("value", [1, 2, 10**12])
def test_integer_returns_what_it_accepts(value):
    assert integer("t", "every", value) is value


@pytest.mark.parametrize("value", [0, -1, 1.0, 1.5, True, False, None, "1", np.int64(3), math.nan])
def test_integer_refuses_with_its_message(value):
    assert message(integer, "t", "every", value) == f"t every must be an integer >= 1, got every={value!r}"


def test_integer_bounds_are_closed():
    assert integer("t", "factor", 2, at_least=2) == 2
    assert message(integer, "t", "factor", 1, at_least=2) == "t factor must be an integer >= 2, got factor=1"
    assert integer("t", "seed", 0, at_least=0) == 0
    assert integer("t", "k", 4, at_most=4) == 4
    assert message(integer, "t", "k", 5, at_most=4) == "t k must be an integer in [1, 4], got k=5"
    assert message(integer, "t", "k", 0, at_most=4) == "t k must be an integer in [1, 4], got k=0"


def test_integer_words_label_and_owner_can_be_given():
    assert (message(integer, "t", "size", 0, must="a positive integer")
            == "t size must be a positive integer, got size=0")
    assert (message(integer, "t", "k", 5, at_most=4, must="an integer in [1, cycles=4]")
            == "t k must be an integer in [1, cycles=4], got k=5")
    assert (message(integer, "t", "n", True, label="number of layers")
            == "t number of layers must be an integer >= 1, got n=True")
    # Another owner than a trick: the data set options of automl.train.datasets.
    assert (message(integer, "synthetic option", "n_train", 0)
            == "synthetic option n_train must be an integer >= 1, got n_train=0")
    assert (message(integer, "synthetic option", "num_classes", 1, at_least=2)
            == "synthetic option num_classes must be an integer >= 2, got num_classes=1")


# number


@pytest.mark.parametrize("value", [0.5, 1, 0, np.float32(0.25), np.int64(1)])
def test_number_returns_what_it_accepts(value):
    assert number("t", "x", value, low=0, high=1) is value


@pytest.mark.parametrize(("low_open", "high_open", "shown"),
                         [(False, False, "[0, 1]"), (True, False, "(0, 1]"), (False, True, "[0, 1)"), (True, True, "(0, 1)")])
def test_number_bounds_open_and_closed(low_open, high_open, shown):
    bounds = {"low": 0, "high": 1, "low_open": low_open, "high_open": high_open}
    for value, refused in ((0, low_open), (1, high_open), (-0.01, True), (1.01, True), (0.5, False)):
        if refused:
            assert message(number, "t", "x", value, **bounds) == f"t x must be in {shown}, got x={value!r}"
        else:
            assert number("t", "x", value, **bounds) == value


@pytest.mark.parametrize(("bounds", "shown"), [({"low": 0}, ">= 0"), ({"low": 0, "low_open": True}, "> 0"),
                                               ({"high": 1}, "<= 1"), ({"high": 1, "high_open": True}, "< 1")])
def test_number_one_bound(bounds, shown):
    edge = bounds.get("low", bounds.get("high"))
    outside = edge - 1 if "low" in bounds else edge + 1
    assert message(number, "t", "x", outside, **bounds) == f"t x must be {shown}, got x={outside!r}"
    if bounds.get("low_open") or bounds.get("high_open"):
        assert message(number, "t", "x", edge, **bounds) == f"t x must be {shown}, got x={edge!r}"
    else:
        assert number("t", "x", edge, **bounds) == edge


@pytest.mark.parametrize("value", [True, False, None, "0.5", [0.5], math.nan, float("-nan")])
def test_number_refuses_bools_nan_and_non_numbers(value):
    assert message(number, "t", "x", value, low=0, high=1) == f"t x must be in [0, 1], got x={value!r}"


def test_nan_is_in_no_range():
    for bounds in ({}, {"low": 0}, {"high": 0}, {"low": -math.inf, "high": math.inf}):
        with pytest.raises(ValueError, match="x=nan"):
            number("t", "x", math.nan, **bounds)
    assert message(number, "t", "x", math.nan) == "t x must be a number, got x=nan"


def test_number_infinity_is_refused_only_by_an_open_infinite_bound():
    assert number("t", "x", math.inf, low=0) == math.inf
    shown = {"low": 0, "high": math.inf, "low_open": True, "high_open": True}
    assert message(number, "t", "x", math.inf, **shown) == "t x must be in (0, inf), got x=inf"
    assert number("t", "x", 1e300, **shown) == 1e300


def test_number_words_label_and_owner_can_be_given():
    assert (message(number, "t", "start", 2.0, low=0, high=1, label="start LR factor")
            == "t start LR factor must be in [0, 1], got start=2.0")
    assert (message(number, "t", "half_life", -1, low=0, low_open=True, must="a positive fraction of the budget")
            == "t half_life must be a positive fraction of the budget, got half_life=-1")
    assert (message(number, "synthetic option", "noise", -1, low=0, must="a number >= 0")
            == "synthetic option noise must be a number >= 0, got noise=-1")
    assert (message(number, "t", "epsilon", 1.0, low=0, high=1, high_open=True)
            == "t epsilon must be in [0, 1), got epsilon=1.0")


# one_of


def test_one_of_returns_what_it_accepts():
    assert one_of("t", "rule", "sqrt", ("linear", "sqrt")) == "sqrt"
    assert one_of("t", "dtype", "bf16", {"bf16": 1, "fp16": 2}) == "bf16"


@pytest.mark.parametrize("value", ["squared", "", None, 1, "Linear"])
def test_one_of_refuses_with_the_sorted_choices(value):
    assert (message(one_of, "t", "schedule", value, {"linear": 1, "cubic": 3})
            == f"t schedule must be one of ['cubic', 'linear'], got schedule={value!r}")


def test_one_of_words_can_be_given():
    assert (message(one_of, "t", "rule", "cubic", ("linear", "sqrt"), must="one of linear, sqrt")
            == "t rule must be one of linear, sqrt, got rule='cubic'")
    assert (message(one_of, "t", "d", "fp8", ("bf16",), label="dtype")
            == "t dtype must be one of ['bf16'], got d='fp8'")


# boolean


@pytest.mark.parametrize("value", [True, False])
def test_boolean_returns_what_it_accepts(value):
    assert boolean("t", "flag", value) is value


@pytest.mark.parametrize("value", [1, 0, "yes", "True", None, np.bool_(True)])
def test_boolean_refuses_other_truthy_and_falsy_values(value):
    assert message(boolean, "t", "flag", value) == f"t flag must be True or False, got flag={value!r}"
    assert re.fullmatch(r"t on must be True or False, got flag=.*", message(boolean, "t", "flag", value, label="on"))
