"""`automl confirm`: the best trials trained again at the same seeds, ranked by their mean, not their best run."""

from __future__ import annotations

import json

import optuna
import pytest
import sqlalchemy as sa

LRS = {"good": 0.2, "bad": 1e-5}


@pytest.fixture
def lucky_study(write_study, sqlite_url, run_cli):
    """Two trials, one learning (lr 0.2) and one not moving (lr 1e-5); the database is then edited so that the
    one that learns nothing holds the best search value, as a lucky seed might give it."""
    path = write_study('[tricks]\ninclude = ["warmup"]\n[tricks.warmup]\nenabled = false\n', n_trials=2,
                       trial_budget="30steps")
    path.write_text(path.read_text().replace("lr = 0.05\n", "lr = { low = 1e-5, high = 0.5, log = true }\n"))
    study = optuna.create_study(study_name="tiny", storage=sqlite_url)
    for lr in LRS.values():
        study.enqueue_trial({"train.lr": lr})
    run_cli("run", path, "--storage", sqlite_url)
    numbers = {t.params["train.lr"]: t.number for t in optuna.load_study(study_name="tiny", storage=sqlite_url).trials}
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as connection:  # the constructed case: the bad trial looks best, the good one worst
        for name, value in (("bad", 0.0), ("good", 0.99)):
            connection.execute(sa.text("UPDATE trial_values SET value = :v WHERE trial_id = (SELECT trial_id FROM "
                                       "trials WHERE number = :n)"), {"v": value, "n": numbers[LRS[name]]})
    engine.dispose()
    return path, {name: numbers[lr] for name, lr in LRS.items()}


def test_confirm_ranks_by_the_mean_over_paired_seeds_not_by_the_best_single_run(lucky_study, sqlite_url, run_cli):
    path, numbers = lucky_study
    _, out, _ = run_cli("best", "tiny", "--storage", sqlite_url, "--json")
    assert json.loads(out)["number"] == numbers["bad"]  # the search's winner
    _, out, _ = run_cli("confirm", "tiny", "--storage", sqlite_url, "--top", "2", "--seeds", "3", "--json")
    ranking = json.loads(out)
    assert [r["trial"] for r in ranking["ranking"]] == [numbers["good"], numbers["bad"]]
    good, bad = ranking["ranking"]
    assert good["seeds"] == bad["seeds"] == ranking["seeds"] and len(set(ranking["seeds"])) == 3  # paired
    assert len(good["values"]) == 3 and good["mean"] == pytest.approx(sum(good["values"]) / 3)
    assert good["ci"][0] <= good["mean"] <= good["ci"][1]
    assert good["search_value"] == 0.99 and bad["search_value"] == 0.0
    _, out, _ = run_cli("best", "tiny", "--storage", sqlite_url, "--confirmed", "--json")
    assert json.loads(out)["trial"] == numbers["good"]  # the study keeps the confirmed ranking
    _, out, _ = run_cli("best", str(path), "--storage", sqlite_url, "--confirmed")
    assert "trained again at seeds [0, 1, 2]" in out


def test_confirm_refuses_one_seed_and_a_study_never_confirmed(write_study, sqlite_url, run_cli):
    _, _, err = run_cli("confirm", "tiny", "--storage", sqlite_url, "--seeds", "1", expect=2)
    assert err.startswith("automl: error: --seeds 1: confirming needs at least 2 seeds")
    run_cli("run", write_study(n_trials=1), "--storage", sqlite_url)
    _, _, err = run_cli("best", "tiny", "--storage", sqlite_url, "--confirmed", expect=2)
    assert "has no confirmed ranking; run: automl confirm tiny" in err
