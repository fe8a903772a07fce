"""Trials and comparisons as flat rows, and as pandas DataFrames where pandas is installed."""

from __future__ import annotations

import warnings
from typing import Any, Iterable, Sequence

from optuna.trial import FrozenTrial

from automl import records
from automl.study.costs import ATTR_COST_AFTER, ATTR_COST_BEFORE

NO_PANDAS = ("pandas is not installed, so automl's tables are lists of dicts; for DataFrames: "
             "pip install 'pandas>=2.0' (a default dependency of automl, left out of this install)")


def frame(rows: list[dict[str, Any]]) -> Any:
    """``rows`` as a DataFrame, or as they are, with one warning, without pandas."""
    try:
        import pandas
    except ImportError:
        warnings.warn(NO_PANDAS, stacklevel=3)
        return rows
    return pandas.DataFrame(rows)


def trial_rows(trials: Sequence[FrozenTrial]) -> list[dict[str, Any]]:
    """One flat row per trial: its number, state and end, its value with its 95% interval, its tricks as one
    string and one boolean column per trick of the study, each param under its trick (``cosine.alpha0``),
    steps, epochs, device-seconds, inference cost (passes, ms per 1000 images, FLOPs per image; before training
    too where measured), seed, and the trial it retries or repeats."""
    params = sorted({name for trial in trials for name in trial.params})
    tricks = sorted({t for trial in trials for t in trial.user_attrs.get(records.ATTR_TRICKS, [])}
                    | {name.partition(".")[0] for name in params} - {"train"})
    return [_row(trial, tricks, params) for trial in trials]


def _row(trial: FrozenTrial, tricks: Iterable[str], params: Iterable[str]) -> dict[str, Any]:
    record = records.trial_record(trial)  # what `automl trials --json` says of it, flattened here
    attrs = trial.user_attrs
    interval = record["val_ci"] or [None, None]
    enabled = record["tricks"]
    before, after = attrs.get(ATTR_COST_BEFORE) or {}, attrs.get(ATTR_COST_AFTER) or {}
    row = {"number": trial.number, "state": record["state"], "end_reason": record["end_reason"],
           "value": record["value"], "value_low": interval[0], "value_high": interval[1],
           "tricks": ", ".join(enabled)}
    row.update({name: name in enabled for name in tricks})
    row.update({name: trial.params.get(name) for name in params})  # every trial has every column
    row.update({
        "steps": attrs.get(records.ATTR_STEPS), "epochs": attrs.get(records.ATTR_EPOCHS),
        "device_seconds": record["spent_seconds"],
        "inference_passes": attrs.get(records.INFERENCE_COST),
        "inference_ms_per_1000": attrs.get(records.ATTR_INFERENCE_MS),
        "inference_flops_per_image": attrs.get(records.ATTR_INFERENCE_FLOPS),
        "latency_ms_before": before.get("latency_ms"), "latency_ms_after": after.get("latency_ms"),
        "seed": record["seed"], "retry_of": record["retry_of"], "repeat_of": attrs.get(records.ATTR_REPEAT_OF),
        "end_detail": record["end_detail"],
    })
    if trial.values is not None and len(trial.values) > 1:
        row.update({f"objective_{i}": v for i, v in enumerate(trial.values)})
    return row


def comparison_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per arm and budget of a comparison (``automl compare --json``): its mean with the interval, the
    seeds it was trained at, the difference to the reference and its test (p, p after Holm) and decision."""
    rows = []
    for entry in result["budgets"]:
        for arm in entry["arms"]:
            ci = arm.get("ci") or [None, None]
            test = arm.get("vs_reference") or {}
            diff_ci = test.get("ci") or [None, None]
            rows.append({"arm": arm["arm"], "budget": entry["budget"], "mean": arm["mean"], "ci_low": ci[0],
                         "ci_high": ci[1], "seeds": arm["n"], "decision": arm.get("decided"),
                         "decided_at": arm.get("decided_at"), "difference": test.get("diff"),
                         "difference_low": diff_ci[0], "difference_high": diff_ci[1], "p": test.get("p"),
                         "p_holm": test.get("p_holm"), "p_better": test.get("p_better"),
                         "single_model_mean": arm.get("single_model_mean"),
                         "inference_ms_per_1000": arm.get("inference_ms_per_1000"), "steps": arm.get("steps"),
                         "tricks": ", ".join(arm["tricks"])})
    return rows


__all__ = ["NO_PANDAS", "comparison_rows", "frame", "trial_rows"]
