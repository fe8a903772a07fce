"""What the commands print: rich tables and lines for the records of studies, trials, plugins, retrainings and
comparisons."""

from __future__ import annotations

from typing import Any, Iterable

from rich.table import Table

from automl.records import (ATTR_EPOCHS, ATTR_EVAL_SECONDS, ATTR_INFERENCE_DEVICE, ATTR_INFERENCE_FLOPS,
                            ATTR_INFERENCE_MS, ATTR_REPEAT_OF, ATTR_RUNG_BUDGETS, ATTR_STEPS, ATTR_TRAIN_SECONDS,
                            INFERENCE_COST, trick_params)
from automl.study.costs import ATTR_COST_BEFORE


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def interval(ci: list[float] | tuple[float, float] | None) -> str:
    """A 95% interval as ``[low, high]``, or ``-`` when there is none."""
    return "-" if ci is None else f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def studies_table(records: Iterable[dict[str, Any]]) -> Table:
    table = Table(title="studies")
    for column in ("name", "trials", "complete", "pruned", "failed", "best", "spent s", "dataset", "model"):
        table.add_column(column, justify="right" if column not in ("name", "dataset", "model") else "left")
    for r in records:
        table.add_row(r["name"], *(_fmt(r[k]) for k in ("n_trials", "n_complete", "n_pruned", "n_failed",
                                                         "best_value", "spent_seconds", "dataset", "model")))
    return table


def _si(value: float) -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}"
    return f"{value:.3g} "


def inference_text(attrs: dict[str, Any], short: bool = False) -> str:
    """The cost of one prediction from a trial's user attributes: forward passes, then, where measured, the
    latency per 1000 images on its device and the FLOPs per image (``short``: for a table cell)."""
    passes = attrs.get(INFERENCE_COST, 1)
    ms, flops = attrs.get(ATTR_INFERENCE_MS), attrs.get(ATTR_INFERENCE_FLOPS)
    if short:
        return " ".join([f"{passes}x", *([f"{ms:.3g} ms/1k"] if ms is not None else []),
                         *([f"{_si(flops)}FLOP"] if flops is not None else [])])
    parts = [f"{passes} forward pass{'' if passes == 1 else 'es'} per prediction"]
    if ms is not None:
        parts.append(f"{ms:.3g} ms per 1000 images on {attrs.get(ATTR_INFERENCE_DEVICE)}")
    if flops is not None:
        parts.append(f"{_si(flops)}FLOPs per image")
    return ", ".join(parts)


def _cost_before_text(attrs: dict[str, Any]) -> str:
    """A trial that did not complete: its inference cost as measured before training (``[study] objectives`` or
    ``constraints``), marked so; "-" where none was."""
    before = attrs.get(ATTR_COST_BEFORE)
    if before is None:
        return "-"
    return f"{before['passes']}x {before['latency_ms'] * 1000:.3g} ms/1k {_si(before['flops'])}FLOP (before)"


def _percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.0f}%"


def _spent_parts(attrs: dict[str, Any]) -> tuple[str, str]:
    """How a trial spent its seconds, as the two columns after ``spent s``: ``train + eval`` and ``steps (epochs)``
    (two columns, not four, so that the table still fits 80 characters when it is piped)."""
    seconds = [attrs.get(ATTR_TRAIN_SECONDS), attrs.get(ATTR_EVAL_SECONDS)]
    steps, epochs = attrs.get(ATTR_STEPS), attrs.get(ATTR_EPOCHS)
    return ("-" if None in seconds else " + ".join(f"{s:.3g}" for s in seconds),
            "-" if steps is None else f"{steps} ({_fmt(epochs)})")


def budgets_text(attrs: dict[str, Any]) -> str:
    """The budgets of the runs a trial trained rung by rung (``2, 6, 18steps``), and what it repeats."""
    budgets = attrs.get(ATTR_RUNG_BUDGETS)
    if not budgets:
        return "-"
    unit = budgets[-1].lstrip("0123456789.")
    shown = ", ".join(b[:-len(unit)] if unit and b.endswith(unit) else b for b in budgets[:-1])
    text = (shown + ", " if shown else "") + budgets[-1]
    repeat = attrs.get(ATTR_REPEAT_OF)
    return text if repeat is None else f"{text} (repeat of {repeat})"


def trials_table(records: Iterable[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    numbers = ("#", "val error", "spent s", "train + eval", "steps (ep)", "data wait")
    columns = ("#", "state", "val error", "95% interval", "inference", *numbers[2:5], "budgets", *numbers[5:],
               "ended", "tricks")
    for column in columns:
        # An interval cut over two lines reads as two numbers: narrow terminals wrap the words instead.
        table.add_column(column, justify="right" if column in numbers else "left", no_wrap=column == "95% interval")
    for r in records:
        attrs = r["user_attrs"]
        cost = inference_text(attrs, short=True) if r["state"] == "COMPLETE" else _cost_before_text(attrs)
        table.add_row(str(r["number"]), r["state"], _fmt(r["value"]), interval(r["val_ci"]), cost,
                      _fmt(r["spent_seconds"]), *_spent_parts(attrs), budgets_text(attrs),
                      _percent(r.get("data_wait_fraction")), r["end_reason"], ", ".join(r["tricks"]) or "-")
    captions = ["95% interval: Wilson's, from the number of validation images"] if any(
        r["val_ci"] is not None for r in records) else []
    captions.append("spent s: what the trial charged to the study's total budget (training, its rung "
                    "evaluations, checkpoints); train: what its own trial budget counts")
    if any(r["state"] != "COMPLETE" and ATTR_COST_BEFORE in r["user_attrs"] for r in records):
        captions.append("(before): the inference cost measured before the trial trained ([study] objectives, "
                        "constraints)")
    if any(ATTR_RUNG_BUDGETS in r["user_attrs"] for r in records):
        captions.append("budgets: the complete runs a trial trained, one per rung it reached (budget fidelity)")
    if any(r.get("data_wait_fraction") is not None for r in records):
        captions.append("data wait: the share of the training time spent waiting for batches")
    if captions:
        table.caption = "; ".join(captions)
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


def models_table(records: Iterable[dict[str, Any]], forms: str) -> Table:
    """``automl plugins list``: the models plugins provide (``ModelInfo.describe``), beside the tricks; ``forms``
    the families' (``Host.forms``)."""
    return _registered_table(f"models (also {forms})", records)


def datasets_table(records: Iterable[dict[str, Any]], forms: str) -> Table:
    """``automl plugins list``: the data sets beside the tricks, with their own options."""
    return _registered_table(f"data sets (also {forms})", records)


def _registered_table(title: str, records: Iterable[dict[str, Any]]) -> Table:
    table = Table(title=title)
    for column in ("name", "options", "source"):
        table.add_column(column)
    for r in records:
        table.add_row(r["name"], ", ".join(f"{k} = {v!r}" for k, v in r["options"].items()) or "-", r["source"])
    return table


def trick_lines(record: dict[str, Any]) -> list[str]:
    """``automl plugins show``: one trick described (``TrickInfo.describe``), line by line (rich markup)."""
    lines = [f"[bold]{record['name']}[/bold]  ({record['source']})"]
    if record["doc"]:
        lines.append(record["doc"])
    lines.append(f"owns: {', '.join(record['owns']) or '-'}"
                 + (f" (declared here: {', '.join(record['declares'])})" if record["declares"] else ""))
    lines.append(f"order: {record['order']} (hooks run lowest first, then by name)")
    lines.append(f"hooks: {', '.join(record['hooks']) or '-'}")
    lines.append("parameters:" if record["params"] else "parameters: -")
    lines += [f"  {record['name']}.{name}  {space['text']}" for name, space in record["params"].items()]
    if record["options"]:
        lines.append("options (set in the study file, never searched): "
                     + ", ".join(f"{k} = {v!r}" for k, v in record["options"].items()))
    return lines


def best_lines(records: list[dict[str, Any]], study_name: str) -> list[Any]:
    """``automl best``: per trial a line, its parameters grouped by trick, and its tricks."""
    if not records:
        return [f"study {study_name!r} has no completed trial yet"]
    shown: list[Any] = []
    for rank, record in enumerate(records, 1):
        shown.append(f"#{rank}: trial {record['number']} of {study_name}: " + _seeds_text(record)
                     + (", tied with #1" if record.get("tied_with_best") else ""))
        if rank == 1 and record.get("tied_trials") is not None:
            shown.append(ties_line(record["tied_trials"]))
        shown.append(f"inference: {inference_text(record['user_attrs'])}")
        shown.append(params_table(trick_params(record)))
        shown.append(f"tricks: {', '.join(record['tricks']) or '(none)'}")
    return shown


def front_lines(front: list[dict[str, Any]], study_name: str) -> list[Any]:
    """``automl best`` on a study of several objectives: each member of its Pareto front, lowest error first."""
    if not front:
        return [f"study {study_name!r} has no completed trial within its constraints yet"]
    shown: list[Any] = [f"the Pareto front of {study_name}: {len(front)} trial{'s' if len(front) != 1 else ''} "
                        "no other dominates (each seen at one seed)"]
    for record in front:
        costs = ", ".join(f"{name} {value:.4g}" for name, value in record["objectives"].items() if name != "error")
        shown.append(f"trial {record['number']}: validation error {record['value']:.4f}{_noise(record)}; {costs}")
        shown.append(f"  tricks: {', '.join(record['tricks']) or '(none)'}")
    return shown


def _seeds_text(record: dict[str, Any]) -> str:
    """A configuration's validation error: its mean over seeds with the interval, or its one trial's."""
    n = record.get("n_seeds", 1)
    if n == 1:
        return (f"validation error {record['value']:.4f}{_noise(record)} in {record['spent_seconds']}s, "
                "seen at one seed only")
    ci = record.get("mean_ci")
    shown = "" if ci is None else f" (95% interval {interval(ci)}, t over seeds)"
    trials = ", ".join(str(t) for t in record["trials"])
    return f"mean validation error {record['mean']:.4f}{shown} over {n} seeds (trials {trials})"


def _noise(record: dict[str, Any]) -> str:
    ci, n = record.get("val_ci"), record.get("val_size")
    return "" if ci is None else f" (95% interval {interval(ci)} over {n} validation images)"


def ties_line(tied: list[int]) -> str:
    """What ``automl best`` and the report say of the trials that cannot be told from the best one."""
    if not tied:
        return "no other completed trial's 95% interval overlaps this one's"
    shown = ", ".join(str(n) for n in tied[:20]) + (", ..." if len(tied) > 20 else "")
    return (f"tied with {len(tied)} other trial{'s' if len(tied) != 1 else ''} whose 95% interval overlaps "
            f"this one's: {shown}")


def confirmed_table(ranking: dict[str, Any], study_name: str) -> Table:
    """``automl confirm`` and ``automl best --confirmed``: the best trials ranked by their mean over paired seeds."""
    table = Table(title=f"{study_name}: the best trials trained again at seeds {ranking['seeds']}, "
                        f"{ranking['budget']} each, ranked by mean validation error (95% interval, "
                        f"{ranking['method']})")
    for column in ("rank", "trial", "search value", "mean val error", "95% interval", "test error", "tricks"):
        table.add_column(column, justify="left" if column == "tricks" else "right")
    for row in ranking["ranking"]:
        low, high = row["ci"]
        test = "-" if row["test_mean"] is None else f"{row['test_mean']:.4f}"
        table.add_row(str(row["rank"]), str(row["trial"]), f"{row['search_value']:.4f}", f"{row['mean']:.4f}",
                      f"[{low:.4f}, {high:.4f}]", test, ", ".join(row["tricks"]) or "(none)")
    return table


def results_table(data: dict[str, Any]) -> Table:
    """``automl train``: one row per seed, then mean ± std of the validation and test errors."""
    table = Table(title=f"trial {data['trial']} of {data['study']}, {data['budget']} on {data['device']}")
    for column in ("seed", "val error", "test error", "steps", "spent s", "model"):
        table.add_column(column, justify="left" if column == "model" else "right", no_wrap=column != "model")
    for r in data["runs"]:
        table.add_row(str(r["seed"]), f"{r['val_error']:.4f}", f"{r['test_error']:.4f}", str(r["steps"]),
                      f"{r['spent_seconds']:.2f}", r["model"])
    table.add_section()
    table.add_row("mean ± std", _mean_std(data["val_error"]), _mean_std(data["test_error"]), "", "", "")
    return table


def _mean_std(stats: dict[str, float | None]) -> str:
    return f"{stats['mean']:.4f}" + ("" if stats["std"] is None else f" ± {stats['std']:.4f}")


def trained_line(data: dict[str, Any]) -> str:
    """``automl train``'s last line: the tricks, and the trial's own validation error beside the retrainings'."""
    was = "" if data["trial_value"] is None else f"; the trial's validation error was {data['trial_value']:.4f}"
    return f"tricks: {', '.join(data['tricks']) or '(none)'}{was}"


def print_comparison(result: dict[str, Any], console: Any) -> None:
    """The comparison as `automl compare` prints it on ``console``: a table per budget, then the verdicts, the
    crossings and, where the seeds are too few to tell arms apart, a note."""
    from automl.study.analysis import power_note, verdicts

    for entry in result["budgets"]:
        console.print(_comparison_table(entry, result["reference"]))
    shown = ("each arm's repeated interval at its last look (family-wise 95%)"
             if result.get("design") == "sequential" else "95%, paired t")
    console.print(f"intervals: means 95%, {result['ci_method']}; differences {shown}; test: {result['test']}",
                  soft_wrap=True)
    for line in verdicts(result):
        console.print(line, soft_wrap=True, markup=False)
    for crossing in result["crossings"]:
        console.print(f"order of the means flips (untested): {crossing['text']}", soft_wrap=True,
                      markup=False)
    note = power_note(result)
    if note:
        console.print(f"note: {note}", soft_wrap=True)


def _comparison_table(entry: dict[str, Any], reference: str) -> Table:
    table = Table(title=f"{entry['budget']} (study {entry['study']})")
    for column in ("arm", "n", "val error [95% CI]", "single", "cost", "steps", f"vs {reference} [95% CI]",
                   "p (Holm)", "P(better)", "decided"):
        table.add_column(column, justify="left" if column in ("arm", "decided") else "right")
    for row in entry["arms"]:
        test = row["vs_reference"] or {}
        cost = f"{_num(row['inference_cost'])}x {_num(row['inference_ms_per_1000'], '.3g')} ms/1k"
        p = f"{test['p']:.3g} ({test['p_holm']:.3g})" if test.get("p") is not None else "-"
        table.add_row(row["arm"], str(row["n"]), f"{_num(row['mean'])} {_pair(row['ci'])}",
                      _num(row["single_model_mean"]), cost, steps_text(row),
                      f"{_num(test.get('diff'), '+.4f')} {_pair(test.get('ci'), '+.4f')}" if test else "-",
                      p, _num(test.get("p_better"), ".2f"), decided_text(row))
    return table


def decided_text(row: dict[str, Any]) -> str:
    """What the test decided of an arm, with the seeds it was decided at."""
    decided = row.get("decided", "-")
    return f"{decided} at {row['decided_at']}" if row.get("decided_at") is not None else decided


def steps_text(row: dict[str, Any]) -> str:
    """The mean steps of an arm's seeds, with their range where they differ."""
    span = row.get("steps_range")
    mean = _num(row["steps"], ".4g")
    return mean if not span or span[0] == span[1] else f"{mean} ({span[0]}-{span[1]})"


def _num(value: Any, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)


def _pair(pair: Any, spec: str = ".4f") -> str:
    return "-" if pair is None else f"[{format(pair[0], spec)}, {format(pair[1], spec)}]"
