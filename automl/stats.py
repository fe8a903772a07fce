"""The statistics of honest comparisons: intervals for error rates and seed means, paired tests, Holm, crossings.

Every interval is a two-sided 95% one unless ``confidence`` says otherwise. Over seeds the interval of a
mean is Student's t (``MEAN_CI_METHOD``): with the 3 to 10 seeds a comparison affords, a bootstrap
interval is too narrow (it cannot see variance the few seeds did not show), and t is deterministic.
Lower is better throughout (validation errors); differences are ``arm - reference``, so a negative
difference means the arm is better.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Hashable, Mapping, Sequence

import numpy as np
from scipy import stats as _scipy

from automl.seeds import MIN_SEEDS

CONFIDENCE = 0.95
MEAN_CI_METHOD = "Student t over seeds"
"""How ``mean_ci`` and ``paired_difference`` make their intervals, in words for reports."""
EXACT_SIGN_FLIPS_UP_TO = 16
"""Up to this many pairs the sign-flip test enumerates all 2^n flips; above, it draws ``SIGN_FLIP_DRAWS``."""
SIGN_FLIP_DRAWS = 2 ** 16
SIGN_FLIP_SEED = 0
"""The seed of the drawn flips above ``EXACT_SIGN_FLIPS_UP_TO``, so a p-value is the same on every run."""
# Two means that differ only by rounding are equal for the tests: a flip that gives back the observed
# mean must count as "as extreme", whatever the order the floats were summed in.
_TIE = 1e-12


def wilson_interval(wrong: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson's score interval for an error rate of ``wrong`` out of ``n`` (no continuity correction).

    Unlike ``p ± z sqrt(p(1-p)/n)`` it stays inside [0, 1] and is not empty at 0 wrong.
    """
    if n < 1 or not 0 <= wrong <= n:
        raise ValueError(f"an error rate needs 0 <= wrong <= n and n >= 1, got wrong={wrong}, n={n}")
    return _wilson(wrong, n, confidence)


# scipy's binomtest computes the test's p-value as well, ten times the cost of the interval; the trials of
# a study share one validation size, so a listing or a report of thousands of them asks for few counts.
@functools.lru_cache(maxsize=4096)
def _wilson(wrong: int, n: int, confidence: float) -> tuple[float, float]:
    interval = _scipy.binomtest(wrong, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def error_interval(error: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """``wilson_interval`` for an error rate recorded as a fraction of ``n`` images (rounded to the count)."""
    return wilson_interval(round(error * n), n, confidence)


def proportions_z(a: float, b: float, n: int) -> float:
    """The pooled two-proportion z of error rates ``a`` and ``b``, each over ``n`` images (rounded to counts):
    positive where ``a`` is the higher; 0 where both are 0 or 1 (no spread to measure against)."""
    wrong_a, wrong_b = round(a * n), round(b * n)
    pooled = (wrong_a + wrong_b) / (2 * n)
    spread = math.sqrt(pooled * (1 - pooled) * 2 / n)
    return 0.0 if spread == 0 else (wrong_a - wrong_b) / n / spread


def overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether the intervals ``a`` and ``b`` (low, high) share a point."""
    return a[0] <= b[1] and b[0] <= a[1]


def _values(values: Sequence[float], what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or len(array) < MIN_SEEDS:
        raise ValueError(f"{what} needs at least {MIN_SEEDS} values (one per seed), got {len(array)}: "
                         "one seed gives no interval")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} needs finite values, got {list(values)}")
    return array


def _t_interval(array: np.ndarray, confidence: float) -> tuple[float, float]:
    mean = float(array.mean())
    sem = float(array.std(ddof=1)) / math.sqrt(len(array))
    half = float(_scipy.t.ppf(0.5 + confidence / 2, len(array) - 1)) * sem
    return mean - half, mean + half


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, tuple[float, float]]:
    """The mean over seeds and its t interval (``MEAN_CI_METHOD``); zero spread gives a zero-width one."""
    array = _values(values, "a mean with an interval")
    return float(array.mean()), _t_interval(array, confidence)


def paired_difference(arm: Sequence[float], reference: Sequence[float],
                      confidence: float = CONFIDENCE) -> tuple[float, tuple[float, float]]:
    """The mean of ``arm[s] - reference[s]`` over seeds s and its t interval: the paired t interval."""
    diffs = _paired(arm, reference)
    return float(diffs.mean()), _t_interval(diffs, confidence)


def _paired(arm: Sequence[float], reference: Sequence[float]) -> np.ndarray:
    if len(arm) != len(reference):
        raise ValueError(f"paired values need one per seed on both sides, got {len(arm)} and {len(reference)}")
    return _values(arm, "a paired comparison") - _values(reference, "a paired comparison")


def sign_flip_p(arm: Sequence[float], reference: Sequence[float]) -> float:
    """The two-sided p-value of the paired sign-flip permutation test of ``arm`` against ``reference``.

    Under the null hypothesis each seed's difference is as likely to have either sign; p is the fraction
    of the 2^n sign assignments whose mean difference is at least as far from 0 as the observed one
    (all of them up to ``EXACT_SIGN_FLIPS_UP_TO`` pairs, else ``SIGN_FLIP_DRAWS`` seeded draws, counted
    with the observed one so p is never 0). With n pairs p is never below 2 / 2^n: 5 seeds cannot
    give p < 0.0625.
    """
    diffs = _paired(arm, reference)
    tie = _TIE * max(1.0, float(np.abs(diffs).max()))

    def distance(flipped: np.ndarray, axis: int) -> np.ndarray:
        # Counted in units of the tie, so that means equal up to rounding are equal numbers: scipy's own
        # tolerance is relative to the observed mean, too small when the differences nearly cancel.
        return np.round(np.abs(flipped.mean(axis=axis)) / tie)

    # One sample under permutation_type="samples" is scipy's sign-flip test; it enumerates all 2^n flips
    # while 2^n <= n_resamples (SIGN_FLIP_DRAWS = 2^EXACT_SIGN_FLIPS_UP_TO), else draws n_resamples and
    # counts the observed flip too. "greater" on the distance from 0 is the two-sided test.
    result = _scipy.permutation_test((diffs,), distance, permutation_type="samples", vectorized=True,
                                     n_resamples=SIGN_FLIP_DRAWS, alternative="greater",
                                     rng=np.random.default_rng(SIGN_FLIP_SEED))
    return float(result.pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: reject those <= alpha to hold the family's
    error rate at alpha. The i-th smallest is multiplied by (m - i + 1), then made non-decreasing."""
    p = np.asarray(pvalues, dtype=float)
    if np.any((p < 0) | (p > 1)) or not np.isfinite(p).all():
        raise ValueError(f"p-values must lie in [0, 1], got {list(pvalues)}")
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, p[order] * (len(p) - np.arange(len(p))))
    adjusted = np.empty_like(p)
    adjusted[order] = np.maximum.accumulate(scaled) if len(p) else scaled
    return [float(x) for x in adjusted]


def p_better(arm: Sequence[float], reference: Sequence[float]) -> float:
    """The fraction of seeds on which ``arm`` is lower than ``reference``; a tie counts one half (as
    rliable's probability of improvement does), so two identical arms score 0.5, not 0."""
    diffs = _paired(arm, reference)
    return float(np.mean(np.where(diffs < 0, 1.0, np.where(diffs == 0, 0.5, 0.0))))


@dataclass(frozen=True)
class Versus:
    """An arm against the reference over paired seeds."""

    diff: float
    ci: tuple[float, float]
    p: float
    p_better: float

    def as_dict(self, p_holm: float | None = None) -> dict[str, object]:
        """The ``vs_reference`` object of ``automl compare --json`` (``p_holm`` from ``holm`` over the arms)."""
        return {"diff": self.diff, "ci": list(self.ci), "p": self.p, "p_holm": p_holm, "p_better": self.p_better}


def versus(arm: Sequence[float], reference: Sequence[float], confidence: float = CONFIDENCE) -> Versus:
    """Everything a comparison says of ``arm`` against ``reference``, both indexed by the same seeds."""
    diff, ci = paired_difference(arm, reference, confidence)
    return Versus(diff, ci, sign_flip_p(arm, reference), p_better(arm, reference))


@dataclass(frozen=True)
class Crossing:
    """Two arms whose order flips between two budgets: ``better`` beats ``worse`` at ``before`` and loses at
    ``after``."""

    better: Hashable
    worse: Hashable
    before: Hashable
    after: Hashable

    def text(self) -> str:
        return f"{self.better} beats {self.worse} at {self.before}, loses at {self.after}"

    def as_dict(self) -> dict[str, object]:
        return {"better": self.better, "worse": self.worse, "before": self.before, "after": self.after,
                "text": self.text()}


def crossings(means: Mapping[Hashable, Mapping[Hashable, float]]) -> list[Crossing]:
    """Every pair of arms whose order flips between budgets, from ``{budget: {arm: mean}}`` in budget order.

    A pair is compared at each budget where both arms have a mean and they differ; each flip against the
    previous such budget is one crossing (a tie in between hides no flip: A < B, A = B, A > B is one).
    """
    budgets = list(means)
    arms = sorted({arm for per in means.values() for arm in per}, key=str)
    found = []
    for a, b in itertools.combinations(arms, 2):
        last = None  # (budget, whether a was lower there)
        for budget in budgets:
            ma, mb = means[budget].get(a), means[budget].get(b)
            if ma is None or mb is None or ma == mb:
                continue
            a_lower = ma < mb
            if last is not None and last[1] != a_lower:
                better, worse = (a, b) if last[1] else (b, a)
                found.append(Crossing(better, worse, last[0], budget))
            last = (budget, a_lower)
    return found
