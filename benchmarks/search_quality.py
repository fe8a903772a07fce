"""The search itself, measured as tuners are compared: replays of whole studies on a recorded tabular benchmark.

Each strategy runs ``--studies`` Optuna studies (study seed 0, 1, ...) through automl's real sampler
(``make_sampler``), pruners (``automl.study.pruning``), rung loop (``automl.study.fidelity.climb``),
intensifier (``automl.study.incumbent``) and best-configuration rule, at equal total budget in steps. Only the
training is replaced: a trial's objective reads the recorded run of its configuration at one of the table's seeds
(each new evaluation of a configuration in a study takes the next of a seed order drawn for that study), and is
charged the steps those runs took. A configuration's true error is its mean over all the table's seeds at the
full budget; a study's regret is the true error of the configuration it hands back minus the best true error.

    python benchmarks/search_table.py ...          # once: records benchmarks/tables/quickstart.json
    python benchmarks/search_quality.py            # prints the table and ratio= (today's / the new default's)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import optuna
from scipy import stats as scipy_stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from automl import records  # noqa: E402
from automl.budget import Budget  # noqa: E402
from automl.study.fidelity import climb, rung_budgets  # noqa: E402
from automl.study.incumbent import Intensifier, configurations  # noqa: E402
from automl.study.pruning import NoiseAwarePruner  # noqa: E402
from automl.study.runner import make_sampler  # noqa: E402

TABLE = Path(__file__).resolve().parent / "tables" / "quickstart.json"


@dataclass(frozen=True)
class Strategy:
    name: str
    sampler: str
    fidelity: str | None
    """"progress", "budget", or None (no pruning)."""
    pruner: Callable[[int], optuna.pruners.BasePruner] | None
    """The pruner, from the validation split's size."""
    intensify: bool
    pick: str
    """"single": the best single trial (records.best_of); "mean": the best configuration by its mean."""


def _optuna_median(val_size: int) -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0)  # today's, as make_pruner made it


STRATEGIES = [
    Strategy("today: tpe, median on progress, best trial", "tpe", "progress", _optuna_median, False, "single"),
    Strategy("random, no pruning, best trial", "random", None, None, False, "single"),
    Strategy("tpe, no pruning, best trial", "tpe", None, None, False, "single"),
    Strategy("random, no pruning, intensified", "random", None, None, True, "mean"),
    Strategy("tpe, no pruning, intensified", "tpe", None, None, True, "mean"),
    Strategy("tpe, noisy median on progress, intensified", "tpe", "progress",
             lambda n: NoiseAwarePruner("median", n), True, "mean"),
    Strategy("tpe, asha on budget, best trial", "tpe", "budget", lambda n: NoiseAwarePruner("asha", None), False,
             "single"),
    Strategy("tpe, noisy asha on budget, intensified", "tpe", "budget", lambda n: NoiseAwarePruner("asha", n), True,
             "mean"),
    Strategy("tpe, hyperband on budget, intensified", "tpe", "budget",
             lambda n: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=3, reduction_factor=3), True,
             "mean"),
    Strategy("random, noisy asha on budget, intensified", "random", "budget", lambda n: NoiseAwarePruner("asha", n),
             True, "mean"),
]
BASELINE = STRATEGIES[0].name


class Replay:
    """One study's objective on the table: parameters from the real sampler, values from the recorded runs."""

    def __init__(self, table: dict, strategy: Strategy, study_seed: int) -> None:
        self.table, self.strategy = table, strategy
        self.full = max(table["budgets"])
        self.budgets = rung_budgets(Budget.of_steps(self.full), 3, 3)
        assert [int(b.amount) for b in self.budgets] == table["budgets"], "the table's budgets are the rungs'"
        self.rng = np.random.default_rng(study_seed)
        self.orders: dict[str, list[str]] = {}
        self.spent = 0

    def __call__(self, trial: optuna.Trial) -> tuple[float | None, bool]:
        params = {"train.lr": trial.suggest_categorical("train.lr", self.table["lrs"])}
        for name in self.table["tricks"]:
            params[f"{name}.enabled"] = trial.suggest_categorical(f"{name}.enabled", [False, True])
        key = ",".join(f"{k}={params[k]}" for k in sorted(params))
        order = self.orders.setdefault(key, list(self.rng.permutation(sorted(self.table["configs"][key]["seeds"]))))
        run = self.table["configs"][key]["seeds"][order.pop(0) if len(order) > 1 else order[0]]
        repeat = "repeat_of" in trial.user_attrs
        if self.strategy.fidelity == "budget":
            def run_at(rung: int, budget: Budget) -> tuple[float, None]:
                self.spent += int(budget.amount)
                return run[str(int(budget.amount))], None
            climbed = climb(trial, self.budgets, run_at, start=len(self.budgets) - 1 if repeat else 0)
            return climbed.value, climbed.pruned
        if self.strategy.fidelity == "progress" and not repeat:
            rungs = run["progress"]
            for rung, value in enumerate(rungs):
                trial.report(value, rung)
                if rung < len(rungs) - 1 and trial.should_prune():
                    self.spent += self.full * (rung + 1) // len(rungs)
                    return value, True
        self.spent += self.full
        return run[str(self.full)], False


def replay(table: dict, strategy: Strategy, study_seed: int, total_steps: int) -> str:
    """Run one study to its total budget; the configuration it hands back."""
    pruner = strategy.pruner(table["val_size"]) if strategy.pruner else optuna.pruners.NopPruner()
    study = optuna.create_study(sampler=make_sampler(strategy.sampler, study_seed), pruner=pruner)
    objective = Replay(table, strategy, study_seed)
    intensifier = Intensifier() if strategy.intensify else None
    while objective.spent + objective.full <= total_steps:  # as the ledger: a trial starts only if it fits
        if intensifier is not None:
            intensifier.enqueue(study)
        trial = study.ask()
        before = objective.spent
        value, pruned = objective(trial)
        trial.set_user_attr(records.ATTR_SPENT, float(objective.spent - before))
        trial.set_user_attr(records.ATTR_VAL_SIZE, table["val_size"])
        study.tell(trial, None if pruned else value,
                   state=optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE)
    trials = study.get_trials(deepcopy=False)
    best = records.best_of(trials) if strategy.pick == "single" else configurations(trials)[0].first
    return ",".join(f"{k}={best.params[k]}" for k in sorted(best.params))


def truths(table: dict) -> dict[str, list[float]]:
    full = str(max(table["budgets"]))
    return {key: [run[full] for run in entry["seeds"].values()] for key, entry in table["configs"].items()}


def score(picks: list[str], truth: dict[str, list[float]]) -> dict[str, float]:
    means = {key: statistics.fmean(values) for key, values in truth.items()}
    best_key = min(means, key=means.get)
    regrets = np.array([means[p] - means[best_key] for p in picks])

    def within_noise(pick: str) -> bool:
        return pick == best_key or scipy_stats.ttest_ind(truth[pick], truth[best_key], equal_var=False).pvalue > 0.05

    return {"mean": float(regrets.mean()), "median": float(np.median(regrets)),
            "p90": float(np.percentile(regrets, 90)), "within_noise": float(np.mean([within_noise(p) for p in picks])),
            "found_best": float(np.mean([p == best_key for p in picks]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--studies", type=int, default=100, help="study seeds per strategy")
    parser.add_argument("--trials", type=int, default=20, help="total budget: this many full-budget trials")
    parser.add_argument("--default", default=None, help="the strategy the ratio is taken against (default: the "
                                                        "lowest mean regret)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    table = json.loads(args.table.read_text())
    truth = truths(table)
    means = sorted(statistics.fmean(v) for v in truth.values())
    total = args.trials * max(table["budgets"])
    print(f"table: {len(truth)} configurations x {table['seeds']} seeds, {table['val_size']} validation images; "
          f"true errors from {means[0]:.4f} (best) to {means[-1]:.4f}, median {statistics.median(means):.4f}")
    print(f"total budget: {total} steps ({args.trials} full trials); {args.studies} studies per strategy")
    results = {}
    for strategy in STRATEGIES:
        picks = [replay(table, strategy, seed, total) for seed in range(args.studies)]
        results[strategy.name] = score(picks, truth)
        r = results[strategy.name]
        print(f"{strategy.name:<48} regret mean {r['mean']:.4f}  median {r['median']:.4f}  p90 {r['p90']:.4f}  "
              f"within noise {r['within_noise']:.0%}  found best {r['found_best']:.0%}", flush=True)
    chosen = args.default or min((s.name for s in STRATEGIES if s.name != BASELINE), key=lambda n: results[n]["mean"])
    ratio = results[BASELINE]["mean"] / max(results[chosen]["mean"], 1e-12)
    print(f"new default: {chosen}")
    print(f"ratio={ratio:.2f} (today's mean regret / the new default's)")
    if args.json:
        print(json.dumps({"results": results, "default": chosen, "ratio": ratio}))


if __name__ == "__main__":
    main()
