"""How a study file narrows or pins the distribution a trick declares for a parameter, and what it may draw."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution


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


def representative(dist: BaseDistribution) -> Any:
    """The centre of a distribution (geometric for log scales), or its first choice."""
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[0]
    centre = math.sqrt(dist.low * dist.high) if dist.log else (dist.low + dist.high) / 2
    if dist.step is not None:
        centre = dist.low + round((centre - dist.low) / dist.step) * dist.step
    return int(round(centre)) if isinstance(dist, IntDistribution) else centre
