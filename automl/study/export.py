"""`automl export`: one completed trial of a stored study as a standalone run file, checked by replaying it.

The study's settings come from the text of its file stored in ``automl_study_source``, so the
original file is not needed; the trial's ``config_sha256`` says which stored text (and variant) it
ran with. Before anything is written, the trial's params are replayed through that config, and
the export is refused unless they rebuild exactly the tricks the trial enabled.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace as dataclasses_replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.artifacts import FileSystemArtifactStore, download_artifact
from optuna.trial import FrozenTrial, TrialState

from automl.errors import UserError
from automl.host import Host
from automl.storage import mask_url, open_storage
from automl.files import atomic_write
from automl.storage.models import StudySourceModel, session_scope
from automl.study.pareto import pareto_front
from automl.study.incumbent import configurations
from automl.study.config import StudyConfig, StudyFile, config_digest, file_stem, parse_study_text
from automl.study.tomlfiles import parse_toml
from automl import records
from automl.records import (ATTR_BUDGET, ATTR_CONFIG, ATTR_MODEL, ATTR_SEED, ATTR_SPENT, ATTR_STEPS, ATTR_TRICKS,
                                  STUDY_DATASET, STUDY_MODEL, STUDY_MODEL_INPUT, best_of, end_reason, load_study, ranked,
                                  trick_sources, training_seed)
from automl.study.runfile import ReplayError, Replayed, replay, write_run_file
from automl.study.tricks import study_tricks
from automl.run import TrialContext
from automl.trick import Trick

STUDY_BEST_SUFFIX = ".study-best.pt"


@dataclass
class Exported:
    """What was written, for the command's report."""

    path: Path
    study: str
    trial: int
    value: float
    tricks: list[str]
    params: dict[str, Any]
    budget: str
    seed: int
    study_best: Path | None

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "study": self.study, "trial": self.trial, "value": self.value,
                "tricks": self.tricks, "params": self.params, "budget": self.budget, "seed": self.seed,
                "study_best": None if self.study_best is None else str(self.study_best)}


def export_trial(url: str, study_name: str, number: int | None, host: Host, out: str | Path | None) -> Exported:
    """Write the run file of trial ``number`` (default: the best) of ``study_name``; returns what was written."""
    shown = mask_url(url)
    storage = open_storage(url, create=False)
    study = load_study(study_name, storage, shown)
    trial = pick_trial(study, number)
    path = Path(out) if out is not None else default_run_file(study_name, trial.number)
    if path.is_dir() or not path.parent.is_dir():
        raise UserError(f"cannot write run file {str(path)!r}: "
                        + ("it is a folder" if path.is_dir() else f"folder {str(path.parent)!r} does not exist")
                        + "; fix: give -o FOLDER/NAME.toml in an existing folder")
    rows = _sources(storage, study_name, shown)
    with tempfile.TemporaryDirectory() as tmp:
        best = StudyBestAt(study, trial, Path(tmp))
        rebuilt = _rebuild(trial, rows, study.user_attrs, host, TrialContext(study_name, trial.number, best), best)
        run = _run_table(trial, rebuilt.study_file.config)
        best_path = None
        if best.fetched is not None:
            best_path = path.with_name(path.stem + STUDY_BEST_SUFFIX)
            run["study_best"] = best_path.name
            atomic_write(best_path, best.fetched.read_bytes())
    write_run_file(path, _document(trial, rebuilt, run, shown), _header(trial, rebuilt, path, shown))
    return Exported(path, study_name, trial.number, records.error_of(trial), rebuilt.replayed.names, dict(trial.params),
                    run["budget"], run["seed"], best_path)


def default_run_file(study_name: str, number: int) -> Path:
    """``STUDY-trialN.toml`` in the working folder, for any study name."""
    return Path(f"{file_stem(study_name)}-trial{number}.toml")


def _run_table(trial: FrozenTrial, config: StudyConfig) -> dict[str, Any]:
    """The run file's ``[run]``: the trial's budget, its training seed, the study's data seed, its tricks."""
    return {"budget": trial.user_attrs.get(ATTR_BUDGET) or str(config.study.trial_budget),
            "seed": trial.user_attrs.get(ATTR_SEED, training_seed(config.study.seed, trial.number)),
            "data_seed": config.study.seed, "tricks": list(trial.user_attrs.get(ATTR_TRICKS, []))}


def _document(trial: FrozenTrial, rebuilt: "_Rebuilt", run: dict[str, Any], shown: str) -> dict[str, Any]:
    from automl.version import __version__

    config, row, names = rebuilt.study_file.config, rebuilt.row, sorted(rebuilt.tricks)
    source = {"study": row.study_name, "trial": trial.number, "value": records.error_of(trial), "storage": shown,
              "study_file": row.path, "sha256": row.sha256, "automl": __version__,
              "steps": trial.user_attrs.get(ATTR_STEPS), "spent_seconds": trial.user_attrs.get(ATTR_SPENT),
              "plugins": {p["trick"]: p["source"] for p in trick_sources(row.plugins) if p["trick"] in names}}
    return {
        "run": run,
        "params": dict(sorted(trial.params.items())),
        "task": {**config.task.model_dump(mode="json", exclude_none=True),
                 # The run file may be written anywhere: a data root relative to the study file, made absolute.
                 **({"data_root": str(Path(config.task.root_in(Path(row.path).parent)).absolute())}
                    if config.task.data_root else {})},
        "train": config.train.model_dump(mode="json", exclude_none=True),
        "tricks": {"include": names, **{n: t for n, t in config.tricks.tables.items() if n in names}},
        "source": {k: v for k, v in source.items() if v is not None},
    }


def _header(trial: FrozenTrial, rebuilt: "_Rebuilt", path: Path, shown: str) -> str:
    from automl.version import __version__

    return (f"Trial {trial.number} of study {rebuilt.row.study_name}: validation error {records.error_of(trial):.4f}, "
            f"tricks: {', '.join(rebuilt.replayed.names) or '(none)'}.\n"
            f"Exported by automl {__version__} from {shown}.\n"
            f"`automl train {path.name}` trains it again: [params] are replayed through [train] and [tricks]\n"
            "as the study did. [run] seed is the trial's own: the first of --seeds K, so with a budget in\n"
            "steps or epochs, on the same device, the first run repeats the trial.")


def pick_trial(study: optuna.Study, number: int | None) -> FrozenTrial:
    """Trial ``number``, or the first trial of the best configuration (by its mean over seeds, as `automl best`
    ranks them); only a completed trial can be exported."""
    trials = study.get_trials(deepcopy=False)
    complete = ranked(trials)
    listed = ", ".join(str(t.number) for t in sorted(complete, key=lambda t: t.number)) or "(none)"
    if number is None:
        if not complete:
            raise UserError(f"study {study.study_name!r} has no completed trial to export yet; "
                            "fix: run it until one completes")
        if len(study.directions) > 1:  # no one best: the front member of the lowest error, as `automl best` lists
            return pareto_front(trials)[0]
        return configurations(complete)[0].first
    found = [t for t in trials if t.number == number]
    if not found:
        raise UserError(f"study {study.study_name!r} has no trial {number} (it has {len(trials)}); "
                        f"completed trials: {listed}")
    trial = found[0]
    if trial.state != TrialState.COMPLETE:
        why = end_reason(trial)
        raise UserError(f"trial {number} of study {study.study_name!r} is {trial.state.name} ({why}), not complete; "
                        f"only a completed trial trained its whole budget; completed trials: {listed}")
    return trial


def _sources(storage: optuna.storages.RDBStorage, study_name: str, shown: str) -> list[StudySourceModel]:
    try:
        with session_scope(storage.engine) as session:
            rows = StudySourceModel.history(session, study_name)
    except sqlalchemy.exc.DBAPIError:  # no automl tables: a study made by Optuna alone
        rows = []
    if not rows:
        raise UserError(f"study {study_name!r} in {shown} has no stored study file (automl_study_source); "
                        "only a study run by `automl run` can be exported")
    return rows


def _candidates(rows: list[StudySourceModel], study_name: str) -> list[tuple[StudyFile, StudySourceModel]]:
    """Every config the stored texts give, one per text and variant: newest text first, and within one
    text the configs named like the study first."""
    found = []
    for row in reversed(rows):
        try:
            variants = parse_toml(row.text, row.path).get("variants", {})
        except UserError:
            continue
        configs = []
        for variant in [None, *(sorted(variants) if isinstance(variants, dict) else [])]:
            try:
                configs.append(parse_study_text(row.text, row.path, variant))
            except UserError:
                continue
        configs.sort(key=lambda f: f.config.study.name != study_name)
        found += [(f, row) for f in configs]
    return found


@dataclass
class _Rebuilt:
    study_file: StudyFile
    row: StudySourceModel
    tricks: dict[str, type[Trick]]
    replayed: Replayed


def _rebuild(trial: FrozenTrial, rows: list[StudySourceModel], study_attrs: dict[str, Any], host: Host,
             context: TrialContext, best: "StudyBestAt") -> _Rebuilt:
    """The stored config the trial ran with, checked by replaying its params into the same tricks."""
    candidates = _candidates(rows, rows[0].study_name)
    digest = trial.user_attrs.get(ATTR_CONFIG)
    if digest is not None:
        candidates = [c for c in candidates if config_digest(c[0].config) == digest]
        if not candidates:
            raise UserError(f"the study file trial {trial.number} ran with is not among the {len(rows)} text(s) "
                            f"stored for study {rows[0].study_name!r}; it cannot be rebuilt")
    else:  # a trial from before the digest was recorded: the texts stored by its start, the same data and
        # model, then the replay decides
        started = _utc(trial.datetime_start)
        before = [c for c in candidates if started is None or c[1].created_at <= started]
        candidates = [c for c in before or candidates
                      if study_attrs.get(STUDY_DATASET) in (None, c[0].config.task.dataset)
                      and study_attrs.get(STUDY_MODEL) in (None, c[0].config.task.model)]
    problem = f"no stored text of the study file rebuilds trial {trial.number}"
    for study_file, row in candidates:
        searched = [p["trick"] for p in trick_sources(row.plugins)]
        for name in searched:
            if name in host.blocked:
                host.trick(name)  # says why: two plugins provide it, or its class is invalid
        missing = [p for p in trick_sources(row.plugins) if p["trick"] not in host.tricks]
        if missing:
            raise UserError(f"trick {missing[0]['trick']!r} of study {row.study_name!r} is not installed; the study "
                            f"had it from {missing[0]['source']}; fix: install its plugin, or pass --plugin PATH")
        tricks, settings = study_tricks(study_file, host)
        # `include = "*"` meant the tricks installed then, which the source row recorded.
        tricks = {n: cls for n, cls in tricks.items() if n in searched}
        best.store = Path(study_file.config.study.artifacts)
        shape = study_attrs.get(STUDY_MODEL_INPUT)
        if shape is not None:  # the trial's tricks were offered knowing the model (zero_gamma's blocks)
            context = dataclasses_replace(context, model=study_file.config.task.probe_model(*shape))
        try:
            replayed = replay(trial.params, tricks, settings, study_file.config.train, number=trial.number,
                              context=context)
        except ReplayError as exc:
            problem = f"trial {trial.number} does not replay through {row.path}: {exc}"
            continue
        recorded = trial.user_attrs.get(ATTR_TRICKS, [])
        if sorted(replayed.names) == sorted(recorded):
            return _Rebuilt(study_file, row, tricks, replayed)
        problem = (f"trial {trial.number} enabled {recorded} but its params now build {replayed.names}"
                   + "".join(f" ({n} is unavailable: {r})" for n, r in replayed.unavailable.items()))
    raise UserError(f"{problem}; the plugins may have changed since the study ran")


def _utc(when: datetime | None) -> datetime | None:
    """Optuna's naive local time as the naive UTC automl's tables keep."""
    return None if when is None else when.astimezone(timezone.utc).replace(tzinfo=None)


class StudyBestAt:
    """``TrialContext.best_checkpoint`` as it was when the trial started: the model of the study's best
    trial completed by then, downloaded from the study's artifact store on first use (a trick that never
    asks for it costs nothing)."""

    def __init__(self, study: optuna.Study, trial: FrozenTrial, into: Path) -> None:
        self.study, self.trial, self.into = study, trial, into
        self.store: Path | None = None
        self.fetched: Path | None = None

    def __call__(self) -> Path | None:
        if self.fetched is not None:
            return self.fetched
        started = self.trial.datetime_start
        best = best_of(t for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                       if ATTR_MODEL in t.user_attrs and started is not None
                       and t.datetime_complete is not None and t.datetime_complete <= started)
        if best is None:
            return None
        if self.store is None or not self.store.is_dir():
            raise UserError(f"trial {self.trial.number} was offered the model of trial {best.number}, kept in the "
                            f"artifact store {str(self.store)!r}, which is not here; fix: run the export from the "
                            "folder the study ran in")
        path = self.into / f"best-trial-{best.number}.pt"
        download_artifact(artifact_store=FileSystemArtifactStore(str(self.store)),
                          artifact_id=best.user_attrs[ATTR_MODEL], file_path=str(path))
        self.fetched = path
        return path
