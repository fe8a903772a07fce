"""The Python API (issue 27, item 1): the commands' results from the commands' own functions, as tables; the same
checks and errors as exceptions; nothing printed unless asked."""

from __future__ import annotations

import json
import sys

import pytest

import automl
from tests.conftest import automl_lines
from tests.study.two_arms import PROBE, TWO_ARMS

SEARCHED = 'include = ["cosine", "label_smoothing"]\n'


@pytest.fixture
def searched(write_study):
    """A tiny study searching two tricks and the LR, four trials."""
    path = write_study(n_trials=4)
    text = path.read_text().replace("lr = 0.05\n", "lr = { low = 0.01, high = 0.5, log = true }\n")
    path.write_text(text + "\n[tricks]\n" + SEARCHED)
    return path


def test_run_returns_the_study_as_the_commands_show_it_and_prints_nothing(searched, sqlite_url, capsys, run_cli):
    result = automl.run(searched, storage=sqlite_url)
    assert capsys.readouterr() == ("", "")
    table = result.trials
    assert table.shape[0] == 4 and list(table["number"]) == [0, 1, 2, 3]
    for _, row in table.iterrows():  # tricks as one string, one boolean column per trick, params under it
        assert row["tricks"] == ", ".join(t for t in ("cosine", "label_smoothing") if row[t])
        assert row["steps"] == 6 and row["value_low"] <= row["value"] <= row["value_high"]
    assert {"train.lr", "label_smoothing.epsilon", "device_seconds", "inference_passes", "seed"} <= set(table)
    _, out, _ = run_cli("best", "tiny", "--storage", sqlite_url, "--json")
    best, shown = result.best(), json.loads(out)
    assert (best.number, best.tricks, best.value, best.interval) == (shown["number"], shown["tricks"],
                                                                      shown["mean"], shown["mean_ci"])
    _, out, _ = run_cli("best", "tiny", "--storage", sqlite_url, "--json", "--top", "3")
    assert [c.number for c in automl.load("tiny", sqlite_url).best(k=3)] == [r["number"] for r in json.loads(out)]


def test_the_same_errors_as_the_command_as_exceptions(searched, sqlite_url, run_cli):
    _, _, err = run_cli("run", str(searched), "--storage", sqlite_url, "--trial-budget", "6 parsecs", expect=2)
    with pytest.raises(automl.UserError) as raised:
        automl.run(searched, storage=sqlite_url, trial_budget="6 parsecs")
    assert f"automl: error: {raised.value}" == automl_lines(err)[0]
    with pytest.raises(automl.UserError, match="argument --n-trials: must be at least 1"):
        automl.run(searched, storage=sqlite_url, n_trials=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'n_trial'"):
        automl.run(searched, n_trial=3)
    with pytest.raises(automl.UserError, match="no database at .*studies.db"):
        automl.load("other", sqlite_url)


def test_progress_shows_the_commands_bars_and_lines(searched, sqlite_url, capsys):
    automl.run(searched, storage=sqlite_url, n_trials=1, progress=True)
    err = capsys.readouterr().err
    assert "study tiny in" in err and "trial   0  complete" in err


def test_a_study_given_as_a_dict_is_written_to_its_file_and_run(searched, sqlite_url, tmp_path, monkeypatch):
    import tomllib

    monkeypatch.chdir(tmp_path)
    tables = tomllib.loads(searched.read_text())
    tables["study"]["name"] = "from_dict"
    result = automl.run(tables, storage=sqlite_url, n_trials=2)
    assert result.name == "from_dict" and len(result.trials) == 2
    assert tomllib.loads((tmp_path / "from_dict.toml").read_text()) == tables
    tables["study"]["n_trials"] = 1
    with pytest.raises(automl.UserError, match="from_dict.toml exists with other contents"):
        automl.run(tables, storage=sqlite_url)


def test_export_and_report_from_the_result(searched, sqlite_url, tmp_path):
    result = automl.run(searched, storage=sqlite_url)
    recipe = result.export(path=tmp_path / "best.toml")
    assert recipe.tricks == result.best().tricks and recipe.source["trial"] == result.best().number
    written = result.report(tmp_path / "report.html", png=tmp_path / "figures")
    assert tmp_path / "report.html" in written and any(p.suffix == ".png" for p in written)


def test_confirmed_best_is_confirms_ranking(searched, sqlite_url):
    result = automl.run(searched, storage=sqlite_url)
    with pytest.raises(automl.UserError, match="no confirmed ranking; run automl.confirm"):
        result.best(confirmed=True)
    ranking = automl.confirm(str(searched), top=2, seeds=2, storage=sqlite_url)
    confirmed = automl.load("tiny", sqlite_url).best(k=2)
    assert [c.number for c in confirmed] == [row["trial"] for row in ranking["ranking"]]
    assert confirmed[0].value == ranking["ranking"][0]["mean"] and confirmed[0].seeds == 2
    assert confirmed[0].params == next(c for c in result.best(k=4, confirmed=False)
                                       if c.number == confirmed[0].number).params
    assert result.best(confirmed=False).record["n_seeds"] >= 1


def test_several_objectives_have_a_front_not_a_best(searched, sqlite_url, run_cli):
    searched.write_text(searched.read_text().replace("seed = 0", 'seed = 0\nobjectives = ["error", "passes"]'))
    result = automl.run(searched, storage=sqlite_url)
    with pytest.raises(automl.UserError, match="no one best; use .pareto()"):
        result.best()
    _, out, _ = run_cli("best", "tiny", "--storage", sqlite_url, "--json")
    assert [(c.number, c.objectives) for c in result.pareto()] == [(r["number"], r["objectives"])
                                                                   for r in json.loads(out)]


def test_compare_gives_the_commands_table_verdicts_and_crossings(write_study, sqlite_url, tmp_path, capsys):
    plugin = tmp_path / "probe.py"
    plugin.write_text(PROBE)
    study = write_study(TWO_ARMS)
    comparison = automl.compare(study, seeds=2, budgets=["4steps", "8steps"], storage=sqlite_url,
                                plugins=(str(plugin),))
    assert capsys.readouterr().out == ""
    table = comparison.table
    assert sorted(zip(table["arm"], table["budget"])) == sorted(
        (arm, budget) for arm in set(table["arm"]) for budget in ("4steps", "8steps"))
    assert set(table["seeds"]) == {2} and {"mean", "ci_low", "ci_high", "p", "p_holm", "decision"} <= set(table)
    assert automl.cli.main(["compare", str(study), "--seeds", "2", "--budgets", "4steps,8steps", "--storage",
                            sqlite_url, "--plugin", str(plugin)]) == 0
    out = capsys.readouterr().out
    assert all(line in out for line in comparison.verdicts)
    assert comparison.crossings == comparison.result["crossings"]


def test_without_pandas_the_tables_are_lists_of_dicts_and_say_how_to_get_frames(searched, sqlite_url,
                                                                                monkeypatch):
    result = automl.run(searched, storage=sqlite_url, n_trials=2)
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if it were not installed: importing it fails
    with pytest.warns(UserWarning, match="pandas is not installed.*pip install"):
        rows = result.trials
    assert isinstance(rows, list) and [r["number"] for r in rows] == [0, 1]


def test_the_api_loads_on_first_use_and_automl_run_is_it(child_env):
    import subprocess

    probe = ("import sys, automl\nlight = not {'optuna', 'sqlalchemy', 'rich'} & set(sys.modules)\n"
             "from automl.run import Run\nfrom automl import Trick\n"
             "print(light, callable(automl.run) and automl.run.__module__, Run.__module__, 'optuna' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=child_env(), check=True,
                          timeout=120)
    assert done.stdout.split() == ["True", "automl.api.studies", "automl.run", "True"]


def test_a_trial_with_a_plugin_trick_exports_to_a_recipe_with_that_plugin(write_study, sqlite_url, tmp_path):
    plugin = tmp_path / "probe.py"
    plugin.write_text(PROBE)
    study = write_study(TWO_ARMS, n_trials=1)
    result = automl.run(study, storage=sqlite_url, plugins=(str(plugin),))
    recipe = result.export(path=tmp_path / "best.toml", plugins=(str(plugin),))
    assert "probe" in recipe.tricks
