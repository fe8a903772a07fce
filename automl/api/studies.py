"""Studies from Python: run one as `automl run` does, or load one, and read its trials and best as tables."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import optuna

from automl import records
from automl.api.arguments import command_args
from automl.api.tables import frame, trial_rows
from automl.cli.options import host, ignore, to_stderr
from automl.errors import UserError

if TYPE_CHECKING:
    from automl.api.recipe import Recipe

Say = Callable[[str], None]
"""Where a note or warning line goes (``automl: note: ...``): stderr for the commands, a list for the API."""


class WorkerFailed(UserError):
    """A worker process of ``--workers N`` (or a rank) exited with an error, which it printed itself."""

    exit_code = 1


@dataclass(frozen=True)
class Configuration:
    """One configuration as `automl best` shows it: its first trial's number, its tricks and params, its value
    (the mean over its seeds, or a front member's objectives) with the interval and the seeds behind it."""

    number: int
    tricks: list[str]
    params: dict[str, dict[str, Any]]
    value: float | None
    interval: list[float] | None
    seeds: int
    trials: list[int]
    objectives: dict[str, float] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict, repr=False)
    """Everything `automl best --json` prints for it."""

    @classmethod
    def confirmed(cls, row: dict[str, Any], params: dict[str, dict[str, Any]]) -> "Configuration":
        """A row of `automl confirm`'s ranking: its mean and interval over the paired seeds it was trained at."""
        return cls(row["trial"], row["tricks"], params, row["mean"], row["ci"], len(row["seeds"]), [row["trial"]],
                   {}, row)

    @classmethod
    def of(cls, record: dict[str, Any]) -> "Configuration":
        """A record of `automl best --json`: a configuration over its seeds, or a member of a front."""
        value = record.get("mean", record.get("value"))
        interval = record.get("mean_ci", record.get("val_ci"))
        return cls(record["number"], list(record["tricks"]), record["params"], value, interval,
                   record.get("n_seeds", 1), record.get("trials", [record["number"]]),
                   record.get("objectives", {}), record)


class StudyResult:
    """A study in its database, read as `automl trials`, `best`, `export` and `report` read it."""

    def __init__(self, study: optuna.Study, url: str, notes: list[str] | None = None) -> None:
        from automl.storage import mask_url

        self.study, self.url, self.notes = study, url, notes or []
        self.name, self.storage = study.study_name, mask_url(url)

    def __repr__(self) -> str:
        return f"StudyResult({self.name!r}, {self.storage!r}, {len(self.study.get_trials(deepcopy=False))} trials)"

    @property
    def trials(self) -> Any:
        """One row per trial (a pandas DataFrame; a list of dicts without pandas): see ``tables.trial_rows``."""
        return frame(trial_rows(self.study.get_trials(deepcopy=False)))

    @property
    def objectives(self) -> list[str]:
        from automl.study.pareto import objective_names

        return objective_names(self.study)

    def best(self, k: int = 1, *, confirmed: bool | None = None) -> Configuration | list[Configuration]:
        """The best configuration (``k`` = 1) or the ``k`` best, as `automl best --top k` ranks them: by the mean
        over each configuration's seeds; by `automl confirm`'s ranking where the study has one (``confirmed``
        None), or must have one (True), or not by it (False). A study of several objectives has a front, not a
        best: see :meth:`pareto`."""
        from automl.study.incumbent import ranked_records

        if k < 1:
            raise UserError(f"best(k={k}): give 1 or more")
        if len(self.study.directions) > 1:
            raise UserError(f"study {self.name!r} has objectives {self.objectives}: no one best; use .pareto()")
        ranking = self.study.user_attrs.get(records.STUDY_CONFIRMED)
        if confirmed and ranking is None:
            raise UserError(f"study {self.name!r} has no confirmed ranking; run automl.confirm({self.name!r}) first")
        if ranking is not None and confirmed is not False:
            by_number = {t.number: t for t in self.study.get_trials(deepcopy=False)}
            found = [Configuration.confirmed(row, records.trial_record(by_number[row["trial"]])["params"])
                     for row in ranking["ranking"][:k]]
        else:
            found = [Configuration.of(r) for r in ranked_records(self.study.get_trials(deepcopy=False))[:k]]
        if not found:
            raise UserError(f"study {self.name!r} has no completed trial yet")
        return found[0] if k == 1 else found

    def pareto(self) -> list[Configuration]:
        """The Pareto front of a study of several objectives, lowest error first (as `automl best` lists it)."""
        from automl.study.pareto import front_records

        if len(self.study.directions) == 1:
            raise UserError(f"study {self.name!r} has one objective (error); use .best()")
        return [Configuration.of(r) for r in front_records(self.study)]

    def export(self, trial: int | None = None, path: str | Path | None = None, *,
               plugins: tuple[str, ...] = ()) -> "Recipe":
        """Trial ``trial`` (default: the best) written as a run file, as `automl export` writes it, and loaded as
        a :class:`~automl.api.recipe.Recipe`."""
        from automl.api.recipe import Recipe
        from automl.study.export import export_trial

        from automl.study.runfile import load_run_file

        plugins_host = host(list(plugins), say=ignore)
        with quiet_optuna():
            exported = export_trial(self.url, self.name, trial, plugins_host, path)
        return Recipe(load_run_file(exported.path), plugins_host)  # the same plugins, its own --plugin paths too

    def report(self, path: str | Path = "report.html", *, png: str | Path | None = None) -> list[Path]:
        """The study's HTML report (and its figures as PNG files in ``png``), as `automl report` writes it; the
        paths written."""
        from automl.report.study_report import build_report, output_paths, write_report
        from automl.storage.optuna_adapter import study_engine

        html, png_dir = output_paths(str(path) if path is not None else None, None if png is None else str(png))
        with quiet_optuna():
            return write_report(build_report(self.study, study_engine(self.study), self.storage), html, png_dir)


def load(study: str | Path, storage: str | None = None, *, variant: str | None = None) -> StudyResult:
    """The study called ``study`` (or the one a study file names, in the storage it names), as `automl trials`
    finds it; a missing study or database is a UserError."""
    from automl.cli.options import open_study, study_location
    from automl.records import load_study

    args = command_args("trials", [str(study)], {"storage": storage, "variant": variant})
    with quiet_optuna():
        name, opened, shown = open_study(args)
        return StudyResult(load_study(name, opened, shown), study_location(args)[1])


def run(study: str | Path | Mapping[str, Any], *, storage: str | None = None, study_name: str | None = None,
        variant: str | None = None, n_trials: int | None = None, total_budget: str | None = None,
        trial_budget: str | None = None, seed: int | None = None, device: str | None = None,
        workers: int | None = None, threads: int | None = None, gpus_per_trial: int | None = None,
        plugins: tuple[str, ...] = (), accept_task_change: bool = False, accept_plugin_change: bool = False,
        progress: bool = False) -> StudyResult:
    """Run (or resume) a study as `automl run` does, with the same checks, and return it.

    ``study``: a study file, or its tables as a dict (written to ``NAME.toml`` in the current folder, so the
    study keeps a file a person can read and run again). The keywords are the command's options. Nothing is
    printed unless ``progress`` (the command's bars and lines, on stderr); notes are kept in ``.notes``. A
    refused option or file is a :class:`~automl.UserError` with the command's one line."""
    from automl.study.launch import in_ranks, prepare_run

    path = study_path(study)
    options = dict(storage=storage, study_name=study_name, variant=variant, n_trials=n_trials,
                   total_budget=total_budget, trial_budget=trial_budget, seed=seed, device=device, workers=workers,
                   threads=threads, gpus_per_trial=gpus_per_trial, plugin=list(plugins),
                   accept_task_change=accept_task_change, accept_plugin_change=accept_plugin_change)
    args = command_args("run", [path], options)
    notes: list[str] = []
    say = to_stderr if progress else notes.append
    with quiet_optuna():
        launch = prepare_run(args, lambda: host(args.plugin, args.traceback, say))
        found = in_ranks(launch, lambda: train_run(launch, say, progress))
    if not isinstance(found, optuna.Study):  # a rank other than 0 (torchrun): rank 0 holds the result
        raise WorkerFailed(f"this process was rank {launch.ranks.rank}; the study's result is rank 0's")
    return StudyResult(found, launch.url, notes)


def train_run(launch: Any, say: Say, progress: bool) -> optuna.Study:
    """`automl run`'s training of a prepared study, the command's and the API's: the notes said once, the
    trials trained here or by ``--workers N`` processes, the bars and a line per trial when ``progress``."""
    from automl.cli.options import stderr, warn_if_overloaded
    from automl.report.progress import RunDisplay
    from automl.study.launch import train_study
    from automl.study.processes import worker_failure
    from automl.study.runner import create_study, unavailable_for_model

    prepared = launch.prepared
    warn_if_overloaded(prepared.device, [prepared.trial_budget], say)
    study = create_study(prepared)
    model = prepared.study_file.config.task.model
    for name, reason in unavailable_for_model(prepared).items():  # said once, not by each trial
        say(f"automl: note: trick {name!r} is unavailable for model {model!r}, so its trials run without it: "
            f"{reason}")
    display = RunDisplay(prepared, stderr()) if progress else None
    with display or contextlib.nullcontext():
        if display is not None:
            display.resumed(study)
        status = train_study(launch, study, display.on_trial if display is not None else ignore)
    if status:
        raise WorkerFailed(worker_failure(status))
    return study


def study_path(study: str | Path | Mapping[str, Any]) -> str:
    """The study file to run: ``study`` itself, or a dict's tables written to ``NAME.toml`` here (refused where
    another file of that name is in the way)."""
    if not isinstance(study, Mapping):
        return str(study)
    import tomli_w

    name = study.get("study", {}).get("name")
    if not isinstance(name, str) or not name:
        raise UserError("a study given as a dict needs study = {name = ...}: its file is written to NAME.toml")
    path = Path(f"{name}.toml")
    text = tomli_w.dumps(dict(study))
    if path.exists() and path.read_text(encoding="utf-8") != text:
        raise UserError(f"{path} exists with other contents; give the study another name, or run the file itself")
    path.write_text(text, encoding="utf-8")
    return str(path)


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's and alembic's INFO lines kept off the caller's terminal for the block, their levels put back."""
    before = optuna.logging.get_verbosity(), logging.getLogger("alembic").level
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before[0])
        logging.getLogger("alembic").setLevel(before[1])


__all__ = ["Configuration", "StudyResult", "WorkerFailed", "load", "quiet_optuna", "run", "study_path",
           "train_run"]
