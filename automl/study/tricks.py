"""The tricks a study offers, checked against the installed plugins: names, pins, range overrides, options."""

from __future__ import annotations

from typing import Any, Mapping

from pydantic import ValidationError

from automl.errors import UserError
from automl.host import Host
from automl.overrides import Choices, Override, Pinned, Range
from automl.space import TrickSettings, pinned_conflicts
from automl.trick_space import SpaceRecorder, check_space, option_names
from automl.study.config import StudyFile
from automl.trick import Trick

def study_tricks(study: StudyFile, host: Host) -> tuple[dict[str, type[Trick]], dict[str, TrickSettings]]:
    """The trick classes this study searches over and what the file pins or overrides for each."""
    section = study.config.tricks
    # "*" is every installed trick, the blocked ones too: a study must not silently search fewer.
    names = sorted({*host.tricks, *host.blocked}) if section.include == "*" else list(section.include)
    for name in section.exclude:
        if name not in host.tricks and name not in host.blocked:
            raise study.error("[tricks] exclude", _unknown(host, name))
    names = [n for n in names if n not in section.exclude]
    for name in [*names, *section.tables]:
        if name not in host.tricks:
            hint = f"; or add {name!r} to [tricks] exclude" if section.include == "*" else ""
            raise study.error("[tricks]", _unknown(host, name) + hint)
    for name in section.tables:
        if name not in names:
            raise study.error(f"[tricks.{name}]", f"configures a trick that is not included; add {name!r} to [tricks] include")
    tricks = {n: host.tricks[n].cls for n in names}
    settings = {n: _trick_settings(study, n, tricks[n], section.tables.get(n, {})) for n in names}
    problems = pinned_conflicts(tricks, settings)
    if problems:
        raise study.error("[tricks]", problems[0])
    return tricks, settings


def _unknown(host: Host, name: str) -> str:
    try:
        host.trick(name)
    except UserError as exc:
        return str(exc)
    return ""


def _trick_settings(study: StudyFile, name: str, cls: type[Trick], table: Any) -> TrickSettings:
    where = f"[tricks.{name}]"
    if not isinstance(table, Mapping):
        raise study.error(where, f"must be a table of parameters, got {table!r}")
    declared = SpaceRecorder(name)
    returned = cls.search_space(declared)
    options_valid = option_names(cls, returned)
    valid = ["enabled", *declared.params, *options_valid]
    enabled = None
    overrides: dict[str, Override] = {}
    options: dict[str, Any] = {}
    for key, value in table.items():
        if key == "enabled":
            if not isinstance(value, bool):
                raise study.error(where, f"enabled must be true or false, got {value!r}")
            enabled = value
        elif key in declared.params:
            overrides[key] = _override(study, f"{where} {key}", value)
        elif key in options_valid:
            options[key] = value
        else:
            raise study.error(where, f"unknown key {key!r}; valid: {', '.join(valid)}")
    try:
        check_space(cls, overrides, options)  # the narrowed space, sampled as the host samples the declared one
    except (ValueError, TypeError) as exc:
        raise study.error(where, str(exc)) from None
    return TrickSettings(enabled=enabled, overrides=overrides, options=options)


def _override(study: StudyFile, where: str, value: Any) -> Override:
    if not isinstance(value, Mapping):
        return Pinned(value)
    try:
        return Choices.model_validate(value) if "choices" in value else Range.model_validate(value)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        key = ".".join(str(p) for p in error["loc"])
        if error["type"] == "extra_forbidden":
            raise study.error(where, f"has unknown key {key!r}; a range has low, high, log, step, or give choices") from None
        raise study.error(where, f"{key}: {error['msg']}") from None
