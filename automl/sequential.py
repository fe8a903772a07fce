"""Sequential paired comparisons: a group-sequential t test with Lan-DeMets alpha spending, looked at after every
seed, whose repeated confidence intervals decide each arm against the reference (better, worse, or equivalent
within a tolerance) as soon as the seeds so far allow, at a stated family-wise error rate.

Why this test (``benchmarks/race_vs_fixed.py`` measured the candidates on recorded cells; RESULTS.md): the errors
of a comparison differ by a few validation images out of hundreds, so a confidence sequence for errors bounded in
[0, 1] (betting, empirical Bernstein) must allow differences as large as the error itself, and its wealth grows by
well under 1% a seed at such differences; a betting test of symmetry on scaled differences holds its error rate
but has the power of a fixed design with two thirds of the seeds. A group-sequential design spends its error rate
over the looks up to a stated maximum, keeps nearly the fixed design's power at that maximum, and stops an arm at
the first look whose interval settles it. Its price: it is valid up to its maximum, for looks at times that do not
depend on the results (here: after every seed), and Student's t assumes paired differences near normal (the
benchmark measures the error rate on recorded ones, which are not).

Holm over the arms: each arm starts with ``alpha / arms``; an arm decided better or worse passes its share to the
arms still open, which are looked at again at the larger level (Maurer and Bretz's graphical procedure for
group-sequential tests); an equivalence passes nothing. The benchmark measures the wrong claims of all three
kinds together, on the hardest mix it found (one arm equal to the reference, the others at the tolerance).

Differences are ``arm - reference`` (lower is better), so ``better`` means the arm's error is lower.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from scipy import stats as _scipy

ALPHA = 0.05
"""The family-wise rate at which a comparison's claims (better, worse, equivalent) may be wrong."""
FIRST_LOOK = 3
"""The seeds of the first look: Student's t needs two degrees of freedom to say anything."""
SPENDING = "hsd-2"
"""The alpha-spending function: Hwang-Shih-DeCani with gamma -2, chosen by ``benchmarks/race_vs_fixed.py``
between Pocock's (stops the far arms earliest, loses power at the maximum) and O'Brien-Fleming's (keeps the
fixed design's power, stops late)."""
BETTER, WORSE, EQUIVALENT, UNDECIDED = "better", "worse", "equivalent", "undecided"
_CODES = {0: UNDECIDED, 1: BETTER, 2: WORSE, 3: EQUIVALENT}
PATHS = 200_000
"""Simulated null paths that set the boundaries: the spent alpha to about +-0.0005."""
BOUNDARY_SEED = 0


def _pocock(fraction: float, alpha: float) -> float:
    return alpha * math.log1p((math.e - 1) * fraction)


def _obrien_fleming(fraction: float, alpha: float) -> float:
    return 2 - 2 * float(_scipy.norm.cdf(_scipy.norm.ppf(1 - alpha / 2) / math.sqrt(fraction)))


def _hwang_shih_decani(gamma: float) -> Callable[[float, float], float]:
    def spend(fraction: float, alpha: float) -> float:
        return alpha * (1 - math.exp(-gamma * fraction)) / (1 - math.exp(-gamma))
    return spend


SPENDINGS: dict[str, Callable[[float, float], float]] = {
    "pocock": _pocock, "obrien-fleming": _obrien_fleming, "hsd-2": _hwang_shih_decani(-2.0),
    "hsd-4": _hwang_shih_decani(-4.0),
}
"""Lan-DeMets spending functions: the share of ``alpha`` spent by the fraction of the maximum seeds seen."""


@functools.lru_cache(maxsize=64)
def t_boundaries(looks: tuple[int, ...], max_seeds: int, alpha: float, spending: str = SPENDING) -> tuple[float, ...]:
    """Two-sided boundaries for Student's t of the mean paired difference at each look (seed counts, increasing,
    at most ``max_seeds``), spending ``alpha`` by ``spending`` of the fraction ``seeds / max_seeds``: under a
    normal null the chance of first crossing at look k is what the spending adds there.

    Found on ``PATHS`` seeded simulated nulls (the same every run), as each look's quantile of |t| among the paths
    no earlier look stopped: t's joint law over looks has heavier tails than the normal one, so carrying normal
    boundaries over to t by their marginal tails would spend more than ``alpha`` (5.3% for 5% at 40 seeds)."""
    spend = SPENDINGS[spending]
    rng = np.random.default_rng(BOUNDARY_SEED)
    draws = rng.standard_normal((PATHS, looks[-1]))
    seeds = np.array(looks)
    total, squares = np.cumsum(draws, axis=1)[:, seeds - 1], np.cumsum(draws * draws, axis=1)[:, seeds - 1]
    mean = total / seeds
    t = np.abs(mean) / np.sqrt((squares - seeds * mean * mean) / (seeds - 1) / seeds)
    alive = np.ones(PATHS, dtype=bool)
    bounds, stopped = [], 0
    for k, n in enumerate(looks):
        allowed = int(math.floor(spend(min(n / max_seeds, 1.0), alpha) * PATHS)) - stopped
        candidates = np.sort(t[alive, k])[::-1]
        if allowed <= 0 or not len(candidates):
            bounds.append(math.inf)
            continue
        bound = float(candidates[min(allowed, len(candidates) - 1)])  # the largest |t| that does not stop
        bound = math.nextafter(bound, math.inf)
        crossed = alive & (t[:, k] >= bound)
        stopped += int(crossed.sum())
        alive &= ~crossed
        bounds.append(bound)
    return tuple(bounds)


@dataclass(frozen=True)
class Design:
    """A sequential comparison: up to ``max_seeds`` paired seeds per arm, looked at after every seed from
    ``first_look``; ``arms`` arms tested against the reference; equivalence within ``tolerance`` (0: never)."""

    max_seeds: int
    arms: int
    tolerance: float = 0.0
    alpha: float = ALPHA
    spending: str = SPENDING
    first_look: int = FIRST_LOOK

    def __post_init__(self) -> None:
        if self.spending not in SPENDINGS:
            raise ValueError(f"unknown spending {self.spending!r}; choose from {', '.join(SPENDINGS)}")
        if not FIRST_LOOK <= self.first_look <= self.max_seeds:
            raise ValueError(f"a sequential design needs {FIRST_LOOK} <= first_look <= max_seeds, got "
                             f"{self.first_look} and {self.max_seeds}")

    @property
    def looks(self) -> tuple[int, ...]:
        return tuple(range(self.first_look, self.max_seeds + 1))

    @functools.cached_property
    def t_bounds(self) -> np.ndarray:
        """The multiplier of the standard error at each look (columns) for an arm that holds alpha / s, s = 1
        .. arms (row s; row 0 unused)."""
        rows = [np.full(len(self.looks), np.inf)]
        for share in range(1, max(self.arms, 1) + 1):
            rows.append(np.array(t_boundaries(self.looks, self.max_seeds, self.alpha / share, self.spending)))
        return np.array(rows)

    def as_dict(self) -> dict[str, Any]:
        return {"max_seeds": self.max_seeds, "arms": self.arms, "tolerance": self.tolerance, "alpha": self.alpha,
                "spending": self.spending, "first_look": self.first_look}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Design":
        return cls(**{key: data[key] for key in ("max_seeds", "arms", "tolerance", "alpha", "spending",
                                                 "first_look")})


@dataclass
class Race:
    """Where a race of many comparisons stands (arrays over comparisons x arms)."""

    code: np.ndarray
    """0 undecided, 1 better, 2 worse, 3 equivalent (``decision_name``)."""
    at: np.ndarray
    """The seeds each decision was taken at; for an undecided arm, the seeds of its last look."""
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    """The interval of each arm at each look it was open (comparisons x looks x arms; NaN elsewhere)."""
    next_look: np.ndarray
    """The seeds of the next look each comparison waits for; 0 where it is over (all decided, or the maximum
    reached)."""


def race(diffs: np.ndarray, design: Design, floor: float = 0.0) -> Race:
    """Decide the arms of comparisons from their paired differences (comparisons x seeds x arms, seeds in order;
    NaN where a cell is not trained yet), look by look.

    At each look an open arm's repeated confidence interval is the mean difference +- its boundary times the
    standard error (the spread floored at ``floor``: the lattice of the errors, so that equal differences on a
    few seeds are not taken for certainty). It is decided ``better`` where the interval lies below 0, ``worse``
    above, ``equivalent`` inside (-tolerance, tolerance). Holm over the arms: an arm decided better or worse
    frees its share of alpha to the arms still open, which are looked at again at the larger level (Maurer and
    Bretz's graphical procedure for group-sequential tests); an equivalence frees nothing. A comparison stops
    at the first look where an open arm lacks a cell: that look is the next one."""
    diffs = np.asarray(diffs, dtype=float)
    count, seeds, arms = diffs.shape
    looks = design.looks
    code = np.zeros((count, arms), dtype=int)
    at = np.zeros((count, arms), dtype=int)
    shape = (count, len(looks), arms)
    mean_at, low_at, high_at = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    waiting = np.zeros(count, dtype=int)
    bounds = design.t_bounds
    for k, n in enumerate(looks):
        open_ = (code == 0) & (waiting == 0)[:, None]
        if n > seeds:
            waiting = np.where(open_.any(axis=1) & (waiting == 0), n, waiting)
            break
        window = diffs[:, :n, :]
        mean = window.mean(axis=1)
        sd = np.maximum(window.std(axis=1, ddof=1), floor) / math.sqrt(n)
        lacking = open_ & np.isnan(mean)
        waiting = np.where(lacking.any(axis=1) & (waiting == 0), n, waiting)
        open_ &= (waiting == 0)[:, None]
        while open_.any():
            share = arms - np.isin(code, (1, 2)).sum(axis=1)
            half = bounds[np.maximum(share, 1), k][:, None] * sd
            low, high = mean - half, mean + half
            mean_at[:, k][open_], low_at[:, k][open_], high_at[:, k][open_] = mean[open_], low[open_], high[open_]
            found = np.select([high < 0, low > 0, (low > -design.tolerance) & (high < design.tolerance)],
                              [1, 2, 3], 0) * open_
            code = np.where(found > 0, found, code)
            at = np.where(found > 0, n, at)
            open_ &= found == 0
            if not np.isin(found, (1, 2)).any():
                break  # no alpha freed: nothing more to look at again
        at = np.where((code == 0) & open_, n, at)
    return Race(code, at, mean_at, low_at, high_at, waiting)


def decision_name(code: int) -> str:
    return _CODES[int(code)]


@dataclass(frozen=True)
class ArmSequence:
    """One arm against the reference, look by look: its interval up to its decision."""

    decided: str
    decided_at: int | None
    looks: list[tuple[int, float, float, float]]
    """(seeds, mean difference, low, high) at each look taken."""

    def as_dict(self) -> dict[str, Any]:
        return {"decided": self.decided, "decided_at": self.decided_at,
                "sequence": [{"seeds": n, "diff": d, "low": lo, "high": hi} for n, d, lo, hi in self.looks]}


def race_arms(diffs: dict[str, Sequence[float]], design: Design, floor: float = 0.0) -> tuple[dict[str, ArmSequence],
                                                                                              int | None]:
    """``race`` for one comparison: each arm's paired differences in seed order (as many as trained so far);
    (each arm's sequence, the seeds of the next look it waits for, None where the race is over)."""
    names = list(diffs)
    longest = max([len(v) for v in diffs.values()] + [0])
    array = np.full((1, longest, len(names)), np.nan)
    for j, name in enumerate(names):
        array[0, :len(diffs[name]), j] = diffs[name]
    result = race(array, design, floor)
    sequences = {}
    for j, name in enumerate(names):
        taken = [(n, float(result.mean[0, k, j]), float(result.low[0, k, j]), float(result.high[0, k, j]))
                 for k, n in enumerate(design.looks) if not np.isnan(result.mean[0, k, j])]
        decided = decision_name(result.code[0, j])
        sequences[name] = ArmSequence(decided, int(result.at[0, j]) if decided != UNDECIDED else None, taken)
    return sequences, int(result.next_look[0]) or None


__all__ = ["ALPHA", "BETTER", "Design", "EQUIVALENT", "FIRST_LOOK", "SPENDING", "SPENDINGS",
           "UNDECIDED", "WORSE", "ArmSequence", "Race", "decision_name", "race", "race_arms", "t_boundaries"]
