"""The report of an `automl compare`: error against budget with bands, error against inference cost, the tests.

It is drawn from the comparison's result (``automl compare --json``'s dict), so `automl compare -o` and
`automl report` on a comparison write the same page; the files are written as the study report's are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Sequence

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from automl.budget import Budget
from automl.report.figures import Figure, png
from automl.study.analysis import power_note, verdicts

TARGET = "validation error"
MARKERS = "osD^v<>ph*"
"""One marker per budget in the cost figure (colours are the arms')."""


@dataclass
class ComparisonReport:
    result: dict[str, Any]
    """The comparison as ``automl compare --json`` prints it."""
    storage: str
    generated: str
    verdicts: list[str]
    note: str | None
    figures: list[Figure] = field(default_factory=list)
    template: str = "comparison.html.j2"

    @property
    def study_name(self) -> str:
        return self.result["study"]


def build_comparison_report(result: dict[str, Any], shown_url: str) -> ComparisonReport:
    """Everything the page shows, figures drawn in memory."""
    return ComparisonReport(result=result, storage=shown_url,
                            generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            verdicts=verdicts(result), note=power_note(result),
                            figures=[_error_vs_budget(result), _error_vs_cost(result)]
                            + ([_confidence_sequences(result)] if result.get("design") == "sequential" else []))


def _arm_names(result: dict[str, Any]) -> list[str]:
    return [row["arm"] for row in result["budgets"][0]["arms"]]


def _colours(result: dict[str, Any]) -> dict[str, Any]:
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {arm: cycle[i % len(cycle)] for i, arm in enumerate(_arm_names(result))}


def _budget_axis(budgets: Sequence[str]) -> tuple[list[float], str, bool]:
    """x positions of the budgets, the axis label, and whether the positions are amounts (else ranks)."""
    parsed = [Budget.parse(b) for b in budgets]
    if len({b.unit for b in parsed}) == 1:
        return [b.amount for b in parsed], f"trial budget ({parsed[0].unit})", True
    return list(range(len(parsed))), "trial budget", False


def _error_vs_budget(result: dict[str, Any]) -> Figure:
    name, title = "error_vs_budget", "Validation error against budget"
    caption = (f"Mean validation error over the paired seeds at each budget, with its 95% interval "
               f"({result['ci_method']}) as a band; a dotted line is an ensemble's single model.")
    budgets = [entry["budget"] for entry in result["budgets"]]
    xs, label, amounts = _budget_axis(budgets)
    colours = _colours(result)
    with plt.style.context("ggplot"):  # the look of the study report's figures
        fig, ax = plt.subplots(tight_layout=True)
        for arm in _arm_names(result):
            rows = [next(r for r in entry["arms"] if r["arm"] == arm) for entry in result["budgets"]]
            at = [(x, r) for x, r in zip(xs, rows) if r["mean"] is not None]
            if not at:
                continue
            ax.plot([x for x, _ in at], [r["mean"] for _, r in at], marker="o", color=colours[arm], label=arm)
            banded = [(x, r["ci"]) for x, r in at if r["ci"] is not None]
            if banded:
                ax.fill_between([x for x, _ in banded], [c[0] for _, c in banded], [c[1] for _, c in banded],
                                color=colours[arm], alpha=0.15, linewidth=0)
            single = [(x, r["single_model_mean"]) for x, r in at
                      if r["single_model_mean"] is not None and r["single_model_mean"] != r["mean"]]
            if single:
                ax.plot(*zip(*single), linestyle=":", color=colours[arm])
        if amounts and len(xs) > 1 and max(xs) / max(min(xs), 1e-12) >= 4:
            ax.set_xscale("log")  # budgets are usually doubled: equal steps on the page
        ax.set_xticks(xs, budgets)
        ax.minorticks_off()
        ax.set_xlabel(label)
        ax.set_ylabel(TARGET)
        ax.set_title(title)
        ax.legend()
    return Figure(name, title, caption, png(ax))


def _cost_of(row: dict[str, Any], measured: bool) -> float | None:
    return row["inference_ms_per_1000"] if measured else row["inference_cost"]


def _error_vs_cost(result: dict[str, Any]) -> Figure:
    name, title = "error_vs_cost", "Validation error against inference cost"
    rows = [(entry["budget"], row) for entry in result["budgets"] for row in entry["arms"] if row["mean"] is not None]
    measured = bool(rows) and all(row["inference_ms_per_1000"] is not None for _, row in rows)
    axis = "measured inference time (ms per 1000 images)" if measured else "forward passes per prediction"
    caption = (f"Each arm at each budget: its mean validation error (bars: 95% interval) against its {axis}. "
               "The grey line joins, per budget, the arms no other arm beats at a lower or equal cost (the "
               "Pareto front): an arm above it pays more at prediction time for no lower error.")
    if not rows:
        return Figure(name, title, caption, None, "no arm has a completed cell yet")
    colours = _colours(result)
    with plt.style.context("ggplot"):
        fig, ax = plt.subplots(tight_layout=True)
        for index, entry in enumerate(result["budgets"]):
            points = [(_cost_of(r, measured), r) for b, r in rows if b == entry["budget"]]
            for cost, row in points:
                low, high = row["ci"] or (row["mean"], row["mean"])
                ax.errorbar(cost, row["mean"], yerr=[[row["mean"] - low], [high - row["mean"]]],
                            marker=MARKERS[index % len(MARKERS)], color=colours[row["arm"]], capsize=3,
                            linestyle="none")
            front = _pareto_front([(cost, row["mean"]) for cost, row in points])
            ax.plot(*zip(*front), color="0.5", linewidth=1, drawstyle="steps-post", zorder=0)
        for arm, colour in colours.items():
            ax.plot([], [], color=colour, marker="o", linestyle="none", label=arm)
        for index, entry in enumerate(result["budgets"]):
            ax.plot([], [], color="0.3", marker=MARKERS[index % len(MARKERS)], linestyle="none",
                    label=entry["budget"])
        costs = [_cost_of(row, measured) for _, row in rows]
        if min(costs) > 0 and max(costs) / min(costs) >= 4:
            ax.set_xscale("log")  # an ensemble of M costs M times a single model: ratios, not differences
        ax.set_xlabel(axis)
        ax.set_ylabel(TARGET)
        ax.set_title(title)
        ax.legend(fontsize="small", loc="best")
    return Figure(name, title, caption, png(ax))


def _confidence_sequences(result: dict[str, Any]) -> Figure:
    name, title = "confidence_sequences", "Each arm against the reference, seed by seed"
    tolerance = result["sequential"]["tolerance"]
    caption = (f"The sequential test's repeated interval of each arm's mean difference from {result['reference']} "
               f"(arm - reference; below 0 is better) at every look, up to the seeds it was decided at; the "
               f"intervals of all arms hold together at 95% at every look. An arm stops once its interval leaves "
               f"0 (better or worse)" + (f" or lies within the dashed ±{tolerance:g} (equivalent)." if tolerance
                                          else "."))
    colours = _colours(result)
    budgets = result["budgets"]
    with plt.style.context("ggplot"):
        fig, axes = plt.subplots(1, len(budgets), sharey=True, squeeze=False, tight_layout=True,
                                 figsize=(4 * len(budgets) + 1, 4))
        for ax, entry in zip(axes[0], budgets):
            for row in entry["arms"]:
                sequence = row.get("sequence") or []
                if not sequence:
                    continue
                seeds = [look["seeds"] for look in sequence]
                ax.fill_between(seeds, [look["low"] for look in sequence], [look["high"] for look in sequence],
                                color=colours[row["arm"]], alpha=0.2, linewidth=0, step="mid")
                ax.plot(seeds, [look["diff"] for look in sequence], color=colours[row["arm"]], marker=".",
                        label=f"{row['arm']} ({row['decided']})")
            ax.axhline(0.0, color="0.3", linewidth=1)
            for edge in (tolerance, -tolerance) if tolerance else ():
                ax.axhline(edge, color="0.3", linewidth=1, linestyle="--")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("paired seeds")
            ax.set_title(entry["budget"])
            ax.legend(fontsize="small", loc="best")
        axes[0][0].set_ylim(-_span(budgets, tolerance), _span(budgets, tolerance))
        axes[0][0].set_ylabel(f"{TARGET}: arm - {result['reference']}")
        fig.suptitle(title)
    return Figure(name, title, caption, png(axes[0][0]))


def _span(budgets: list[dict[str, Any]], tolerance: float) -> float:
    """Half the height the sequences are drawn in: the first looks' intervals are many times wider than the
    last ones', so the axis follows the differences and the last intervals (the first ones run off it)."""
    sequences = [row["sequence"] for entry in budgets for row in entry["arms"] if row.get("sequence")]
    diffs = [abs(look["diff"]) for sequence in sequences for look in sequence]
    last = [max(abs(sequence[-1]["low"]), abs(sequence[-1]["high"])) for sequence in sequences]
    return max([3 * tolerance, 3 * max(diffs, default=0.0), 1.2 * max(last, default=0.0), 1e-3])


def _pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both cost and error, cheapest first."""
    front: list[tuple[float, float]] = []
    for cost, error in sorted(points):
        if not front or error < front[-1][1]:
            front.append((cost, error))
    return front


__all__ = ["ComparisonReport", "build_comparison_report"]
