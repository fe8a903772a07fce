"""Search spaces: the host's prefixing trial, study-file overrides, and which tricks a trial enables."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import optuna
from pydantic import BaseModel, ConfigDict
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from automl.records import ATTR_UNAVAILABLE
from automl.trick import Trick, TrickError

OWNER_PREFIX = "owner"
ENABLED = "enabled"
"""The parameter ``<trick>.enabled`` the host suggests itself; a trick's own space may not use the name."""
SPACE_SAMPLES = 8
"""How many seeded random points of its space a trick is built from when it is loaded (see :func:`check_space`)."""


# -------------------------------------------------------------------------------------
# Overrides a study file puts on a declared parameter
# -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pinned:
    """Always this value (still recorded as a parameter, with a one-point distribution)."""

    value: Any


class Range(BaseModel):
    """New bounds (or log/step) for a float or int parameter; None keeps the declared one."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    low: float | None = None
    high: float | None = None
    log: bool | None = None
    step: float | None = None


class Choices(BaseModel):
    """A subset of a categorical parameter's declared choices."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    choices: tuple[Any, ...]


Override = Pinned | Range | Choices


def resolve(declared: BaseDistribution, override: Override | None) -> BaseDistribution:
    """The distribution to suggest from once ``override`` is applied; ValueError says why not."""
    if override is None:
        return declared
    if isinstance(override, Pinned):
        return _pin(declared, override.value)
    if isinstance(override, Range):
        if not isinstance(declared, (FloatDistribution, IntDistribution)):
            raise ValueError(f"is categorical with choices {list(declared.choices)}; give `{{choices = [...]}}` or one value")
        low = declared.low if override.low is None else override.low
        high = declared.high if override.high is None else override.high
        log = declared.log if override.log is None else override.log
        step = declared.step if override.step is None else override.step
        if low > high:
            raise ValueError(f"has an impossible range: low={low} > high={high}")
        if log and low <= 0:
            raise ValueError(f"is log-scaled, so low must be > 0, got low={low}")
        if log and step not in (None, 1):
            raise ValueError("cannot be log-scaled and stepped at once")
        try:
            if isinstance(declared, IntDistribution):
                if low != int(low) or high != int(high):
                    raise ValueError(f"is an integer; got low={low}, high={high}")
                if step is not None and step != int(step):
                    raise ValueError(f"is an integer; got step={step}")
                return IntDistribution(int(low), int(high), log=log, step=int(step or 1))
            return FloatDistribution(float(low), float(high), log=log, step=step)
        except ValueError as exc:
            raise ValueError(f"has a bad range: {exc}") from None
    if not isinstance(declared, CategoricalDistribution):
        raise ValueError(f"is numeric in [{declared.low}, {declared.high}]; give `{{low = .., high = ..}}` or one value")
    unknown = [c for c in override.choices if c not in declared.choices]
    if unknown or not override.choices:
        raise ValueError(f"choices {list(override.choices)} must be a non-empty subset of {list(declared.choices)}")
    return CategoricalDistribution(list(override.choices))


def _pin(declared: BaseDistribution, value: Any) -> BaseDistribution:
    # A one-choice categorical, whatever the declared kind: every sampler (brute force
    # included) handles it, and the value is recorded as a parameter all the same.
    if isinstance(declared, CategoricalDistribution):
        if value not in declared.choices:
            raise ValueError(f"= {value!r} is not one of {list(declared.choices)}")
        return CategoricalDistribution([value])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"= {value!r} is not a number")
    if isinstance(declared, IntDistribution):
        if value != int(value):
            raise ValueError(f"= {value!r} is not an integer")
        return CategoricalDistribution([int(value)])
    return CategoricalDistribution([float(value)])


def describe(dist: BaseDistribution) -> str:
    """A short human form of a distribution: ``[0.01, 0.3] log``, ``{linear, cubic}``, ``= 4``."""
    if isinstance(dist, CategoricalDistribution):
        if len(dist.choices) == 1:
            return f"= {dist.choices[0]!r}"
        return "{" + ", ".join(repr(c) for c in dist.choices) + "}"
    if dist.low == dist.high:
        return f"= {dist.low:g}"
    text = f"[{dist.low:g}, {dist.high:g}]"
    if dist.log:
        text += " log"
    if dist.step not in (None, 1):
        text += f" step {dist.step:g}"
    return text


def to_json(dist: BaseDistribution) -> dict[str, Any]:
    """A distribution as plain data for ``--json`` outputs, with its human form under ``text``."""
    if isinstance(dist, CategoricalDistribution):
        return {"type": "categorical", "choices": list(dist.choices), "text": describe(dist)}
    kind = "int" if isinstance(dist, IntDistribution) else "float"
    return {"type": kind, "low": dist.low, "high": dist.high, "log": dist.log, "step": dist.step,
            "text": describe(dist)}


# -------------------------------------------------------------------------------------
# Trials as a trick sees them
# -------------------------------------------------------------------------------------


class _Space:
    """The suggest_* methods a trick calls; subclasses decide what a suggestion does."""

    def __init__(self, prefix: str, overrides: Mapping[str, Override] | None = None) -> None:
        self.prefix = prefix
        self.overrides = dict(overrides or {})

    def _suggest(self, name: str, declared: BaseDistribution) -> Any:
        raise NotImplementedError

    def _declared(self, name: str, declared: BaseDistribution) -> BaseDistribution:
        try:
            return resolve(declared, self.overrides.get(name))
        except ValueError as exc:
            raise ValueError(f"{self.prefix}.{name} {exc}") from None

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False, step: float | None = None) -> float:
        return self._suggest(name, self._declared(name, FloatDistribution(low, high, log=log, step=step)))

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False, step: int = 1) -> int:
        return self._suggest(name, self._declared(name, IntDistribution(low, high, log=log, step=step)))

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._suggest(name, self._declared(name, CategoricalDistribution(list(choices))))


class TrickTrial(_Space):
    """An Optuna trial seen through one trick: names are prefixed, overrides applied."""

    def __init__(self, trial: Any, prefix: str, overrides: Mapping[str, Override] | None = None) -> None:
        super().__init__(prefix, overrides)
        self.trial = trial

    @property
    def number(self) -> int:
        return self.trial.number

    def _suggest(self, name: str, dist: BaseDistribution) -> Any:
        return suggest(self.trial, f"{self.prefix}.{name}", dist)


class SpaceRecorder(_Space):
    """Stands in for a trial to list a search space; each suggestion returns a representative value."""

    def __init__(self, prefix: str, overrides: Mapping[str, Override] | None = None) -> None:
        super().__init__(prefix, overrides)
        self.params: dict[str, BaseDistribution] = {}

    def _suggest(self, name: str, dist: BaseDistribution) -> Any:
        self.params[name] = dist
        return representative(dist)


def suggest(trial: Any, name: str, dist: BaseDistribution) -> Any:
    """Suggest ``name`` from ``dist`` through the trial's public API."""
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    return trial.suggest_categorical(name, dist.choices)


def contains(dist: BaseDistribution, value: Any) -> bool:
    """Whether a trial could suggest ``value`` from ``dist`` (within the bounds, on the step, one of the choices)."""
    if isinstance(dist, CategoricalDistribution):
        return any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in dist.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not dist.low <= value <= dist.high:
        return False
    if isinstance(dist, IntDistribution) and value != int(value):
        return False
    return dist.step is None or math.isclose((value - dist.low) / dist.step, round((value - dist.low) / dist.step))


def study_order(tricks: Sequence[Trick]) -> list[Trick]:
    """The tricks in the order a study runs their hooks: ``order``, lowest first, then by name."""
    return sorted(tricks, key=lambda t: (t.order, t.name))


def representative(dist: BaseDistribution) -> Any:
    """The centre of a distribution (geometric for log scales), or its first choice."""
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[0]
    centre = math.sqrt(dist.low * dist.high) if dist.log else (dist.low + dist.high) / 2
    if dist.step is not None:
        centre = dist.low + round((centre - dist.low) / dist.step) * dist.step
    return int(round(centre)) if isinstance(dist, IntDistribution) else centre


# -------------------------------------------------------------------------------------
# Which tricks a trial enables
# -------------------------------------------------------------------------------------


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


def build_trick(cls: type[Trick], space: Any, options: Mapping[str, Any] | None = None) -> Trick:
    """Suggest a trick's parameters on ``space`` and construct it with them and its fixed options."""
    return cls(**cls.search_space(space), **(options or {}))


class SpaceError(ValueError):
    """A trick's search space suggests what the trick or the host cannot take."""


def scratch_study(seed: int) -> optuna.Study:
    """A fresh in-memory study with a seeded random sampler, made without Optuna's "new study created" line:
    for drawing points of a space outside any real study (load-time checks, test helpers, calibration)."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    finally:
        optuna.logging.set_verbosity(verbosity)


def check_space(cls: type[Trick], overrides: Mapping[str, Override] | None = None,
                options: Mapping[str, Any] | None = None, samples: int = SPACE_SAMPLES, seed: int = 0) -> None:
    """Build ``cls`` from the centre of its space and from ``samples`` points a seeded random sampler suggests
    in one study, as trials would. The centre's error is raised as it came; a refused sample or the name
    ``enabled`` raise :class:`SpaceError`, naming the trick, the point and what refused it.

    One study for all the points, so that a space whose distributions change between trials (which Optuna
    refuses mid-study) is refused here; ``enabled`` is the host's own parameter name.
    """
    recorder = SpaceRecorder(cls.name, overrides)
    build_trick(cls, recorder, options)
    if ENABLED in recorder.params:
        raise SpaceError(f"{cls.__name__}.search_space suggests {ENABLED!r}, a name the host keeps for "
                         f"{cls.name}.{ENABLED} (on or off); call the parameter something else")
    study = scratch_study(seed)
    for _ in range(samples):
        trial = study.ask()
        try:
            build_trick(cls, TrickTrial(trial, cls.name, overrides), options)
        except Exception as exc:  # noqa: BLE001 - whatever refused the point, it is reported with the point
            point = ", ".join(f"{k}={v!r}" for k, v in trial.params.items()) or "no parameters"
            raise SpaceError(f"{cls.__name__} refuses a point of its own search space ({point}): "
                             f"{type(exc).__name__}: {exc}") from exc


def _pin_of(settings: Mapping[str, TrickSettings], name: str) -> bool | None:
    return settings[name].enabled if name in settings else None


def _overrides_of(settings: Mapping[str, TrickSettings], name: str) -> Mapping[str, Override]:
    return settings[name].overrides if name in settings else {}


def _options_of(settings: Mapping[str, TrickSettings], name: str) -> Mapping[str, Any]:
    return settings[name].options if name in settings else {}


def option_names(cls: type[Trick], declared: Mapping[str, Any]) -> list[str]:
    """The keywords of ``cls.__init__`` that its search space does not return."""
    params = inspect.signature(cls.__init__).parameters
    return [n for n, p in params.items() if n != "self" and n not in declared
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
