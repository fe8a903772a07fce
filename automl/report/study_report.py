"""``automl report``: gather what one study shows (summary, best trial, trick table, figures), write it as HTML or PNGs.

Everything is drawn in memory first; files are written only once all of it succeeded, the HTML
file in one rename, so a failed report leaves nothing half-written.
"""

from __future__ import annotations

import statistics
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import sqlalchemy

from automl.errors import UserError
from automl.files import atomic_write
from automl.report.figures import Figure, draw_figures
from automl.report.tricks import TrickRow, trick_table

if TYPE_CHECKING:
    from automl.report.comparison_report import ComparisonReport
from automl.storage.models import BudgetLedgerModel
from automl.study.incumbent import ranked_records
from automl.records import ATTR_DATA_WAIT, ATTR_SPENT, STATE_NAMES, mark_ties, trick_params

DEFAULT_HTML = "report.html"


@dataclass
class StudyReport:
    study_name: str
    storage: str
    """The storage URL as it may be shown (no password)."""
    generated: str
    study_attrs: dict[str, Any]
    states: dict[str, int]
    """Trials by state, every state listed (0 when none)."""
    spent_seconds: float
    total_budget: float | None
    """The ledger's total budget in device-seconds; None when the study has none (or no ledger)."""
    best: dict[str, Any] | None
    """``automl best``'s record of the best trial (its interval and ties marked), with ``trick_params`` beside it."""
    tricks: list[TrickRow]
    figures: list[Figure] = field(default_factory=list)
    template: str = "report.html.j2"
    data_wait: tuple[float, float] | None = None
    """(median, largest) fraction of a trial's training time spent waiting for data; None before any trial."""

    @property
    def n_trials(self) -> int:
        return sum(self.states.values())


def build_report(study: optuna.Study, engine: sqlalchemy.Engine, shown_url: str) -> StudyReport:
    """Read the study once and draw every figure, in memory."""
    with warnings.catch_warnings():
        # Optuna marks its matplotlib plots and its retry helpers experimental: a notice for
        # programmers using Optuna's API, not for the reader of a report.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _build(study, engine, shown_url)


def _build(study: optuna.Study, engine: sqlalchemy.Engine, shown_url: str) -> StudyReport:
    trials = study.get_trials(deepcopy=False)
    total = total_budget(engine, study.study_name)
    # The best configuration as `automl best` ranks them: by its mean over seeds (automl.study.incumbent).
    completed = ranked_records(trials)
    record = completed[0] if completed else None
    if record is not None:
        mark_ties([record], completed, interval="mean_ci")
        record["trick_params"] = trick_params(record)
    return StudyReport(
        study_name=study.study_name, storage=shown_url,
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        study_attrs=dict(study.user_attrs),
        states={name: sum(t.state.name == state for t in trials) for state, name in STATE_NAMES.items()},
        spent_seconds=sum(t.user_attrs.get(ATTR_SPENT, 0.0) for t in trials),
        total_budget=total, best=record, tricks=trick_table(trials),
        figures=draw_figures(study, trials, total), data_wait=_data_wait(trials))


def _data_wait(trials: list[optuna.trial.FrozenTrial]) -> tuple[float, float] | None:
    waits = [t.user_attrs[ATTR_DATA_WAIT] for t in trials if ATTR_DATA_WAIT in t.user_attrs]
    return (statistics.median(waits), max(waits)) if waits else None


def total_budget(engine: sqlalchemy.Engine, study_name: str) -> float | None:
    """The study's total budget from automl's ledger; None without one (a plain Optuna database has no ledger)."""
    if not sqlalchemy.inspect(engine).has_table(BudgetLedgerModel.__tablename__):
        return None
    # Only the one column every revision of the ledger has: a report reads a database written by an
    # older automl as it is, without asking for `automl db upgrade`.
    query = sqlalchemy.select(BudgetLedgerModel.total_seconds).where(BudgetLedgerModel.study_name == study_name)
    with engine.connect() as connection:
        return connection.execute(query).scalar()


def output_paths(output: str | None, png_dir: str | None) -> tuple[Path | None, Path | None]:
    """Where to write the HTML file and the PNGs (``--png`` alone: the figures only); checked before any work."""
    html = Path(output) if output else (None if png_dir else Path(DEFAULT_HTML))
    if html is not None:
        if html.is_dir():
            raise UserError(f"-o {str(html)!r} is a folder; give a file name such as {str(html / DEFAULT_HTML)!r}")
        if not html.parent.is_dir():
            raise UserError(f"cannot write {str(html)!r}: folder {str(html.parent)!r} does not exist; "
                            "create it or give another -o")
    pngs = Path(png_dir) if png_dir else None
    if pngs is not None and pngs.exists() and not pngs.is_dir():
        raise UserError(f"--png {str(pngs)!r} is a file; give a folder (it is created when missing)")
    return html, pngs


def write_report(report: "StudyReport | ComparisonReport", html: Path | None, png_dir: Path | None) -> list[Path]:
    """Write the HTML file and/or one PNG per drawn figure; returns the paths written."""
    from automl.report.html import render_html

    text = render_html(report) if html is not None else None
    written = []
    if png_dir is not None:
        png_dir.mkdir(parents=True, exist_ok=True)
        for figure in report.figures:
            if figure.png is not None:
                path = png_dir / f"{figure.name}.png"
                path.write_bytes(figure.png)
                written.append(path)
    if html is not None and text is not None:
        atomic_write(html, text)  # a browser reloading sees the old report or the new one
        written.append(html)
    return written


__all__ = ["DEFAULT_HTML", "StudyReport", "build_report", "output_paths", "total_budget", "write_report"]
