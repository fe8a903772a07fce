"""`automl report`: the trick table's counts and errors, a self-contained HTML file, PNGs alone, and bad input."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from automl.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = {"optimization_history", "budget", "param_importances", "intermediate_values"}
ENABLED = CategoricalDistribution([True, False])
OWNER = CategoricalDistribution(["cosine", "step_decay", "none"])
FRACTION = FloatDistribution(0.01, 0.3)


def _trial(state, value, warmup, owner, tricks=None, fraction=None, spent=1.0, rungs=None):
    params = {"warmup.enabled": warmup, "owner.lr_schedule": owner}
    distributions = {"warmup.enabled": ENABLED, "owner.lr_schedule": OWNER}
    if fraction is not None:
        params["warmup.fraction"], distributions["warmup.fraction"] = fraction, FRACTION
    attrs = {"spent_seconds": spent} if state != TrialState.RUNNING else {}
    if tricks is not None:
        attrs["tricks"] = tricks
    return create_trial(state=state, value=value, params=params, distributions=distributions, user_attrs=attrs,
                        intermediate_values=rungs or {})


# zero_gamma is pinned on: it shows only in the `tricks` attribute. Trial 6 has no such attribute
# (as a trial that failed while choosing, or a plain Optuna one): its parameters say what ran.
TRIALS = [
    _trial(TrialState.COMPLETE, 0.30, True, "cosine", ["cosine", "warmup", "zero_gamma"], 0.1, spent=2.0),
    _trial(TrialState.COMPLETE, 0.20, False, "cosine", ["cosine", "zero_gamma"], spent=2.5),
    _trial(TrialState.COMPLETE, 0.50, True, "none", ["warmup", "zero_gamma"], 0.2, spent=3.0),
    _trial(TrialState.COMPLETE, 0.10, True, "step_decay", ["step_decay", "warmup", "zero_gamma"], 0.05, spent=1.5),
    _trial(TrialState.PRUNED, None, False, "step_decay", ["step_decay", "zero_gamma"], spent=0.5, rungs={0: 0.9}),
    _trial(TrialState.FAIL, None, True, "cosine", ["cosine", "warmup", "zero_gamma"], 0.3, spent=0.25),
    _trial(TrialState.COMPLETE, 0.40, True, "step_decay", None, 0.15, spent=2.25),
    _trial(TrialState.RUNNING, None, True, "cosine", ["cosine", "warmup", "zero_gamma"], 0.1),
]
# Worked out by hand from the table above: finished trials only (the running one is left out);
# best and median over the completed ones.
#            on: trials complete best median      off: trials complete best median
EXPECTED_TRICKS = [
    ["cosine", "3", "2", "0.2000", "0.2500", "4", "3", "0.1000", "0.4000"],
    ["step_decay", "3", "2", "0.1000", "0.2500", "4", "3", "0.2000", "0.3000"],
    ["warmup", "5", "4", "0.1000", "0.3500", "2", "1", "0.2000", "0.2000"],
    ["zero_gamma", "6", "4", "0.1000", "0.2500", "1", "1", "0.4000", "0.4000"],
]


class Page(HTMLParser):
    """The parts of the report the tests read: body rows by table id, images, every src/href, the text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.links: list[str] = []
        self.images: list[str] = []
        self.text: list[str] = []
        self._table: list | None = None
        self._body = False
        self._row: list | None = None
        self._cell: list | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.links += [attrs[name] for name in ("src", "href") if name in attrs]
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "table":
            self._table = self.tables.setdefault(attrs["id"], [])
        elif tag == "tbody":
            self._body = True
        elif tag == "tr" and self._body:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._table.append(self._row)
            self._row = None
        elif tag == "tbody":
            self._body = False

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def rows(self, table: str) -> list[list[str]]:
        return self.tables[table]

    def summary(self) -> dict[str, str]:
        return dict(self.tables["summary"])

    @property
    def all_text(self) -> str:
        return " ".join(" ".join(self.text).split())


def _study(url: str, name: str, trials) -> None:
    study = optuna.create_study(storage=url, study_name=name)
    study.add_trials(trials)


def _report(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["report", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_trick_table_counts_best_and_median_with_each_trick_on_and_off(capsys, sqlite_url, tmp_path):
    _study(sqlite_url, "ablation", TRIALS)
    out = tmp_path / "report.html"
    code, stdout, err = _report(capsys, "ablation", "--storage", sqlite_url, "-o", str(out))
    assert code == 0, err
    assert stdout.split() == [str(out)]
    page = Page(out.read_text())
    assert page.rows("tricks") == EXPECTED_TRICKS
    summary = page.summary()
    assert summary["trials"] == "8"
    assert (summary["complete"], summary["pruned"], summary["failed"], summary["running"]) == ("5", "1", "1", "1")
    assert summary["device-seconds spent"] == "12.0"
    assert summary["best validation error"] == "0.1000 (trial 3)"
    assert summary["total budget (device-seconds)"] == "none"  # a plain Optuna database has no ledger
    assert "Trial 3: validation error 0.1000" in page.all_text
    assert "Tricks: step_decay, warmup, zero_gamma." in page.all_text
    assert ["warmup", "fraction", "0.0500"] in page.rows("best-params")
    assert ["owner", "lr_schedule", "step_decay"] in page.rows("best-params")


def test_the_html_file_is_self_contained_with_every_figure_inline(capsys, sqlite_url, tmp_path):
    _study(sqlite_url, "ablation", TRIALS)
    out = tmp_path / "report.html"
    assert _report(capsys, "ablation", "--storage", sqlite_url, "-o", str(out))[0] == 0
    page = Page(out.read_text())
    assert [link for link in page.links if not link.startswith("data:image/png;base64,")] == []
    assert "http://" not in out.read_text() and "https://" not in out.read_text()
    assert len(page.images) == len(FIGURES)
    for src in page.images:
        assert base64.b64decode(src.removeprefix("data:image/png;base64,"), validate=True).startswith(PNG_MAGIC)
    assert "Not drawn" not in page.all_text


def test_png_alone_writes_one_file_per_figure_and_no_html(capsys, sqlite_url, tmp_path, monkeypatch):
    _study(sqlite_url, "ablation", TRIALS)
    monkeypatch.chdir(tmp_path)
    code, stdout, err = _report(capsys, "ablation", "--storage", sqlite_url, "--png", "figures", "--json")
    assert code == 0, err
    written = json.loads(stdout)
    assert written["html"] is None and written["not_drawn"] == {}
    assert sorted(written["png"]) == sorted(f"figures/{name}.png" for name in FIGURES)
    assert {p.name for p in (tmp_path / "figures").iterdir()} == {f"{name}.png" for name in FIGURES}
    for path in (tmp_path / "figures").iterdir():
        assert path.read_bytes().startswith(PNG_MAGIC)
    assert not (tmp_path / "report.html").exists()


def test_names_from_the_database_are_escaped(capsys, sqlite_url, tmp_path):
    trial = _trial(TrialState.COMPLETE, 0.5, True, "none", ["warmup", "<img src=x onerror=alert(1)>"], 0.1)
    _study(sqlite_url, "<b>study</b>", [trial])
    out = tmp_path / "report.html"
    assert _report(capsys, "<b>study</b>", "--storage", sqlite_url, "-o", str(out))[0] == 0
    text = out.read_text()
    assert "<b>" not in text and "<img src=x" not in text
    assert "&lt;b&gt;study&lt;/b&gt;" in text
    assert [row[0] for row in Page(text).rows("tricks")] == ["<img src=x onerror=alert(1)>", "warmup"]


def test_a_study_without_completed_trials_still_reports(capsys, sqlite_url, tmp_path):
    _study(sqlite_url, "young", [TRIALS[4], TRIALS[5]])  # one pruned, one failed
    out, figures = tmp_path / "report.html", tmp_path / "figures"
    code, stdout, err = _report(capsys, "young", "--storage", sqlite_url, "-o", str(out), "--png", str(figures))
    assert code == 0, err
    page = Page(out.read_text())
    assert "No completed trial yet" in page.all_text
    assert "Not drawn: no completed trial yet." in page.all_text
    assert "Not drawn: needs at least two completed trials, the study has 0." in page.all_text
    assert "not drawn: param_importances" in err
    # The budget spent and the pruned trial's rung are there; on/off counts hold, with no errors to rank.
    assert {p.name for p in figures.iterdir()} == {"budget.png", "intermediate_values.png"}
    assert len(page.images) == 2
    assert page.rows("tricks") == [
        ["cosine", "1", "0", "–", "–", "1", "0", "–", "–"],
        ["step_decay", "1", "0", "–", "–", "1", "0", "–", "–"],
        ["warmup", "1", "0", "–", "–", "1", "0", "–", "–"],
        ["zero_gamma", "2", "0", "–", "–", "0", "0", "–", "–"],
    ]


def test_an_empty_study_reports_that_nothing_ran(capsys, sqlite_url, tmp_path):
    _study(sqlite_url, "empty", [])
    out = tmp_path / "report.html"
    assert _report(capsys, "empty", "--storage", sqlite_url, "-o", str(out))[0] == 0
    page = Page(out.read_text())
    assert page.summary()["trials"] == "0" and page.images == []
    assert "No finished trial has switched a trick on or off yet." in page.all_text
    assert page.all_text.count("Not drawn:") == len(FIGURES)


@pytest.mark.parametrize("argv, message", [
    (["nope"], "no study named 'nope'"),
    (["ablation", "-o", "missing/report.html"], "folder 'missing' does not exist"),
    (["ablation", "-o", "."], "is a folder"),
    (["ablation", "--png", "taken.txt"], "--png 'taken.txt' is a file"),
])
def test_bad_input_is_one_line_and_writes_nothing(capsys, sqlite_url, tmp_path, monkeypatch, argv, message):
    _study(sqlite_url, "ablation", TRIALS)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken.txt").write_text("")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, stdout, err = _report(capsys, *argv, "--storage", sqlite_url)
    assert code == 2 and stdout == ""
    assert err.startswith("automl: error: ") and message in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_report_of_a_study_run_by_automl(capsys, write_study, sqlite_url, tmp_path, one_thread):
    study_file = write_study('[tricks]\ninclude = ["warmup", "label_smoothing", "cosine"]\n', n_trials=3)
    assert main(["run", str(study_file), "--storage", sqlite_url, "--total-budget", "600s"]) == 0
    out = tmp_path / "report.html"
    code, _, err = _report(capsys, "tiny", "--storage", sqlite_url, "-o", str(out))
    assert code == 0, err
    trials = optuna.load_study(study_name="tiny", storage=sqlite_url).trials
    page = Page(out.read_text())
    # Each trial's own record of what it ran, counted here without automl's code; all three completed.
    ran = [t.user_attrs["tricks"] for t in trials]
    expected = [[name, str(sum(name in r for r in ran)), str(sum(name not in r for r in ran))]
                for name in ("cosine", "label_smoothing", "warmup")]
    assert [[row[0], row[1], row[5]] for row in page.rows("tricks")] == expected
    assert all(row[1] == row[2] and row[5] == row[6] for row in page.rows("tricks"))
    summary = page.summary()
    assert summary["trials"] == summary["complete"] == "3"
    assert summary["total budget (device-seconds)"] == "600.0"
    assert summary["device-seconds spent"] == f"{sum(t.user_attrs['spent_seconds'] for t in trials):.1f}"
    assert "dataset synthetic, model small_cnn" in page.all_text
    assert len(page.images) == len(FIGURES)


def test_a_database_written_by_an_older_automl_reports_without_an_upgrade(capsys, sqlite_url, tmp_path):
    import sqlalchemy

    from automl.storage.schema import upgrade

    _study(sqlite_url, "ablation", TRIALS)
    upgrade(sqlite_url, "v2_trial_cost")  # the ledger before it counted trials (v3)
    with sqlalchemy.create_engine(sqlite_url).begin() as connection:
        connection.execute(sqlalchemy.text(
            "INSERT INTO automl_budget_ledger (study_name, total_seconds, reserved_seconds, spent_seconds, updated_at) "
            "VALUES ('ablation', 45, 0, 12, '2026-11-21 00:00:00')"))
    out = tmp_path / "report.html"
    code, _, err = _report(capsys, "ablation", "--storage", sqlite_url, "-o", str(out))
    assert code == 0, err
    assert Page(out.read_text()).summary()["total budget (device-seconds)"] == "45.0"


@pytest.mark.postgres
def test_report_reads_a_postgresql_study_and_its_ledger(capsys, postgres_url, tmp_path):
    from automl.storage.ledger import Ledger
    from automl.storage.schema import ensure_schema
    from automl.storage.urls import make_engine

    _study(postgres_url, "ablation", TRIALS)
    ensure_schema(postgres_url)
    engine = make_engine(postgres_url)
    Ledger(engine, "ablation").open(90.0)
    engine.dispose()
    out = tmp_path / "report.html"
    code, _, err = _report(capsys, "ablation", "--storage", postgres_url, "-o", str(out))
    assert code == 0, err
    page = Page(out.read_text())
    assert page.rows("tricks") == EXPECTED_TRICKS
    assert page.summary()["total budget (device-seconds)"] == "90.0"


def test_importances_from_few_trials_come_with_a_caution_and_no_warning_on_the_terminal():
    import warnings

    from automl.report.figures import IMPORTANCES_TRUSTED, draw_figures

    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1) + (t.suggest_int("k", 0, 3) if t.number == 1 else 0),
                   n_trials=4)  # k in one trial only: Optuna warns that its regimes have fewer than 2 trials
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figures = {f.name: f for f in draw_figures(study, study.trials, None)}
    assert not [w for w in caught if issubclass(w.category, UserWarning)], [str(w.message) for w in caught]
    importances = figures["param_importances"]
    assert importances.png and "Caution: from 4 completed trials only" in importances.caption
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=IMPORTANCES_TRUSTED)
    assert "Caution" not in {f.name: f for f in draw_figures(study, study.trials, None)}["param_importances"].caption
