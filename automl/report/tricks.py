"""The trick table: for each trick of a study, how its trials did with the trick on and with it off.

Which tricks: every name in a trial's ``tricks`` user attribute (what the trial ran, pinned
tricks included), every ``<name>.enabled`` parameter and every trick chosen as ``owner.<resource>``.
On or off: the ``tricks`` attribute when the trial has it, else its parameters (the enabled flag,
or being some resource's owner).

What counts: finished trials only (complete, pruned or failed; running and waiting ones are left
out). ``trials`` counts them all; ``best`` and ``median`` are over the completed ones, because a
pruned trial's last value is an error at less progress, not comparable with a final one. Each carries
the Wilson 95% interval of an error rate of that size over the validation images the trials counted.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Iterable, Sequence

from optuna.trial import FrozenTrial, TrialState

from automl.trick_space import OWNER_PREFIX
from automl.records import ATTR_TRICKS, ATTR_VAL_SIZE, FINISHED, error_of, val_interval

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
    best_ci: list[float] | None = None
    """The Wilson 95% interval of ``best`` over its trial's validation images (None when unknown)."""
    median_ci: list[float] | None = None
    """The same for ``median``, when the completed trials all counted the same number of images."""


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
    finished = [t for t in trials if t.state.name in FINISHED]
    return [TrickRow(name, _side([t for t in finished if is_on(t, name)]),
                     _side([t for t in finished if not is_on(t, name)]))
            for name in trick_names(finished)]


def _side(trials: list[FrozenTrial]) -> Side:
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
    if not complete:
        return Side(trials=len(trials), complete=0, best=None, median=None)
    best = min(complete, key=error_of)
    median = statistics.median(error_of(t) for t in complete)
    sizes = {t.user_attrs.get(ATTR_VAL_SIZE) for t in complete}
    return Side(trials=len(trials), complete=len(complete), best=error_of(best), median=median,
                best_ci=val_interval(error_of(best), best.user_attrs.get(ATTR_VAL_SIZE)),
                median_ci=val_interval(median, sizes.pop()) if len(sizes) == 1 else None)


__all__ = ["FINISHED", "Side", "TrickRow", "is_on", "trick_names", "trick_table"]
