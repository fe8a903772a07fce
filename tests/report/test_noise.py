"""Noise shown where results are shown: `trials`, `best` and the report give each validation error its Wilson
interval from the validation split's size, and `best` marks the trials it cannot be told from."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from scipy import stats as sps

from tests.report.test_report import Page

N_VAL = 360
# Wrong images out of 360 for trials 0..4; trial 4 was recorded before automl kept the split's size.
WRONG = [6, 5, 40, 9, 5]


def _wilson(wrong, n):
    ci = sps.binomtest(wrong, n).proportion_ci(method="wilson")
    return [ci.low, ci.high]


def _study(url):
    study = optuna.create_study(storage=url, study_name="noisy")
    for i, wrong in enumerate(WRONG):
        attrs = {"spent_seconds": 1.0, "tricks": ["cosine"]}
        if i < 4:
            attrs["val_size"] = N_VAL
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=wrong / N_VAL, params={"cosine.final": 0.1 * i},
                                     distributions={"cosine.final": FloatDistribution(0, 1)}, user_attrs=attrs))
    study.add_trial(create_trial(state=TrialState.PRUNED, value=None, user_attrs={"val_size": N_VAL}))
    return study


def test_trials_carry_the_wilson_interval_of_their_validation_size(run_cli, sqlite_url):
    _study(sqlite_url)
    _, out, _ = run_cli("trials", "noisy", "--storage", sqlite_url, "--json")
    records = json.loads(out)
    for record, wrong in zip(records, WRONG[:4]):
        assert record["val_size"] == N_VAL
        assert record["val_ci"] == pytest.approx(_wilson(wrong, N_VAL), abs=1e-12)
        assert "val_size" not in record["user_attrs"]
    assert records[4]["val_ci"] is None and records[4]["val_size"] is None  # no size, no interval invented
    assert records[5]["val_ci"] is None  # pruned: no value
    _, table, _ = run_cli("trials", "noisy", "--storage", sqlite_url)
    low, high = _wilson(5, N_VAL)
    assert f"[{low:.4f}, {high:.4f}]" in table
    assert "95% interval" in table and "Wilson" in table


def test_best_marks_the_trials_whose_interval_overlaps_the_best_one_s(run_cli, sqlite_url):
    _study(sqlite_url)
    _, out, _ = run_cli("best", "noisy", "--storage", sqlite_url, "--json")
    best = json.loads(out)
    # Trial 1 (5 wrong) is best; 6 and 9 wrong overlap its interval, 40 does not; trial 4 has no interval.
    assert best["number"] == 1 and best["value"] == 5 / N_VAL  # the keys it always had are still there
    assert best["val_ci"] == pytest.approx(_wilson(5, N_VAL), abs=1e-12)
    assert best["tied_trials"] == [0, 3]
    assert best["tied_with_best"] is False
    _, out, _ = run_cli("best", "noisy", "--storage", sqlite_url, "--json", "--top", "4")
    top = json.loads(out)
    assert [r["number"] for r in top] == [1, 4, 0, 3]
    assert [r["tied_with_best"] for r in top] == [False, False, True, True]
    assert top[0]["tied_trials"] == [0, 3] and all(r["tied_trials"] is None for r in top[1:])
    _, text, _ = run_cli("best", "noisy", "--storage", sqlite_url, "--top", "3")
    assert "tied with 2 other trials whose 95% interval overlaps this one's: 0, 3" in text
    assert "over 360 validation images" in text
    assert text.count("tied with #1") == 1  # trial 0 at rank 3; trial 4 (rank 2) has no interval


def test_no_tie_is_claimed_where_the_intervals_are_apart(run_cli, sqlite_url):
    study = optuna.create_study(storage=sqlite_url, study_name="clear")
    for wrong in (2, 60):
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=wrong / N_VAL,
                                     user_attrs={"val_size": N_VAL}))
    _, out, _ = run_cli("best", "clear", "--storage", sqlite_url, "--json")
    assert json.loads(out)["tied_trials"] == []
    _, text, _ = run_cli("best", "clear", "--storage", sqlite_url)
    assert "no other completed trial's 95% interval overlaps this one's" in text


def test_the_report_shows_the_intervals_and_the_ties(run_cli, sqlite_url, tmp_path):
    _study(sqlite_url)
    out = tmp_path / "report.html"
    run_cli("report", "noisy", "--storage", sqlite_url, "-o", out)
    page = Page(out.read_text())
    low, high = _wilson(5, N_VAL)
    assert page.summary()["best validation error"] == f"{5 / N_VAL:.4f} [{low:.4f}, {high:.4f}] (trial 1)"
    assert "Tied with 2 other trials whose 95% interval overlaps this one's: 0, 3." in page.all_text
    (row,) = page.rows("tricks")
    # cosine was on in every completed trial (the pruned one records no tricks): best 5 of 360 (trial 1),
    # median of 5, 5, 6, 9 and 40 wrong = 6 of 360; trial 4 has no size, so no median interval over mixed sizes.
    assert row[:4] == ["cosine", "5", "5", f"{5 / N_VAL:.4f} [{low:.4f}, {high:.4f}]"]
    assert row[4] == f"{6 / N_VAL:.4f}"


@pytest.mark.usefixtures("one_thread")
def test_a_trial_run_by_automl_records_the_size_of_its_validation_split(run_cli, write_study, sqlite_url):
    run_cli("run", write_study(n_trials=2), "--storage", sqlite_url)
    _, out, _ = run_cli("trials", "tiny", "--storage", sqlite_url, "--json")
    for record in json.loads(out):
        assert record["val_size"] == 48  # n_val of the tiny study
        wrong = round(record["value"] * 48)
        assert wrong == pytest.approx(record["value"] * 48, abs=1e-9)
        assert record["val_ci"] == pytest.approx(_wilson(wrong, 48), abs=1e-12)
