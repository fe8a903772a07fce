"""What `automl compare` costs over its trainings: the wall time of one compare (every arm at every seed) against
the same trainings run one by one through `automl export` + `automl train`.

The study is the digits study with two arms (cosine on or off), a budget in steps so both sides train exactly the
same steps; each side is one fresh subprocess per command, as a user runs them. Prints both wall times and ends
with ``ratio=`` (train time / compare time): at least 0.9 means the comparison's bookkeeping (queueing, the
ledger, recovery, the per-trial records) costs at most about a tenth over training the cells by hand.

    python benchmarks/compare_overhead.py                   # about a minute on 2 cores
    python benchmarks/compare_overhead.py --seeds 5 --budget 200steps
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

STUDY = """
[study]
name = "overhead"
sampler = "random"
pruner = "none"
trial_budget = "{budget}"
n_trials = 1   # `automl run` needs a bound; `automl compare` ignores it
seed = 0
artifacts = "{artifacts}"

[task]
dataset = "digits"
model = "small_cnn"
val_fraction = 0.2

[train]
lr = 0.05
batch_size = 64
flip = false

[tricks]
include = ["cosine"]

[tricks.cosine]
final = 0.0
"""


def automl(*args: str) -> tuple[float, str]:
    """Run one `automl` command in a fresh process; (wall seconds, stdout)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "automl", *args], cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"automl {' '.join(args[:2])} failed ({done.returncode}): {done.stderr.strip()}")
    return time.perf_counter() - started, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", default="100steps")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        study = folder / "overhead.toml"
        study.write_text(STUDY.format(budget=args.budget, artifacts=(folder / "artifacts").as_posix()))
        storage = f"sqlite:///{folder / 'compare.db'}"
        compare_s, out = automl("compare", str(study), "--storage", storage, "--seeds", str(args.seeds), "--json",
                                "--device", "cpu")
        arms = json.loads(out)["budgets"][0]["arms"]
        cells = json.loads(automl("trials", f"overhead-compare-{args.budget}", "--storage", storage, "--json")[1])
        first_seed = {c["user_attrs"]["compare_arm"]: c["number"] for c in cells
                      if c["user_attrs"].get("compare_seed") == 0}
        train_s = 0.0
        for arm in arms:
            run_file = folder / f"{arm['arm']}.toml"
            automl("export", f"overhead-compare-{args.budget}", "--storage", storage, "--trial",
                   str(first_seed[arm["arm"]]), "-o", str(run_file))
            seconds, _ = automl("train", str(run_file), "--seeds", str(args.seeds), "--device", "cpu",
                                "-o", str(folder / arm["arm"]), "--json")
            train_s += seconds
    print(f"cells={len(arms) * args.seeds} budget={args.budget}")
    print(f"compare_seconds={compare_s:.2f} (one `automl compare`)")
    print(f"train_seconds={train_s:.2f} ({len(arms)} x `automl train --seeds {args.seeds}`, export not counted)")
    print(f"ratio={train_s / compare_s:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
