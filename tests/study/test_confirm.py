"""`automl confirm`: the best trials trained again over paired seeds, ranked by their mean, not by their best run."""

from __future__ import annotations

import json

import optuna
from optuna.distributions import FloatDistribution

from automl.cli import main
from automl.study import records

SEARCHED_LR = """
[tricks]
include = []
"""


def test_confirm_ranks_by_the_mean_over_seeds_not_the_best_single_run(write_study, sqlite_url, capsys):
    study_file = write_study(SEARCHED_LR, trial_budget="30steps")
    study_file.write_text(study_file.read_text().replace("lr = 0.05", "lr = { low = 1e-6, high = 0.5, log = true }"))
    # A constructed search: the trial that learns nothing (lr 1e-6) had the best value by luck.
    assert main(["run", str(study_file), "--storage", sqlite_url, "--n-trials", "1"]) == 0
    study = optuna.load_study(study_name="tiny", storage=sqlite_url)
    lr = FloatDistribution(1e-6, 0.5, log=True)
    for value, rate in ((0.0, 1e-6), (0.5, 0.3)):
        study.add_trial(optuna.trial.create_trial(params={"train.lr": rate}, distributions={"train.lr": lr},
                                                  value=value, user_attrs={records.ATTR_TRICKS: []}))
    capsys.readouterr()
    assert main(["confirm", str(study_file), "--storage", sqlite_url, "--top", "3", "--seeds", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    ranking = result["ranking"]
    by_lr = {r["trial"]: r for r in ranking}
    lucky, good = by_lr[1], by_lr[2]
    assert lucky["rank_in_search"] == 1 and good["rank_in_search"] > 1  # the search ranked the lucky one first
    assert [r["mean"] for r in ranking] == sorted(r["mean"] for r in ranking)
    assert good["rank"] < lucky["rank"] and good["mean"] < lucky["mean"]
    assert all(r["n"] == 2 for r in ranking)
    assert main(["best", "tiny", "--storage", sqlite_url, "--confirmed", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ranking"] == ranking
