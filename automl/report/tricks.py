"""The trick table: for each trick of a study, how its trials did with the trick on and with it off.

Which tricks: every name in a trial's ``tricks`` user attribute (what the trial ran, pinned
tricks included), every ``<name>.enabled`` parameter and every trick chosen as ``owner.<resource>``.
On or off: the ``tricks`` attribute when the trial has it, else its parameters (the enabled flag,
or being some resource's owner).

What counts: finished trials only (complete, pruned or failed; running and waiting ones are left
out). ``trials`` counts them all; ``best`` and ``median`` are over the completed ones, because a
pruned trial's last value is an error at less progress, not comparable with a final one.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Iterable, Sequence

from optuna.trial import FrozenTrial, TrialState

from automl.space import OWNER_PREFIX
from automl.study.records import ATTR_TRICKS, FINISHED

ENABLED = "enabled"
NO_OWNER = "none"  # the owner.<resource> choice that gives the resource to no trick


@dataclass(frozen=True)
class Side:
    """The finished trials with a trick on (or off)."""

    trials: int
    """All of them, whatever their final state."""
    complete: int
    best: float | None
    """Lowest validation error of the completed ones (None when there is none)."""
    median: float | None


@dataclass(frozen=True)
class TrickRow:
    trick: str
    on: Side
    off: Side


def trick_names(trials: Iterable[FrozenTrial]) -> list[str]:
    """Every trick a trial ran, could switch on, or chose as a resource's owner, sorted."""
    names: set[str] = set()
    for trial in trials:
        names.update(trial.user_attrs.get(ATTR_TRICKS, []))
        for key, value in trial.params.items():
            group, _, param = key.partition(".")
            if param == ENABLED and group != OWNER_PREFIX:
                names.add(group)
            elif group == OWNER_PREFIX and value != NO_OWNER:
                names.add(str(value))
    return sorted(names)


def is_on(trial: FrozenTrial, trick: str) -> bool:
    """Whether ``trial`` ran with ``trick``."""
    if ATTR_TRICKS in trial.user_attrs:
        return trick in trial.user_attrs[ATTR_TRICKS]
    # No record of what ran (a plain Optuna trial, or one that failed while choosing): its parameters say.
    return trial.params.get(f"{trick}.{ENABLED}") is True or any(
        value == trick for key, value in trial.params.items() if key.startswith(f"{OWNER_PREFIX}."))


def trick_table(trials: Sequence[FrozenTrial]) -> list[TrickRow]:
    """One row per trick (sorted by name) over the finished ``trials``."""
    finished = [t for t in trials if t.state in FINISHED]
    return [TrickRow(name, _side([t for t in finished if is_on(t, name)]),
                     _side([t for t in finished if not is_on(t, name)]))
            for name in trick_names(finished)]


def _side(trials: list[FrozenTrial]) -> Side:
    errors = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    return Side(trials=len(trials), complete=len(errors), best=min(errors) if errors else None,
                median=statistics.median(errors) if errors else None)


__all__ = ["FINISHED", "Side", "TrickRow", "is_on", "trick_names", "trick_table"]
