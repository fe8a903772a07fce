"""The `automl` command in-process: a study from file to best configuration, queries, and bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from automl.host import get_host


def study_names(url: str) -> list[str]:
    path = Path(url.removeprefix("sqlite:///"))
    if not path.exists():
        return []
    return optuna.get_all_study_names(url)


def test_run_then_query_best_trials_and_studies(run_cli, write_study, sqlite_url):
    study = write_study(n_trials=3)
    code, out, err = run_cli("run", str(study), "--storage", sqlite_url)
    assert code == 0, err
    assert "validation error" in out

    code, out, _ = run_cli("best", "tiny", "--json", "--storage", sqlite_url)
    assert code == 0
    best = json.loads(out)
    trials = optuna.load_study(study_name="tiny", storage=sqlite_url).trials
    assert best["value"] == min(t.value for t in trials if t.value is not None)
    assert best["state"] == "COMPLETE"
    assert set(best["tricks"]) <= set(get_host().tricks)
    owners = best["params"].get("owner", {}).values()
    for trick in best["tricks"]:  # each enabled trick was switched on, or chosen to own a resource
        assert best["params"].get(trick, {}).get("enabled") is True or trick in owners
    assert best["spent_seconds"] > 0

    code, out, _ = run_cli("trials", "tiny", "--json", "--storage", sqlite_url)
    records = json.loads(out)
    assert [r["number"] for r in records] == [0, 1, 2]
    assert all(r["end_reason"] == "complete" for r in records)

    # The table shows how each trial spent what it charged: training, evaluation, steps and passes.
    _, table, _ = run_cli("trials", "tiny", "--storage", sqlite_url)
    header = next(line for line in table.splitlines() if "spent s" in line)
    assert [c.strip() for c in header.split("┃") if c.strip()][5:8] == ["spent s", "train + eval", "steps (ep)"]
    row = next(line for line in table.splitlines() if line.count("│") > 2 and line.split("│")[1].strip() == "0")
    cells = [c.strip() for c in row.split("│")[1:-1]]
    first = records[0]["user_attrs"]
    assert cells[6:8] == [f"{first['train_seconds']:.3g} + {first['eval_seconds']:.3g}", f"6 ({first['epochs']:.4g})"]

    code, out, _ = run_cli("studies", "--json", "--storage", sqlite_url)
    (summary,) = json.loads(out)
    assert summary["name"] == "tiny" and summary["n_trials"] == 3 and summary["dataset"] == "synthetic"

    code, out, _ = run_cli("best", "tiny", "--top", "2", "--json", "--storage", sqlite_url)
    top = json.loads(out)
    assert len(top) == 2 and top[0]["value"] <= top[1]["value"]


def test_storage_comes_from_env_before_the_study_file(run_cli, write_study, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("AUTOML_STORAGE", url)
    study = write_study(n_trials=1)
    study.write_text(study.read_text().replace('seed = 0', f'seed = 0\nstorage = "sqlite:///{tmp_path / "file.db"}"'))
    assert run_cli("run", str(study))[0] == 0
    assert study_names(url) == ["tiny"]
    assert not (tmp_path / "file.db").exists()


def test_rerun_resumes_up_to_n_trials(run_cli, write_study, sqlite_url):
    assert run_cli("run", str(write_study(n_trials=2)), "--storage", sqlite_url)[0] == 0
    assert run_cli("run", str(write_study(n_trials=3)), "--storage", sqlite_url)[0] == 0
    assert len(optuna.load_study(study_name="tiny", storage=sqlite_url).trials) == 3


BAD_INPUTS = {
    "unknown trick": ('[tricks]\ninclude = ["warmpu"]\n', "unknown trick 'warmpu'; valid: batch_ramp, batch_size, cosine"),
    "impossible range": ("[tricks.warmup]\nfraction = { low = 0.5, high = 0.1 }\n", "impossible range"),
    "unknown key": ("[tricks.warmup]\nfractoin = 0.1\n", "unknown key 'fractoin'; valid: enabled, fraction"),
    "unknown train key": ("[train2]\nlr = 1\n", "unknown key 'train2'; valid: study, task, train, tricks"),
    "out-of-range pin": ("[tricks.warmup]\nfraction = 1.5\n", "fraction=1.5"),
    "bad sampler": None,
    "malformed": ("[tricks\n", "malformed TOML"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_study_file_is_one_line_exit_2_and_no_study(run_cli, write_study, sqlite_url, case):
    if case == "bad sampler":
        study = write_study()
        study.write_text(study.read_text().replace('sampler = "random"', 'sampler = "annealing"'))
        expected = "[study] sampler: Input should be 'tpe', 'random', 'cmaes', 'gp' or 'bruteforce'"
    else:
        extra, expected = BAD_INPUTS[case]
        study = write_study(extra)
    code, out, err = run_cli("run", str(study), "--storage", sqlite_url, expect=2)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"automl: error: {study}: "), err
    assert expected in err
    assert study_names(sqlite_url) == []


def test_missing_file_and_unreachable_database(run_cli, write_study, tmp_path):
    code, _, err = run_cli("run", str(tmp_path / "nope.toml"), expect=2)
    assert code == 2 and "not found" in err and err.count("\n") == 1

    code, out, err = run_cli("run", str(write_study()), "--storage",
                             "postgresql://someone:hunter2@127.0.0.1:1/db", expect=2)
    assert code == 2 and err.count("\n") == 1
    assert "cannot open storage postgresql://someone:***@127.0.0.1:1/db" in err
    assert "hunter2" not in out + err

    code, _, err = run_cli("best", "tiny", "--storage", f"sqlite:///{tmp_path / 'absent.db'}", expect=2)
    assert code == 2 and "does not exist" in err
    assert not (tmp_path / "absent.db").exists()


def test_unknown_study_names_the_ones_there(run_cli, write_study, sqlite_url):
    run_cli("run", str(write_study(n_trials=1)), "--storage", sqlite_url)
    code, _, err = run_cli("best", "tinny", "--storage", sqlite_url, expect=2)
    assert code == 2 and "no study named 'tinny'" in err and "studies there: tiny" in err


def test_plugins_list_and_show(run_cli):
    code, out, _ = run_cli("plugins", "list", "--json")
    listing = json.loads(out)
    names = {t["name"] for t in listing["tricks"]}
    assert {"warmup", "cosine", "label_smoothing"} <= names
    code, out, _ = run_cli("plugins", "show", "cosine", "--json")
    cosine = json.loads(out)
    assert cosine["owns"] == ["lr_schedule"]
    assert cosine["params"]["final"]["type"] == "float"
    code, out, _ = run_cli("plugins", "show", "warmup")
    assert "warmup.fraction" in out and "[0.01, 0.3] log" in out
    code, out, _ = run_cli("plugins", "show", "distillation", "--json")
    assert json.loads(out)["options"] == {"teacher": "best"}
    code, out, _ = run_cli("plugins", "show", "step_decay")
    assert "options (set in the study file, never searched): milestones = (0.5, 0.75)" in out
    code, _, err = run_cli("plugins", "show", "snapshot", expect=2)
    assert code == 2 and "unknown trick 'snapshot'" in err


FAILING_TRICKS = '''
import torch
from automl import Trick, hookimpl


class Poison(Trick):
    """Feeds NaN into the first batch, so the loss is NaN."""
    name = "poison"

    def transform_batch(self, run, x, y):
        return x * float("nan"), y


class Hog(Trick):
    """Asks the allocator for far more memory than any machine has."""
    name = "hog"

    def setup(self, run):
        run.attrs["hog"] = torch.empty(1 << 44, dtype=torch.uint8).sum()


@hookimpl
def automl_register_tricks():
    return [Poison, Hog]
'''


@pytest.mark.parametrize(("trick", "reason"), [("poison", "nan_loss"), ("hog", "oom")])
def test_nan_and_out_of_memory_fail_the_trial_and_the_study_goes_on(run_cli, write_study, sqlite_url, tmp_path, trick, reason):
    plugin = tmp_path / "failing.py"
    plugin.write_text(FAILING_TRICKS)
    study = write_study(f'[tricks]\ninclude = ["{trick}", "cosine"]\n[tricks.{trick}]\nenabled = true\n', n_trials=2)
    code, out, err = run_cli("run", str(study), "--storage", sqlite_url, "--plugin", str(plugin))
    assert code == 0, err
    records = json.loads(run_cli("trials", "tiny", "--json", "--storage", sqlite_url)[1])
    assert len(records) == 2
    assert all(r["state"] == "FAIL" and r["end_reason"] == reason for r in records)


def test_total_budget_stops_the_study(run_cli, write_study, sqlite_url):
    # Whatever the machine's speed: one trial is run and measured first, then the total is what it cost
    # plus room for three more trials like it, so the ledger always admits a second trial.
    study = write_study(n_trials=50, trial_budget="0.4s")
    run_cli("run", str(study), "--storage", sqlite_url, "--n-trials", "1")
    (first,) = optuna.load_study(study_name="tiny", storage=sqlite_url).trials
    total = 4 * first.user_attrs["spent_seconds"]
    run_cli("run", str(study), "--storage", sqlite_url, "--total-budget", f"{total}s")
    trials = optuna.load_study(study_name="tiny", storage=sqlite_url).trials
    spent = [t.user_attrs["spent_seconds"] for t in trials]
    assert 2 <= len(trials) < 50
    # A trial only starts when a whole trial still fits; the last may run over by its evaluation.
    assert sum(spent) <= total + max(spent) - 0.4
    # ... and the study stopped only once the next trial would not fit.
    assert total - sum(spent) < max(0.4, sum(spent) / len(spent))


def test_optuna_cli_reads_the_same_database(run_cli, write_study, sqlite_url):
    run_cli("run", str(write_study(n_trials=2)), "--storage", sqlite_url)
    best = optuna.load_study(study_name="tiny", storage=sqlite_url).best_trial
    result = subprocess.run(["optuna", "best-trial", "--study-name", "tiny", "--storage", sqlite_url, "-f", "json"],
                            capture_output=True, text=True, check=True)
    assert json.loads(result.stdout)["number"] == best.number
    result = subprocess.run(["optuna", "trials", "--study-name", "tiny", "--storage", sqlite_url, "-f", "json"],
                            capture_output=True, text=True, check=True)
    assert len(json.loads(result.stdout)) == 2


@pytest.mark.slow
def test_python_m_automl_end_to_end(write_study, sqlite_url, tmp_path):
    """The real thing: a subprocess runs a study, another reads the best trial back."""
    study = write_study(n_trials=2)
    run = subprocess.run([sys.executable, "-m", "automl", "run", str(study), "--storage", sqlite_url],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    best = subprocess.run(["automl", "best", "tiny", "--json", "--storage", sqlite_url],
                          capture_output=True, text=True, cwd=tmp_path)
    assert best.returncode == 0 and json.loads(best.stdout)["state"] == "COMPLETE"
    bad = subprocess.run([sys.executable, "-m", "automl", "run", "missing.toml"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("automl: error:")
    assert not (tmp_path / "automl.db").exists()


@pytest.mark.postgres
def test_study_on_postgresql_never_prints_the_password(run_cli, write_study, postgres_url):
    url = postgres_url.replace("postgresql://root@", "postgresql://root:s3cret-pw@")
    code, out, err = run_cli("run", str(write_study(n_trials=2)), "--storage", url)
    assert code == 0, err
    code, out2, err2 = run_cli("best", "tiny", "--json", "--storage", url)
    assert code == 0 and json.loads(out2)["state"] == "COMPLETE"
    assert "s3cret-pw" not in out + err + out2 + err2
    assert len(optuna.load_study(study_name="tiny", storage=postgres_url).trials) == 2


def test_several_workers_on_sqlite_are_refused_up_front(run_cli, write_study, sqlite_url):
    code, out, err = run_cli("run", str(write_study()), "--workers", "4", "--storage", sqlite_url, expect=2)
    assert code == 2 and err.count("\n") == 1
    assert err == ("automl: error: --workers 4 needs a server database: SQLite allows one writer; "
                   "use --storage postgresql://...\n")
    assert study_names(sqlite_url) == []


@pytest.mark.postgres
@pytest.mark.slow
def test_four_workers_share_a_study_on_postgresql(write_study, postgres_url, tmp_path, child_env):
    from automl.storage.ledger import Ledger
    from automl.storage.models import TrialCostModel
    import sqlalchemy as sa

    study = write_study(n_trials=40, trial_budget="4steps")
    study.write_text(study.read_text().replace("n_trials = 40", 'n_trials = 40\ntotal_budget = "10m"'))
    run = subprocess.run([sys.executable, "-m", "automl", "run", str(study), "--workers", "4", "--device", "cpu",
                          "--storage", postgres_url], capture_output=True, text=True, cwd=tmp_path,
                         env=child_env(), timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr.count("error ") >= 40  # a line per finished trial, read from the database
    assert "validation error" in run.stdout  # the best at the end
    trials = optuna.load_study(study_name="tiny", storage=postgres_url).trials
    assert len(trials) == 40 and sorted(t.number for t in trials) == list(range(40))
    assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in trials)
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.select(TrialCostModel.spent_seconds, TrialCostModel.worker_id)).all()
        totals = Ledger(engine, "tiny").totals()
    finally:
        engine.dispose()
    assert len(rows) == 40 and len({r.worker_id for r in rows}) >= 2  # the trials were shared out
    assert totals.reserved == pytest.approx(0.0, abs=1e-9)
    assert totals.spent == pytest.approx(sum(r.spent_seconds for r in rows))
    assert totals.spent == pytest.approx(sum(t.user_attrs["spent_seconds"] for t in trials))
    assert totals.spent <= totals.total == 600


def test_help_and_version_load_no_storage_or_display_library(child_env):
    # The command line parses before it imports what its commands need: `--help` pays for none of it.
    probe = ("import sys\nfrom automl.cli import main\n"
             "for argv in (['--help'], ['--version'], ['run', '--help']):\n"
             "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
             "print(sorted(m for m in ('optuna', 'rich', 'sqlalchemy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=child_env(),
                            check=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_every_command_in_the_table_is_listed_and_has_its_help(capsys):
    from automl.cli import COMMANDS, main

    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    listing = " ".join(capsys.readouterr().out.split())
    for name, (_, summary) in COMMANDS.items():
        assert name in listing and " ".join(summary.split()) in listing, name
        with pytest.raises(SystemExit) as exited:
            main([name, "--help"])
        assert exited.value.code == 0, name


def test_a_table_written_to_a_pipe_keeps_every_value_whole(capsys, monkeypatch):
    from automl.cli.options import stdout
    from rich.table import Table

    monkeypatch.delenv("COLUMNS", raising=False)
    table = Table()
    values = [f"column {i} holds the value 0.{i}2345678901234 in full" for i in range(8)]
    for value in values:
        table.add_column(value)
    table.add_row(*values)
    stdout().print(table)  # capsys is not a terminal: a pipe, as far as rich can tell
    out = capsys.readouterr().out
    assert "…" not in out and all(value in out for value in values)


def test_a_resumed_study_with_nothing_left_to_run_shows_its_best(run_cli, write_study, sqlite_url):
    study = write_study(n_trials=1)
    run_cli("run", study, "--storage", sqlite_url)
    _, _, err = run_cli("run", study, "--storage", sqlite_url)  # n_trials reached: nothing runs
    assert re.search(r"tiny .* best 0\.\d{4} \(#0\)", err), err


def test_a_brute_force_grid_that_runs_out_ends_the_study_with_a_note(run_cli, write_study, sqlite_url):
    study = write_study('[tricks]\ninclude = ["cosine"]\n[tricks.cosine]\nfinal = 0.0\n', n_trials=4)
    study.write_text(study.read_text().replace('sampler = "random"', 'sampler = "bruteforce"'))
    _, _, err = run_cli("run", study, "--storage", sqlite_url)
    trials = optuna.load_study(study_name="tiny", storage=sqlite_url).trials
    assert len(trials) == 2 and {t.params["cosine.enabled"] for t in trials} == {True, False}
    assert "every combination of the brute-force grid has run" in err and "Traceback" not in err


def test_a_total_budget_too_small_for_one_trial_in_steps_says_why_nothing_ran(run_cli, write_study, sqlite_url):
    # A hundred thousand steps take far more than the 1 s total on any machine: the timed estimate says so.
    study = write_study(trial_budget="100000steps")
    study.write_text(study.read_text().replace("n_trials = 3", 'n_trials = 3\ntotal_budget = "1s"'))
    _, _, err = run_cli("run", study, "--storage", sqlite_url, expect=2)
    assert err.count("automl: error: no trial can start: one trial of") == 1 and "raise [study] total_budget" in err
    assert optuna.load_study(study_name="tiny", storage=sqlite_url).trials == []
