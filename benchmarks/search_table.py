"""Record the tabular benchmark the search strategies are replayed on: every configuration of a discrete grid over
a study's space, trained by automl's own trainer at several seeds, at each budget a strategy may use.

Two spaces (``--space``): ``quickstart`` (warmup, cosine and label smoothing each on or off, three learning
rates, 400-step trials) and ``snapshot`` (the LR schedule of studies/snapshot-vs-single.toml: a snapshot
ensemble, an independent ensemble, step decay, cosine, exponential decay or a constant LR, at three learning
rates, 150-step trials, where the issue measured short-horizon bias).

Each (configuration, seed) is trained from fresh weights at every budget of ``--budgets`` (complete runs, each
schedule landing on its own end: what a rung of the budget fidelity trains), and the run at the largest budget also
records its validation error at each progress rung (what a rung of the progress fidelity sees). Budgets are in
steps, so the table does not depend on the machine. The validation split is the study's (its seed), the same
images for every run; seed s gives every configuration the same initial weights and data order.

    python benchmarks/search_table.py --shard 0/2 --threads 1 &   # two processes, one core each
    python benchmarks/search_table.py --shard 1/2 --threads 1
    python benchmarks/search_table.py --merge                     # writes benchmarks/tables/quickstart.json
    (the same with --space snapshot: benchmarks/tables/snapshot.json)

``benchmarks/search_quality.py`` replays the table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from automl.budget import Budget
from automl.host import get_host
from automl.overrides import Pinned
from automl.study.config import load_study_file
from automl.study.runner import prepare
from automl.train.loop import train

HERE = Path(__file__).resolve().parent
TABLES = HERE / "tables"
SEEDS = 8


@dataclass(frozen=True)
class Space:
    """A grid over a study's space: its parameters' choices, and the budgets (steps) of the rungs."""

    study: str
    grid: dict[str, tuple[Any, ...]]
    budgets: tuple[int, ...]
    """Steps: a trial and its rungs at 1/9 and 1/3 (eta = 3)."""
    tricks: tuple[str, ...]
    """The tricks a configuration may turn on, each at the study file's pinned values or its defaults."""
    owner: str | None = None
    """The parameter that names the one trick on (None: each trick's own ``NAME.enabled``)."""

    def enabled(self, params: dict) -> list[str]:
        if self.owner is not None:
            return [name for name in self.tricks if params[self.owner] == name]
        return [name for name in self.tricks if params[f"{name}.enabled"]]


SPACES = {
    "quickstart": Space("quickstart.toml", {"train.lr": (0.02, 0.06, 0.2), "warmup.enabled": (False, True),
                                            "cosine.enabled": (False, True),
                                            "label_smoothing.enabled": (False, True)},
                        (44, 133, 400), ("warmup", "cosine", "label_smoothing")),
    "snapshot": Space("snapshot-vs-single.toml",
                      {"train.lr": (0.03, 0.1, 0.3),
                       "schedule": ("none", "snapshot_ensemble", "independent_ensemble", "step_decay", "cosine",
                                    "exp_decay")},
                      (17, 50, 150), ("snapshot_ensemble", "independent_ensemble", "step_decay", "cosine",
                                      "exp_decay"), owner="schedule"),
}


def configurations(space: Space) -> list[dict]:
    """The grid, in a fixed order: every combination of the parameters' choices."""
    names = list(space.grid)
    return [dict(zip(names, values)) for values in itertools.product(*(space.grid[n] for n in names))]


def config_key(params: dict) -> str:
    """A configuration's key in the table: its parameters in a fixed order."""
    return ",".join(f"{name}={params[name]}" for name in sorted(params))


class Trainer:
    """automl's trainer on a space's task: one complete run of a configuration at a seed and a budget."""

    def __init__(self, space: Space) -> None:
        self.space = space
        self.host = get_host()
        self.prepared = prepare(load_study_file(HERE.parent / "studies" / space.study), self.host)

    def tricks(self, params: dict) -> list:
        """Fresh tricks of the configuration, at the values the study file pins (else their defaults)."""
        made = []
        for name in self.space.enabled(params):
            settings = self.prepared.settings.get(name)
            pinned = {k: v.value for k, v in settings.overrides.items() if isinstance(v, Pinned)} if settings else {}
            made.append(self.host.tricks[name].cls(**pinned, **(settings.options if settings else {})))
        return made

    def run(self, params: dict, seed: int, steps: int) -> tuple[float, list[float]]:
        """The run's final validation error and its errors at the progress rungs (the last one the final)."""
        config, data = self.prepared.study_file.config, self.prepared.data
        settings = config.train.model_copy(update={"lr": params["train.lr"]})  # the grid's LR, range or not
        rungs: list[float] = []

        def report(rung: int, progress: float, error: float) -> bool:
            rungs.append(error)
            return False  # never pruned: every run goes to its end

        torch.manual_seed(seed)
        model = config.task.build_model(data)
        result = train(model, data, settings, Budget.of_steps(steps), tricks=self.tricks(params),
                       device=self.prepared.device, seed=seed, report=report)
        return result.val_error, rungs


def record(space: Space, shard: int, shards: int, seeds: int, out: Path) -> None:
    trainer = Trainer(space)
    jobs = [(c, s) for c in configurations(space) for s in range(seeds)][shard::shards]
    rows = []
    started = time.perf_counter()
    for index, (params, seed) in enumerate(jobs):
        row = {"config": config_key(params), "params": params, "seed": seed}
        for steps in space.budgets:
            row[str(steps)], rungs = trainer.run(params, seed, steps)
            if steps == max(space.budgets):
                row["progress"] = rungs
        rows.append(row)
        print(f"[{shard}/{shards}] {index + 1}/{len(jobs)} {row['config']} seed {seed}: "
              + " ".join(f"{row[str(b)]:.4f}" for b in space.budgets) + f"  ({time.perf_counter() - started:.0f} s)",
              flush=True)
    out.write_text(json.dumps({"rows": rows, "val_size": len(trainer.prepared.data.val)}))


def merge(name: str, space: Space, shards: list[Path], seeds: int) -> dict:
    parts = [json.loads(p.read_text()) for p in shards]
    table = {"name": name, "study": f"studies/{space.study}", "space": {k: list(v) for k, v in space.grid.items()},
             "budgets": list(space.budgets), "seeds": seeds, "val_size": parts[0]["val_size"], "rungs": None,
             "command": f"python benchmarks/search_table.py --space {name} --shard 0/2 --threads 1 & "
                        f"python benchmarks/search_table.py --space {name} --shard 1/2 --threads 1; "
                        f"python benchmarks/search_table.py --space {name} --merge",
             "configs": {}}
    for part in parts:
        for row in part["rows"]:
            entry = table["configs"].setdefault(row["config"], {"params": row["params"], "seeds": {}})
            entry["seeds"][str(row["seed"])] = {"progress": row["progress"],
                                                **{str(b): row[str(b)] for b in space.budgets}}
            table["rungs"] = len(row["progress"])
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", choices=sorted(SPACES), default="quickstart")
    parser.add_argument("--shard", default="0/1", help="I/N: record every N-th run from the I-th")
    parser.add_argument("--seeds", type=int, default=SEEDS)
    parser.add_argument("--threads", type=int, default=None, help="torch's CPU threads (one per process of two)")
    parser.add_argument("--merge", action="store_true", help="merge the shards into benchmarks/tables/SPACE.json")
    args = parser.parse_args()
    space = SPACES[args.space]
    TABLES.mkdir(exist_ok=True)
    if args.merge:
        shards = sorted(TABLES.glob(f"{args.space}.shard*.json"))
        table = merge(args.space, space, shards, args.seeds)
        path = TABLES / f"{args.space}.json"
        path.write_text(json.dumps(table, indent=0, sort_keys=True))
        print(f"{path}: {len(table['configs'])} configurations from {len(shards)} shards")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    shard, shards = (int(x) for x in args.shard.split("/"))
    record(space, shard, shards, args.seeds, TABLES / f"{args.space}.shard{shard}of{shards}.json")


if __name__ == "__main__":
    main()
