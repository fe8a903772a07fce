"""`best`, `trials`, `report` and `export` take a study file where they take a study name, and then read the
storage that file names, as `automl run` wrote it."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def ran(run_cli, tmp_path, write_study, monkeypatch):
    """A study run with the storage its file names, then a working folder without any automl.db."""
    db = tmp_path / "kept" / "where.db"
    db.parent.mkdir()
    study = write_study(n_trials=2)
    study.write_text(study.read_text().replace('[study]\n', f'[study]\nstorage = "sqlite:///{db.as_posix()}"\n', 1))
    run_cli("run", study)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return study


def test_best_and_trials_read_the_storage_the_study_file_names(run_cli, ran):
    best = json.loads(run_cli("best", ran, "--json")[1])
    trials = json.loads(run_cli("trials", ran, "--json")[1])
    assert len(trials) == 2 and best["number"] in {t["number"] for t in trials}
    assert best["value"] == min(t["value"] for t in trials if t["state"] == "COMPLETE")


def test_report_and_export_read_the_storage_the_study_file_names(run_cli, ran, tmp_path):
    written = json.loads(run_cli("report", ran, "-o", tmp_path / "r.html", "--json")[1])
    assert written["html"] == str(tmp_path / "r.html") and (tmp_path / "r.html").stat().st_size > 0
    exported = json.loads(run_cli("export", ran, "-o", tmp_path / "best.toml", "--json")[1])
    assert exported["study"] == "tiny" and (tmp_path / "best.toml").is_file()


def test_a_name_where_no_database_is_says_a_study_file_would_do(run_cli, ran):
    _, _, err = run_cli("best", "tiny", expect=2)
    assert err.startswith("automl: error: no database at sqlite:///automl.db")
    assert err.endswith("; or give the study's file in place of its name, to use the storage it names\n")
    _, _, err = run_cli("trials", "tiny", "--variant", "cifar10", expect=2)
    assert "--variant cifar10 needs a study file in place of the study name 'tiny'" in err


def test_storage_given_on_the_command_line_wins_over_the_files(run_cli, ran, tmp_path):
    _, _, err = run_cli("best", ran, "--storage", f"sqlite:///{tmp_path / 'other.db'}", expect=2)
    assert "no database at sqlite:///" in err and "other.db" in err
