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
from automl.study.arms import Arm
from automl.study.cells import comparison_studies, compare_name, completed_cells

ALPHA = 0.05
"""The level at which a verdict says "better" or "worse" (p after Holm at most this)."""
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
                   done: dict[str, dict[int, FrozenTrial]]) -> dict[str, Any]:
    """Every arm at one budget, each against the reference over the seeds both completed, Holm across arms."""
    rows = [arm_summary(arm, done.get(arm.name, {})) for arm in arms]
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
    return {"budget": str(budget), "study": compare_name(name, budget), "arms": rows}


def comparison(name: str, arms: Sequence[Arm], reference: Arm, seeds: int,
               per_budget: Sequence[tuple[Budget, dict[str, dict[int, FrozenTrial]]]]) -> dict[str, Any]:
    """The whole comparison as ``automl compare --json`` prints it."""
    budgets = [budget_summary(name, arms, reference, budget, done) for budget, done in per_budget]
    means = {b["budget"]: {r["arm"]: r["mean"] for r in b["arms"] if r["mean"] is not None} for b in budgets}
    result = {"study": name, "reference": reference.name, "seeds": seeds, "ci_method": stats.MEAN_CI_METHOD,
              "test": "exact sign-flip permutation test on the paired differences, Holm-corrected across arms",
              "budgets": budgets, "crossings": [c.as_dict() for c in stats.crossings(means)]}
    return {**result, "steps_warning": steps_warning(result)}


def stored_comparison(storage: optuna.storages.BaseStorage, name: str) -> dict[str, Any]:
    """The comparison of study ``name`` (or the one budget study ``name`` belongs to) as ``comparison`` gives
    it, read from the database alone: the arms, reference and seeds its latest run recorded on each budget."""
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
    per_budget = [(Budget.parse(d["budget"]),
                   completed_cells(optuna.load_study(study_name=s.study_name, storage=storage), seeds))
                  for s, d in zip(summaries, designs)]
    return comparison(latest["study"], list(arms.values()), arms[latest["reference"]], seeds, per_budget)


def verdicts(result: dict[str, Any], alpha: float = ALPHA) -> list[str]:
    """One line per arm against the reference, worded no more strongly than the Holm-corrected test allows:
    better or worse only where p after Holm is at most ``alpha``, else "not distinguishable"."""
    reference = result["reference"]
    lines = []
    for arm in [r["arm"] for r in result["budgets"][0]["arms"] if r["arm"] != reference]:
        said: dict[str, list[str]] = {}
        for entry in result["budgets"]:
            test = next(r for r in entry["arms"] if r["arm"] == arm)["vs_reference"]
            if test is None:
                said.setdefault(f"not tested (fewer than {MIN_SEEDS} paired seeds)", []).append(entry["budget"])
                continue
            word = ("better than" if test["diff"] < 0 else "worse than") if test["p_holm"] <= alpha \
                else "not distinguishable from"
            said.setdefault(word, []).append(f"{entry['budget']} (p = {test['p']:.3g}, "
                                             f"{test['p_holm']:.3g} after Holm)")
        parts = [f"{word} {reference} at {', '.join(where)}" if word.endswith(("than", "from"))
                 else f"{word} at {', '.join(where)}" for word, where in said.items()]
        lines.append(f"{arm}: " + "; ".join(parts))
    return lines


def power_note(result: dict[str, Any]) -> str | None:
    """Said when the seeds are too few for any p after Holm to reach ``ALPHA``: then "not distinguishable" is
    all a comparison can say, and the note says how many seeds could say more."""
    tested = len(result["budgets"][0]["arms"]) - 1
    floor = min(1.0, smallest_p(result["seeds"]) * tested)  # Holm multiplies the smallest p by the arms tested
    if not tested or floor <= ALPHA:
        return None
    needed = next(n for n in range(MIN_SEEDS, 64) if smallest_p(n) * tested <= ALPHA)
    return (f"with {result['seeds']} seeds and {tested} arm(s) against {result['reference']}, no p after Holm can "
            f"fall below {floor:.3g}, so no arm can be told better or worse; --seeds {needed} or more can")


def smallest_p(seeds: int) -> float:
    """The smallest two-sided p-value the exact sign-flip test can give with ``seeds`` pairs: 2 / 2^n."""
    return 2.0 / 2 ** seeds if seeds <= stats.EXACT_SIGN_FLIPS_UP_TO else 1.0 / (stats.SIGN_FLIP_DRAWS + 1)


__all__ = ["ALPHA", "arm_summary", "budget_summary", "comparison", "power_note", "smallest_p", "stored_comparison",
           "verdicts"]
