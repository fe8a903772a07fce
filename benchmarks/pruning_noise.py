"""How often the pruners prune a trial that is as good as every other: the error rate of the noise guard.

At one rung, ``--trials`` trials are all equally good: each of ``--val-size`` validation images is wrong with
probability ``--error``, independently. The last trial to report is asked whether to prune, by automl's
``NoiseAwarePruner`` (asha and median rules) with the guard (the two-proportion z test against the cut-off) and
without it (a plain comparison with the cut-off). Every prune here is a wrong decision.

    python benchmarks/pruning_noise.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from automl.study.pruning import NoiseAwarePruner  # noqa: E402


def pruned_share(rule: str, trials: int, val_size: int | None, error: float, n: int, repeats: int,
                 rng: np.random.Generator) -> float:
    pruned = 0
    for _ in range(repeats):
        values = rng.binomial(n, error, size=trials) / n
        study = optuna.create_study(pruner=NoiseAwarePruner(rule, val_size))
        for value in values[:-1]:
            study.add_trial(create_trial(state=TrialState.PRUNED, params={"x": 0.5},
                                         distributions={"x": FloatDistribution(0, 1)},
                                         intermediate_values={0: float(value)}))
        trial = study.ask()
        trial.report(float(values[-1]), 0)
        pruned += trial.should_prune()
    return pruned / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--val-size", type=int, default=288, help="validation images (the quickstart's)")
    parser.add_argument("--error", type=float, default=0.05, help="every trial's true error rate")
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rng = np.random.default_rng(0)
    print(f"{args.val_size} images, true error {args.error} for every trial; share of last trials pruned "
          f"({args.repeats} rungs each)")
    print("rule    trials at the rung   plain   guarded")
    for rule in ("asha", "median"):
        for trials in (4, 6, 10, 20, 40):
            plain = pruned_share(rule, trials, None, args.error, args.val_size, args.repeats, rng)
            guarded = pruned_share(rule, trials, args.val_size, args.error, args.val_size, args.repeats, rng)
            print(f"{rule:<8}{trials:>18}   {plain:6.1%}   {guarded:6.1%}", flush=True)


if __name__ == "__main__":
    main()
