"""Database commits per trial of a real study: what a trial's records cost the storage, beside Optuna's own.

A tiny CPU study (6-step trials on 8x8 synthetic images, every built-in trick searched by a random
sampler) runs through ``automl run`` on a temporary SQLite file, and a SQLAlchemy event listener
counts every commit of every engine. Beside it, in the same process, the same number of plain
Optuna trials suggest the same parameters (``select_tricks`` over the same tricks) and set the
same user attributes one by one through ``Trial.set_user_attr``, as an Optuna user would.

Run it::

    python benchmarks/trial_commits.py            # about half a minute on 2 cores

Prints both counts and ``ratio=<Optuna's commits / automl's>`` (above 1: automl writes less).
"""

from __future__ import annotations

import argparse
import tempfile
import textwrap
from pathlib import Path

import optuna
import sqlalchemy
from sqlalchemy import event

STUDY = """
[study]
name = "commits"
sampler = "random"
pruner = "none"
trial_budget = "6steps"
n_trials = {n}
artifacts = "{artifacts}"

[task]
dataset = "synthetic"
model = "small_cnn"
model_args = {{ width = 0.25 }}
dataset_args = {{ shape = [1, 8, 8], n_train = 96, n_val = 48, n_test = 48, num_classes = 4 }}

[train]
batch_size = 32
rungs = 2
"""

_commits = [0]
event.listen(sqlalchemy.engine.Engine, "commit", lambda connection: _commits.__setitem__(0, _commits[0] + 1))


def automl_side(folder: Path, trials: int) -> tuple[float, list[optuna.trial.FrozenTrial]]:
    from automl.cli import main

    study = folder / "study.toml"
    study.write_text(textwrap.dedent(STUDY.format(n=trials + 1, artifacts=(folder / "artifacts").as_posix())))
    url = f"sqlite:///{folder / 'automl.db'}"
    assert main(["run", str(study), "--storage", url, "--n-trials", "1"]) == 0  # schema, study, data: not counted
    before = _commits[0]
    assert main(["run", str(study), "--storage", url]) == 0
    per_trial = (_commits[0] - before) / trials
    return per_trial, optuna.load_study(study_name="commits", storage=url).trials[1:]


def optuna_side(folder: Path, recorded: list[optuna.trial.FrozenTrial]) -> float:
    """The same params and user attributes, one trial each, through Optuna's public API."""
    from automl.overrides import suggest

    study = optuna.create_study(storage=f"sqlite:///{folder / 'optuna.db'}", study_name="commits")
    before = _commits[0]
    for frozen in recorded:
        trial = study.ask()
        for name, dist in frozen.distributions.items():
            suggest(trial, name, dist)
        for rung, value in frozen.intermediate_values.items():
            trial.report(value, rung)
        for key, value in frozen.user_attrs.items():
            trial.set_user_attr(key, value)
        complete = frozen.state == optuna.trial.TrialState.COMPLETE
        study.tell(trial, frozen.value if complete else None, state=frozen.state)
    return (_commits[0] - before) / len(recorded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        ours, recorded = automl_side(Path(tmp), args.trials)
        theirs = optuna_side(Path(tmp), recorded)
    print(f"automl: {ours:.1f} commits per trial (ask, suggestions, rungs, records, artifacts, ledger, heartbeat)")
    print(f"optuna: {theirs:.1f} commits per trial (the same suggestions, rungs and attributes, one write each)")
    print(f"ratio={theirs / ours:.3f}")


if __name__ == "__main__":
    main()
