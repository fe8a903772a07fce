"""The run file (TOML) of one exported trial: its schema, and the replay of its params into tricks and settings.

``automl export`` writes it and ``automl train`` reads it. The study's ``[task]``, ``[train]`` and
``[tricks]`` tables come as they were, ranges included, and ``[params]`` holds the trial's values; they
are replayed through :class:`optuna.trial.FixedTrial` along the path the objective takes
(``select_tricks`` and ``TrainSettings.resolve``), so the same tricks and params follow by construction
and a missing or extra param is an error.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import optuna
import tomli_w
from pydantic import Field, ValidationError

from automl.errors import UserError
from automl.files import atomic_write
from automl.host import Host
from automl.space import TrickSettings, select_tricks
from automl.study.config import (SEED_LIMIT, BudgetValue, Seed, StudyConfig, StudyFile, StudyName, StudySection,
                                 TaskSection, TricksSection)
from automl.study.tomlfiles import Section, first_problem, parse_toml, read_text
from automl.records import ATTR_UNAVAILABLE
from automl.study.tricks import study_tricks
from automl.train.settings import TrainSettings
from automl.run import TrialContext
from automl.trick import Trick
from automl.trick_errors import TrickError

Param = bool | int | float | str


class RunSection(Section):
    """How to train: what the trial was given, and what it enabled."""

    budget: BudgetValue
    seed: int = Field(ge=0, lt=2 * SEED_LIMIT)
    """The trial's training seed (model initialisation, batch order, augmentation): the study's seed plus the
    trial's number."""
    data_seed: Seed
    """The study's seed, which chose the samples of the validation split."""
    tricks: list[str]
    """The tricks the trial enabled; the replayed params must enable exactly these."""
    study_best: str | None = None
    """The study's best model when the trial started, as the trial's context offered it to the tricks
    (a path relative to the run file); absent when the study had none."""

class SourceSection(Section):
    """Where the run came from; provenance only, never read to train."""

    study: StudyName
    trial: int = Field(ge=0)
    value: float | None = None
    storage: str = ""
    study_file: str = ""
    sha256: str = ""
    automl: str = ""
    steps: int | None = None
    spent_seconds: float | None = None
    plugins: dict[str, str] = {}
    """Where each trick of the study came from, to name the fix when one is not installed."""


class RunFile(Section):
    run: RunSection
    params: dict[str, Param] = {}
    task: TaskSection
    train: TrainSettings = TrainSettings()
    tricks: TricksSection = TricksSection()
    source: SourceSection


@dataclass
class LoadedRun:
    """A validated run file, with the path it was read from."""

    path: Path
    text: str
    run: RunFile

    def error(self, message: str) -> UserError:
        return UserError(f"{self.path}: {message}")

    def study_file(self) -> StudyFile:
        """The run as a one-trial study file, to check its tricks as ``automl run`` would."""
        run = self.run
        study = StudySection(name=run.source.study, trial_budget=run.run.budget, n_trials=1, seed=run.run.data_seed)
        config = StudyConfig(study=study, task=run.task, train=run.train, tricks=run.tricks)
        return StudyFile(path=str(self.path), text=self.text, config=config)

    def study_best(self) -> Path | None:
        if self.run.run.study_best is None:
            return None
        return self.path.parent / self.run.run.study_best


def load_run_file(path: str | Path) -> LoadedRun:
    """Read and validate a run file; every problem is one line that names the file and the key."""
    path = Path(path)
    text = read_text(path, "run file", f"write one with `automl export STUDY -o {path}`")
    raw = parse_toml(text, path)
    if "run" not in raw and "study" in raw:
        raise UserError(f"{path}: is a study file, not a run file; run it with `automl run {path}`, "
                        f"or export a trial with `automl export STUDY -o run.toml`")
    try:
        run = RunFile.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{path}: {first_problem(exc, RunFile)}") from None
    # An import-path model is looked for beside the run file, then beside the study file it was exported from.
    run.task.look_in(path.parent, *([Path(run.source.study_file).parent] if run.source.study_file else []))
    loaded = LoadedRun(path, text, run)
    best = loaded.study_best()
    if best is not None and not best.is_file():
        raise loaded.error(f"[run] study_best: no file {str(best)!r}; it is written by `automl export` "
                           "beside the run file, keep the two together")
    return loaded


def write_run_file(path: Path, document: dict[str, Any], header: str) -> None:
    """Write ``document`` as TOML under a comment ``header``, atomically: a failed write leaves nothing."""
    text = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines()) + "\n" + tomli_w.dumps(document)
    atomic_write(path, text.encode())


# -------------------------------------------------------------------------------------
# Replay: the trial's params through the objective's own path
# -------------------------------------------------------------------------------------


class _Missing(Exception):
    pass


class ReplayTrial(optuna.trial.FixedTrial):
    """A FixedTrial that reports a param it lacks by name, so the error can say which one."""

    def __init__(self, params: Mapping[str, Any], number: int) -> None:
        super().__init__(dict(params), number)
        self.given = dict(params)

    def _given(self, name: str, suggest: Any, *args: Any, **kwargs: Any) -> Any:
        """``suggest(name, ...)`` of the given value; Optuna's refusal of a value does not name the param."""
        if name not in self.given:
            raise _Missing(name)
        try:
            return suggest(name, *args, **kwargs)
        except ValueError as exc:
            raise ValueError(f"param {name!r} = {self.given[name]!r} does not fit: {exc}") from None

    def suggest_float(self, name: str, *args: Any, **kwargs: Any) -> float:
        return self._given(name, super().suggest_float, *args, **kwargs)

    def suggest_int(self, name: str, *args: Any, **kwargs: Any) -> int:
        return self._given(name, super().suggest_int, *args, **kwargs)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self._given(name, super().suggest_categorical, choices)


@dataclass
class Replayed:
    """What a trial's params build: the tricks (sorted as the loop runs them) and concrete train settings."""

    tricks: list[Trick]
    train: TrainSettings
    params: dict[str, Any]
    """Every param the tricks and ``[train]`` asked for, with its value."""
    unavailable: dict[str, str] = field(default_factory=dict)
    """Tricks that were off because they could not be offered, and why."""
    warnings: list[str] = field(default_factory=list)
    """Values outside the range the study searched (allowed: a run file may be edited by hand)."""

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tricks]


class ReplayError(ValueError):
    """The params do not fit the tricks and ``[train]`` they are replayed through."""


def replay(params: Mapping[str, Any], tricks: Mapping[str, type[Trick]], settings: Mapping[str, TrickSettings],
           train: TrainSettings, *, number: int, context: TrialContext | None) -> Replayed:
    """Build the tricks and train settings ``params`` stand for, as the objective built them for the trial."""
    trial = ReplayTrial(params, number)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            built = select_tricks(trial, tricks, settings, context)
            resolved = train.resolve(trial)
        except _Missing as exc:
            raise ReplayError(f"no value for param {exc.args[0]!r}, which the tricks and [train] ask for") from None
        except (ValueError, TypeError) as exc:
            raise ReplayError(str(exc)) from None
        except TrickError as exc:  # a trick's __init__ refused the values the params give it
            given = ", ".join(f"{k} = {v!r}" for k, v in trial.params.items() if k.startswith(f"{exc.trick}."))
            raise ReplayError(f"trick {exc.trick!r} refuses {given or 'its params'}: {exc.error}") from None
    extra = sorted(set(params) - set(trial.params))
    if extra:
        raise ReplayError(f"params {', '.join(map(repr, extra))} are not asked for by the tricks and [train]")
    return Replayed(built, resolved, dict(trial.params), dict(trial.user_attrs.get(ATTR_UNAVAILABLE, {})),
                    [str(w.message) for w in caught if issubclass(w.category, UserWarning)])


def replay_run(loaded: LoadedRun, host: Host, context: TrialContext | None) -> Replayed:
    """Replay a run file's params; an unknown trick, a param that does not fit, or tricks other than
    those the trial enabled are one-line errors naming the file and the fix."""
    run = loaded.run
    sources = run.source.plugins
    for name in _included(run.tricks):
        if name in host.blocked:
            host.trick(name)  # says why: two plugins provide it, or its class is invalid
        if name not in host.tricks:
            where = f"the study had it from {sources[name]}; " if name in sources else ""
            raise loaded.error(f"[tricks] trick {name!r} is not installed; {where}fix: install its plugin, "
                               "or pass --plugin PATH to its file")
    tricks, settings = study_tricks(loaded.study_file(), host)
    try:
        replayed = replay(run.params, tricks, settings, run.train, number=run.source.trial, context=context)
    except ReplayError as exc:
        raise loaded.error(f"[params] {exc}; fix: export the trial again with `automl export "
                           f"{run.source.study} --trial {run.source.trial}`") from None
    if sorted(replayed.names) != sorted(run.run.tricks):
        why = "".join(f"; {n} is unavailable: {r}" for n, r in replayed.unavailable.items() if n in run.run.tricks)
        raise loaded.error(f"[run] tricks = {run.run.tricks} but the params enable {replayed.names}{why}")
    return replayed


def _included(section: TricksSection) -> list[str]:
    if section.include == "*":
        return []
    return [*section.include, *section.exclude, *section.tables]
