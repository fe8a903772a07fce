"""Sequential comparisons against the fixed design, on paired differences resampled from recorded cells.

Each simulated comparison tests ``--arms`` arms against a reference. Its cells come from a recorded table of real
runs on digits (``benchmarks/tables/*.json``, made by ``search_table.py``: every configuration of a space trained
at 8 paired seeds; seed s gives every configuration the same initial weights and data order; or a comparison's
own cells, stored by ``--record URL NAME-compare-BUDGET``): a comparison draws
``--arms`` + 1 configurations of one table at its largest budget, centres each configuration's 8 errors on 0
(rescaled by sqrt(8/7), the variance the centring removes), and draws its seeds with replacement from those 8,
all arms at the same recorded seed, so the shared reference and the real shape of the noise (a diverged seed
included) are kept. Each arm is then shifted by a true difference of 0, 1, 2 or 4 validation images, with a
random sign per arm.

Two nulls (true difference 0):
- ``identical``: at each drawn seed the configurations' errors are shuffled among the arms and the reference,
  so every arm is the reference's equal in distribution (the null automl's claims are about);
- ``centred``: the configurations keep their own noise, only their means are made equal (arms whose errors
  differ in shape, e.g. one with an occasional diverged seed: a harder null, which no test of the mean over
  this few seeds holds exactly; shown beside).

Candidates, all at a family-wise 5% over the arms: the fixed design (paired t, Holm over the arms) at each seed
count; that same fixed test looked at after every seed with no correction (the error rate of peeking);
automl's group-sequential designs (``automl.sequential``, Bonferroni over the arms) with four spending
functions; a betting test of symmetry (an e-process with a tanh payoff scaled by the spread of the earlier
seeds), the anytime-valid alternative. Cells count the reference's too: an arm's seeds plus the reference's,
which trains as long as any arm does.

Prints the error rates with Wilson intervals, the power at each difference, the mean cells, and
``ratio=`` for automl's default: the cells of the fixed design whose power at a 2-image difference equals the
sequential one's, over the sequential one's mean cells on comparisons whose arms differ by 2 images or more.

    python benchmarks/race_vs_fixed.py
    python benchmarks/race_vs_fixed.py --tables snapshot-vs-single-compare-5s --max-seeds 40
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats as _scipy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from automl import sequential  # noqa: E402
from automl.seeds import DEFAULT_MAX_SEEDS, DEFAULT_TOLERANCE  # noqa: E402
from automl.stats import holm, wilson_interval  # noqa: E402

TABLES = Path(__file__).parent / "tables"
DIFFERENCES = (0, 1, 2, 4)
"""True differences, in validation images."""


def groups(tables: list[str], arms: int, per_table: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """(centred errors, in images, of ``arms + 1`` configurations of one table at its largest budget: groups x
    recorded seeds x (reference, arms...); the tables' validation images)."""
    found, sizes = [], set()
    for name in tables:
        table = json.loads((TABLES / f"{name}.json").read_text())
        budget = str(max(table["budgets"]))
        sizes.add(table["val_size"])
        errors = np.array([[c["seeds"][str(s)][budget] for s in range(table["seeds"])]
                           for c in table["configs"].values()]) * table["val_size"]
        for _ in range(per_table):
            picked = errors[rng.choice(len(errors), arms + 1, replace=False)]
            centred = (picked - picked.mean(axis=1, keepdims=True)) * np.sqrt(table["seeds"] / (table["seeds"] - 1))
            found.append(centred.T)
    if len(sizes) != 1:
        raise SystemExit(f"the tables have different validation sizes {sorted(sizes)}: images are not one unit")
    return np.array(found), sizes.pop()


def draw(pool: np.ndarray, difference: float, seeds: int, count: int, null: str,
         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(paired differences arm - reference in images: comparisons x seeds x arms, the sign of each arm's true
    difference: comparisons x arms)."""
    chosen = pool[rng.integers(len(pool), size=count)[:, None], rng.integers(pool.shape[1], size=(count, seeds))]
    if null == "identical":
        order = rng.permuted(np.broadcast_to(np.arange(pool.shape[2]), chosen.shape), axis=2)
        chosen = np.take_along_axis(chosen, order, axis=2)
    signs = rng.choice([-1.0, 1.0], size=(count, pool.shape[2] - 1))
    return chosen[..., 1:] - chosen[..., :1] + difference * signs[:, None, :], signs


EQUIVALENT = 2
"""A verdict: -1 better, +1 worse, 0 none, EQUIVALENT within the tolerance."""


def _t(diffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, t statistic) after each seed: comparisons x seeds x arms; the spread floored at one image."""
    n = np.arange(1, diffs.shape[1] + 1)[None, :, None]
    mean = np.cumsum(diffs, axis=1) / n
    var = (np.cumsum(diffs * diffs, axis=1) - n * mean * mean) / np.maximum(n - 1, 1)
    return mean, mean / (np.maximum(np.sqrt(np.maximum(var, 0)), 1.0) / np.sqrt(n))


def fixed(seeds: int):
    """The fixed design: paired t over ``seeds`` seeds, Holm over the arms."""
    def run(diffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, t = _t(diffs[:, :seeds])
        p = 2 * _scipy.t.sf(np.abs(t[:, -1]), seeds - 1)
        rejected = np.array([np.array(holm(row)) <= sequential.ALPHA for row in p])
        return np.where(rejected, np.sign(mean[:, -1]), 0), np.full(rejected.shape, seeds)
    return run


def peeking(first: int):
    """The fixed test (paired t at alpha / arms) looked at after every seed from ``first``, an arm stopped at
    its first rejection: what looking without a sequential design does to the error rate."""
    def run(diffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, t = _t(diffs)
        n = np.arange(1, diffs.shape[1] + 1)[None, :, None]
        hit = (np.abs(t) >= _scipy.t.ppf(1 - sequential.ALPHA / diffs.shape[2] / 2, np.maximum(n - 1, 1)))
        return _first(hit[:, first - 1:], mean[:, first - 1:], first, diffs.shape[1])
    return run


def _first(hit: np.ndarray, mean: np.ndarray, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
    """(verdict, seeds used) from the looks' rejections (comparisons x looks x arms), stopping at the first."""
    any_hit = hit.any(axis=1)
    at = hit.argmax(axis=1)
    sign = np.sign(np.take_along_axis(mean, at[:, None, :], axis=1)[:, 0, :])
    return np.where(any_hit, sign, 0), np.where(any_hit, at + first, last)


def betting(first: int, bet: float = 0.8, prior_sd: float = 2.0):
    """A test of symmetry by betting, anytime-valid for identical arms: two one-sided wealths with a fixed bet
    on tanh(d / s), s the spread of the earlier seeds (``prior_sd`` images before two), averaged; an arm is
    decided when the wealth reaches arms / alpha."""
    def run(diffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        count, seeds, arms = diffs.shape
        up, down = np.zeros((count, arms)), np.zeros((count, arms))
        hits = []
        for t in range(seeds):
            spread = diffs[:, :t].var(axis=1, ddof=1) * (t - 1) if t >= 2 else 0.0
            scale = np.sqrt((2 * prior_sd ** 2 + spread) / (2 + max(t - 1, 0)))
            payoff = np.tanh(diffs[:, t] / np.maximum(scale, 1.0))
            up, down = up + np.log1p(bet * payoff), down + np.log1p(-bet * payoff)
            hits.append(np.logaddexp(up, down) - np.log(2) >= np.log(arms / sequential.ALPHA))
        mean, _ = _t(diffs)
        return _first(np.stack(hits, axis=1)[:, first - 1:], mean[:, first - 1:], first, seeds)
    return run


def group_sequential(max_seeds: int, arms: int, spending: str, tolerance: float):
    """automl's sequential design (``automl.sequential.race``)."""
    design = sequential.Design(max_seeds=max_seeds, arms=arms, tolerance=tolerance, spending=spending)
    verdicts = np.array([0, -1, 1, EQUIVALENT])

    def run(diffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        result = sequential.race(diffs, design, floor=1.0)
        return verdicts[result.code], result.at
    return run


def cells(used: np.ndarray) -> np.ndarray:
    """Cells of each comparison: every arm's seeds, and the reference's for as long as any arm trains."""
    return used.sum(axis=1) + used.max(axis=1)


def rate(hits: np.ndarray) -> str:
    low, high = wilson_interval(int(hits.sum()), hits.size)
    return f"{hits.mean():.3f} [{low:.3f}, {high:.3f}]"


def evaluate(run, pool: np.ndarray, max_seeds: int, count: int, tolerance: float,
             rng: np.random.Generator) -> dict:
    """One candidate: its false-verdict rate under both nulls (any arm called better or worse), and at each
    true difference its power (arms called the right way), its wrong claims and its mean cells."""
    row: dict = {}
    for null in ("identical", "centred"):
        verdict, used = run(draw(pool, 0.0, max_seeds, count, null, rng)[0])
        row[f"false_{null}"] = (np.abs(verdict) == 1).any(axis=1)
        row[f"cells_0_{null}"] = cells(used).mean()
    row["cells_0"] = row["cells_0_identical"]
    for difference in DIFFERENCES[1:]:
        diffs, signs = draw(pool, float(difference), max_seeds, count, "identical", rng)
        verdict, used = run(diffs)
        wrong = (verdict == -signs) | ((verdict == EQUIVALENT) & (difference >= tolerance))
        row[f"power_{difference}"] = (verdict == signs).mean()
        row[f"wrong_{difference}"] = wrong.any(axis=1).mean()
        row[f"cells_{difference}"] = cells(used).mean()
    return row


def fixed_power(pool: np.ndarray, seeds: int, count: int, rng: np.random.Generator) -> float:
    diffs, signs = draw(pool, 2.0, seeds, count, "identical", rng)
    return float((fixed(seeds)(diffs)[0] == signs).mean())


def mixed_wrong(run, pool: np.ndarray, max_seeds: int, count: int, tolerance: float,
                rng: np.random.Generator) -> np.ndarray:
    """The hardest mix for a family of better, worse and equivalent claims: the first arm at a true difference of
    0, the others at exactly the tolerance; wrong is any arm called better or worse with the wrong sign, the
    first arm called better or worse, or another called equivalent."""
    diffs, signs = draw(pool, 0.0, max_seeds, count, "identical", rng)
    diffs[..., 1:] += tolerance * signs[:, None, 1:]
    verdict, _ = run(diffs)
    wrong = np.abs(verdict[:, :1]) == 1
    others = (verdict[:, 1:] == -signs[:, 1:]) | (verdict[:, 1:] == EQUIVALENT)
    return wrong.any(axis=1) | others.any(axis=1)


def record(url: str, study: str, out: Path) -> None:
    """Store a comparison's cells at one budget as a table ``--tables`` can resample: every arm's errors at
    the seeds all arms completed (a sequential comparison stops arms at different seeds)."""
    import optuna

    from automl import records
    from automl.study.cells import completed_cells

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    loaded = optuna.load_study(study_name=study, storage=url)
    budget = loaded.user_attrs[records.STUDY_COMPARE]["budget"]
    done = completed_cells(loaded, 10 ** 6)
    seeds = min(next(s for s in range(len(cells) + 1) if s not in cells) for cells in done.values())
    sizes = {t.user_attrs[records.ATTR_VAL_SIZE] for cells in done.values() for t in cells.values()}
    table = {"name": study, "command": f"python benchmarks/race_vs_fixed.py --record {url} {study}",
             "budgets": [budget], "seeds": seeds, "val_size": sizes.pop(),
             "configs": {arm: {"params": cells[0].params, "seeds": {str(s): {budget: cells[s].value}
                                                                    for s in range(seeds)}}
                         for arm, cells in done.items()}}
    out.write_text(json.dumps(table, indent=1))
    print(f"wrote {out}: {len(done)} arms x {seeds} seeds at {budget}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", nargs=2, metavar=("URL", "STUDY"),
                        help="store the cells of a comparison's budget study (NAME-compare-BUDGET) as a table "
                             "in benchmarks/tables/, and stop")
    parser.add_argument("--tables", default="quickstart,snapshot", help="recorded tables to resample")
    parser.add_argument("--arms", type=int, default=3, help="arms tested against the reference")
    parser.add_argument("--comparisons", type=int, default=4000, help="simulated comparisons per figure")
    parser.add_argument("--max-seeds", default=f"{DEFAULT_MAX_SEEDS},20,30",
                        help="the maxima to try; the first is the one ratio= is for")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="equivalence tolerance, as a validation error (automl's default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.record:
        record(*args.record, TABLES / f"{args.record[1]}.json")
        return
    rng = np.random.default_rng(args.seed)
    pool, val_size = groups(args.tables.split(","), args.arms, 400, rng)
    tolerance = args.tolerance * val_size
    maxima = [int(m) for m in args.max_seeds.split(",")]
    print(f"{len(pool)} groups of {args.arms} arms + a reference from {args.tables} at their largest budget "
          f"({val_size} validation images); {args.comparisons} comparisons per figure; differences in validation "
          f"images; tolerance {tolerance:g} images; family-wise 5%")
    print("false: share of comparisons where an arm of true difference 0 was called better or worse (95% Wilson); "
          "pow d: share of arms at d images called the right way; cells d: mean cells (arms and reference) at d; "
          "wrong: the worst share, over d, of comparisons with a wrong claim")
    fixed_at = {n: fixed_power(pool, n, args.comparisons, rng) for n in range(sequential.FIRST_LOOK, max(maxima) + 1)}
    print("fixed design's power at 2 images by seeds: " + ", ".join(f"{n}: {p:.2f}" for n, p in fixed_at.items()))
    print(f"{'candidate':<34}{'max':>4}  {'false (identical)':<22}{'false (centred)':<22}"
          + "".join(f"{'pow ' + str(d):>7}" for d in DIFFERENCES[1:])
          + "".join(f"{'cells ' + str(d):>9}" for d in DIFFERENCES) + f"{'wrong':>7}")
    default = f"sequential {sequential.SPENDING}, tol {tolerance:g}"
    chosen = None
    for max_seeds in maxima:
        candidates = [("fixed (t, Holm)", fixed(max_seeds)), ("fixed t looked at every seed", peeking(3)),
                      ("betting on symmetry", betting(3))]
        for spending in sequential.SPENDINGS:
            for tol in (0.0, tolerance):
                label = f"sequential {spending}" + (f", tol {tol:g}" if tol else "")
                candidates.append((label, group_sequential(max_seeds, args.arms, spending, tol)))
        for label, run in candidates:
            row = evaluate(run, pool, max_seeds, args.comparisons, tolerance, rng)
            print(f"{label:<34}{max_seeds:>4}  {rate(row['false_identical']):<22}{rate(row['false_centred']):<22}"
                  + "".join(f"{row[f'power_{d}']:7.3f}" for d in DIFFERENCES[1:])
                  + "".join(f"{row[f'cells_{d}']:9.1f}" for d in DIFFERENCES)
                  + f"{max(row[f'wrong_{d}'] for d in DIFFERENCES[1:]):7.3f}", flush=True)
            if chosen is None and label == default:
                chosen = (max_seeds, run, row)
    max_seeds, run, row = chosen
    mixed = mixed_wrong(run, pool, max_seeds, args.comparisons, tolerance, rng)
    print(f"\n{default}, max {max_seeds}, one arm at 0 and the others at the tolerance: a wrong claim in "
          f"{rate(mixed)} of comparisons")
    matched = next((n for n, p in fixed_at.items() if p >= row["power_2"]), max(fixed_at))
    spent = (row["cells_2"] + row["cells_4"]) / 2
    print(f"automl's default ({default}, max {max_seeds}): power {row['power_2']:.3f} at 2 images, which the "
          f"fixed design reaches at {matched} seeds ({fixed_at[matched]:.3f}); mean cells at 2 and 4 images "
          f"{spent:.1f}, against {(args.arms + 1) * matched} (fixed, equal power) and "
          f"{(args.arms + 1) * max_seeds} (fixed, same maximum)")
    false = row["false_identical"]
    print(f"false={false.mean():.4f} false_upper={wilson_interval(int(false.sum()), false.size)[1]:.4f}")
    print(f"ratio_same_max={(args.arms + 1) * max_seeds / spent:.2f}")
    print(f"ratio={(args.arms + 1) * matched / spent:.2f}")


if __name__ == "__main__":
    main()
