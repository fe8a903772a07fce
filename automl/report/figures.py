"""The report's figures as PNG bytes: Optuna's matplotlib plots, and the budget spent over time in matplotlib.

A figure that cannot be drawn yet (no completed trial, nothing reported) comes back with a note
saying why instead of an image, so a report of a young study still renders.
"""

from __future__ import annotations

import io
import itertools
import warnings
from dataclasses import dataclass
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # figures go to files, never to a window (and a server has no display)

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import optuna  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402
from optuna.visualization import matplotlib as optuna_plots  # noqa: E402

from automl.records import ATTR_SPENT, ATTR_VAL_SIZE, FINISHED, state_name, val_interval  # noqa: E402
from automl.study.pareto import objective_names, pareto_front, rung_objectives  # noqa: E402

TARGET = "validation error"
COLOURS = {TrialState.COMPLETE: "tab:green", TrialState.PRUNED: "tab:orange", TrialState.FAIL: "tab:red"}
DPI = 100


@dataclass(frozen=True)
class Figure:
    name: str
    """Stable file stem: ``--png DIR`` writes ``DIR/<name>.png``."""
    title: str
    caption: str
    png: bytes | None
    note: str | None = None
    """Why there is no image (``png`` is None)."""


def draw_figures(study: optuna.Study, trials: Sequence[FrozenTrial], total_budget: float | None) -> list[Figure]:
    """Every figure of the report, in the order it shows them."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
    front = [_front(study, complete)] if len(study.directions) > 1 else []
    return [*front, _history(study, complete), _budget(trials, total_budget), _importances(study, complete),
            _intermediate(study, trials)]


def _target(study: optuna.Study) -> dict:
    """What Optuna's plots draw: the value, or, in a study of several objectives, the error (the first)."""
    return {"target": (lambda t: t.values[0]), "target_name": TARGET} if len(study.directions) > 1 else \
        {"target_name": TARGET}


def _front(study: optuna.Study, complete: list[FrozenTrial]) -> Figure:
    """Error against the first cost objective: every completed trial, the Pareto front with the 95% interval of
    its errors, and the knee named."""
    names = objective_names(study)
    name, title = "pareto_front", f"Pareto front: error against {names[1]}"
    front = pareto_front(complete)
    if not front:
        return Figure(name, title, "The trials no other dominates.", None, "no completed trial within the "
                      "constraints yet")
    knee = knee_of(front)
    caption = (f"Each completed trial's validation error against its {names[1]} (measured once trained); the "
               f"front ({len(front)} trials no other dominates on {', '.join(names)}) with the 95% interval of "
               f"each error over the validation images. The knee, where the front bends most, is trial "
               f"{knee.number}: validation error {knee.values[0]:.4f}, {names[1]} {knee.values[1]:.4g}.")
    with plt.style.context("ggplot"):
        fig, ax = plt.subplots(tight_layout=True)
        ax.scatter([t.values[1] for t in complete], [t.values[0] for t in complete], s=12, color="0.6",
                   label=f"completed ({len(complete)})")
        errors = [t.values[0] for t in front]
        bars = [val_interval(t.values[0], t.user_attrs.get(ATTR_VAL_SIZE)) for t in front]
        low = [e - (b[0] if b else e) for e, b in zip(errors, bars)]
        high = [(b[1] if b else e) - e for e, b in zip(errors, bars)]
        ax.errorbar([t.values[1] for t in front], errors, yerr=[low, high], fmt="o-", color="tab:green",
                    capsize=3, label=f"front ({len(front)})")
        ax.annotate(f"knee: trial {knee.number}", (knee.values[1], knee.values[0]), textcoords="offset points",
                    xytext=(8, 8))
        ax.set_title(title)
        ax.set_xlabel(names[1])
        ax.set_ylabel(TARGET)
        ax.legend(loc="upper right")
    return Figure(name, title, caption, png(ax))


def knee_of(front: Sequence[FrozenTrial]) -> FrozenTrial:
    """The front member farthest from the line through its two ends, on error and the first cost scaled to
    [0, 1] (the usual knee of a two-objective front); an end where the front has one or two members."""
    if len(front) <= 2:
        return front[0]
    points = [(t.values[1], t.values[0]) for t in front]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    span = lambda v: (max(v) - min(v)) or 1.0  # noqa: E731
    scaled = [((x - min(xs)) / span(xs), (y - min(ys)) / span(ys)) for x, y in points]
    (x0, y0), (x1, y1) = min(scaled), max(scaled)
    length = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5 or 1.0
    distance = [abs((y1 - y0) * x - (x1 - x0) * y + x1 * y0 - y1 * x0) / length for x, y in scaled]
    return front[max(range(len(front)), key=distance.__getitem__)]


def _history(study: optuna.Study, complete: list[FrozenTrial]) -> Figure:
    name, title = "optimization_history", "Optimisation history"
    caption = "Validation error of each completed trial, and the best so far."
    if not complete:
        return Figure(name, title, caption, None, "no completed trial yet")
    return Figure(name, title, caption, png(optuna_plots.plot_optimization_history(study, **_target(study))))


def _budget(trials: Sequence[FrozenTrial], total: float | None) -> Figure:
    name, title = "budget", "Budget spent over time"
    caption = ("Device-seconds spent by all finished trials, against wall-clock time; each point is a trial "
               "ending" + (f"; the dashed line is the study's total budget ({total:g} s)." if total else "."))
    done = sorted((t for t in trials if t.state.name in FINISHED and t.datetime_complete and ATTR_SPENT in t.user_attrs),
                  key=lambda t: t.datetime_complete)
    if not done:
        return Figure(name, title, caption, None, "no finished trial has recorded its device time yet")
    start = min(t.datetime_start or t.datetime_complete for t in done)
    minutes = [(t.datetime_complete - start).total_seconds() / 60 for t in done]
    spent = list(itertools.accumulate(t.user_attrs[ATTR_SPENT] for t in done))
    with plt.style.context("ggplot"):  # the look of Optuna's plots beside it
        fig, ax = plt.subplots(tight_layout=True)
        ax.step([0.0, *minutes], [0.0, *spent], where="post", color="0.35", linewidth=1, zorder=1)
        for state, colour in COLOURS.items():
            points = [(m, s) for m, s, t in zip(minutes, spent, done) if t.state == state]
            if points:
                ax.scatter(*zip(*points), s=14, color=colour, zorder=2, label=f"{state_name(state)} ({len(points)})")
        if total:
            ax.axhline(total, color="tab:blue", linestyle="--", label=f"total budget ({total:g} s)")
        ax.set_title(title)
        ax.set_xlabel("wall-clock minutes since the first trial started")
        ax.set_ylabel("device-seconds spent")
        ax.legend(loc="lower right")  # below the curve, which rises from the lower left
    return Figure(name, title, caption, png(ax))


IMPORTANCES_TRUSTED = 20
"""Below this many completed trials the importances come with a caution: the best tenth is a single trial."""


def _importances(study: optuna.Study, complete: list[FrozenTrial]) -> Figure:
    name, title = "param_importances", "Parameter importances"
    # PED-ANOVA scores each parameter over the trials that have it, so the define-by-run ones (a
    # trick's own parameters, owner.<resource>) count; fANOVA only scores parameters every completed
    # trial has, and is far slower (under 0.1 s against 2-4 s on 500 trials, benchmarks/RESULTS.md).
    caption = ("How much each parameter matters to reaching the best trials (Optuna's PED-ANOVA over the "
               "completed trials); the trick table above gives the same answer trick by trick, in errors.")
    if len(complete) < 2:
        return Figure(name, title, caption, None, f"needs at least two completed trials, the study has {len(complete)}")
    if not any(t.params for t in complete):
        return Figure(name, title, caption, None, "the completed trials have no parameters to compare")
    with warnings.catch_warnings():
        # Optuna warns on the terminal where a parameter has too few trials to score ("regimes with fewer than 2
        # trials"); the page says it instead, beside the figure.
        warnings.simplefilter("ignore", UserWarning)
        ax = optuna_plots.plot_param_importances(study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(),
                                                 **_target(study))
    if len(complete) < IMPORTANCES_TRUSTED:
        caption += (f" Caution: from {len(complete)} completed trials only. PED-ANOVA compares the best tenth of "
                    f"the trials with the rest, so below {IMPORTANCES_TRUSTED} trials that tenth is one trial and "
                    "the ranking is mostly noise.")
    width, height = ax.get_figure().get_size_inches()
    ax.get_figure().set_size_inches(width, max(height, 1.5 + 0.25 * len(ax.get_yticklabels())))  # a bar per parameter
    return Figure(name, title, caption, png(ax))


def _intermediate(study: optuna.Study, trials: Sequence[FrozenTrial]) -> Figure:
    name, title = "intermediate_values", "Validation error at each rung"
    caption = ("What each trial reported to the pruner at each rung (a complete run at a budget, or a point of "
               "progress through the one run, as the study's fidelity says); pruned trials stop early.")
    if len(study.directions) > 1:
        return _rung_errors(name, title, caption, trials)
    if not any(t.intermediate_values for t in trials):
        return Figure(name, title, caption, None, "no trial has reported a rung yet")
    ax = optuna_plots.plot_intermediate_values(study)
    if ax.get_legend() is not None:
        ax.get_legend().remove()  # one entry per trial: hundreds of lines of "TrialN"
    ax.set_xlabel("rung")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(TARGET)
    return Figure(name, title, caption, png(ax))


def _rung_errors(name: str, title: str, caption: str, trials: Sequence[FrozenTrial]) -> Figure:
    """The rungs of a study of several objectives, whose trials keep them in ``rung_objectives`` (Optuna's
    ``report`` refuses such studies): the error at each rung, a line per trial, coloured by how it ended."""
    reached = [(t, rung_objectives(t)) for t in trials if rung_objectives(t)]
    if not reached:
        return Figure(name, title, caption, None, "no trial has reported a rung yet")
    with plt.style.context("ggplot"):
        fig, ax = plt.subplots(tight_layout=True)
        for trial, rungs in reached:
            steps = sorted(rungs)
            ax.plot(steps, [rungs[k][0] for k in steps], marker="o", markersize=3, linewidth=1, alpha=0.7,
                    color=COLOURS.get(trial.state, "0.5"))
        ax.set_title(title)
        ax.set_xlabel("rung")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(TARGET)
    return Figure(name, title, caption, png(ax))


def png(ax) -> bytes:
    """The figure of ``ax`` as PNG bytes; the figure is closed."""
    fig = ax.get_figure()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)  # pyplot keeps every open figure otherwise
    return buffer.getvalue()


__all__ = ["Figure", "draw_figures", "knee_of", "png"]
