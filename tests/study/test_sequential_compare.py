"""`automl compare`'s sequential design, end to end: a far worse arm stops at the first look, every arm's JSON
says how many seeds it used and what was decided, --drop-losers leaves a loser out of the larger budgets, a
killed comparison resumes at its round, workers train a round in parallel, and bad options are refused."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from automl import records
from automl.cli import main
from automl.sequential import FIRST_LOOK
from automl.storage import open_storage
from automl.study.analysis import stored_comparison, verdicts
from tests.conftest import TINY_STUDY
from tests.study.two_arms import PROBE, TWO_ARMS, complete_by_cell

FAR_WORSE = """
[tricks]
include = []

[compare]
reference = "trains"

[compare.arms.trains]
pins = { "train.lr" = 0.1 }

[compare.arms.frozen]
pins = { "train.lr" = 1e-6 }
"""
"""Two arms of one recipe, one with an LR at which nothing trains: its error stays at chance."""


@pytest.fixture
def far_worse(tmp_path) -> Path:
    """A tiny study whose LR is left open (the arms pin it) on a task easy enough to learn in 30 steps."""
    text = TINY_STUDY.format(name="far", trial_budget="30steps", n_trials=3, artifacts=(tmp_path / "a").as_posix())
    text = text.replace("lr = 0.05", "lr = { low = 1e-6, high = 0.5, log = true }")
    text = text.replace("num_classes = 4 }", "num_classes = 4, noise = 0.3 }")
    path = tmp_path / "far.toml"
    path.write_text(text + FAR_WORSE)
    return path


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def _cells(url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=url).get_trials()


def test_a_far_worse_arm_is_decided_worse_at_the_first_look(far_worse, sqlite_url, capsys):
    assert main(["compare", str(far_worse), "--storage", sqlite_url, "--max-seeds", "6", "--json"]) == 0
    result = _json(capsys)
    assert result["design"] == "sequential" and result["sequential"]["max_seeds"] == 6
    rows = {row["arm"]: row for row in result["budgets"][0]["arms"]}
    assert rows["frozen"]["decided"] == "worse" and rows["frozen"]["decided_at"] == FIRST_LOOK
    assert rows["frozen"]["seeds_used"] == FIRST_LOOK and rows["trains"]["seeds_used"] == FIRST_LOOK
    assert rows["trains"]["decided"] == "reference" and rows["trains"]["decided_at"] is None
    assert [look["seeds"] for look in rows["frozen"]["sequence"]] == [FIRST_LOOK]
    assert rows["frozen"]["vs_reference"]["ci"][0] > 0  # decided on an interval above 0
    assert result["cells"] == {"trained": 2 * FIRST_LOOK, "fixed_design": 12, "saved": 12 - 2 * FIRST_LOOK}
    assert len(_cells(sqlite_url, "far-compare-30steps")) == 2 * FIRST_LOOK  # no seed past the decision
    assert main(["compare", str(far_worse), "--storage", sqlite_url, "--max-seeds", "6"]) == 0  # nothing more
    out = capsys.readouterr().out
    assert f"frozen: worse than trains at 30steps (at {FIRST_LOOK} seeds, +0." in out
    assert "cells: 6 trained, against 12 for the fixed design of 6 seeds per arm (6 saved)" in out
    assert len(_cells(sqlite_url, "far-compare-30steps")) == 2 * FIRST_LOOK


def test_the_report_draws_the_confidence_sequences_from_the_database_alone(far_worse, sqlite_url, capsys,
                                                                             tmp_path):
    assert main(["compare", str(far_worse), "--storage", sqlite_url, "--max-seeds", "6", "--json"]) == 0
    direct = _json(capsys)
    stored = stored_comparison(open_storage(sqlite_url, create=False), "far")
    assert stored["design"] == "sequential" and stored["sequential"] == direct["sequential"]
    assert [{k: r[k] for k in ("arm", "decided", "decided_at", "sequence")} for r in stored["budgets"][0]["arms"]] \
        == [{k: r[k] for k in ("arm", "decided", "decided_at", "sequence")} for r in direct["budgets"][0]["arms"]]
    page, figures = tmp_path / "r.html", tmp_path / "png"
    assert main(["report", "far-compare-30steps", "--storage", sqlite_url, "-o", str(page), "--png",
                 str(figures)]) == 0
    html = page.read_text()
    assert "sequential design" in html and "worse at 3 seeds" in html and "Each arm against the reference" in html
    assert (figures / "confidence_sequences.png").stat().st_size > 0


def test_drop_losers_leaves_a_loser_out_of_the_larger_budgets_and_only_when_asked(far_worse, sqlite_url, capsys,
                                                                                  tmp_path):
    text = far_worse.read_text().replace('pins = { "train.lr" = 1e-6 }',
                                         'pins = { "train.lr" = 1e-6 }\n\n[compare.arms.slower]\n'
                                         'pins = { "train.lr" = 0.05 }')
    far_worse.write_text(text)
    argv = ["compare", str(far_worse), "--max-seeds", "4", "--budgets", "20steps,30steps", "--json"]
    assert main([*argv, "--storage", sqlite_url, "--drop-losers"]) == 0
    result = _json(capsys)
    small, large = ({row["arm"]: row for row in entry["arms"]} for entry in result["budgets"])
    assert small["frozen"]["decided"] == "worse" and small["frozen"]["seeds_used"] == FIRST_LOOK
    assert large["frozen"]["decided"] == "dropped" and large["frozen"]["seeds_used"] == 0
    assert large["slower"]["seeds_used"] >= FIRST_LOOK  # the others go on at the larger budget
    assert "frozen: worse than trains at 20steps (at 3 seeds" in "\n".join(verdicts(result))
    assert "dropped (worse than the best at a smaller budget) at 30steps" in "\n".join(verdicts(result))
    assert {t.user_attrs[records.ATTR_COMPARE_ARM] for t in _cells(sqlite_url, "far-compare-30steps")} == \
        {"trains", "slower"}
    kept = f"sqlite:///{tmp_path / 'kept.db'}"
    assert main([*argv, "--storage", kept]) == 0
    large = {row["arm"]: row for row in _json(capsys)["budgets"][1]["arms"]}
    assert large["frozen"]["seeds_used"] >= FIRST_LOOK and large["frozen"]["decided"] != "dropped"


@pytest.mark.parametrize(("args", "message"), [
    (["--seeds", "5", "--max-seeds", "10"], "--seeds 5 asks for the fixed design and --max-seeds for the sequential"),
    (["--seeds", "5", "--tolerance", "0.01"], "--seeds 5 asks for the fixed design and --tolerance"),
    (["--max-seeds", "2"], "--max-seeds 2: the sequential design first looks at 3 seeds"),
    (["--tolerance", "-0.01"], "--tolerance -0.01: give a difference of validation error in [0, 1)"),
])
def test_bad_sequential_options_are_one_line_exit_2_and_write_nothing(far_worse, sqlite_url, capsys, args,
                                                                      message):
    assert main(["compare", str(far_worse), "--storage", sqlite_url, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"automl: error: {message}") and err.count("\n") == 1, err
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()


def test_a_bad_compare_table_maximum_names_the_file(far_worse, sqlite_url, capsys):
    far_worse.write_text(far_worse.read_text().replace('reference = "trains"', 'reference = "trains"\nmax_seeds = 1'))
    assert main(["compare", str(far_worse), "--storage", sqlite_url]) == 2
    err = capsys.readouterr().err
    assert "max_seeds" in err and "greater than or equal to 3" in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_a_killed_sequential_comparison_resumes_at_its_round(write_study, tmp_path, child_env, capsys):
    plugin = tmp_path / "probe.py"
    plugin.write_text(PROBE)
    study = write_study(TWO_ARMS)
    study.write_text(study.read_text().replace("seed = 0", "seed = 0\nheartbeat_interval = 1\ngrace_period = 2"))
    argv = ["compare", str(study), "--plugin", str(plugin), "--max-seeds", "6", "--json"]
    whole = f"sqlite:///{tmp_path / 'whole.db'}"
    assert main([*argv, "--storage", whole]) == 0
    uninterrupted = _json(capsys)
    trained = uninterrupted["cells"]["trained"]
    assert trained > 2 * FIRST_LOOK, "the race must go past its first round for the kill to land in a later one"

    url = f"sqlite:///{tmp_path / 'killed.db'}"
    kill = tmp_path / "kill"
    kill.write_text(str(2 * FIRST_LOOK + 1))  # the first cell of the second round kills its process
    killed = subprocess.run([sys.executable, "-m", "automl", *argv, "--storage", url], cwd=tmp_path,
                            env={**child_env(), "PROBE_KILL_FILE": str(kill)}, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    before = _cells(url, "tiny-compare-6steps")
    assert [t.state for t in before].count(TrialState.COMPLETE) == 2 * FIRST_LOOK
    assert [t.state for t in before].count(TrialState.RUNNING) == 1
    time.sleep(2.5)  # the grace period passes: the killed cell is stale, and the next run recovers it

    assert main([*argv, "--storage", url]) == 0
    resumed = _json(capsys)
    cells = _cells(url, "tiny-compare-6steps")
    assert {t.number: t.value for t in cells if t.number < 2 * FIRST_LOOK} == \
        {t.number: t.value for t in before if t.state == TrialState.COMPLETE}  # the first round is kept
    by_cell = complete_by_cell(cells)
    assert all(len(trials) == 1 for trials in by_cell.values()) and len(by_cell) == trained
    # It went on where it stopped and decided what the uninterrupted comparison decided, on the same errors.
    for mine, theirs in zip(resumed["budgets"][0]["arms"], uninterrupted["budgets"][0]["arms"]):
        assert {k: mine[k] for k in ("arm", "values", "seeds_used", "decided", "decided_at")} == \
            {k: theirs[k] for k in ("arm", "values", "seeds_used", "decided", "decided_at")}


@pytest.mark.postgres
def test_workers_train_each_round_in_parallel_on_postgresql(write_study, postgres_url, tmp_path, capsys):
    plugin = tmp_path / "probe.py"
    plugin.write_text(PROBE)
    study = write_study(TWO_ARMS)
    argv = ["compare", str(study), "--storage", postgres_url, "--plugin", str(plugin), "--max-seeds", "4",
            "--workers", "2", "--device", "cpu", "--json"]
    assert main(argv) == 0, capsys.readouterr().err
    result = _json(capsys)
    rows = {row["arm"]: row for row in result["budgets"][0]["arms"]}
    by_cell = complete_by_cell(_cells(postgres_url, "tiny-compare-6steps"))
    assert all(len(trials) == 1 for trials in by_cell.values())
    assert sorted(by_cell) == sorted((arm, s) for arm, row in rows.items() for s in range(row["seeds_used"]))
    for seed in range(rows["probe"]["seeds_used"]):  # paired across arms, whichever worker trained them
        assert by_cell[("probe", seed)][0].user_attrs["probe.weights"] == \
            by_cell[("cosine+probe", seed)][0].user_attrs["probe.weights"]
    assert main(argv) == 0  # resumed: the race is over, nothing is trained
    assert len(_cells(postgres_url, "tiny-compare-6steps")) == sum(len(t) for t in by_cell.values())


def test_the_verdicts_say_what_was_decided_at_how_many_seeds_and_the_cells_saved():
    def row(arm, decided, at, used, diff=0.001):
        return {"arm": arm, "decided": decided, "decided_at": at, "seeds_used": used,
                "vs_reference": None if decided == "reference" else {"diff": diff, "ci": [diff - 0.002, diff + 0.002]}}
    result = {"reference": "ref", "design": "sequential", "seeds": 40,
              "cells": {"trained": 70, "fixed_design": 160, "saved": 90},
              "budgets": [{"budget": "5s", "arms": [row("ref", "reference", None, 40), row("a", "undecided", None, 40),
                                                    row("b", "equivalent", 12, 12), row("c", "worse", 3, 3, 0.3)]}]}
    assert verdicts(result) == [
        "a: undecided against ref at 5s (after 40 seeds, +0.0010 [-0.0010, +0.0030])",
        "b: equivalent to ref at 5s (at 12 seeds, +0.0010 [-0.0010, +0.0030])",
        "c: worse than ref at 5s (at 3 seeds, +0.3000 [+0.2980, +0.3020])",
        "cells: 70 trained, against 160 for the fixed design of 40 seeds per arm (90 saved)"]


def test_a_search_needs_an_end_and_a_comparison_does_not(far_worse, sqlite_url, capsys):
    far_worse.write_text(far_worse.read_text().replace("n_trials = 3\n", ""))
    assert main(["run", str(far_worse), "--storage", sqlite_url]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"automl: error: {far_worse}: [study] give total_budget") and err.count("\n") == 1
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()
    assert main(["compare", str(far_worse), "--storage", sqlite_url, "--max-seeds", "3", "--json"]) == 0
    assert {row["seeds_used"] for row in _json(capsys)["budgets"][0]["arms"]} == {FIRST_LOOK}
