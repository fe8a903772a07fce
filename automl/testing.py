"""Helpers for testing tricks: tiny data and model, a short training run (of a trick built through its
search space, with :func:`try_trick`), and recorders of every step and every training batch."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Mapping, Sequence

import optuna
import torch
from torch import nn

from automl.budget import Budget
from automl.trick_checks import validate_trick
from automl.overrides import contains, describe
from automl.space import TrickSettings, pinned_conflicts, select_tricks, study_order
from automl.trick_space import SpaceRecorder, scratch_study
from automl.records import attrs_problem
from automl.train.datasets import load_dataset
from automl.train.loader import InMemoryLoader
from automl.train.splits import Dataset
from automl.train.loop import TrainResult, build_optimizer, train
from automl.train.models import build_model
from automl.train.settings import TrainSettings
from automl.run import Run
from automl.trick import Trick
from automl.trick_errors import TrickError, raised_in

LAST = 1 << 30
"""The ``order`` of the recorders: after every trick, so that they see what all the tricks did."""


def tiny_data(**options: Any) -> Dataset:
    """A learnable synthetic data set of 8x8 single-channel images (128 train, 64 val, 64 test)."""
    return load_dataset("synthetic", **{"shape": (1, 8, 8), "n_train": 128, "n_val": 64, "n_test": 64, **options})


def tiny_model(data: Dataset, seed: int = 0, model: str = "small_cnn", width: float = 0.25) -> nn.Module:
    """A small model for ``data`` whose initial weights depend only on ``seed``."""
    torch.manual_seed(seed)
    return tiny_builder(data, model, width)()


def tiny_builder(data: Dataset, model: str = "small_cnn", width: float = 0.25) -> Callable[[], nn.Module]:
    """Builds ``tiny_model``'s architecture from torch's global RNG (the trainer's ``build_model``)."""
    return lambda: build_model(model, in_channels=data.input_shape[0], num_classes=data.num_classes, width=width)


def tiny_settings(**overrides: Any) -> TrainSettings:
    """Batch 16, no augmentation, one evaluation at the end: fast and deterministic."""
    return TrainSettings(**{"batch_size": 16, "augment": False, "flip": False, "rungs": 1, **overrides})


def train_tiny(tricks: Sequence[Trick] = (), budget: str = "40steps", *, data: Dataset | None = None,
               model: nn.Module | None = None, seed: int = 0,
               build_model: Callable[[], nn.Module] | None = None, on_start: Callable[[Any], Any] | None = None,
               **settings: Any) -> TrainResult:
    """Train a tiny model with ``tricks`` for a short budget on the CPU.

    Without ``model``, it is ``tiny_model(data, seed)`` and ``build_model`` defaults to its builder.
    ``on_start``: called with the run before its first step (``automl.train.loop.train``).
    As in a study: hooks run in the tricks' ``order`` (then by name), whatever the order of the list, and
    tricks that own one resource are never on together (ValueError: no trial would enable both).
    """
    problems = pinned_conflicts({t.name: type(t) for t in tricks}, {t.name: TrickSettings(enabled=True) for t in tricks})
    if problems:
        raise ValueError(f"{problems[0]}: a study's trial never enables both")
    data = data or tiny_data()
    if model is None:
        model, build_model = tiny_model(data, seed), build_model or tiny_builder(data)
    return train(model, data, tiny_settings(**settings), Budget.parse(budget), tricks=study_order(tricks),
                 seed=seed, build_model=build_model, on_start=on_start)


def try_trick(cls: type[Trick], budget: str = "20steps", *, params: Mapping[str, Any] | None = None,
              options: Mapping[str, Any] | None = None, others: Sequence[Trick] = (), seed: int = 0,
              data: Dataset | None = None, **settings: Any) -> tuple[Trick, TrainResult]:
    """Build a trick class through its search space, as a study would, and train a tiny model with it on.

    The class is first checked as the host checks a plugin's tricks (ValueError says what is wrong), then
    chosen and built as a study's trial enables it (``automl.space.select_tricks``, the trick pinned on).
    ``params`` fixes parameters by their own names (``{"sigma": 0.1}``): each must be a value its space
    can suggest; the others are sampled from the space with ``seed``. ``options`` are the keywords a
    study file sets and never searches. ``others`` train beside it, in the study's order (``order``,
    then name: the recorders come last); one owning a resource the trick owns is refused, as no
    trial enables both. Training runs on one CPU thread. An exception raised in one of the trick's hooks
    carries a note naming the hook and the step; ``run.attrs`` a study could not store are a ValueError.
    Returns the trick, to inspect after training, and what the run measured.
    """
    validate_trick(cls)
    recorder = SpaceRecorder(cls.name)
    cls.search_space(recorder)
    _check_fixed(cls, recorder.params, params or {})  # before Optuna, which would only warn and go on
    trial = _trial(seed, {f"{cls.name}.{key}": value for key, value in (params or {}).items()})
    try:
        trick = select_tricks(trial, {cls.name: cls}, {cls.name: TrickSettings(enabled=True, options=options or {})})[0]
    except TrickError as exc:
        raise exc.error  # the trick's own exception, as building it by hand would raise it
    _check_fixed(cls, {k.partition(".")[2]: d for k, d in trial.distributions.items()}, params or {}, asked=True)
    with one_thread():
        try:
            result = train_tiny([trick, *others], budget, data=data, seed=seed, **settings)
        except Exception as exc:
            where = _hook_that_raised(exc, trick)
            if where:
                exc.add_note(f"raised by {type(trick).__name__}.{where}, in try_trick")
            raise
    problem = attrs_problem(result.attrs)
    if problem:
        raise ValueError(f"{problem}; a study would fail the trial (end_reason bad_attrs)")
    return trick, result


def _trial(seed: int, fixed: Mapping[str, Any]) -> optuna.Trial:
    """A trial of a fresh in-memory study with a random sampler, with ``fixed`` params enqueued."""
    study = scratch_study(seed)
    if fixed:
        study.enqueue_trial(dict(fixed))
    return study.ask()


def _check_fixed(cls: type[Trick], space: Mapping[str, Any], params: Mapping[str, Any], asked: bool = False) -> None:
    """Every fixed param has a value its distribution in ``space`` could suggest; once ``asked`` (``space`` is
    the trial's), every one is a param the trick suggested."""
    unknown = sorted(f"{cls.name}.{key}" for key in params if key not in space)
    if unknown and asked:
        raise ValueError(f"{cls.__name__}.search_space suggests no {', '.join(unknown)}; "
                         f"it suggests {', '.join(f'{cls.name}.{k}' for k in sorted(space)) or 'nothing'}")
    for key, value in params.items():
        dist = space.get(key)
        if dist is not None and not contains(dist, value):
            raise ValueError(f"params {key}={value!r} is outside {cls.name}.{key}'s search space {describe(dist)}: "
                             "no trial of a study trains with it; build the trick by hand to try it")


def _hook_that_raised(exc: BaseException, trick: Trick) -> str | None:
    """``hook at step N (progress P)`` for the outermost frame of the traceback in one of ``trick``'s hooks."""
    where = raised_in(exc, trick)
    if where is None or where.hook == "__init__":
        return None
    step = f" at step {where.step}" if where.hook_has_run else ""
    at = f" (progress {where.progress:.3f})" if where.progress is not None else ""
    return f"{where.hook}{step}{at}"


def run_for(model: nn.Module, *, data: Dataset | None = None, autocast: dict[str, Any] | None = None,
            **fields: Any) -> Run:
    """A real :class:`Run` around ``model``, to call a trick's hooks directly, outside the trainer."""
    data = data or tiny_data()
    settings = tiny_settings()
    make_optimizer = lambda params: build_optimizer(settings, params)  # noqa: E731
    run = Run(model=model, optimizer=make_optimizer(model.parameters()), criterion=nn.CrossEntropyLoss(),
              loader=InMemoryLoader(data.train, settings.batch_size), data=data, device=torch.device("cpu"),
              budget=Budget.parse("40steps"), base_lr=settings.lr, make_optimizer=make_optimizer,
              autocast=autocast)
    for name, value in fields.items():
        setattr(run, name, value)
    return run


class StepRecorder(Trick):
    """Records, at every step, the progress, the step, ``run.lr`` and each param group's LR."""

    name = "step_recorder"
    order = LAST

    def __init__(self) -> None:
        self.steps: list[tuple[float, int, float, list[float]]] = []

    def on_step_start(self, run: Run) -> None:
        self.steps.append((run.progress, run.step, run.lr, [g["lr"] for g in run.optimizer.param_groups]))

    @property
    def progress(self) -> list[float]:
        return [s[0] for s in self.steps]

    @property
    def lrs(self) -> list[float]:
        """The LR of the first param group at each step."""
        return [s[3][0] for s in self.steps]


class BatchRecorder(Trick):
    """Records a copy of every training batch ``(x, y)`` as the tricks before it left it: all of them, or with
    ``before=True`` none (the batch as the loader gave it)."""

    name = "batch_recorder"

    def __init__(self, before: bool = False) -> None:
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.order = -LAST if before else LAST  # an instance's order: a study's hooks run in it

    def transform_batch(self, run: Run, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.batches.append((x.detach().clone(), y.detach().clone()))
        return x, y


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Tiny models train several times faster on one thread than on two contended ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
