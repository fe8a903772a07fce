"""Budgets ("90s", "5m", "2h", "30ep", "500steps") and progress in [0, 1]; the clocks that spend them are in
``automl.clocks``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal, get_args

from automl.clocks import Clock
from automl.errors import UserError

Unit = Literal["seconds", "epochs", "steps"]
"""In the order budgets sort in (:attr:`Budget.sort_key`)."""

_SECONDS_PER = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
# A sign is matched so that "-3s" is told it must be positive rather than that it is not a duration.
_PATTERN = re.compile(r"^\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*([a-z]+)\s*$")
DeviceClock = Clock
"""The clock of a run, by the name ``automl.train.checkpoints`` knows it (see ``automl.clocks``)."""
_FORMS = "'90s', '5m', '2h', '30ep' or '500steps'"


@dataclass(frozen=True)
class Budget:
    """An amount of training: device-seconds, passes over the training split, or optimizer steps."""

    amount: float
    unit: Unit

    @classmethod
    def parse(cls, text: str | int | float) -> "Budget":
        """Parse a duration such as ``"90s"``; a bare number means seconds."""
        if isinstance(text, bool):
            raise UserError(f"budget {text!r} is not a duration; use {_FORMS}")
        if isinstance(text, (int, float)):
            amount, unit = (float(text) if abs(text) < 1e300 else math.copysign(math.inf, text)), "seconds"
        else:
            match = _PATTERN.match(str(text).lower())
            if not match:
                raise UserError(f"budget {text!r} is not a duration; use {_FORMS}")
            amount, suffix = float(match.group(1)), match.group(2)
            if suffix in _SECONDS_PER:
                amount, unit = amount * _SECONDS_PER[suffix], "seconds"
            elif suffix in ("ep", "epoch", "epochs"):
                unit = "epochs"
            elif suffix in ("step", "steps"):
                unit = "steps"
            else:
                raise UserError(f"budget {text!r} has unknown unit {suffix!r}; use {_FORMS}")
        if not math.isfinite(amount):
            raise UserError(f"budget {text!r} must be finite; use {_FORMS}")
        if amount <= 0:
            raise UserError(f"budget {text!r} must be positive")
        if unit == "steps" and amount != int(amount):
            raise UserError(f"budget {text!r} must be a whole number of steps")
        return cls(amount, unit)

    @classmethod
    def of_steps(cls, steps: int) -> "Budget":
        """A budget of ``steps`` optimizer steps."""
        return cls(steps, "steps")

    @property
    def is_time(self) -> bool:
        """Whether this budget is device-seconds (rather than passes or steps, which read no clock)."""
        return self.unit == "seconds"

    @property
    def is_epochs(self) -> bool:
        """Whether this budget counts passes over the training split."""
        return self.unit == "epochs"

    @property
    def sort_key(self) -> tuple[int, float]:
        """Budgets in order: device time, then epochs, then steps, each smallest first."""
        return get_args(Unit).index(self.unit), self.amount

    def require_device_time(self, name: str) -> "Budget":
        """This budget, if it is device time: a total over trials and workers adds up seconds, and
        epochs or steps of trials that differ in speed do not add up to anything."""
        if not self.is_time:
            raise UserError(f"{name} must be device time such as '10m', got '{self}'")
        return self

    def require_within(self, total: "Budget | None", names: tuple[str, str]) -> "Budget":
        """This trial budget, if it fits in ``total`` (when both are device time): a trial longer than the
        whole study could never start. ``names`` are (this, total) as the user wrote them."""
        if total is not None and self.is_time and total.is_time and self.amount > total.amount:
            raise UserError(f"{names[0]} '{self}' is longer than {names[1]} '{total}'; "
                            f"make {names[0]} at most {names[1]}")
        return self

    def __str__(self) -> str:
        if self.is_time:
            return f"{self.amount:g}s"
        return f"{self.amount:g}{'ep' if self.is_epochs else 'steps'}"


class Progress:
    """Turns what has been spent into progress ``p = spent / budget`` in [0, 1]."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget

    def of(self, *, seconds: float, epochs: float, steps: int) -> float:
        """``epochs`` is fractional (passes done plus the part of this pass), so a batch
        size that changes mid-run still ends exactly after the requested passes."""
        spent = {"seconds": seconds, "epochs": epochs, "steps": steps}[self.budget.unit]
        return min(1.0, spent / self.budget.amount)
