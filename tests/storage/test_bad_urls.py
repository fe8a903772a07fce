"""Bad storage URLs and databases (issue 11, items 21 to 23 and 28): one line, exit 2, no password, nothing written."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import optuna
import pytest

from automl.cli import main


def refused(capsys, watched: Path, *argv: str) -> str:
    """Run ``argv``; assert one error line, exit 2 and ``watched`` left byte-for-byte (or never made); the line."""
    before = watched.read_bytes() if watched.is_file() else None
    existed = watched.exists()
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert err.startswith("automl: error: ") and err.count("\n") == 1, err
    assert watched.exists() == existed
    assert (watched.read_bytes() if watched.is_file() else None) == before
    return err


# 21 ------------------------------------------------------------------------------------


def test_a_misspelt_scheme_names_the_scheme(capsys, write_study, tmp_path):
    err = refused(capsys, tmp_path / "x.db", "run", str(write_study()), "--storage", f"sqllite:///{tmp_path / 'x.db'}")
    assert "unknown database scheme 'sqllite'" in err and "sqlite:///" in err


def test_a_text_file_is_not_a_sqlite_database(capsys, write_study, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("my notes\n")
    err = refused(capsys, text, "run", str(write_study()), "--storage", f"sqlite:///{text}")
    assert "is not a SQLite database" in err
    err = refused(capsys, text, "studies", "--storage", f"sqlite:///{text}")
    assert "is not a SQLite database" in err


def _read_only_database(tmp_path: Path) -> Path:
    db = tmp_path / "done.db"
    optuna.create_study(storage=f"sqlite:///{db}", study_name="done")
    db.chmod(0o444)
    return db


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes read-only files")
def test_a_read_only_database_is_said_to_be_read_only(capsys, write_study, tmp_path):
    db = _read_only_database(tmp_path)
    err = refused(capsys, db, "run", str(write_study()), "--storage", f"sqlite:///{db}")
    assert "read-only" in err


def test_a_read_only_database_is_refused_before_sqlite_tries(capsys, write_study, tmp_path, monkeypatch):
    # The same case for a user who is not root, where the test itself may run as root.
    db = _read_only_database(tmp_path)
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: mode != os.W_OK and real(path, mode, **kw)
                        if Path(path) == db else real(path, mode, **kw))
    err = refused(capsys, db, "run", str(write_study()), "--storage", f"sqlite:///{db}")
    assert "read-only" in err and str(db) in err


def test_a_port_that_is_not_a_number(capsys, write_study, tmp_path):
    err = refused(capsys, tmp_path / "x.db", "run", str(write_study()), "--storage",
                  "postgresql://someone:hunter2@127.0.0.1:abc/db")
    assert "port must be a number" in err and "hunter2" not in err


# 22 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["postgresql//someone:hunter2@127.0.0.1/db", "postgresql:/someone:hunter2@h/db",
                                 "postgresql://someone:hunter2@127.0.0.1:port/db"])
def test_a_password_is_never_printed_even_when_the_url_does_not_parse(capsys, write_study, tmp_path, url):
    for argv in (["run", str(write_study())], ["studies"]):
        err = refused(capsys, tmp_path / "x.db", *argv, "--storage", url)
        assert "hunter2" not in err and "***" in err


# 23 ------------------------------------------------------------------------------------


def test_an_optuna_database_of_another_schema_is_refused_before_automl_writes(capsys, write_study, tmp_path):
    db = tmp_path / "old.db"
    optuna.create_study(storage=f"sqlite:///{db}", study_name="plain")
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'v2.4.0.a'")
    connection.close()
    err = refused(capsys, db, "run", str(write_study()), "--storage", f"sqlite:///{db}")
    assert "Optuna tables" in err and "v2.4.0.a" in err and "optuna storage upgrade" in err
    with sqlite3.connect(db) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    connection.close()
    assert not any(name.startswith("automl") for name in tables)


# 28 ------------------------------------------------------------------------------------


def test_a_sqlite_url_that_is_a_folder_says_so_and_names_no_server(capsys, write_study, tmp_path):
    folder = tmp_path / "dbs"
    folder.mkdir()
    for argv in (["run", str(write_study())], ["studies"]):
        err = refused(capsys, folder, *argv, "--storage", f"sqlite:///{folder}")
        assert "is a directory" in err and "server" not in err
    assert list(folder.iterdir()) == []


# Issue 25, items 5 and 6 ------------------------------------------------------------------


NO_TRICKS = "[tricks]\ninclude = []\n"
"""A study of one fixed recipe, which `compare` takes as it is."""


def _garbage_after_the_header(path: Path) -> Path:
    """A file that starts as SQLite's do and is garbage after the header (an overwritten or half-copied file)."""
    path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 40)
    return path


@pytest.mark.parametrize("command", [["run", "{study}"], ["compare", "{study}", "--max-seeds", "3"], ["studies"],
                                     ["db", "current"], ["db", "upgrade"], ["confirm", "tiny"], ["trials", "tiny"]])
def test_a_corrupt_sqlite_file_is_one_line_and_left_as_it_was(capsys, write_study, tmp_path, command):
    db = _garbage_after_the_header(tmp_path / "broken.db")
    argv = [part.format(study=write_study(NO_TRICKS)) for part in command]
    err = refused(capsys, db, *argv, "--storage", f"sqlite:///{db}")
    assert "is not a usable SQLite database (file is not a database)" in err and "move it away" in err


@pytest.mark.parametrize("url", ["postgresql://someone@127.0.0.1:1/db", "{server}/automl_no_such_database"])
@pytest.mark.parametrize("command", [["studies"], ["confirm", "tiny"], ["compare", "{study}", "--max-seeds", "3"],
                                     ["run", "{study}"]])
def test_a_database_that_cannot_be_opened_is_a_user_error_at_once_not_a_lost_one(capsys, write_study, tmp_path,
                                                                                  monkeypatch, url, command):
    if "{server}" in url:
        from tests.conftest import PG_SERVER
        url = url.format(server=PG_SERVER.rsplit("/", 1)[0])
    # A second of retries: were it taken for a lost connection, it would end as "lost the study's database", exit 1.
    monkeypatch.setenv("AUTOML_DB_RETRY_SECONDS", "1")
    argv = [part.format(study=write_study(NO_TRICKS)) for part in command]
    err = refused(capsys, tmp_path / "never.db", *argv, "--storage", url)
    assert "cannot open storage postgresql://" in err and "lost the study's database" not in err
