"""A trial's recipe (its tricks, their params, its train settings) read from a run file, to use in your own loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from automl.api.binding import Attached
from automl.budget import Budget
from automl.host import Host
from automl.run import TrialContext
from automl.study.runfile import LoadedRun, load_run_file, replay_run
from automl.train.loop import build_optimizer
from automl.train.settings import TrainSettings
from automl.train.splits import Dataset


class Recipe:
    """One exported trial (`automl export`, ``StudyResult.export``): what it trained with, and a binding of its
    tricks to your model and optimizer (:meth:`attach`)."""

    def __init__(self, loaded: LoadedRun, host: Host) -> None:
        self.loaded, self.host = loaded, host
        first = self._replay(None)  # checks the file against the installed plugins now, not at attach
        self.tricks: list[str] = first.names
        self.params: dict[str, Any] = first.params
        self.train: TrainSettings = first.train
        self.warnings: list[str] = first.warnings

    @classmethod
    def load(cls, path: str | Path, *, plugins: tuple[str, ...] = ()) -> "Recipe":
        """The recipe of the run file at ``path``, checked as `automl train` checks it (a UserError naming the
        file and the fix where a trick is missing or a param does not fit)."""
        from automl.cli.options import host, ignore

        return cls(load_run_file(path), host(list(plugins), say=ignore))

    def __repr__(self) -> str:
        return f"Recipe({str(self.path)!r}, tricks={self.tricks}, budget={str(self.budget)!r})"

    @property
    def path(self) -> Path:
        return self.loaded.path

    @property
    def budget(self) -> Budget:
        """The budget the trial trained with."""
        return self.loaded.run.run.budget

    @property
    def seed(self) -> int:
        """The trial's training seed (initial weights, batch order, the tricks' own draws)."""
        return self.loaded.run.run.seed

    @property
    def source(self) -> dict[str, Any]:
        """Where the trial came from: its study, number, value, storage."""
        return self.loaded.run.source.model_dump()

    def make_optimizer(self, params: Any) -> torch.optim.Optimizer:
        """The optimizer the recipe trained with (kind, LR, momentum, weight decay) over ``params``."""
        return build_optimizer(self.train, params)

    def load_data(self, device: str | torch.device = "cpu") -> Dataset:
        """The trial's data set, split as the study split it (its validation samples are the trial's)."""
        task = self.loaded.run.task
        return task.load_data(seed=self.loaded.run.run.data_seed, device=torch.device(device), host=self.host,
                              folder=self.path.parent)

    def build_model(self, data: Dataset) -> nn.Module:
        """A new model of the trial's architecture for ``data``, from torch's global RNG (seed it first)."""
        return self.loaded.run.task.build_model(data)

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, budget: str | Budget | None = None,
               steps_per_epoch: int | None = None, batch_size: int | None = None, train_data: Any = None,
               num_classes: int | None = None, criterion: Callable | None = None, seed: int | None = None,
               base_lr: float | None = None, build_model: Callable[[], nn.Module] | None = None) -> Attached:
        """This recipe's tricks, new, bound to ``model`` and ``optimizer`` (see ``automl.api.binding``).

        ``budget``: steps or epochs (default: the trial's, which must then be one); ``steps_per_epoch``: your
        loader's length, for epochs and the tricks' pass hooks; ``batch_size``: your loader's (default the
        recipe's); ``train_data``: your training loader or split, for the tricks that read it (SWA's BatchNorm
        pass); ``seed``: the tricks' own draws (default the trial's); ``base_lr``: the LR the schedules scale
        (default the recipe's, which a trick may replace); ``build_model``: builds a model like yours from
        torch's global RNG, so an independent ensemble's members start as automl's would."""
        replayed = self._replay(model)
        return Attached(replayed.tricks, model, optimizer, budget=self.budget if budget is None else budget,
                        base_lr=replayed.train.lr if base_lr is None else base_lr,
                        batch_size=replayed.train.batch_size if batch_size is None else batch_size,
                        steps_per_epoch=steps_per_epoch, train_data=train_data, num_classes=num_classes,
                        criterion=criterion, seed=self.seed if seed is None else seed, build_model=build_model,
                        context=self._context(model))

    def _replay(self, model: nn.Module | None):
        """New trick objects from the run file's params (they keep state, so one set per attach)."""
        return replay_run(self.loaded, self.host, self._context(model))

    def _context(self, model: nn.Module | None) -> TrialContext:
        source = self.loaded.run.source
        return TrialContext(source.study, source.trial, self.loaded.study_best, model=model)


__all__ = ["Recipe"]
