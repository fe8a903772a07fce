"""A trick's search space as a study sees it: names prefixed with the trick's, distributions narrowed by the
study file, the parameter names the host keeps for itself, and the checks a declared space must pass."""

from __future__ import annotations

import inspect
from typing import Any, Mapping, Sequence

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from automl.overrides import Override, representative, resolve, suggest
from automl.trick import Trick

OWNER_PREFIX = "owner"
"""The group of the parameters ``owner.<resource>`` by which a trial chooses the one trick owning a resource."""
SEARCH_PREFIX = "train"
"""The group of the base hyperparameters a study searches itself (``train.lr``, ...), from its ``[train]``."""
RESERVED_PREFIXES = frozenset({OWNER_PREFIX, SEARCH_PREFIX})
"""Parameter groups the host keeps for itself, so no trick may take one as its name."""
ENABLED = "enabled"
"""The parameter ``<trick>.enabled`` the host suggests itself; a trick's own space may not use the name."""
SPACE_SAMPLES = 8
"""How many seeded random points of its space a trick is built from when it is loaded (see :func:`check_space`)."""


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


def option_names(cls: type[Trick], declared: Mapping[str, Any]) -> list[str]:
    """The keywords of ``cls.__init__`` that its search space does not return."""
    params = inspect.signature(cls.__init__).parameters
    return [n for n, p in params.items() if n != "self" and n not in declared
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
