"""The analysis of a comparison: each arm's mean over seeds with its interval and costs, paired tests against
the reference with Holm's correction, where the order of the means flips between budgets, and the verdicts
worded no more strongly than the tests allow."""

from __future__ import annotations

from typing import Any, Sequence

import optuna
from optuna.trial import FrozenTrial

from automl import records, stats
from automl.budget import Budget
from automl.errors import UserError
from automl.seeds import MIN_SEEDS
from automl.sequential import (ALPHA, BETTER, EQUIVALENT, FIRST_LOOK, UNDECIDED, WORSE,
                                Design as SequentialDesign)
from automl.study.arms import Arm
from automl.study.cells import comparison_studies, compare_name, completed_cells
from automl.study.race import paired, standing

REFERENCE, DROPPED = "reference", "dropped"
"""``decided`` of the reference's row, and of an arm ``--drop-losers`` left out of a budget."""
FIXED_TEST = "exact sign-flip permutation test on the paired differences, Holm-corrected across arms"
SEQUENTIAL_TEST = ("group-sequential paired t test looked at after every seed (Hwang-Shih-DeCani spending), "
                   "repeated confidence intervals; Holm across arms (alpha of a decided arm passed to the open ones)")
STEPS_SPREAD = 0.10
"""How far (max - min, over the mean) the steps of one arm's seeds may spread at a budget before `compare` warns:
beyond it the errors say more about how many steps each seed got than about the arm."""


def _mean(values: Sequence[Any]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return sum(present) / len(present) if present else None


def arm_summary(arm: Arm, cells: dict[int, FrozenTrial]) -> dict[str, Any]:
    """One arm at one budget: n, the mean validation error over seeds with its interval, and its costs."""
    trials = [cells[s] for s in sorted(cells)]
    values = [t.value for t in trials]
    mean, ci = stats.mean_ci(values) if len(values) >= MIN_SEEDS else (_mean(values), None)
    attrs = [t.user_attrs for t in trials]
    return {
        "arm": arm.name, "tricks": list(arm.tricks), "n": len(values), "mean": mean,
        "ci": list(ci) if ci is not None else None,
        "single_model_mean": _mean([a.get(records.ATTR_VAL_ERROR_MODEL) for a in attrs]),
        records.INFERENCE_COST: max((a.get(records.INFERENCE_COST, 1) for a in attrs), default=None),
        "inference_ms_per_1000": _mean([a.get(records.ATTR_INFERENCE_MS) for a in attrs]),
        "inference_flops_per_image": _mean([a.get(records.ATTR_INFERENCE_FLOPS) for a in attrs]),
        "steps": _mean([a.get(records.ATTR_STEPS) for a in attrs]),
        "steps_range": _range([a.get(records.ATTR_STEPS) for a in attrs]),
        "seeds": sorted(cells), "values": values,
    }


def _range(values: Sequence[Any]) -> list[Any] | None:
    present = [v for v in values if v is not None]
    return [min(present), max(present)] if present else None


def steps_warning(result: dict[str, Any]) -> str | None:
    """A warning when, at some budget, the seeds of an arm trained numbers of steps that differ by more than
    ``STEPS_SPREAD`` of their mean (only a budget in seconds can: the machine's speed set the steps), naming the
    widest spread, the cause and the fix; None otherwise."""
    spreads = [((row["steps_range"][1] - row["steps_range"][0]) / row["steps"], entry["budget"], row)
               for entry in result["budgets"] for row in entry["arms"] if row.get("steps_range") and row["steps"]]
    wide = [s for s in spreads if s[0] > STEPS_SPREAD]
    if not wide:
        return None
    spread, budget, row = max(wide, key=lambda s: s[0])
    low, high = row["steps_range"]
    return (f"the seeds of {len(wide)} arm-budget cell(s) trained numbers of steps more than "
            f"{STEPS_SPREAD:.0%} apart; the widest: arm {row['arm']} at {budget}, {low} to {high} steps "
            f"({spread:.0%} of the mean). The time budget bought what the machine gave each seed, so the errors "
            f"follow the steps as much as the recipe: compare at a budget in steps (--budgets 300steps), or on "
            f"a quiet machine")


def budget_summary(name: str, arms: Sequence[Arm], reference: Arm, budget: Budget,
                   done: dict[str, dict[int, FrozenTrial]], sequential: SequentialDesign | None = None,
                   dropped: Sequence[str] = ()) -> dict[str, Any]:
    """Every arm at one budget against the reference: by the sequential design's race, or over the seeds both
    completed by the sign-flip test with Holm across arms; each arm's ``seeds_used``, ``decided`` and
    ``decided_at`` either way (``dropped``: arms ``--drop-losers`` left out of this budget)."""
    rows = [arm_summary(arm, done.get(arm.name, {})) for arm in arms]
    if sequential is None:
        _fixed_tests(rows, arms, reference, done)
    else:
        _sequential_tests(rows, arms, reference, done, sequential, dropped)
    return {"budget": str(budget), "study": compare_name(name, budget), "arms": rows}


def _fixed_tests(rows: list[dict[str, Any]], arms: Sequence[Arm], reference: Arm,
                 done: dict[str, dict[int, FrozenTrial]]) -> None:
    ref_cells = done.get(reference.name, {})
    tests: dict[str, stats.Versus] = {}
    for arm in arms:
        common = sorted(set(done.get(arm.name, {})) & set(ref_cells))
        if arm is not reference and len(common) >= MIN_SEEDS:
            tests[arm.name] = stats.versus([done[arm.name][s].value for s in common],
                                           [ref_cells[s].value for s in common])
    adjusted = dict(zip(tests, stats.holm([t.p for t in tests.values()])))
    for row in rows:
        test = tests.get(row["arm"])
        row["vs_reference"] = test.as_dict(adjusted[row["arm"]]) if test is not None else None
        decided = REFERENCE if row["arm"] == reference.name else UNDECIDED
        if test is not None and adjusted[row["arm"]] <= ALPHA:
            decided = BETTER if test.diff < 0 else WORSE
        row.update(seeds_used=row["n"], decided=decided, decided_at=row["n"] if decided in (BETTER, WORSE) else None)


def _sequential_tests(rows: list[dict[str, Any]], arms: Sequence[Arm], reference: Arm,
                      done: dict[str, dict[int, FrozenTrial]], design: SequentialDesign,
                      dropped: Sequence[str]) -> None:
    running = [arm for arm in arms if arm.name not in dropped]
    sequences, _ = standing(done, running, reference, design)
    for row in rows:
        arm = row["arm"]
        common = paired(done, arm, reference.name)
        sequence = sequences.get(arm)
        last = sequence.looks[-1] if sequence and sequence.looks else None
        row["vs_reference"] = None if last is None else {
            "diff": last[1], "ci": [last[2], last[3]], "p": None, "p_holm": None,
            "p_better": stats.p_better(common, [0.0] * len(common)) if len(common) >= MIN_SEEDS else None}
        decided = REFERENCE if arm == reference.name else DROPPED if arm in dropped else UNDECIDED
        row.update(seeds_used=row["n"], decided=sequence.decided if sequence else decided,
                   decided_at=sequence.decided_at if sequence else None,
                   sequence=sequence.as_dict()["sequence"] if sequence else [])


def comparison(name: str, arms: Sequence[Arm], reference: Arm, seeds: int,
               per_budget: Sequence[tuple[Budget, dict[str, dict[int, FrozenTrial]], Sequence[str]]],
               sequential: SequentialDesign | None = None) -> dict[str, Any]:
    """The whole comparison as ``automl compare --json`` prints it: ``per_budget`` holds each budget's cells and
    the arms dropped before it."""
    budgets = [budget_summary(name, arms, reference, budget, done, sequential, dropped)
               for budget, done, dropped in per_budget]
    means = {b["budget"]: {r["arm"]: r["mean"] for r in b["arms"] if r["mean"] is not None} for b in budgets}
    trained = sum(row["n"] for entry in budgets for row in entry["arms"])
    fixed = len(arms) * seeds * len(budgets)
    result = {"study": name, "reference": reference.name, "seeds": seeds, "ci_method": stats.MEAN_CI_METHOD,
              "design": "fixed" if sequential is None else "sequential",
              "sequential": None if sequential is None else sequential.as_dict(),
              "test": FIXED_TEST if sequential is None else SEQUENTIAL_TEST,
              "cells": {"trained": trained, "fixed_design": fixed, "saved": fixed - trained},
              "budgets": budgets, "crossings": [c.as_dict() for c in stats.crossings(means)]}
    return {**result, "steps_warning": steps_warning(result)}


def stored_comparison(storage: optuna.storages.BaseStorage, name: str) -> dict[str, Any]:
    """The comparison of study ``name`` (or the one budget study ``name`` belongs to) as ``comparison`` gives
    it, read from the database alone: the arms, reference, seeds and design its latest run recorded on each
    budget."""
    summaries = comparison_studies(storage, name)
    designs = [s.user_attrs[records.STUDY_COMPARE] for s in summaries]
    if not summaries or any("arms" not in d for d in designs):
        raise UserError(f"no comparison of study {name!r} in this database (or one written before automl recorded "
                        f"its arms); run `automl compare` on its study file, then report it")
    arms: dict[str, Arm] = {}
    for design in designs:  # the arms of every budget, in the order the first run that had them gave
        for arm in design["arms"]:
            arms.setdefault(arm["arm"], Arm(arm["arm"], tuple(arm["tricks"]), {}))
    latest = designs[-1]
    seeds = max(d["seeds"] for d in designs)
    sequential = SequentialDesign.from_dict(latest["sequential"]) if latest.get("sequential") else None
    per_budget = [(Budget.parse(d["budget"]),
                   completed_cells(optuna.load_study(study_name=s.study_name, storage=storage), seeds),
                   d.get("dropped", []))
                  for s, d in zip(summaries, designs)]
    return comparison(latest["study"], list(arms.values()), arms[latest["reference"]], seeds, per_budget, sequential)


def verdicts(result: dict[str, Any], alpha: float = ALPHA) -> list[str]:
    """One line per arm against the reference, worded no more strongly than the test allows: in the fixed design
    better or worse only where p after Holm is at most ``alpha``, else "not distinguishable"; in the sequential
    one what the race decided and at how many seeds, with the interval it was decided on."""
    reference = result["reference"]
    lines = []
    for arm in [r["arm"] for r in result["budgets"][0]["arms"] if r["arm"] != reference]:
        said: dict[str, list[str]] = {}
        for entry in result["budgets"]:
            row = next(r for r in entry["arms"] if r["arm"] == arm)
            word, where = (_sequential_verdict if result.get("design") == "sequential" else _fixed_verdict)(
                row, entry["budget"], alpha)
            said.setdefault(word, []).append(where)
        parts = [f"{word} {reference} at {', '.join(where)}" if word.endswith(("than", "from", "to", "against"))
                 else f"{word} at {', '.join(where)}" for word, where in said.items()]
        lines.append(f"{arm}: " + "; ".join(parts))
    if result.get("design") == "sequential":
        cells = result["cells"]
        lines.append(f"cells: {cells['trained']} trained, against {cells['fixed_design']} for the fixed design of "
                     f"{result['seeds']} seeds per arm ({cells['saved']} saved)")
    return lines


def _fixed_verdict(row: dict[str, Any], budget: str, alpha: float) -> tuple[str, str]:
    test = row["vs_reference"]
    if test is None:
        return f"not tested (fewer than {MIN_SEEDS} paired seeds)", budget
    word = ("better than" if test["diff"] < 0 else "worse than") if test["p_holm"] <= alpha \
        else "not distinguishable from"
    return word, f"{budget} (p = {test['p']:.3g}, {test['p_holm']:.3g} after Holm)"


_SEQUENTIAL_WORDS = {BETTER: "better than", WORSE: "worse than", EQUIVALENT: "equivalent to",
                     UNDECIDED: "undecided against", DROPPED: "dropped (worse than the best at a smaller budget)"}


def _sequential_verdict(row: dict[str, Any], budget: str, alpha: float) -> tuple[str, str]:
    decided = row["decided"]
    test = row["vs_reference"]
    if decided == DROPPED or test is None:
        return (_SEQUENTIAL_WORDS[DROPPED] if decided == DROPPED
                else f"not tested (fewer than {FIRST_LOOK} paired seeds)"), budget
    interval = f"{test['diff']:+.4f} [{test['ci'][0]:+.4f}, {test['ci'][1]:+.4f}]"
    seeds = f"at {row['decided_at']} seeds" if decided != UNDECIDED else f"after {row['seeds_used']} seeds"
    return _SEQUENTIAL_WORDS[decided], f"{budget} ({seeds}, {interval})"


def fixed_seeds_warning(seeds: int, tested: int) -> str | None:
    """Said before a fixed design of ``seeds`` seeds is trained where no p after Holm over ``tested`` arms can
    reach ``ALPHA``: it would train every cell and could only say "not distinguishable"."""
    short = _too_few_seeds(seeds, tested)
    if short is None:
        return None
    floor, needed = short
    return (f"--seeds {seeds} with {tested} arm(s) tested cannot tell any arm better or worse: the smallest p "
            f"after Holm is {floor:.3g}; give --seeds {needed} or more, or leave --seeds out for the sequential "
            "design, which adds seeds until each arm is decided")


def power_note(result: dict[str, Any]) -> str | None:
    """Said when the fixed design's seeds are too few for any p after Holm to reach ``ALPHA``: then "not
    distinguishable" is all a comparison can say, and the note says how many seeds could say more."""
    if result.get("design") == "sequential":
        return None
    tested = len(result["budgets"][0]["arms"]) - 1
    short = _too_few_seeds(result["seeds"], tested)
    if short is None:
        return None
    floor, needed = short
    return (f"with {result['seeds']} seeds and {tested} arm(s) against {result['reference']}, no p after Holm can "
            f"fall below {floor:.3g}, so no arm can be told better or worse; --seeds {needed} or more can, or "
            "the sequential design (leave --seeds out)")


def _too_few_seeds(seeds: int, tested: int) -> tuple[float, int] | None:
    """(the smallest p after Holm ``seeds`` seeds allow over ``tested`` arms, the fewest seeds that reach
    ``ALPHA``) where that smallest p is above ``ALPHA``; None where a verdict is possible."""
    floor = min(1.0, smallest_p(seeds) * tested)  # Holm multiplies the smallest p by the arms tested
    if not tested or floor <= ALPHA:
        return None
    return floor, next(n for n in range(MIN_SEEDS, 64) if smallest_p(n) * tested <= ALPHA)


def smallest_p(seeds: int) -> float:
    """The smallest two-sided p-value the exact sign-flip test can give with ``seeds`` pairs: 2 / 2^n."""
    return 2.0 / 2 ** seeds if seeds <= stats.EXACT_SIGN_FLIPS_UP_TO else 1.0 / (stats.SIGN_FLIP_DRAWS + 1)


__all__ = ["ALPHA", "DROPPED", "REFERENCE", "arm_summary", "budget_summary", "comparison", "fixed_seeds_warning",
           "power_note", "smallest_p", "stored_comparison", "verdicts"]
