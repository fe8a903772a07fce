"""Which tricks a trial enables: pinned or searched flags, one owner for each contested resource, and the
tricks built from the trial's parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from automl.overrides import Override
from automl.records import ATTR_UNAVAILABLE
from automl.trick import Trick
from automl.trick_errors import TrickError
from automl.trick_space import ENABLED, OWNER_PREFIX, TrickTrial


def study_order(tricks: Sequence[Trick]) -> list[Trick]:
    """The tricks in the order a study runs their hooks: ``order``, lowest first, then by name."""
    return sorted(tricks, key=lambda t: (t.order, t.name))


@dataclass(frozen=True)
class TrickSettings:
    """What a study says about one trick: pinned on/off (None: searched), overrides, fixed options."""

    enabled: bool | None = None
    overrides: Mapping[str, Override] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


def pinned_conflicts(tricks: Mapping[str, type[Trick]], settings: Mapping[str, TrickSettings]) -> list[str]:
    """One message per resource that two tricks pinned on would both own."""
    problems = []
    for resource in sorted({r for cls in tricks.values() for r in cls.owns}):
        pinned = sorted(n for n, cls in tricks.items() if resource in cls.owns and _pin_of(settings, n) is True)
        if len(pinned) > 1:
            problems.append(f"tricks {' and '.join(pinned)} both own {resource!r}; pin at most one of them on")
    return problems


def select_tricks(trial: Any, tricks: Mapping[str, type[Trick]], settings: Mapping[str, TrickSettings],
                  context: Any = None, turned_off: Mapping[str, str] | None = None, *,
                  unavailable: Mapping[str, str] | None = None) -> list[Trick]:
    """Decide which tricks this trial enables and build them with their suggested parameters.

    Resources are shared out first. A trick that owns several resources (a batch ramp owns
    the batch size and the LR schedule) has an ``<name>.enabled`` parameter, asked only
    while none of its resources is taken. Each resource still free with several single
    owners gets a parameter ``owner.<resource>`` (with ``"none"`` as a choice); its other
    owners are off for the trial. Every remaining trick has ``<name>.enabled`` unless the
    study pins it. Choices never depend on earlier answers, as Optuna requires. A trick
    that says it is ``unavailable`` for this trial is off, and the reason is recorded in
    the trial's ``unavailable`` attribute; so is one the study has ``turned_off`` (name to reason), so
    that the trial's distributions stay those of earlier trials. A given ``unavailable`` (name to reason)
    is taken as decided, and no trick is asked: the other ranks of a trial take rank 0's decision.

    Every enabled trick's space is suggested before any is built, so that the trial records all of its
    parameters even when an ``__init__`` raises: that raises :class:`TrickError` naming the trick.
    """
    if unavailable is None:
        off = turned_off or {}
        unavailable = {n: reason for n in sorted(tricks)
                       if (reason := off.get(n) or tricks[n].unavailable(context, dict(_options_of(settings, n))))}
    if unavailable:
        trial.set_user_attr(ATTR_UNAVAILABLE, unavailable)
    pinned_on = {n for n in tricks if _pin_of(settings, n)}
    decided, owner_of = _share_multi_resource(trial, tricks, settings, pinned_on, unavailable)
    decided.update(_choose_single_owners(trial, tricks, settings, pinned_on, unavailable, set(owner_of)))
    for name, cls in tricks.items():
        if name in unavailable or any(owner_of.get(r, name) != name for r in cls.owns):
            decided[name] = False
    enabled = _enabled_flags(trial, tricks, settings, decided)
    params = {n: tricks[n].search_space(TrickTrial(trial, n, _overrides_of(settings, n))) for n in enabled}
    built = [_construct(tricks[n], params[n], _options_of(settings, n)) for n in enabled]
    return study_order(built)


def _construct(cls: type[Trick], params: Mapping[str, Any], options: Mapping[str, Any]) -> Trick:
    try:
        return cls(**params, **options)
    except Exception as exc:  # noqa: BLE001 - a trick's own error fails its trial, not the study
        raise TrickError(cls.name, "__init__", None, exc) from exc


def _share_multi_resource(trial: Any, tricks: Mapping[str, type[Trick]], settings: Mapping[str, TrickSettings],
                          pinned_on: set[str], unavailable: Mapping[str, str]) -> tuple[dict[str, bool], dict[str, str]]:
    """Decide the tricks that own several resources, in name order: (on or off by name, owner by resource)."""
    decided: dict[str, bool] = {}
    owner_of: dict[str, str] = {}
    for name in sorted(n for n in tricks if len(tricks[n].owns) > 1):
        owns = set(tricks[name].owns)
        rivals = sorted(m for m in pinned_on if m != name and owns & set(tricks[m].owns))
        taken = owns & set(owner_of)
        if name in pinned_on and (rivals or taken):
            other = rivals[0] if rivals else owner_of[min(taken)]
            raise ValueError(f"tricks {' and '.join(sorted((name, other)))} both own {min(owns & set(tricks[other].owns))!r}")
        if rivals or taken or _pin_of(settings, name) is False or name in unavailable:
            on = False
        elif name in pinned_on:
            on = True
        else:
            on = trial.suggest_categorical(f"{name}.{ENABLED}", [True, False])
        decided[name] = on
        if on:
            owner_of.update((r, name) for r in owns)
    return decided, owner_of


def _choose_single_owners(trial: Any, tricks: Mapping[str, type[Trick]], settings: Mapping[str, TrickSettings],
                          pinned_on: set[str], unavailable: Mapping[str, str], taken: set[str]) -> dict[str, bool]:
    """For each resource still free with several single owners, the one owner of this trial (or none)."""
    decided: dict[str, bool] = {}
    for resource in sorted({r for cls in tricks.values() for r in cls.owns} - taken):
        candidates = [n for n in sorted(tricks) if tricks[n].owns == (resource,) and _pin_of(settings, n) is not False]
        forced = [n for n in candidates if n in pinned_on]
        if len(forced) > 1:
            raise ValueError(f"tricks {' and '.join(forced)} both own {resource!r}")
        if forced:
            owner = forced[0]
        elif len(candidates) > 1:
            owner = trial.suggest_categorical(f"{OWNER_PREFIX}.{resource}", [*candidates, "none"])
        else:
            continue  # one possible owner: its own enabled flag decides
        for name in candidates:
            decided[name] = name == owner and name not in unavailable
    return decided


def _enabled_flags(trial: Any, tricks: Mapping[str, type[Trick]], settings: Mapping[str, TrickSettings],
                   decided: Mapping[str, bool]) -> list[str]:
    """The names of the tricks this trial enables: those decided on, and those whose ``enabled`` flag says so."""
    enabled = []
    for name in sorted(tricks):
        on = decided.get(name, _pin_of(settings, name))
        if on is None:
            on = trial.suggest_categorical(f"{name}.{ENABLED}", [True, False])
        if on:
            enabled.append(name)
    return enabled


def _pin_of(settings: Mapping[str, TrickSettings], name: str) -> bool | None:
    return settings[name].enabled if name in settings else None


def _overrides_of(settings: Mapping[str, TrickSettings], name: str) -> Mapping[str, Override]:
    return settings[name].overrides if name in settings else {}


def _options_of(settings: Mapping[str, TrickSettings], name: str) -> Mapping[str, Any]:
    return settings[name].options if name in settings else {}
