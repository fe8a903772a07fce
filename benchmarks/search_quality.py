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
from typing import Any, Callable, Mapping

import numpy as np
import optuna
from scipy import stats as scipy_stats

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from automl import records  # noqa: E402
from automl.budget import Budget  # noqa: E402
from automl.study.fidelity import climb, rung_budgets  # noqa: E402
from automl.study.incumbent import Intensifier, configurations  # noqa: E402
from automl.study.pruning import NoiseAwarePruner  # noqa: E402
from automl.study.config import StudySection  # noqa: E402
from automl.study.runner import make_sampler  # noqa: E402

TABLES = Path(__file__).resolve().parent / "tables"
REAL_SEEDS = 1000
"""Real studies train at seeds from here: none of them is in the table."""


@dataclass(frozen=True)
class Strategy:
    name: str
    sampler: str
    fidelity: str | None
    """"progress", "budget", or None (no pruning)."""
    pruner: Callable[[int], optuna.pruners.BasePruner] | None
    """The pruner, from the validation split's size."""
    intensify: bool | float
    """Repeats of the best configurations: True for automl's default share of the device time, or the share."""
    pick: str
    """"single": the best single trial (records.best_of); "mean": the best configuration by its mean."""
    candidate: bool = True
    """Whether it may become the default: it prunes only outside the validation noise, or not at all (issue 23,
    item 2); the others are measured to show what the guard costs or what it would have been."""


def _optuna_median(val_size: int) -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0)  # today's, as make_pruner made it


def _asha(noise: bool) -> Callable[[int], optuna.pruners.BasePruner]:
    return lambda n: NoiseAwarePruner("asha", n if noise else None)


def _hyperband(n: int) -> optuna.pruners.BasePruner:
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=3, reduction_factor=3)


STRATEGIES = [
    # What automl did before issue 23, and the plain baseline the issue names, both crowning the best trial.
    Strategy("today: tpe, median on progress, best trial", "tpe", "progress", _optuna_median, False, "single",
             False),
    Strategy("random, no pruning, best trial", "random", None, None, False, "single"),
    # automl's `best` now ranks configurations by their mean over seeds: every other strategy picks so.
    Strategy("random, no pruning", "random", None, None, False, "mean"),
    Strategy("tpe, no pruning", "tpe", None, None, False, "mean"),
    Strategy("random, no pruning, intensified", "random", None, None, True, "mean"),
    Strategy("tpe, no pruning, intensified", "tpe", None, None, True, "mean"),
    Strategy("tpe, median on progress, intensified", "tpe", "progress", _optuna_median, True, "mean", False),
    Strategy("tpe, noisy median on progress, intensified", "tpe", "progress",
             lambda n: NoiseAwarePruner("median", n), True, "mean"),
    Strategy("tpe, noisy asha on budget", "tpe", "budget", _asha(True), False, "mean"),
    Strategy("tpe, plain asha on budget, intensified", "tpe", "budget", _asha(False), True, "mean", False),
    Strategy("tpe, noisy asha on budget, intensified", "tpe", "budget", _asha(True), True, "mean"),
    Strategy("tpe, noisy asha on budget, intensified 0.4", "tpe", "budget", _asha(True), 0.4, "mean"),
    Strategy("tpe, noisy asha on budget, intensified 0.5", "tpe", "budget", _asha(True), 0.5, "mean"),
    Strategy("tpe, hyperband on budget, intensified", "tpe", "budget", _hyperband, True, "mean", False),
    Strategy("random, noisy asha on budget, intensified", "random", "budget", _asha(True), True, "mean"),
]
BASELINE = STRATEGIES[0].name


def default_strategy() -> Strategy:
    """automl's default search, read from the study schema's defaults (where they are written once)."""
    fields = StudySection.model_fields
    sampler, fidelity, pruner, share = (fields[name].default for name in ("sampler", "fidelity", "pruner", "intensify"))
    if pruner not in ("asha", "median"):
        raise SystemExit(f"the default pruner {pruner!r} has no replay here; add it to STRATEGIES")
    prune = (lambda n: NoiseAwarePruner(pruner, n)) if pruner != "none" else None
    name = f"default: {sampler}, noisy {pruner} on {fidelity}, intensified {share}"
    return Strategy(name, sampler, fidelity, prune, share or False, "mean")


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

    def run_of(self, key: str, params: dict) -> Mapping[str, Any]:
        """The recorded runs of the configuration's next seed in this study's order for it."""
        order = self.orders.setdefault(key, list(self.rng.permutation(sorted(self.table["configs"][key]["seeds"]))))
        return self.table["configs"][key]["seeds"][order.pop(0) if len(order) > 1 else order[0]]

    def __call__(self, trial: optuna.Trial) -> tuple[float | None, bool]:
        params = {name: trial.suggest_categorical(name, choices) for name, choices in self.table["space"].items()}
        run = self.run_of(",".join(f"{k}={params[k]}" for k in sorted(params)), params)
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


class Real(Replay):
    """The same study with real training: each new evaluation of a configuration trains it (automl's trainer,
    ``search_table.Trainer``) at a seed the table does not hold, only the runs the study asks for."""

    def __init__(self, table: dict, strategy: Strategy, study_seed: int, trainer: Any) -> None:
        super().__init__(table, strategy, study_seed)
        self.trainer, self.seen = trainer, {}

    def run_of(self, key: str, params: dict) -> Mapping[str, Any]:
        seed = REAL_SEEDS + self.seen.setdefault(key, 0)
        self.seen[key] += 1
        return LazyRun(self.trainer, params, seed, max(self.table["budgets"]))


class LazyRun(dict):
    """A configuration's runs at one seed, trained when first read: ``run["133"]``, ``run["progress"]``."""

    def __init__(self, trainer: Any, params: dict, seed: int, full: int) -> None:
        super().__init__()
        self.trainer, self.params, self.seed, self.full = trainer, params, seed, full

    def __missing__(self, key: str) -> Any:
        steps = self.full if key == "progress" else int(key)
        error, rungs = self.trainer.run(self.params, self.seed, steps)
        self[str(steps)] = error
        if steps == self.full:
            self["progress"] = rungs
        return self[key]


def replay(table: dict, strategy: Strategy, study_seed: int, total_steps: int, trainer: Any = None) -> str:
    """Run one study to its total budget (training for real with ``trainer``); the configuration it hands back."""
    pruner = strategy.pruner(table["val_size"]) if strategy.pruner else optuna.pruners.NopPruner()
    study = optuna.create_study(sampler=make_sampler(strategy.sampler, study_seed), pruner=pruner)
    objective = Replay(table, strategy, study_seed) if trainer is None else Real(table, strategy, study_seed,
                                                                                  trainer)
    intensifier = None
    if strategy.intensify:
        intensifier = Intensifier() if strategy.intensify is True else Intensifier(share=strategy.intensify)
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


def real_check(table: dict, truth: dict[str, list[float]], names: list[str], studies: int, total: int,
               threads: int | None) -> dict[str, list[float]]:
    """Real studies of each named strategy; their regrets, printed beside the replay's range."""
    import torch

    from search_table import SPACES, Trainer

    if threads:
        torch.set_num_threads(threads)
    trainer = Trainer(SPACES[table["name"]])
    means = {key: statistics.fmean(values) for key, values in truth.items()}
    regrets = {}
    for name in names:
        strategy = next(s for s in [*STRATEGIES, default_strategy()] if s.name == name)
        picks = [replay(table, strategy, REAL_SEEDS + seed, total, trainer) for seed in range(studies)]
        regrets[name] = [means[p] - min(means.values()) for p in picks]
        print(f"real studies, {name}: regrets " + " ".join(f"{r:.4f}" for r in regrets[name]), flush=True)
    return regrets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="quickstart", help="the table: benchmarks/tables/SPACE.json")
    parser.add_argument("--studies", type=int, default=100, help="study seeds per strategy")
    parser.add_argument("--trials", type=int, default=20, help="total budget: this many full-budget trials")
    parser.add_argument("--default", default=None, help="the strategy the ratio is taken against (default: automl's "
                                                        "default, from the study schema)")
    parser.add_argument("--real", type=int, default=0, metavar="K",
                        help="also run K real studies (training, not replaying) of today's strategy and the new "
                             "default, to check that their regrets land in the replay's range")
    parser.add_argument("--threads", type=int, default=None, help="torch's CPU threads for --real")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    table = json.loads((TABLES / f"{args.space}.json").read_text())
    truth = truths(table)
    means = sorted(statistics.fmean(v) for v in truth.values())
    total = args.trials * max(table["budgets"])
    print(f"table: {len(truth)} configurations x {table['seeds']} seeds, {table['val_size']} validation images; "
          f"true errors from {means[0]:.4f} (best) to {means[-1]:.4f}, median {statistics.median(means):.4f}")
    print(f"total budget: {total} steps ({args.trials} full trials); {args.studies} studies per strategy")
    results: dict[str, Any] = {}
    default = default_strategy()
    for strategy in [*STRATEGIES, default] if args.studies else []:
        picks = [replay(table, strategy, seed, total) for seed in range(args.studies)]
        results[strategy.name] = score(picks, truth)
        r = results[strategy.name]
        print(f"{strategy.name:<48} regret mean {r['mean']:.4f}  median {r['median']:.4f}  p90 {r['p90']:.4f}  "
              f"within noise {r['within_noise']:.0%}  found best {r['found_best']:.0%}", flush=True)
    chosen = args.default or default.name
    ratio = None
    if results:
        candidates = [s.name for s in STRATEGIES if s.candidate]
        winner = min(candidates, key=lambda n: results[n]["mean"])
        print(f"lowest mean regret of the strategies that prune only outside the noise: {winner} "
              f"({results[winner]['mean']:.4f})")
        ratio = results[BASELINE]["mean"] / max(results[chosen]["mean"], 1e-12)
        print(f"ratio={ratio:.2f} (today's mean regret / {chosen}'s)")
    if args.real:
        results["real"] = real_check(table, truth, [BASELINE, chosen], args.real, total, args.threads)
    if args.json:
        print(json.dumps({"results": results, "default": chosen, "ratio": ratio}))


if __name__ == "__main__":
    main()
