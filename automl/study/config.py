"""The study file (TOML): its schema, and errors that name the file, the key and the valid choices."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from torch import nn

from automl.budget import Budget
from automl.errors import UserError
from automl.train.datasets import (DEFAULT_DOWNLOAD, DEFAULT_VAL_FRACTION, DEFAULT_VERIFY, Dataset,
                                   check_dataset_name, load_dataset)
from automl.train.models import build_model, check_model_name
from automl.train.settings import TrainSettings


class Section(BaseModel):
    """A table of a study or run file: unknown keys are errors, values are fixed once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _budget(value: Any) -> Any:
    if value is None or isinstance(value, Budget):
        return value
    try:
        return Budget.parse(value)
    except UserError as exc:
        raise ValueError(str(exc)) from None


BudgetValue = Annotated[Budget, BeforeValidator(_budget)]
"""A duration in a file (``"90s"``, ``"30ep"``, ``"500steps"``) as a :class:`Budget`."""
StudyName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]
"""A study's name: what `automl` commands and the file names they write are keyed by."""


class StudySection(Section):
    name: StudyName
    direction: Literal["minimize"] = "minimize"
    """The value is the validation error, so it is always minimised."""
    sampler: Literal["tpe", "random", "cmaes", "gp", "bruteforce"] = "tpe"
    """``bruteforce`` tries every combination once: for comparisons where all else is pinned."""
    pruner: Literal["median", "hyperband", "none"] = "median"
    n_trials: int | None = Field(None, gt=0)
    total_budget: BudgetValue | None = None
    """Device time of the whole study; only seconds, minutes or hours."""
    trial_budget: BudgetValue
    storage: str | None = None
    artifacts: str = "artifacts"
    """Folder of the file-system artifact store that keeps each completed trial's model."""
    seed: int = 0
    heartbeat_interval: int = Field(30, gt=0)
    """Seconds between a running trial's heartbeats."""
    grace_period: int | None = Field(None, gt=0)
    """Seconds without a heartbeat after which a trial's worker is taken for dead (default: 2 heartbeats)."""

    @model_validator(mode="after")
    def _bounded(self) -> "StudySection":
        if self.total_budget is not None:
            try:
                self.total_budget.require_device_time("total_budget")
            except UserError as exc:
                raise ValueError(str(exc)) from None
        if self.total_budget is None and self.n_trials is None:
            raise ValueError("give total_budget (device time, e.g. '10m') or n_trials, or both")
        return self


class TaskSection(Section):
    dataset: str
    model: str
    val_fraction: float = Field(DEFAULT_VAL_FRACTION, gt=0, lt=1)
    data_root: str | None = None
    download: bool = DEFAULT_DOWNLOAD
    verify: bool = DEFAULT_VERIFY
    """Check the dataset files' checksums (torchvision's own check)."""
    dataset_args: dict[str, Any] = {}
    model_args: dict[str, Any] = {}

    def load_data(self, *, seed: int, device: torch.device) -> Dataset:
        """The task's data on ``device``; ``seed`` splits train from val (the study's, so that every
        trial and every retraining is scored on the same validation samples)."""
        return load_dataset(self.dataset, root=self.data_root, val_fraction=self.val_fraction, seed=seed,
                            device=device, download=self.download, verify=self.verify, **self.dataset_args)

    def build_model(self, data: Dataset) -> nn.Module:
        """A new model of the task's architecture for ``data``'s images and classes (seed torch first)."""
        return build_model(self.model, in_channels=data.input_shape[0], num_classes=data.num_classes,
                           **self.model_args)

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

    @property
    def tables(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class StudyConfig(Section):
    study: StudySection
    task: TaskSection
    train: TrainSettings = TrainSettings()
    tricks: TricksSection = TricksSection()


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


def read_text(path: Path, kind: str, if_missing: str) -> str:
    """The text of a ``kind`` of file; a missing or unreadable one is a one-line UserError (``if_missing``: the fix)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{kind} {str(path)!r} not found; {if_missing}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {kind} {str(path)!r}: {exc}") from None


def parse_study_text(text: str, path: str, variant: str | None = None) -> StudyFile:
    """Validate the text of a study file (as read, or as stored with a study); ``path`` names it in errors."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: malformed TOML: {exc}") from None
    raw = _apply_variant(Path(path), raw, variant)
    try:
        config = StudyConfig.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{path}: {first_problem(exc)}") from None
    return StudyFile(path=path, text=text, config=config)


def config_digest(config: StudyConfig) -> str:
    """The sha256 of a validated study config: which text (and variant) of a study file a trial ran with."""
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()


def _apply_variant(path: Path, raw: dict[str, Any], variant: str | None) -> dict[str, Any]:
    variants = raw.pop("variants", {})
    if not isinstance(variants, dict):
        raise UserError(f"{path}: [variants] must hold one table per variant, got {variants!r}")
    if variant is None:
        return raw
    if variant not in variants:
        raise UserError(f"{path}: no variant {variant!r}; valid: {', '.join(sorted(variants)) or '(none)'}")
    overlay = variants[variant]
    merged = _merge(raw, overlay)
    if "name" not in overlay.get("study", {}) and isinstance(merged.get("study"), dict) and "name" in merged["study"]:
        merged["study"]["name"] = f"{merged['study']['name']}-{variant}"
    return merged


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` over ``base``, table by table."""
    merged = dict(base)
    for key, value in overlay.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def first_problem(exc: ValidationError, root: type[BaseModel] | None = None) -> str:
    """The first error of a validation as one line: where (``[section] key:``), what, and the valid keys."""
    error = exc.errors(include_url=False)[0]
    loc = [str(part) for part in error["loc"] if not str(part).startswith(("function-", "union["))]
    kind = error["type"]
    where = _where(loc)
    if kind == "extra_forbidden":
        section, key = loc[:-1], loc[-1]
        return f"{_where(section)}unknown key {key!r}; valid: {', '.join(_valid_keys(section, root or StudyConfig))}".strip()
    if kind == "missing":
        return f"{where}is required".strip()
    message = error["msg"].removeprefix("Value error, ")
    got = error.get("input")
    shown = f" (got {got!r})" if isinstance(got, (str, int, float, bool)) and repr(got) not in message else ""
    return f"{where}{message}{shown}".strip()


def _where(loc: list[str]) -> str:
    if not loc:
        return ""
    if len(loc) == 1:
        return f"[{loc[0]}] "
    return f"[{loc[0]}] {'.'.join(loc[1:])}: "


def _valid_keys(section: list[str], root: type[BaseModel]) -> list[str]:
    model: Any = root
    for part in section:
        field = model.model_fields.get(part)
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            break
        model = field.annotation
    return list(model.model_fields)
