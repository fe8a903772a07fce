"""Record the tabular benchmark the search strategies are replayed on: every configuration of a discrete grid over
the quickstart's space, trained by automl's own trainer at several seeds, at each budget a strategy may use.

Each (configuration, seed) is trained from fresh weights at every budget of ``--budgets`` (complete runs, each
schedule landing on its own end: what a rung of the budget fidelity trains), and the run at the largest budget also
records its validation error at each progress rung (what a rung of the progress fidelity sees). Budgets are in
steps, so the table does not depend on the machine. The validation split is the study's (its seed), the same
images for every run; seed s gives every configuration the same initial weights and data order.

    python benchmarks/search_table.py --shard 0/2 --threads 1 &   # two processes, one core each
    python benchmarks/search_table.py --shard 1/2 --threads 1
    python benchmarks/search_table.py --merge                     # writes benchmarks/tables/quickstart.json

``benchmarks/search_quality.py`` replays the table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import optuna
import torch

from automl.budget import Budget
from automl.host import get_host
from automl.study.config import load_study_file
from automl.study.runner import prepare
from automl.train.loop import train

HERE = Path(__file__).resolve().parent
STUDY = HERE.parent / "studies" / "quickstart.toml"
TABLE = HERE / "tables" / "quickstart.json"
TRICKS = ("warmup", "cosine", "label_smoothing")
"""The quickstart's tricks, each on or off at its default parameters."""
LRS = (0.02, 0.06, 0.2)
"""Three learning rates across the quickstart's range (0.01 to 0.5, log)."""
BUDGETS = (44, 133, 400)
"""Steps: a 400-step trial and its rungs at 1/9 and 1/3 (eta = 3)."""
SEEDS = 8


def configurations() -> list[dict]:
    """The grid, in a fixed order: every on/off combination of the tricks at every learning rate."""
    grid = []
    for lr, flags in itertools.product(LRS, itertools.product((False, True), repeat=len(TRICKS))):
        grid.append({"train.lr": lr, **{f"{name}.enabled": on for name, on in zip(TRICKS, flags)}})
    return grid


def config_key(params: dict) -> str:
    """A configuration's key in the table: its parameters in a fixed order."""
    return ",".join(f"{name}={params[name]}" for name in sorted(params))


class Trainer:
    """automl's trainer on the quickstart's task: one complete run of a configuration at a seed and a budget."""

    def __init__(self) -> None:
        self.host = get_host()
        self.prepared = prepare(load_study_file(STUDY), self.host)

    def run(self, params: dict, seed: int, steps: int) -> tuple[float, list[float]]:
        """The run's final validation error and its errors at the progress rungs (the last one the final)."""
        config, data = self.prepared.study_file.config, self.prepared.data
        settings = config.train.resolve(optuna.trial.FixedTrial({"train.lr": params["train.lr"]}))
        tricks = [self.host.tricks[name].cls() for name in TRICKS if params[f"{name}.enabled"]]
        rungs: list[float] = []

        def report(rung: int, progress: float, error: float) -> bool:
            rungs.append(error)
            return False  # never pruned: every run goes to its end

        torch.manual_seed(seed)
        model = config.task.build_model(data)
        result = train(model, data, settings, Budget.of_steps(steps), tricks=tricks, device=self.prepared.device,
                       seed=seed, report=report)
        return result.val_error, rungs


def record(shard: int, shards: int, seeds: int, out: Path) -> None:
    trainer = Trainer()
    jobs = [(c, s) for c in configurations() for s in range(seeds)][shard::shards]
    rows = []
    started = time.perf_counter()
    for index, (params, seed) in enumerate(jobs):
        row = {"config": config_key(params), "params": params, "seed": seed}
        for steps in BUDGETS:
            row[str(steps)], rungs = trainer.run(params, seed, steps)
            if steps == max(BUDGETS):
                row["progress"] = rungs
        rows.append(row)
        print(f"[{shard}/{shards}] {index + 1}/{len(jobs)} {row['config']} seed {seed}: "
              + " ".join(f"{row[str(b)]:.4f}" for b in BUDGETS) + f"  ({time.perf_counter() - started:.0f} s)",
              flush=True)
    out.write_text(json.dumps({"rows": rows, "val_size": len(trainer.prepared.data.val)}))


def merge(shards: list[Path], seeds: int) -> dict:
    parts = [json.loads(p.read_text()) for p in shards]
    table = {"study": "studies/quickstart.toml", "tricks": list(TRICKS), "lrs": list(LRS), "budgets": list(BUDGETS),
             "seeds": seeds, "val_size": parts[0]["val_size"], "rungs": None,
             "command": "python benchmarks/search_table.py --shard 0/2 --threads 1 & "
                        "python benchmarks/search_table.py --shard 1/2 --threads 1; "
                        "python benchmarks/search_table.py --merge",
             "configs": {}}
    for part in parts:
        for row in part["rows"]:
            entry = table["configs"].setdefault(row["config"], {"params": row["params"], "seeds": {}})
            entry["seeds"][str(row["seed"])] = {"progress": row["progress"],
                                                **{str(b): row[str(b)] for b in BUDGETS}}
            table["rungs"] = len(row["progress"])
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shard", default="0/1", help="I/N: record every N-th run from the I-th")
    parser.add_argument("--seeds", type=int, default=SEEDS)
    parser.add_argument("--threads", type=int, default=None, help="torch's CPU threads (one per process of two)")
    parser.add_argument("--merge", action="store_true", help=f"merge the shards into {TABLE}")
    args = parser.parse_args()
    TABLE.parent.mkdir(exist_ok=True)
    if args.merge:
        shards = sorted(TABLE.parent.glob("quickstart.shard*.json"))
        table = merge(shards, args.seeds)
        TABLE.write_text(json.dumps(table, indent=0, sort_keys=True))
        print(f"{TABLE}: {len(table['configs'])} configurations from {len(shards)} shards")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    shard, shards = (int(x) for x in args.shard.split("/"))
    record(shard, shards, args.seeds, TABLE.parent / f"quickstart.shard{shard}of{shards}.json")


if __name__ == "__main__":
    main()
