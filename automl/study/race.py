"""The rounds of a sequential comparison: each arm's standing against the reference from the cells trained so far
(``automl.sequential``), the seeds the next round trains, and after a budget the arms clearly worse than its
best (``--drop-losers``).

Everything here is recomputed from the cells in the database, so a comparison stopped in any round resumes at
that round, and a report rebuilds the same decisions.
"""

from __future__ import annotations

from typing import Sequence

from optuna.trial import FrozenTrial

from automl import records
from automl.sequential import UNDECIDED, WORSE, ArmSequence, Design, race_arms
from automl.study.arms import Arm

Cells = dict[str, dict[int, FrozenTrial]]
"""``{arm: {seed: its completed trial}}`` at one budget."""


def paired(done: Cells, arm: str, other: str) -> list[float]:
    """``arm - other`` seed by seed from seed 0, as far as both have a completed cell without a gap: the
    sequence a sequential test reads in order."""
    mine, theirs = done.get(arm, {}), done.get(other, {})
    diffs = []
    while len(diffs) in mine and len(diffs) in theirs:
        seed = len(diffs)
        diffs.append(mine[seed].value - theirs[seed].value)
    return diffs


def floor(done: Cells) -> float:
    """The spread below which paired differences of errors are not believed: one validation image (the lattice
    the errors lie on), 0 where no trial recorded its validation size."""
    sizes = [t.user_attrs.get(records.ATTR_VAL_SIZE) for cells in done.values() for t in cells.values()]
    sizes = [s for s in sizes if s]
    return 1.0 / max(sizes) if sizes else 0.0


def standing(done: Cells, arms: Sequence[Arm], reference: Arm, design: Design) -> tuple[dict[str, ArmSequence],
                                                                                        int | None]:
    """Each tested arm's sequence against the reference over the cells so far, and the seeds of the look the
    race waits for (None when every arm is decided or the maximum is reached)."""
    diffs = {arm.name: paired(done, arm.name, reference.name) for arm in arms if arm is not reference}
    if not diffs:
        return {}, None
    return race_arms(diffs, design, floor(done))


def round_seeds(sequences: dict[str, ArmSequence], next_look: int | None, reference: Arm) -> dict[str, int]:
    """The seeds each arm needs for the next look: the open arms and the reference up to it; {} when the race
    is over."""
    if next_look is None:
        return {}
    wanted = {name: next_look for name, sequence in sequences.items() if sequence.decided == UNDECIDED}
    return {**wanted, reference.name: next_look} if wanted else {}


def losers(done: Cells, arms: Sequence[Arm], design: Design) -> list[str]:
    """The arms decided worse than the arm with the lowest mean error at this budget, by the same sequential
    test over their paired seeds: what ``--drop-losers`` leaves out of the larger budgets."""
    means = {arm.name: sum(t.value for t in done[arm.name].values()) / len(done[arm.name])
             for arm in arms if done.get(arm.name)}
    if len(means) < 2:
        return []
    best = min(means, key=means.__getitem__)
    diffs = {name: paired(done, name, best) for name in means if name != best}
    sequences, _ = race_arms(diffs, design, floor(done))
    return [name for name, sequence in sequences.items() if sequence.decided == WORSE]


def sequential_gaps(done: Cells, arms: Sequence[Arm], reference: Arm, design: Design) -> int:
    """How many cells the race's next look waits for that have no result (failed, or still running elsewhere):
    0 once every arm is decided or at its maximum."""
    wanted = round_seeds(*standing(done, arms, reference, design), reference)
    return sum(seed not in done.get(name, {}) for name, seeds in wanted.items() for seed in range(seeds))


__all__ = ["Cells", "floor", "losers", "paired", "round_seeds", "sequential_gaps", "standing"]
