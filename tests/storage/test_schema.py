"""automl's own tables: created at head by `automl run`, old ones refused with the fix, upgraded keeping rows."""

from __future__ import annotations

import hashlib
import json

import optuna
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from automl.storage import schema
from automl.storage.models import Base, StudySourceModel, session_scope

HEAD = "v5_retry_claims"



def tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def scalar(url: str, sql: str):
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(sql)).scalar()
    finally:
        engine.dispose()


def optuna_version_is_optunas_own(url: str) -> bool:
    """Optuna's `alembic_version` holds Optuna's head revision, and nothing of automl's."""
    storage = optuna.storages.RDBStorage(url)
    try:
        return (storage.get_current_version() == storage.get_head_version()
                and scalar(url, "SELECT count(*) FROM alembic_version") == 1)
    finally:
        storage.engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_url(request) -> tuple[str, str]:
    """(URL with a password where the backend takes one, the same URL as it may be printed)."""
    if request.param == "sqlite":
        url = request.getfixturevalue("sqlite_url")
        return url, url
    url = request.getfixturevalue("postgres_url").replace("postgresql://root@", "postgresql://root:s3cret-pw@")
    return url, url.replace("s3cret-pw", "***")


def test_automl_run_creates_the_tables_at_head_and_records_the_source(run_cli, write_study, sqlite_url):
    study = write_study(n_trials=1)
    code, _, err = run_cli("run", str(study), "--storage", sqlite_url)
    assert code == 0, err
    assert {"automl_study_source", "automl_budget_ledger", "automl_trial_cost", "automl_alembic_version"} \
        <= tables(sqlite_url)
    code, out, _ = run_cli("db", "current", "--json", "--storage", sqlite_url)
    assert code == 0
    assert json.loads(out) == {"storage": sqlite_url, "current": HEAD, "head": HEAD, "state": "current"}
    assert optuna_version_is_optunas_own(sqlite_url)

    # Resuming with the same file adds nothing; an edited file is a new version beside the first.
    assert run_cli("run", str(study), "--storage", sqlite_url)[0] == 0
    edited = write_study(n_trials=2)
    assert run_cli("run", str(edited), "--storage", sqlite_url)[0] == 0
    engine = sa.create_engine(sqlite_url)
    with session_scope(engine) as session:
        first, second = StudySourceModel.history(session, "tiny")
        assert StudySourceModel.history(session, "other") == []
    engine.dispose()
    assert "n_trials = 1" in first.text and "n_trials = 2" in second.text
    assert first.sha256 == hashlib.sha256(first.text.encode()).hexdigest() != second.sha256
    assert first.path == str(study)
    plugins = {p["trick"]: p for p in first.plugins if "trick" in p}
    assert [p["dataset"] for p in first.plugins if "dataset" in p] == ["synthetic"]  # the data set's source too
    assert plugins and all(p["plugin"] and p["source"] for p in plugins.values())
    assert plugins["cosine"]["source"].startswith("automl ")  # distribution and version of the entry point


def test_old_schema_is_refused_then_upgraded_keeping_its_rows(run_cli, write_study, any_url):
    url, shown = any_url
    before, after = schema.upgrade(url, "v1_initial")
    assert (before.state, after.current) == ("empty", "v1_initial")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO automl_budget_ledger (study_name, total_seconds, reserved_seconds, "
                                   "spent_seconds, updated_at) VALUES ('old', 100, 5, 42.5, '2024-01-02 03:04:05')"))
    engine.dispose()

    study = write_study(n_trials=1)
    code, out, err = run_cli("run", str(study), "--storage", url, expect=2)
    assert code == 2
    assert err == (f"automl: error: the automl tables in {shown} are at v1_initial, this automl needs {HEAD}; "
                   f"run: automl db upgrade --storage {shown}\n")
    assert "studies" not in tables(url)  # stopped before Optuna wrote anything, so no study either
    code, out2, _ = run_cli("db", "current", "--storage", url)
    assert code == 0 and f"v1_initial (head {HEAD}): out of date; run: automl db upgrade --storage {shown}" in out2

    code, out3, err3 = run_cli("db", "upgrade", "--storage", url)
    assert code == 0, err3
    assert out3 == f"automl tables in {shown}: v1_initial -> {HEAD}\n"
    assert scalar(url, "SELECT spent_seconds FROM automl_budget_ledger WHERE study_name = 'old'") == 42.5
    assert scalar(url, f"SELECT version_num FROM {schema.VERSION_TABLE}") == HEAD

    code, out4, err4 = run_cli("run", str(study), "--storage", url)
    assert code == 0, err4
    assert len(optuna.load_study(study_name="tiny", storage=url).trials) == 1
    assert scalar(url, "SELECT total_seconds FROM automl_budget_ledger WHERE study_name = 'old'") == 100
    assert optuna_version_is_optunas_own(url)
    code, out5, err5 = run_cli("db", "upgrade", "--json", "--storage", url)
    assert json.loads(out5) == {"storage": shown, "from": HEAD, "to": HEAD, "head": HEAD}
    assert "s3cret-pw" not in out + err + out2 + out3 + err3 + out4 + err4 + out5 + err5


def test_a_schema_from_a_newer_automl_is_refused(run_cli, write_study, sqlite_url):
    schema.upgrade(sqlite_url)
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as connection:
        connection.execute(sa.text(f"UPDATE {schema.VERSION_TABLE} SET version_num = 'v9_future'"))
    engine.dispose()
    for argv in (["run", str(write_study(n_trials=1))], ["db", "upgrade"]):
        code, _, err = run_cli(*argv, "--storage", sqlite_url, expect=2)
        assert code == 2 and err.count("\n") == 1, err
        assert "'v9_future'" in err and "written by a newer automl; upgrade automl" in err
    assert "studies" not in tables(sqlite_url)
    code, out, _ = run_cli("db", "current", "--json", "--storage", sqlite_url)
    assert code == 0 and json.loads(out)["state"] == "newer"
    assert scalar(sqlite_url, f"SELECT version_num FROM {schema.VERSION_TABLE}") == "v9_future"


@pytest.mark.parametrize("command", ["current", "upgrade"])
def test_unreachable_or_missing_database_is_one_line_exit_2(run_cli, tmp_path, command):
    code, out, err = run_cli("db", command, "--storage", "postgresql://someone:hunter2@127.0.0.1:1/db", expect=2)
    assert code == 2 and err.count("\n") == 1 and out == ""
    assert err.startswith("automl: error: cannot open storage postgresql://someone:***@127.0.0.1:1/db")
    assert "hunter2" not in err
    if command == "current":  # a query never creates the database it was asked about
        code, _, err = run_cli("db", "current", "--storage", f"sqlite:///{tmp_path / 'absent.db'}", expect=2)
        assert code == 2 and "does not exist" in err
        assert not (tmp_path / "absent.db").exists()


def test_the_models_describe_the_head_migration(sqlite_url):
    schema.upgrade(sqlite_url)
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "version_table": schema.VERSION_TABLE,
            "include_object": lambda obj, name, type_, *_: type_ != "table" or name.startswith("automl_")})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == []


def test_every_revision_downgrades_and_upgrades_again(sqlite_url):
    from alembic import command

    assert schema.revisions() == ["v1_initial", "v2_trial_cost", "v3_reservations", "v4_sessions", HEAD]
    schema.upgrade(sqlite_url)
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as connection:
        command.downgrade(schema.alembic_config(connection), "base")
    engine.dispose()
    assert not {t for t in tables(sqlite_url) if t.startswith("automl_") and t != schema.VERSION_TABLE}
    assert schema.upgrade(sqlite_url)[1].state == "current"


def test_queries_read_a_plain_optuna_database_without_creating_automl_tables(run_cli, sqlite_url):
    optuna.create_study(study_name="plain", storage=sqlite_url).optimize(lambda t: t.suggest_float("x", 0, 1),
                                                                            n_trials=2)
    code, out, err = run_cli("studies", "--json", "--storage", sqlite_url)
    assert code == 0, err
    assert [s["name"] for s in json.loads(out)] == ["plain"]
    assert run_cli("trials", "plain", "--storage", sqlite_url)[0] == 0
    assert not {t for t in tables(sqlite_url) if t.startswith("automl_")}
    code, out, _ = run_cli("db", "current", "--json", "--storage", sqlite_url)
    assert json.loads(out)["state"] == "empty"


def test_upgrading_to_reservations_counts_each_studys_trials_less_its_retries(any_url):
    url, _ = any_url
    schema.upgrade(url, "v2_trial_cost")
    study = optuna.create_study(study_name="old", storage=url)
    trials = [study.ask() for _ in range(3)]
    # Trial 2 re-ran trial 1 after its worker died (Optuna's mark on a retry).
    study._storage.set_trial_system_attr(trials[2]._trial_id, "failed_trial", 1)
    for trial in trials:
        study.tell(trial, 1.0)
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO automl_budget_ledger (study_name, total_seconds, reserved_seconds, "
                                   "spent_seconds, updated_at) VALUES ('old', NULL, 0, 3, '2026-01-02 03:04:05'), "
                                   "('empty', NULL, 0, 0, '2026-01-02 03:04:05')"))
        for number in range(3):
            connection.execute(sa.text(
                "INSERT INTO automl_trial_cost (study_name, trial_number, worker_id, device, reserved_seconds, "
                "spent_seconds, state) VALUES ('old', :n, 'w', 'cpu', 1, 1, 'complete')"), {"n": number})
    engine.dispose()
    assert schema.upgrade(url)[1].current == HEAD
    counts = dict(scalar_rows(url, "SELECT study_name, trials_started FROM automl_budget_ledger"))
    assert counts == {"old": 2, "empty": 0}


def scalar_rows(url: str, sql: str) -> list[tuple]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(sql))]
    finally:
        engine.dispose()


def test_upgrading_to_sessions_counts_an_existing_study_as_run_once(sqlite_url):
    schema.upgrade(sqlite_url, "v3_reservations")
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO automl_budget_ledger (study_name, total_seconds, reserved_seconds, "
                                   "spent_seconds, trials_started, updated_at) "
                                   "VALUES ('old', NULL, 0, 3, 3, '2026-01-02 03:04:05')"))
    schema.upgrade(sqlite_url)
    from automl.storage.ledger import Ledger

    assert Ledger(engine, "old").start_session() == 1  # its next run samples apart from the first
    engine.dispose()


def test_upgrading_to_retry_claims_keeps_the_cost_rows_unclaimed(sqlite_url):
    schema.upgrade(sqlite_url, "v4_sessions")
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO automl_trial_cost (study_name, trial_number, worker_id, device, reserved_seconds, "
            "spent_seconds, state) VALUES ('old', 0, 'w', 'cpu', 1, 1, 'failed')"))
    engine.dispose()
    assert schema.upgrade(sqlite_url)[1].current == HEAD
    assert scalar_rows(sqlite_url, "SELECT trial_number, spent_seconds, retry_claimed_at FROM automl_trial_cost") \
        == [(0, 1.0, None)]
