"""The multi-objective search, measured: the hypervolume of the front each strategy finds, on a recorded table.

The table is the snapshot question's (``benchmarks/tables/snapshot.json``: 6 LR schedules x 3 learning rates on
digits, 8 seeds, complete runs at 17, 50 and 150 steps), whose ensembles predict with 4 forward passes and the
single models with 1: the objectives are (validation error, forward passes), so FLOPs and latency, which are the
model's times the passes, give the same front. Each strategy runs ``--studies`` Optuna studies with automl's real
samplers (``make_sampler``), rung loop (``climb``), ``ParetoReport`` and ``ParetoPruner``, at equal total budget
in steps; a trial reads the recorded runs of its configuration at one of the table's seeds. The front a study
hands back (``pareto_front`` of its completed trials) is scored on the configurations' true values (mean error
over all seeds at the full budget; their passes): its hypervolume against the reference point (the worst true
error, 5 passes), and the gap to the hypervolume of the true front. Smaller gaps are better.

    python benchmarks/pareto_quality.py              # prints each strategy's gaps, and ratio=
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import optuna

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from automl.study.pareto import ParetoPruner, ParetoReport, fronts, pareto_front  # noqa: E402
from automl.study.runner import make_sampler  # noqa: E402
from search_quality import TABLES, Replay, Strategy  # noqa: E402

ENSEMBLES = {"snapshot_ensemble": 4, "independent_ensemble": 4}
"""Forward passes per prediction of each schedule that ensembles (as in studies/snapshot-vs-single.toml)."""
REFERENCE_PASSES = 5.0


def _pareto(noise: bool):
    return lambda val_size: ParetoPruner(val_size if noise else None, objectives=("error", "passes"))


# search_quality's strategies, on two objectives: its `fidelity` says where the rungs are, `pruner` makes the pruner.
STRATEGIES = [Strategy("random, no pruning", "random", None, None, False, "front"),
              Strategy("tpe, no pruning", "tpe", None, None, False, "front"),
              Strategy("tpe, pareto asha on budget", "tpe", "budget", _pareto(True), False, "front"),
              Strategy("tpe, pareto asha on budget, no noise rule", "tpe", "budget", _pareto(False), False, "front"),
              Strategy("random, pareto asha on budget", "random", "budget", _pareto(True), False, "front"),
              Strategy("tpe, pareto asha on progress", "tpe", "progress", _pareto(True), False, "front"),
              Strategy("random, pareto asha on progress", "random", "progress", _pareto(True), False, "front")]
CHOSEN, BASELINE = STRATEGIES[5].name, STRATEGIES[0].name
"""What a study of several objectives does by default (``[study] objectives``: progress rungs), and random search."""


def passes(params: dict) -> float:
    return float(ENSEMBLES.get(params["schedule"], 1))


def replay(table: dict, strategy: Strategy, study_seed: int, total_steps: int) -> list[str]:
    """One study to its total budget; the configurations on the front it hands back. A trial is replayed by
    search_quality's ``Replay`` through a ``ParetoReport``: its rungs go to the Pareto pruner with their cost."""
    pruner = strategy.pruner(table["val_size"]) if strategy.pruner else optuna.pruners.NopPruner()
    study = optuna.create_study(directions=["minimize", "minimize"], pruner=pruner,
                                sampler=make_sampler(strategy.sampler, study_seed))
    objective = Replay(table, strategy, study_seed)
    while objective.spent + objective.full <= total_steps:  # as the ledger: a trial starts only if it fits
        trial = study.ask()
        error, pruned = objective(ParetoReport(trial, lambda error: [error, passes(trial.params)]))
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, [error, passes(trial.params)])
    return sorted({",".join(f"{k}={t.params[k]}" for k in sorted(t.params))
                   for t in pareto_front(study.get_trials(deepcopy=False))})


def true_points(table: dict) -> dict[str, tuple[float, float]]:
    full = str(max(table["budgets"]))
    return {key: (statistics.fmean(run[full] for run in entry["seeds"].values()), passes(entry["params"]))
            for key, entry in table["configs"].items()}


def hypervolume(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    """The area dominated by ``points`` (both minimised) up to ``reference``."""
    kept = sorted(p for p in points if p[0] < reference[0] and p[1] < reference[1])
    area, best_cost = 0.0, reference[1]
    for error, cost in kept:  # by error, rising: each point adds the strip its lower cost opens
        if cost < best_cost:
            area += (reference[0] - error) * (best_cost - cost)
            best_cost = cost
    return area


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="snapshot", help="the table: benchmarks/tables/SPACE.json")
    parser.add_argument("--studies", type=int, default=100, help="study seeds per strategy (at least 50)")
    parser.add_argument("--trials", type=int, default=20, help="total budget: this many full-budget trials")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    table = json.loads((TABLES / f"{args.space}.json").read_text())
    truth = true_points(table)
    reference = (max(e for e, _ in truth.values()), REFERENCE_PASSES)
    keys = sorted(truth)
    level = fronts(np.array([truth[k] for k in keys]))
    best = hypervolume([truth[k] for k, f in zip(keys, level) if f == 0], reference)
    total = args.trials * max(table["budgets"])
    print(f"table: {len(truth)} configurations x {table['seeds']} seeds; true front: "
          + "; ".join(f"{k} ({truth[k][0]:.4f}, {truth[k][1]:g} passes)" for k, f in zip(keys, level) if f == 0))
    print(f"total budget: {total} steps ({args.trials} full trials); {args.studies} studies per strategy; "
          f"hypervolume of the true front {best:.4f} (reference: error {reference[0]:.4f}, {REFERENCE_PASSES:g} passes)")
    results: dict[str, Any] = {}
    for strategy in STRATEGIES:
        gaps = [best - hypervolume([truth[k] for k in replay(table, strategy, seed, total)], reference)
                for seed in range(args.studies)]
        results[strategy.name] = {"mean_gap": float(np.mean(gaps)), "median_gap": float(np.median(gaps)),
                                  "p90_gap": float(np.percentile(gaps, 90)),
                                  "found_front": float(np.mean([g <= 1e-12 for g in gaps]))}
        r = results[strategy.name]
        print(f"{strategy.name:<44} gap mean {r['mean_gap']:.5f}  median {r['median_gap']:.5f}  "
              f"p90 {r['p90_gap']:.5f}  true front found {r['found_front']:.0%}", flush=True)
    ratio = results[CHOSEN]["mean_gap"] / max(results[BASELINE]["mean_gap"], 1e-12)
    print(f"ratio={ratio:.2f} ({CHOSEN}'s mean hypervolume gap / {BASELINE}'s: smaller is better)")
    unpruned = results[CHOSEN]["mean_gap"] / max(results["tpe, no pruning"]["mean_gap"], 1e-12)
    print(f"against unpruned TPE at equal budget: {unpruned:.2f} (below 1: the pruned search finds more)")
    if args.json:
        print(json.dumps({"results": results, "ratio": ratio}))


if __name__ == "__main__":
    main()
