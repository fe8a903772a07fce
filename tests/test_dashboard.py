"""optuna-dashboard opens an automl study database as it is and shows its trials, over HTTP on loopback."""

from __future__ import annotations

import json
import threading
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

import optuna
import pytest

from automl.cli import main

optuna_dashboard = pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is not installed "
                                                                  "(pip install -e '.[dev]')")


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:  # no access log in the test output
        pass


def test_the_dashboard_lists_the_study_and_its_trials(write_study, sqlite_url):
    assert main(["run", str(write_study(n_trials=3)), "--storage", sqlite_url]) == 0
    trials = optuna.load_study(study_name="tiny", storage=sqlite_url).trials
    server = make_server("127.0.0.1", 0, optuna_dashboard.wsgi(sqlite_url), handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"

    def get(path: str) -> dict:
        with urllib.request.urlopen(base + path, timeout=30) as response:
            assert response.status == 200
            return json.loads(response.read())

    try:
        (summary,) = get("/api/studies")["study_summaries"]
        assert summary["study_name"] == "tiny"
        detail = get(f"/api/studies/{summary['study_id']}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    shown = {t["number"]: t for t in detail["trials"]}
    assert sorted(shown) == [t.number for t in trials]
    for trial in trials:
        row = shown[trial.number]
        assert row["state"].upper() == trial.state.name
        assert {p["name"]: p["param_internal_value"] for p in row["params"]} == {
            name: trial.distributions[name].to_internal_repr(value) for name, value in trial.params.items()}
        attrs = {a["key"]: a["value"] for a in row["user_attrs"]}  # lists as JSON text, numbers as str()
        assert json.loads(attrs["tricks"]) == trial.user_attrs["tricks"]
        assert float(attrs["spent_seconds"]) == pytest.approx(trial.user_attrs["spent_seconds"])
    assert [t["number"] for t in detail["best_trials"]] == [min(
        (t for t in trials if t.value is not None), key=lambda t: (t.value, t.number)).number]
