"""The papers' questions at equal device time: each comparison study over several seeds, as a table.

Runs ``studies/snapshot-vs-single.toml`` and ``studies/freezeout.toml`` (digits, CPU by
default) once per seed through the real ``automl run`` command, then reads every trial
back from the study database and prints, per arm (the owner of the LR schedule), the
mean and spread (sample standard deviation) over seeds of the validation error, the
single-model error beside it, the inference cost, and the steps the budget bought.

    python benchmarks/paper_comparisons.py                      # CPU, ~9 minutes on 2 cores
    python benchmarks/paper_comparisons.py --variant cifar10    # GPU

Time budgets make the figures depend on the machine being otherwise idle: run it alone.
Studies already in the database are resumed, not rerun: delete it to measure afresh.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna

from automl.trick import INFERENCE_COST

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ("snapshot-vs-single", "freezeout")


def run(study: str, seed: int, storage: str, variant: str | None) -> str:
    name = f"{study}{'-' + variant if variant else ''}-seed{seed}"
    command = [sys.executable, "-m", "automl", "run", str(ROOT / "studies" / f"{study}.toml"),
               "--seed", str(seed), "--study-name", name, "--storage", storage]
    if variant:
        command += ["--variant", variant]
    # The trials' models go to an artifacts/ folder in the working directory: keep it out of the repo.
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=scratch)
    return name


def arm_of(trial: optuna.trial.FrozenTrial) -> str:
    """The tricks the trial ran with: the arm of the comparison."""
    return ", ".join(trial.user_attrs.get("tricks", [])) or "none (constant LR)"


def fmt(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    mean = statistics.fmean(values) * scale
    spread = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def table(study: str, names: list[str], storage: str) -> str:
    arms: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for name in names:
        for trial in optuna.load_study(study_name=name, storage=storage).trials:
            if trial.value is not None:
                arms.setdefault(arm_of(trial), []).append(trial)
    lines = [f"### {study} ({len(names)} seeds)", "",
             "| arm (tricks on) | val error % | single-model val error % | inference cost | steps |",
             "|---|---|---|---|---|"]
    for arm, trials in sorted(arms.items(), key=lambda kv: statistics.fmean(t.value for t in kv[1])):
        lines.append(f"| {arm} | {fmt([t.value for t in trials])} "
                     f"| {fmt([t.user_attrs['val_error_model'] for t in trials])} "
                     f"| {trials[0].user_attrs.get(INFERENCE_COST, 1)} "
                     f"| {fmt([t.user_attrs['steps'] for t in trials], scale=1.0, digits=0)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--variant", help="e.g. cifar10 (GPU)")
    parser.add_argument("--storage", default=f"sqlite:///{ROOT / 'benchmarks' / 'comparisons.db'}")
    parser.add_argument("--studies", nargs="+", default=list(STUDIES), choices=STUDIES)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for study in args.studies:
        names = [run(study, seed, args.storage, args.variant) for seed in range(args.seeds)]
        print(table(study, names, args.storage), "\n", flush=True)


if __name__ == "__main__":
    main()
