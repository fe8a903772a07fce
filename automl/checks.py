"""Argument checks for tricks and other plugins, each raising a ValueError that names the owner, the argument and its value.

Every message has the shape ``"{owner} {label} must be {must}, got {name}={value!r}"``:
``owner`` is whatever prefixes the message (a trick's name, ``"synthetic option"``, ...),
``label`` is the noun for the argument (its ``name`` unless given), and ``must`` is made
from the bounds unless given. The host turns the ValueError of a trick's constructor into
a one-line error naming the trick. A bool is never accepted as a number (``True`` is an
``int`` to Python, but never what a user meant), and NaN is in no range.

    >>> integer("mytrick", "every", 0)
    Traceback (most recent call last):
    ValueError: mytrick every must be an integer >= 1, got every=0
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection
from typing import Any

__all__ = ["boolean", "integer", "number", "one_of"]


def _invalid(owner: str, name: str, value: Any, label: str | None, must: str) -> ValueError:
    return ValueError(f"{owner} {label or name} must be {must}, got {name}={value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def integer(owner: str, name: str, value: Any, *, at_least: int = 1, at_most: int | None = None,
            label: str | None = None, must: str | None = None) -> int:
    """``value`` if it is an int (not a bool) in ``[at_least, at_most]``; ValueError otherwise.

    Message: ``"{owner} {label} must be an integer >= {at_least}, got {name}={value!r}"``, or
    ``"... must be an integer in [{at_least}, {at_most}], ..."`` with an upper bound; ``must``
    replaces the words after "must be" (``"a positive integer"``).
    """
    if not isinstance(value, int) or isinstance(value, bool) or value < at_least or (
            at_most is not None and value > at_most):
        if must is None:
            must = f"an integer >= {at_least}" if at_most is None else f"an integer in [{at_least}, {at_most}]"
        raise _invalid(owner, name, value, label, must)
    return value


def number(owner: str, name: str, value: Any, *, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False,
           label: str | None = None, must: str | None = None) -> float:
    """``value`` if it is a real number (not a bool, not NaN) between ``low`` and ``high``; ValueError otherwise.

    A bound left out is no bound; ``low_open`` / ``high_open`` exclude the bound itself.
    Message: ``"{owner} {label} must be in (0, 1], got {name}={value!r}"`` with both bounds
    (brackets as the bounds are closed or open), ``"... must be > 0, ..."`` or ``">= 0"``
    with only a lower one, ``"<"`` or ``"<="`` with only an upper one; ``must`` replaces the
    words after "must be" (``"a positive LR"``). ``high=math.inf, high_open=True`` refuses
    infinity.
    """
    if not _is_number(value) or math.isnan(value) or not _within(value, low, high, low_open, high_open):
        raise _invalid(owner, name, value, label, must or _range_words(low, high, low_open, high_open))
    return value


def _within(value: float, low: float | None, high: float | None, low_open: bool, high_open: bool) -> bool:
    above = low is None or (value > low if low_open else value >= low)
    below = high is None or (value < high if high_open else value <= high)
    return above and below


def _range_words(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return "a number"


def one_of(owner: str, name: str, value: Any, choices: Collection[Any], *,
           label: str | None = None, must: str | None = None) -> Any:
    """``value`` if it is one of ``choices``; ValueError otherwise.

    Message: ``"{owner} {label} must be one of {sorted(choices)}, got {name}={value!r}"``, e.g.
    ``"... must be one of ['cubic', 'linear'], ..."``; ``must`` replaces the words after "must be".
    """
    if value not in choices:
        raise _invalid(owner, name, value, label, must or f"one of {sorted(choices)}")
    return value


def boolean(owner: str, name: str, value: Any, *, label: str | None = None) -> bool:
    """``value`` if it is ``True`` or ``False`` (not 1 or 0); ValueError otherwise.

    Message: ``"{owner} {label} must be True or False, got {name}={value!r}"``.
    """
    if not isinstance(value, bool):
        raise _invalid(owner, name, value, label, "True or False")
    return value
