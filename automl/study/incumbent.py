"""A best that holds at other seeds: configurations ranked by their mean over seeds, and the intensifier that
trains the contenders again during the study (as SMAC's intensifier races its incumbent).

A configuration is a set of parameters; each completed trial with those parameters is one seed of it (a repeat
trains with its own trial's seed). Configurations are ranked by mean validation error over their seeds. Once any
configuration has been seen at ``MIN_SEEDS`` seeds, one seen at fewer cannot be the best: its single value is
as likely a lucky seed as a good configuration (benchmarks/RESULTS.md, "The winner's curse").

Between trials, the intensifier spends up to ``share`` of the device time spent so far on repeats: first of a
configuration whose mean beats the best one's but that was seen at fewer seeds (a challenger), then of the best
one itself until its interval is separated from the runner-up's or it has ``MAX_SEEDS`` seeds.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl import records, stats
from automl.records import ATTR_REPEAT_OF
from automl.seeds import MIN_SEEDS

SHARE = 0.4
"""The most of the study's device time, spent so far, that repeats may take (the study schema's default
``intensify``, chosen by ``benchmarks/search_quality.py``)."""
MAX_SEEDS = 5
"""Seeds after which a configuration is not repeated again: enough for an interval that separates."""


@dataclass
class Configuration:
    """One set of parameters and its completed trials (one seed each), best first."""

    key: str
    trials: list[FrozenTrial] = field(default_factory=list)

    @property
    def values(self) -> list[float]:
        return [records.error_of(t) for t in self.trials]

    @property
    def n_seeds(self) -> int:
        return len(self.trials)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def first(self) -> FrozenTrial:
        """The configuration's first trial: the one the search proposed (its repeats follow it)."""
        return min(self.trials, key=lambda t: t.number)

    def interval(self) -> list[float] | None:
        """The 95% interval of the mean over seeds (t, clipped to [0, 1]); for one seed, the Wilson interval
        of its validation error (the split's noise only: it says nothing of other seeds); None without one."""
        if self.n_seeds >= MIN_SEEDS:
            low, high = stats.mean_ci(self.values)[1]
            return [max(0.0, low), min(1.0, high)]
        return records.val_interval(self.values[0], self.first.user_attrs.get(records.ATTR_VAL_SIZE))


def config_key(trial: FrozenTrial) -> str:
    """What makes two trials the same configuration: their parameters."""
    return json.dumps(trial.params, sort_keys=True, default=str)


def configurations(trials: Iterable[FrozenTrial]) -> list[Configuration]:
    """The completed trials grouped by configuration, best first: configurations seen at ``MIN_SEEDS`` or more
    seeds by their mean, then (when none has that many, or after those) the rest by their mean; ties to the
    configuration seen at more seeds, then the earlier one."""
    grouped: dict[str, Configuration] = {}
    for trial in records.ranked(trials):
        key = config_key(trial)
        grouped.setdefault(key, Configuration(key)).trials.append(trial)
    found = list(grouped.values())
    return sorted(found, key=lambda c: (c.n_seeds < MIN_SEEDS, c.mean, -c.n_seeds, c.first.number))


@dataclass
class Intensifier:
    """Decides, between trials, which configuration to train again at a new seed (or none)."""

    share: float = SHARE
    max_seeds: int = MAX_SEEDS

    def choose(self, trials: list[FrozenTrial]) -> Configuration | None:
        """The configuration to repeat next, or None (the share is spent, or nothing needs it)."""
        finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]
        spent = sum(t.user_attrs.get(records.ATTR_SPENT, 0.0) for t in finished)
        repeats = sum(t.user_attrs.get(records.ATTR_SPENT, 0.0) for t in trials if ATTR_REPEAT_OF in t.user_attrs)
        pending = {t.user_attrs.get(ATTR_REPEAT_OF) for t in trials
                   if t.state in (TrialState.RUNNING, TrialState.WAITING) and ATTR_REPEAT_OF in t.user_attrs}
        mean_cost = spent / len(finished) if finished else 0.0
        if not finished or repeats + mean_cost > self.share * (spent + mean_cost):
            return None
        ranked = [c for c in configurations(trials) if c.first.number not in pending]
        return self._contender(ranked)

    def _contender(self, ranked: list[Configuration]) -> Configuration | None:
        if not ranked:
            return None
        best = ranked[0]
        challengers = [c for c in ranked[1:] if c.mean < best.mean and c.n_seeds < self.max_seeds]
        if challengers:
            return challengers[0]  # seen at fewer seeds than the best, and better on those: race it
        if best.n_seeds < MIN_SEEDS:
            return best  # a best seen once is as likely a lucky seed: never left at one
        if best.n_seeds >= self.max_seeds or len(ranked) == 1 or _separated(best, ranked[1]):
            return None
        return best

    def enqueue(self, study: optuna.Study) -> int | None:
        """Queue a repeat of the chosen configuration (the next ``ask`` takes it); the trial it repeats."""
        trials = study.get_trials(deepcopy=False)
        if any(t.state == TrialState.WAITING for t in trials):
            return None  # the next ask takes what is queued (a retry, or another worker's repeat) first
        chosen = self.choose(trials)
        if chosen is None:
            return None
        first = chosen.first
        study.enqueue_trial(first.params, user_attrs={ATTR_REPEAT_OF: first.number}, skip_if_exists=False)
        return first.number


def _separated(best: Configuration, runner_up: Configuration) -> bool:
    """Whether the best configuration's interval lies wholly below the runner-up's."""
    ours, theirs = best.interval(), runner_up.interval()
    return ours is not None and theirs is not None and ours[1] < theirs[0]


def ranked_records(trials: Iterable[FrozenTrial]) -> list[dict[str, Any]]:
    """The configurations best first, each the record of its first trial (``records.trial_record``) with its
    seeds, mean and interval (``configuration_record``): what `automl best` and the report show."""
    return [{**records.trial_record(c.first), **configuration_record(c)} for c in configurations(trials)]


def configuration_record(config: Configuration) -> dict[str, Any]:
    """What `automl best --json` adds for a configuration: its seeds, mean and interval, and its trials."""
    interval = config.interval()
    ordered = sorted(config.trials, key=lambda t: t.number)
    return {"n_seeds": config.n_seeds, "mean": config.mean, "mean_ci": interval,
            "mean_ci_method": stats.MEAN_CI_METHOD if config.n_seeds >= MIN_SEEDS else "wilson (one seed)",
            "trials": [t.number for t in ordered], "values": [records.error_of(t) for t in ordered]}


__all__ = ["MAX_SEEDS", "SHARE", "Configuration", "Intensifier", "config_key",
           "configuration_record", "configurations", "ranked_records"]
