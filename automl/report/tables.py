"""Rich tables for the records of studies, trials and plugins."""

from __future__ import annotations

from typing import Any, Iterable

from rich.table import Table


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def studies_table(records: Iterable[dict[str, Any]]) -> Table:
    table = Table(title="studies")
    for column in ("name", "trials", "complete", "pruned", "failed", "best", "spent s", "dataset", "model"):
        table.add_column(column, justify="right" if column not in ("name", "dataset", "model") else "left")
    for r in records:
        table.add_row(r["name"], *(_fmt(r[k]) for k in ("n_trials", "n_complete", "n_pruned", "n_failed",
                                                         "best_value", "spent_seconds", "dataset", "model")))
    return table


def trials_table(records: Iterable[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for column in ("#", "state", "val error", "spent s", "ended", "tricks"):
        table.add_column(column, justify="right" if column in ("#", "val error", "spent s") else "left")
    for r in records:
        table.add_row(str(r["number"]), r["state"], _fmt(r["value"]), _fmt(r["spent_seconds"]),
                      r["end_reason"], ", ".join(r["tricks"]) or "-")
    return table


def params_table(params: dict[str, dict[str, Any]], title: str | None = None) -> Table:
    table = Table(title=title)
    table.add_column("trick")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    for group, values in sorted(params.items()):
        for i, (name, value) in enumerate(sorted(values.items())):
            table.add_row(group if i == 0 else "", name, _fmt(value))
        if not values:
            table.add_row(group, "-", "on")
    return table


def plugins_table(records: Iterable[dict[str, Any]]) -> Table:
    table = Table(title="tricks")
    for column in ("name", "owns", "parameters", "source"):
        table.add_column(column)
    for r in records:
        params = ", ".join(f"{k} {v['text']}" for k, v in r["params"].items()) or "-"
        table.add_row(r["name"], ", ".join(r["owns"]) or "-", params, r["source"])
    return table
