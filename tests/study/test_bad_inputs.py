"""Bad study files, run files, names and plugins (issue 11, items 13 to 28): one line, exit 2, nothing written."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from automl.cli import main
from automl.host import get_host


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, db: Path, *argv: str) -> str:
    """Run ``argv``; assert one error line, exit 2 and ``db`` left byte-for-byte (or never made); the line."""
    before = db.read_bytes() if db.exists() else None
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, out + err
    assert err.startswith("automl: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert (db.read_bytes() if db.exists() else None) == before
    return err


def edited(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


def with_study_keys(path: Path, *lines: str) -> Path:
    return edited(path, "[study]\n", "[study]\n" + "".join(f"{line}\n" for line in lines))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "studies.db"


@pytest.fixture
def existing_db(capsys, write_study, tmp_path: Path) -> Path:
    """A database with one finished study, ``other``, in it."""
    path = tmp_path / "existing.db"
    study = write_study(name="other", n_trials=1, filename="other.toml")
    assert run_cli(capsys, "run", str(study), "--storage", f"sqlite:///{path}")[0] == 0
    return path


def run_refused(capsys, db: Path, study: Path, *extra: str) -> str:
    return refused(capsys, db, "run", str(study), "--storage", f"sqlite:///{db}", *extra)


# 13 -------------------------------------------------------------------------------------


def test_trial_budget_longer_than_total_budget_is_refused(capsys, write_study, existing_db):
    study = with_study_keys(write_study(trial_budget="60s"), 'total_budget = "10s"')
    err = run_refused(capsys, existing_db, study)
    assert "trial_budget" in err and "total_budget" in err and "60s" in err and "10s" in err


def test_trial_budget_from_the_command_line_longer_than_total_is_refused(capsys, write_study, existing_db):
    err = run_refused(capsys, existing_db, write_study(), "--trial-budget", "2m", "--total-budget", "1m")
    assert "--trial-budget" in err and "--total-budget" in err


# 14 and 28 (negative budgets) ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_budgets_must_be_finite(capsys, write_study, existing_db, value):
    study = edited(write_study(), 'trial_budget = "6steps"', f"trial_budget = {value}")
    err = run_refused(capsys, existing_db, study)
    assert "trial_budget" in err and "finite" in err


def test_a_negative_budget_is_said_to_be_negative(capsys, write_study, existing_db):
    err = run_refused(capsys, existing_db, write_study(trial_budget="-3s"))
    assert "must be positive" in err and "is not a duration" not in err
    err = run_refused(capsys, existing_db, write_study(), "--trial-budget=-3s")
    assert "must be positive" in err


# 15 and 28 (long lists) ------------------------------------------------------------------


def test_a_variant_that_is_not_a_table_is_refused_when_the_file_is_read(capsys, write_study, existing_db):
    study = write_study("[variants]\nbig = 3\n")
    err = run_refused(capsys, existing_db, study)
    assert "[variants] big" in err and "table" in err
    err = run_refused(capsys, existing_db, study, "--variant", "big")
    assert "[variants] big" in err and "table" in err


def test_a_variant_whose_tables_are_not_tables_is_refused(capsys, write_study, existing_db):
    err = run_refused(capsys, existing_db, write_study("[variants.big]\nstudy = 3\n"), "--variant", "big")
    assert "[variants.big] study" in err


def test_a_long_list_of_valid_names_is_cut_with_a_count(capsys, write_study, existing_db):
    study = write_study("".join(f"[variants.v{i:05d}]\n" for i in range(2000)))
    err = run_refused(capsys, existing_db, study, "--variant", "nope")
    assert "v00000" in err and "v01999" not in err and "2000" in err
    assert len(err) < 400


# 16 ------------------------------------------------------------------------------------


def test_a_typo_in_model_args_is_refused_before_the_study_is_created(capsys, write_study, existing_db):
    study = edited(write_study(), "model_args = { width = 0.25 }", "model_args = { widht = 0.25 }")
    err = run_refused(capsys, existing_db, study)
    assert "'widht'" in err and "width" in err


def test_a_typo_in_dataset_args_is_refused(capsys, write_study, existing_db):
    study = edited(write_study(), "n_train = 96", "n_trian = 96")
    err = run_refused(capsys, existing_db, study)
    assert "n_trian" in err


# 17 ------------------------------------------------------------------------------------


def test_artifacts_that_is_a_file_is_refused(capsys, write_study, existing_db, tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    study = write_study()
    study = edited(study, (tmp_path / "artifacts").as_posix(), (tmp_path / "afile").as_posix())
    err = run_refused(capsys, existing_db, study)
    assert "[study] artifacts" in err and "not a folder" in err


# 18 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [2**64, -1, 2**40])
def test_seed_out_of_range_is_refused(capsys, write_study, existing_db, seed):
    err = run_refused(capsys, existing_db, edited(write_study(), "seed = 0", f"seed = {seed}"))
    assert "[study] seed" in err
    err = run_refused(capsys, existing_db, write_study(), f"--seed={seed}")
    assert "--seed" in err


# 19 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "train"])
def test_a_deeply_nested_file_is_one_line(capsys, tmp_path, existing_db, command):
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 50_000 + "]" * 50_000 + "\n")
    err = refused(capsys, existing_db, command, str(path), "--storage", f"sqlite:///{existing_db}")[:300] \
        if command == "run" else refused(capsys, existing_db, command, str(path))
    assert "nested too deeply" in err


# 20 and 24 -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../x", "a b", "-x", "x" * 513])
def test_a_study_name_from_the_command_line_follows_the_pattern(capsys, write_study, existing_db, name):
    err = run_refused(capsys, existing_db, write_study(), f"--study-name={name}")
    assert "--study-name" in err


def test_a_study_name_longer_than_the_database_allows_is_refused(capsys, write_study, existing_db):
    err = run_refused(capsys, existing_db, write_study(name="x" * 600))
    assert "[study] name" in err and "512" in err


def test_export_never_writes_outside_the_folder(capsys, tmp_path, monkeypatch):
    db = tmp_path / "plain.db"
    url = f"sqlite:///{db}"
    study = optuna.create_study(storage=url, study_name="../x")
    study.optimize(lambda t: t.suggest_float("a", 0, 1), n_trials=1)
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    run_cli(capsys, "export", "../x", "--storage", url)
    assert not (tmp_path / "a" / "x-trial0.toml").exists()
    from automl.study.export import default_run_file

    assert default_run_file("../../x", 0).parent == Path(".")
    assert default_run_file("tiny", 3) == Path("tiny-trial3.toml")


# 9 (a grace period no longer than a heartbeat takes every live worker for dead) --------


def test_a_grace_period_not_longer_than_the_heartbeat_interval_is_refused(capsys, write_study, db):
    study = with_study_keys(write_study(), "heartbeat_interval = 5", "grace_period = 5")
    err = run_refused(capsys, db, study)
    assert "grace_period (5) must be longer than heartbeat_interval (5)" in err and "at least 10" in err


# 25 ------------------------------------------------------------------------------------


def test_a_study_run_again_with_another_model_or_dataset_is_refused(capsys, write_study, existing_db):
    study = edited(write_study(name="other"), 'model = "small_cnn"', 'model = "resnet20"')
    err = run_refused(capsys, existing_db, study)
    assert "'small_cnn'" in err and "'resnet20'" in err and "other" in err


@pytest.mark.parametrize(("old", "new", "named"), [
    ("width = 0.25", "width = 0.5", "model_args"),
    ("num_classes = 4 }", "num_classes = 3 }", "dataset_args"),
])
def test_a_study_run_again_with_other_model_or_dataset_args_is_refused(capsys, write_study, existing_db, old, new,
                                                                       named):
    err = run_refused(capsys, existing_db, edited(write_study(name="other"), old, new))
    assert f"was run with {named}" in err and "--accept-task-change" in err


def test_a_study_run_again_with_another_model_runs_when_the_user_accepts_it(capsys, write_study, existing_db):
    study = edited(write_study(name="other", n_trials=2), 'model = "small_cnn"', 'model = "resnet20"')
    err = run_refused(capsys, existing_db, study)
    assert "--accept-task-change" in err  # the refusal names the way through
    code, out, err = run_cli(capsys, "run", str(study), "--storage", f"sqlite:///{existing_db}", "--accept-task-change")
    assert code == 0, err
    assert len(optuna.load_study(study_name="other", storage=f"sqlite:///{existing_db}").trials) == 2


def test_a_study_run_again_with_another_search_range_resumes(capsys, write_study, existing_db):
    study = write_study(name="other", n_trials=2)
    study = edited(study, "lr = 0.05", "lr = { low = 0.01, high = 0.1, log = true }")
    code, out, err = run_cli(capsys, "run", str(study), "--storage", f"sqlite:///{existing_db}")
    assert code == 0, err
    assert len(optuna.load_study(study_name="other", storage=f"sqlite:///{existing_db}").trials) == 2


# 26 ------------------------------------------------------------------------------------


def test_a_plugin_that_exits_at_import_is_a_failing_plugin(capsys, tmp_path):
    plugin = tmp_path / "quitter.py"
    plugin.write_text("import sys\nsys.exit(3)\n")
    host = get_host([plugin])
    assert [f.plugin for f in host.failures] == ["quitter"]
    assert "SystemExit" in host.failures[0].reason
    code, out, err = run_cli(capsys, "plugins", "list", "--plugin", str(plugin))
    assert code == 0 and "quitter" in err


# 27 ------------------------------------------------------------------------------------


def test_a_run_file_param_of_the_wrong_type_is_named(capsys, write_study, tmp_path):
    url = f"sqlite:///{tmp_path / 'run.db'}"
    study = edited(write_study(n_trials=1), "lr = 0.05", "lr = { low = 0.01, high = 0.1, log = true }")
    assert run_cli(capsys, "run", str(study), "--storage", url)[0] == 0
    run_file = tmp_path / "run.toml"
    assert run_cli(capsys, "export", "tiny", "--storage", url, "-o", str(run_file))[0] == 0
    text = run_file.read_text()
    start = text.index('"train.lr" = ')
    run_file.write_text(text[:start] + '"train.lr" = "fast"' + text[text.index("\n", start):])
    err = refused(capsys, tmp_path / "run.db", "train", str(run_file), "--out", str(tmp_path / "models"))
    assert "'train.lr'" in err and "fast" in err


# 28 ------------------------------------------------------------------------------------


def test_include_as_a_string_says_a_list_is_needed(capsys, write_study, existing_db):
    err = run_refused(capsys, existing_db, write_study('[tricks]\ninclude = "warmup"\n'))
    assert "[tricks] include" in err and "list" in err and "literal" not in err


def test_budget_finite_check_is_the_parsers():
    from automl.budget import Budget
    from automl.errors import UserError

    for value in (math.nan, math.inf, "nan", "infs"):
        with pytest.raises(UserError):
            Budget.parse(value)
