"""The study file (TOML): its schema, and errors that name the file, the key and the valid choices."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, TypeAdapter,
                      ValidationError, field_validator, model_validator)
from torch import nn

from automl.budget import Budget
from automl.errors import UserError
from automl.seeds import DEFAULT_MAX_SEEDS, DEFAULT_TOLERANCE
from automl.sequential import FIRST_LOOK
from automl.storage.optuna_adapter import max_name_length
from automl.study.costs import CONSTRAINTS, OBJECTIVES
from automl.study.fidelity import BUDGET_RUNGS
from automl.study.incumbent import SHARE
from automl.study.pruning import ETA
from automl.study.tomlfiles import Section, first_problem, listing, parse_toml, read_text
from automl.train.checkpoints import Every
from automl.train.datasets import (DEFAULT_DOWNLOAD, DEFAULT_LOADER, DEFAULT_VAL_FRACTION, DEFAULT_VERIFY, Dataset,
                                   check_dataset_name, load_dataset)
from automl.train.models import ModelSource, check_model_name, resolve_model
from automl.train.settings import TrainSettings


def _budget(value: Any) -> Any:
    if value is None or isinstance(value, Budget):
        return value
    try:
        return Budget.parse(value)
    except UserError as exc:
        raise ValueError(str(exc)) from None


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_.\-]")
_STEM_MAX = 200
"""File names are at most 255 bytes on most file systems; the rest is for suffixes such as ``-trial12.toml``."""


def _study_name(value: str) -> str:
    if len(value) > max_name_length():  # Optuna's column for study names; longer fails on PostgreSQL
        raise ValueError(f"is {len(value)} characters long; the database keeps at most "
                         f"{max_name_length()}, so give a shorter name")
    if not _NAME.match(value):
        raise ValueError(f"{value!r} must start with a letter or digit and hold only letters, digits, "
                         "'_', '.' and '-'")
    return value


def file_stem(name: str) -> str:
    """A study's name as the stem of a file in the working folder, whatever the name (a study made by Optuna
    alone need not follow :data:`StudyName`): never a path, never hidden."""
    return _NOT_IN_NAME.sub("_", name).lstrip(".-")[:_STEM_MAX] or "study"


BudgetValue = Annotated[Budget, BeforeValidator(_budget)]
"""A duration in a file (``"90s"``, ``"30ep"``, ``"500steps"``) as a :class:`Budget`."""
StudyName = Annotated[str, AfterValidator(_study_name)]
"""A study's name: what `automl` commands and the file names they write are keyed by."""
SEED_LIMIT = 2**31
Seed = Annotated[int, Field(ge=0, lt=SEED_LIMIT)]
"""A study's or a trial's seed. Optuna's samplers take numpy seeds below 2**32, and workers and trials add
offsets to the study's seed, so half that range is left for them."""
def check_option(kind: Any, value: Any, flag: str) -> Any:
    """``value`` of a command-line ``flag`` checked as the same ``kind`` a file's key is (a name, a seed)."""
    try:
        return TypeAdapter(kind).validate_python(value)
    except ValidationError as exc:
        raise UserError(f"{flag} {first_problem(exc, StudyConfig)}") from None


class StudySection(Section):
    name: StudyName
    direction: Literal["minimize"] = "minimize"
    """The value is the validation error, so it is always minimised."""
    sampler: Literal["tpe", "random", "cmaes", "gp", "bruteforce"] = "tpe"
    """``bruteforce`` tries every combination once: for comparisons where all else is pinned."""
    fidelity: Literal["progress", "budget"] = "budget"
    """What a rung is (``automl.study.fidelity``): a complete run at a smaller budget (``budget``: b/9, b/3, b at
    eta 3, each schedule landing on its own end), or a point of progress through the one run (``progress``).
    A study of several ``objectives`` that does not say takes ``progress``: its pruner keeps whole fronts, and
    complete runs at every rung cost it more than they tell (``benchmarks/pareto_quality.py``)."""
    pruner: Literal["asha", "median", "hyperband", "none"] = "asha"
    """``asha`` keeps the best 1/eta at each rung, ``median`` the better half; both prune only outside the
    validation noise (``automl.study.pruning``). ``hyperband`` is Optuna's, without that guard."""
    eta: int = Field(ETA, ge=2)
    """The reduction factor: the budget fidelity's rungs grow by eta, and asha keeps the best 1/eta."""
    budget_rungs: int = Field(BUDGET_RUNGS, ge=1, le=6)
    """Rungs of the budget fidelity (the last at the trial budget)."""
    intensify: float = Field(SHARE, ge=0, lt=1)
    """The most of the study's device time (of what it has spent so far) that repeats of the best configurations
    at new seeds may take (``automl.study.incumbent``); 0 turns repeats off."""
    n_trials: int | None = Field(None, gt=0)
    total_budget: BudgetValue | None = None
    """Device time of the whole study; only seconds, minutes or hours."""
    trial_budget: BudgetValue
    storage: str | None = None
    artifacts: str = "artifacts"
    """Folder of the file-system artifact store that keeps each completed trial's model."""
    seed: Seed = 0
    heartbeat_interval: int = Field(30, gt=0)
    """Seconds between a running trial's heartbeats."""
    grace_period: int | None = Field(None, gt=0)
    """Seconds without a heartbeat after which a trial's worker is taken for dead (default: 2 heartbeats)."""
    checkpoint_every: str | float | None = None
    """A running trial saves a checkpoint every this much device time (``"30s"``) or fraction of its budget
    (``0.1``), or ``"off"``; by default every tenth of trials of at least ten minutes (see
    ``automl.train.checkpoints``). A retried trial resumes from the latest; SIGTERM always saves one."""
    gpus_per_trial: int = Field(1, gt=0)
    """Devices that train each trial together, one process each (``automl run --gpus-per-trial``): GPUs, or
    gloo processes on the CPU with ``--device cpu``."""
    objectives: list[Literal[OBJECTIVES]] = ["error"]
    """What the study minimises: the validation error first, then any of the inference costs ``latency``
    (milliseconds per image on the trial's device), ``flops`` (per image) and ``passes`` (forward passes per
    prediction), each measured before the trial trains (``automl.study.costs``). Several make an Optuna
    multi-objective study, pruned by ``automl.study.pareto``."""
    constraints: dict[Literal[CONSTRAINTS], float] = {}
    """Bounds on a configuration's inference cost: ``latency_ms`` (per image), ``flops`` (per image),
    ``passes``. A trial over one, measured before training, is not trained (pruned, with the reason), and is
    told to Optuna's constrained samplers (``Trial.set_constraint``)."""

    @model_validator(mode="before")
    @classmethod
    def _progress_for_several_objectives(cls, data: Any) -> Any:
        """The fidelity a study of several objectives takes where the file does not say (see ``fidelity``)."""
        if isinstance(data, dict) and "fidelity" not in data and len(data.get("objectives", ())) > 1:
            return {**data, "fidelity": "progress"}
        return data

    @model_validator(mode="after")
    def _bounded(self) -> "StudySection":
        try:
            if self.total_budget is not None:
                self.total_budget.require_device_time("total_budget")
            self.trial_budget.require_within(self.total_budget, ("trial_budget", "total_budget"))
        except UserError as exc:
            raise ValueError(str(exc)) from None
        try:
            Every.of(self.checkpoint_every, self.trial_budget)
        except UserError as exc:
            raise ValueError(str(exc)) from None
        _check_objectives(self)
        if self.grace_period is not None and self.grace_period <= self.heartbeat_interval:
            # A worker beats once an interval: a shorter grace takes every live worker for dead.
            raise ValueError(f"grace_period ({self.grace_period}) must be longer than heartbeat_interval "
                             f"({self.heartbeat_interval}); give at least {2 * self.heartbeat_interval}, or leave "
                             "it out (two heartbeats)")
        return self

    @property
    def grace(self) -> float:
        """Seconds without a heartbeat after which a trial's worker is taken for dead."""
        return float(self.grace_period or 2 * self.heartbeat_interval)


def _check_objectives(study: "StudySection") -> None:
    """The error first and each objective once; costs bounded above zero; a pruner that can rank several."""
    if not study.objectives or study.objectives[0] != "error":
        raise ValueError(f"objectives must start with \"error\" (the validation error), got {study.objectives}; "
                         'e.g. objectives = ["error", "latency"]')
    if len(set(study.objectives)) != len(study.objectives):
        raise ValueError(f"objectives names one twice: {study.objectives}")
    bad = {name: bound for name, bound in study.constraints.items() if not bound > 0}
    if bad:
        raise ValueError(f"constraints must be positive bounds, got {bad}")
    if len(study.objectives) > 1 and study.sampler == "cmaes":
        raise ValueError('sampler = "cmaes" cannot search several objectives; use "tpe", "random", "gp" or '
                         '"bruteforce"')
    if len(study.objectives) > 1 and study.pruner == "hyperband":
        raise ValueError('pruner = "hyperband" is Optuna\'s, which cannot rank several objectives; use "asha" '
                         '(non-dominated fronts, automl.study.pareto), "median" or "none"')


class TaskSection(Section):
    dataset: str
    model: str
    val_fraction: float = Field(DEFAULT_VAL_FRACTION, gt=0, lt=1)
    data_root: str | None = None
    """Where the data set's files are; a relative path is relative to the study file's folder."""
    download: bool = DEFAULT_DOWNLOAD
    verify: bool = DEFAULT_VERIFY
    """Check the dataset files' checksums (torchvision's own check)."""
    loader: Literal["auto", "memory", "stream"] = DEFAULT_LOADER
    """``memory``: decoded once into device tensors; ``stream``: read by DataLoader workers; ``auto``: by size."""
    dataset_args: dict[str, Any] = {}
    model_args: dict[str, Any] = {}
    _folders: tuple[str, ...] = PrivateAttr(default=())
    """Where a ``package.module:callable`` model is looked for after ``sys.path``: the study file's folder."""

    def look_in(self, *folders: str | Path) -> "TaskSection":
        """This task, its import-path model looked for in ``folders`` too (absolute); returns itself."""
        self._folders = tuple(dict.fromkeys([*self._folders, *(str(Path(f).absolute()) for f in folders)]))
        return self

    @property
    def folders(self) -> tuple[str, ...]:
        return self._folders

    def load_data(self, *, seed: int, device: torch.device, host: Any = None, folder: str | Path = ".") -> Dataset:
        """The task's data on ``device``; ``seed`` splits train from val (the study's, so that every
        trial and every retraining is scored on the same validation samples). ``host`` provides the data sets
        of plugins (default: the installed ones); ``folder`` (the study file's) is searched for an import path."""
        return load_dataset(self.dataset, root=self.root_in(folder), val_fraction=self.val_fraction, seed=seed,
                            device=device, download=self.download, verify=self.verify, loader=self.loader,
                            host=host, folders=[Path(folder), Path.cwd()], **self.dataset_args)

    def root_in(self, folder: str | Path) -> str | None:
        """``data_root`` as a path: a relative one is read from ``folder`` (the study file's), as a
        ``module:callable`` beside the study file is, not from wherever the command runs."""
        if self.data_root is None or Path(self.data_root).expanduser().is_absolute():
            return self.data_root
        return str(Path(folder) / self.data_root)

    def model_source(self, host: Any = None) -> ModelSource:
        """Where the task's model comes from (``host``: whose plugins a name is looked up in)."""
        return resolve_model(self.model, folders=self._folders, host=host)

    def build_model(self, data: Dataset, host: Any = None) -> nn.Module:
        """A new model of the task's architecture for ``data``'s images and classes (seed torch first)."""
        return self.model_source(host).build(in_channels=data.input_shape[0], num_classes=data.num_classes,
                                             **self.model_args)

    def probe_model(self, in_channels: int, num_classes: int) -> nn.Module:
        """A model of the task's architecture for tricks to look at (``TrialContext.model``), built without
        drawing from torch's global RNG, so that the trials' random streams stay as they were."""
        with torch.random.fork_rng(devices=[]):
            return self.model_source().build(in_channels=in_channels, num_classes=num_classes, **self.model_args)

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        return check_dataset_name(value)

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        return check_model_name(value)


class TricksSection(BaseModel):
    """``include`` plus one table per trick (``[tricks.warmup]``) of pins and range overrides."""

    model_config = ConfigDict(extra="allow", frozen=True)
    include: Literal["*"] | list[str] = "*"
    exclude: list[str] = []

    @field_validator("include", mode="before")
    @classmethod
    def _all_or_list(cls, value: Any) -> Any:
        # Said here: pydantic's own message names the '*' literal only, not the list that was meant.
        if isinstance(value, str) and value != "*":
            raise ValueError(f'must be "*" (every installed trick) or a list of trick names such as '
                             f'[{value!r}], got {value!r}')
        return value

    @property
    def tables(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class CompareArm(Section):
    """One arm of ``[compare.arms.NAME]``: the tricks it enables (every other one off) and its pins."""

    tricks: list[str] = []
    pins: dict[str, Any] = {}
    """Values of the parameters the study leaves open, by their study name (``"cosine.final" = 0.0``)."""


class CompareSection(Section):
    """``[compare]``: the arms `automl compare` trains (default: every recipe the study leaves open), and how
    many seeds its sequential design may spend on each."""

    reference: str | None = None
    arms: dict[str, CompareArm] = {}
    max_seeds: int = Field(DEFAULT_MAX_SEEDS, ge=FIRST_LOOK)
    """The most seeds an arm trains at a budget; seeds are added in rounds until each arm is decided."""
    tolerance: float = Field(DEFAULT_TOLERANCE, ge=0, lt=1)
    """An arm whose interval lies within this of the reference's error, either side, is equivalent (0: never)."""


class StudyConfig(Section):
    study: StudySection
    task: TaskSection
    train: TrainSettings = TrainSettings()
    tricks: TricksSection = TricksSection()
    compare: CompareSection = CompareSection()


class StudyFile(BaseModel):
    """A validated study file and the text it was read from."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    path: str
    text: str
    config: StudyConfig

    def error(self, where: str, message: str) -> UserError:
        return UserError(f"{self.path}: {where} {message}")


def load_study_file(path: str | Path, variant: str | None = None) -> StudyFile:
    """Read and validate a study file; every problem is a one-line UserError naming file and key.

    ``[variants.NAME]`` tables overlay the rest of the file when ``variant`` is NAME (the
    same comparison on CPU digits and on GPU CIFAR-10, say); the study name gets ``-NAME``
    unless the variant sets its own.
    """
    text = read_text(Path(path), "study file", "the shipped ones are in studies/")
    return parse_study_text(text, str(path), variant)


def parse_study_text(text: str, path: str, variant: str | None = None) -> StudyFile:
    """Validate the text of a study file (as read, or as stored with a study); ``path`` names it in errors."""
    raw = _apply_variant(Path(path), parse_toml(text, path), variant)
    try:
        config = StudyConfig.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{path}: {first_problem(exc, StudyConfig)}") from None
    except RecursionError:
        raise UserError(f"{path}: values nested too deeply; flatten the file") from None
    config.task.look_in(Path(path).parent)
    return StudyFile(path=path, text=text, config=config)


def config_digest(config: StudyConfig) -> str:
    """The sha256 of a validated study config: which text (and variant) of a study file a trial ran with.

    Without ``[compare]`` and ``[study] checkpoint_every`` and ``gpus_per_trial``, which change nothing a trial
    trains with, only how and where (and so digests stay those of studies recorded before they existed)."""
    exclude = {"compare": True, "study": {"checkpoint_every", "gpus_per_trial"}}
    return hashlib.sha256(config.model_dump_json(exclude=exclude).encode()).hexdigest()


def _apply_variant(path: Path, raw: dict[str, Any], variant: str | None) -> dict[str, Any]:
    variants = raw.pop("variants", {})
    _check_variants(path, raw, variants)
    if variant is None:
        return raw
    if variant not in variants:
        raise UserError(f"{path}: no variant {variant!r}; valid: {listing(variants)}")
    overlay = variants[variant]
    merged = _merge(raw, overlay)
    if "name" not in overlay.get("study", {}) and isinstance(merged.get("study"), dict) and "name" in merged["study"]:
        merged["study"]["name"] = f"{merged['study']['name']}-{variant}"
    return merged


def _check_variants(path: Path, raw: dict[str, Any], variants: Any) -> None:
    """Every variant, selected or not, is a table whose keys are tables where the file's are."""
    if not isinstance(variants, dict):
        raise UserError(f"{path}: [variants] must hold one table per variant, got {_short(variants)}")
    for name, overlay in variants.items():
        if not isinstance(overlay, dict):
            raise UserError(f"{path}: [variants] {name} must be a table ([variants.{name}]) of the keys it "
                            f"changes, got {_short(overlay)}")
        for key, value in overlay.items():
            if isinstance(raw.get(key, {}), dict) and not isinstance(value, dict):
                raise UserError(f"{path}: [variants.{name}] {key} must be a table like [{key}], "
                                f"got {_short(value)}")


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` over ``base``, table by table."""
    merged = dict(base)
    for key, value in overlay.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged
