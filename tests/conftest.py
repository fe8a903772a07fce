"""Shared fixtures: tiny study files, storage URLs, and a fresh PostgreSQL database when one is reachable."""

from __future__ import annotations

import os
import textwrap
import uuid
from pathlib import Path

import pytest

MACHINE_LOAD_WARNING = "automl: warning: the machine's load"
"""How :func:`automl.threads.overload_warning` starts: it depends on how busy the machine is, not on the behaviour a
test checks, so :func:`automl_lines` leaves it out."""


def automl_lines(stderr: str) -> list[str]:
    """automl's error and warning lines in ``stderr``: its notes and the machine-load warning aside."""
    return [line for line in stderr.splitlines() if line.startswith("automl:")
            and not line.startswith(("automl: note:", MACHINE_LOAD_WARNING))]


PG_SERVER = os.environ.get("AUTOML_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432/postgres")

TINY_STUDY = """
[study]
name = "{name}"
sampler = "random"
pruner = "none"
fidelity = "progress"
intensify = 0
trial_budget = "{trial_budget}"
n_trials = {n_trials}
seed = 0
artifacts = "{artifacts}"

[task]
dataset = "synthetic"
model = "small_cnn"
model_args = {{ width = 0.25 }}
dataset_args = {{ shape = [1, 8, 8], n_train = 96, n_val = 48, n_test = 48, num_classes = 4 }}

[train]
batch_size = 32
lr = 0.05
rungs = 2
eval_batch_size = 256
"""


@pytest.fixture
def write_study(tmp_path: Path):
    """Write a tiny synthetic study (about a second per trial) plus extra TOML; returns its path."""

    def write(extra: str = "", *, name: str = "tiny", trial_budget: str = "6steps", n_trials: int = 3,
              filename: str = "study.toml") -> Path:
        path = tmp_path / filename
        text = TINY_STUDY.format(name=name, trial_budget=trial_budget, n_trials=n_trials,
                                 artifacts=(tmp_path / "artifacts").as_posix())
        path.write_text(text + textwrap.dedent(extra))
        return path

    return write


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies.db'}"


@pytest.fixture(autouse=True)
def _no_storage_from_env(monkeypatch):
    # A developer's AUTOML_STORAGE must not leak into the tests' databases.
    monkeypatch.delenv("AUTOML_STORAGE", raising=False)
    monkeypatch.delenv("AUTOML_PLUGINS", raising=False)
    monkeypatch.delenv("AUTOML_DISABLE_PLUGINS", raising=False)


@pytest.fixture
def postgres_url():
    """A fresh, empty PostgreSQL database for one test, dropped afterwards; skips when no server answers."""
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[dev]')")
    try:
        admin = psycopg.connect(PG_SERVER, autocommit=True,
                                connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server at {PG_SERVER} ({str(exc).splitlines()[0]}); "
                    "set AUTOML_TEST_POSTGRES to one")
    name = f"automl_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_SERVER.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def pg_server(postgres_url) -> str:
    """The PostgreSQL server's admin URL, beside a fresh database of its own (``postgres_url``)."""
    return PG_SERVER


@pytest.fixture(scope="module")
def one_thread():
    """Train on one thread for the whole module (see automl.testing.one_thread)."""
    from automl.testing import one_thread as single

    with single():
        yield


REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout under test."""
    return REPO_ROOT


@pytest.fixture
def child_env():
    """The environment of an `automl` subprocess: this checkout first on the path, as the tests import it,
    then any ``paths`` given."""

    def env(*paths: Path) -> dict[str, str]:
        extra = [str(REPO_ROOT), *map(str, paths), os.environ.get("PYTHONPATH", "")]
        return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in extra if p))

    return env


@pytest.fixture
def run_cli(capsys):
    """`automl` in-process: ``run_cli(*argv, expect=0)`` returns (code, stdout, stderr), and fails the test
    unless the command exited with ``expect``, so that no call can ignore its exit code."""
    from automl.cli import main

    def run(*argv: object, expect: int = 0) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        assert code == expect, f"automl {' '.join(map(str, argv))} exited {code}, expected {expect}: {err}"
        return code, out, err

    return run
