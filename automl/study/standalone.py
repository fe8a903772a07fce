"""`automl train`: train an exported trial again over several seeds, score it on the test split, save each model."""

from __future__ import annotations

import io
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from automl.budget import Budget
from automl.devices import resolve_device
from automl.errors import UserError
from automl.host import Host
from automl import records
from automl.files import atomic_write
from automl.storage.artifacts import task_checkpoint, with_weights
from automl.study.runfile import LoadedRun, Replayed, load_run_file, replay_run
from automl.train.splits import Dataset
from automl.train.loop import TrainResult, train
from automl.run import Run, TrialContext
from automl.trick import Trick

Ticker = Callable[[int, float], None]
"""(seed, progress) after each step, for a live display."""


@dataclass
class PreparedRun:
    """A run file checked end to end (tricks replayed, data loaded) before any training."""

    loaded: LoadedRun
    replayed: Replayed
    data: Dataset
    device: torch.device
    budget: Budget
    seeds: list[int]
    out_dir: Path
    context: TrialContext

    def model_path(self, seed: int) -> Path:
        return self.out_dir / f"{self.loaded.path.stem}-seed{seed}.pt"


@dataclass
class SeedRun:
    """One training of the run file with one seed."""

    seed: int
    replayed: Replayed
    result: TrainResult
    model: Path
    weights: dict[str, Path]


def prepare_run(path: str | Path, host: Host, *, seeds: int = 1, budget: str | None = None,
                device: str | None = None, out_dir: str | Path | None = None) -> PreparedRun:
    """Validate the run file and its tricks against the installed plugins, and load its data."""
    loaded = load_run_file(path)
    run = loaded.run
    chosen = Budget.parse(budget) if budget else run.run.budget
    resolved = resolve_device(device or "auto")
    folder = Path(out_dir) if out_dir is not None else loaded.path.parent
    if folder.exists() and not folder.is_dir():
        raise UserError(f"-o {str(folder)!r} is a file; fix: give a folder for the models")
    task = run.task
    # The study's own seed splits train from val, so every seed is scored on the trial's val samples.
    data = task.load_data(seed=run.run.data_seed, device=resolved, host=host, folder=loaded.path.parent)
    context = TrialContext(run.source.study, run.source.trial, loaded.study_best,
                           model=task.probe_model(data.input_shape[0], data.num_classes))
    replayed = replay_run(loaded, host, context)
    return PreparedRun(loaded, replayed, data, resolved, chosen,
                       [run.run.seed + k for k in range(seeds)], folder, context)


def train_seeds(prepared: PreparedRun, host: Host, on_step: Ticker | None = None) -> list[SeedRun]:
    """Train once per seed as the objective trained the trial, plus a test evaluation; save each model."""
    task = prepared.loaded.run.task
    prepared.out_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in prepared.seeds:
        replayed = replay_run(prepared.loaded, host, prepared.context)  # fresh trick objects: they keep state
        torch.manual_seed(seed)
        model = task.build_model(prepared.data)
        display = [_Ticker(seed, on_step)] if on_step is not None else []
        result = train(model, prepared.data, replayed.train, prepared.budget, tricks=[*replayed.tricks, *display],
                       device=prepared.device, seed=seed, evaluate_test=True, context=prepared.context,
                       build_model=lambda: task.build_model(prepared.data))
        if on_step is not None:
            on_step(seed, 1.0)
        ckpt = task_checkpoint(task, model, prepared.data)
        path = prepared.model_path(seed)
        _save(path, ckpt)
        # The extra weights the tricks kept (snapshots, averages), as checkpoints of the same architecture.
        weights = {}
        for name, state in result.weights.items():
            weights[name] = path.with_name(f"{path.stem}-{name}.pt")
            _save(weights[name], with_weights(ckpt, state))
        runs.append(SeedRun(seed, replayed, result, path, weights))
    return runs


def _save(path: Path, ckpt: dict) -> None:
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    atomic_write(path, buffer.getvalue())


class _Ticker(Trick):
    """Not a training trick: tells the display where a run is after each step."""

    name = "progress_display"
    order = 1 << 30

    def __init__(self, seed: int, tick: Ticker) -> None:
        self.seed, self.tick = seed, tick

    def on_step_end(self, run: Run, loss: torch.Tensor) -> None:
        self.tick(self.seed, run.progress)


def spread(values: list[float]) -> dict[str, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None}


def record(prepared: PreparedRun, runs: list[SeedRun]) -> dict[str, Any]:
    """The result as JSON-able data: what was trained, each seed's errors and model, mean and spread."""
    source = prepared.loaded.run.source
    return {
        "run_file": str(prepared.loaded.path),
        "study": source.study, "trial": source.trial, "trial_value": source.value,
        "budget": str(prepared.budget), "device": str(prepared.device),
        "tricks": prepared.replayed.names, "params": prepared.replayed.params,
        "train": prepared.replayed.train.model_dump(mode="json"),
        "runs": [_run_record(r) for r in runs],
        "val_error": spread([r.result.val_error for r in runs]),
        "test_error": spread([r.result.test_error for r in runs]),
    }


def _run_record(run: SeedRun) -> dict[str, Any]:
    result = run.result
    return {
        "seed": run.seed, "val_error": result.val_error, "test_error": result.test_error,
        records.ATTR_VAL_ERROR_MODEL: result.val_error_model, "test_error_model": result.test_error_model,
        records.ATTR_STEPS: result.steps, records.ATTR_EPOCHS: round(result.epochs, 4),
        records.ATTR_SPENT: round(result.spent_seconds, 3),
        "model": str(run.model), "weights": {name: str(path) for name, path in run.weights.items()},
        # What this run was built from: the tricks' own attributes, next to the params they came from.
        "tricks": run.replayed.names, "params": run.replayed.params,
        "trick_args": {t.name: {k: v for k, v in vars(t).items() if not k.startswith("_")} for t in run.replayed.tricks},
        "attrs": result.attrs,
    }
