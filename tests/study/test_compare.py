"""`automl compare`: the arms are the grid the study leaves open, seeds are paired across arms, a stopped
comparison trains only its missing cells, bad input is refused before anything is written, and the JSON shape."""

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

from automl.cli import main
from automl.host import get_host
from automl.space import select_tricks
from automl import records
from automl.report.tables import steps_text
from automl.study.analysis import steps_warning
from automl.study.arms import study_arms
from automl.study.config import load_study_file
from automl.study.runner import Overrides, make_sampler, prepare
from tests.study.two_arms import PROBE, TWO_ARMS, complete_by_cell

def _cells(sqlite_url: str, budget: str = "6steps") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=f"tiny-compare-{budget}", storage=sqlite_url).get_trials()


def test_the_arms_are_the_grid_the_brute_force_sampler_walks():
    prepared = prepare(load_study_file("studies/snapshot-vs-single.toml"), get_host(), Overrides())
    arms = study_arms(prepared)
    assert [a.name for a in arms] == ["independent_ensemble", "snapshot_ensemble", "cosine", "exp_decay",
                                      "step_decay", "plain"]
    assert [a.tricks for a in arms] == [("independent_ensemble",), ("snapshot_ensemble",), ("cosine",),
                                        ("exp_decay",), ("step_decay",), ()]
    walked = optuna.create_study(sampler=make_sampler("bruteforce", 0))

    def objective(trial):
        select_tricks(trial, prepared.tricks, prepared.settings)
        prepared.study_file.config.train.resolve(trial)
        return 0.0

    walked.optimize(objective, n_trials=50)  # the sampler stops the study once its grid is exhausted
    assert sorted(map(repr, (t.params for t in walked.trials))) == sorted(map(repr, (a.params for a in arms)))


def test_seed_s_gives_every_arm_the_same_weights_and_first_batch(compare, sqlite_url):
    code, out, err = compare("--seeds", "2")
    assert code == 0, err
    # Two seeds cannot tell two arms apart, and the text says so rather than "no difference".
    assert "cosine+probe: not distinguishable from probe at 6steps" in out
    assert "no p after Holm can fall below 0.5" in out and "--seeds 6 or more can" in out
    cells = _cells(sqlite_url)
    assert len(cells) == 4 and all(t.state == TrialState.COMPLETE for t in cells)
    by_seed: dict[int, list] = {}
    for trial in cells:
        by_seed.setdefault(trial.user_attrs[records.ATTR_COMPARE_SEED], []).append(trial)
    for seed, trials in by_seed.items():
        assert sorted(t.user_attrs[records.ATTR_COMPARE_ARM] for t in trials) == ["cosine+probe", "probe"]
        assert len({t.number for t in trials}) == 2  # two trial numbers, one training seed
        assert len({t.user_attrs["seed"] for t in trials}) == 1
        assert len({t.user_attrs["probe.weights"] for t in trials}) == 1
        assert len({t.user_attrs["probe.first_batch"] for t in trials}) == 1
    # Different seeds do start elsewhere: the digests are not blind.
    assert by_seed[0][0].user_attrs["probe.weights"] != by_seed[1][0].user_attrs["probe.weights"]
    assert by_seed[0][0].user_attrs["probe.first_batch"] != by_seed[1][0].user_attrs["probe.first_batch"]


def test_more_seeds_later_train_only_the_new_cells(compare, sqlite_url):
    assert compare("--seeds", "2")[0] == 0
    first = {t.number: t.user_attrs["probe.weights"] for t in _cells(sqlite_url)}
    assert compare("--seeds", "3")[0] == 0
    cells = _cells(sqlite_url)
    assert len(cells) == 6  # 2 arms x 1 new seed
    assert {t.number: t.user_attrs["probe.weights"] for t in cells if t.number in first} == first
    assert sorted((t.user_attrs[records.ATTR_COMPARE_ARM], t.user_attrs[records.ATTR_COMPARE_SEED])
                  for t in cells if t.number not in first) == [("cosine+probe", 2), ("probe", 2)]
    assert compare("--seeds", "3")[0] == 0
    assert len(_cells(sqlite_url)) == 6  # nothing missing: nothing trained


def test_a_stopped_comparison_resumes_with_the_missing_cells_and_the_same_seeds(compare, sqlite_url, tmp_path,
                                                                                monkeypatch):
    stop = tmp_path / "stop"
    stop.write_text("3")  # SIGINT as the third cell starts
    monkeypatch.setenv("PROBE_STOP_FILE", str(stop))
    code, _, err = compare("--seeds", "3")
    assert code == 130, err
    stopped = _cells(sqlite_url)
    assert [t.state for t in stopped].count(TrialState.COMPLETE) == 2
    assert compare("--seeds", "3")[0] == 0
    cells = _cells(sqlite_url)
    complete = [t for t in cells if t.state == TrialState.COMPLETE]
    # Six cells, each trained once: the two before the stop are kept, the interrupted one is retried.
    assert len(complete) == 6 and len(cells) == 7
    by_cell = {}
    for trial in complete:
        first = next(t for t in cells if t.number == records.original_number(trial))
        by_cell[(first.user_attrs[records.ATTR_COMPARE_ARM], first.user_attrs[records.ATTR_COMPARE_SEED])] = trial
    assert len(by_cell) == 6
    for seed in range(3):
        assert by_cell[("probe", seed)].user_attrs["probe.weights"] == \
            by_cell[("cosine+probe", seed)].user_attrs["probe.weights"]


def test_the_json_has_every_arm_at_every_budget_and_the_tests(compare):
    code, out, err = compare("--seeds", "2", "--budgets", "4steps,6steps", "--reference", "probe", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["reference"] == "probe" and isinstance(result["crossings"], list)
    assert [b["budget"] for b in result["budgets"]] == ["4steps", "6steps"]
    for entry in result["budgets"]:
        rows = {r["arm"]: r for r in entry["arms"]}
        assert set(rows) == {"probe", "cosine+probe"}
        for row in rows.values():
            assert {"arm", "tricks", "n", "mean", "ci", "single_model_mean", "inference_cost", "steps",
                    "vs_reference"} <= set(row)
            assert row["n"] == 2 and row["ci"][0] <= row["mean"] <= row["ci"][1]
            assert row["steps"] == int(entry["budget"].removesuffix("steps")) and row["inference_cost"] == 1
            assert row["steps_range"] == [row["steps"], row["steps"]]  # a budget in steps: every seed alike
            assert row["mean"] == pytest.approx(sum(row["values"]) / 2)
        assert rows["probe"]["vs_reference"] is None
        test = rows["cosine+probe"]["vs_reference"]
        assert set(test) == {"diff", "ci", "p", "p_holm", "p_better"}
        diffs = [a - b for a, b in zip(rows["cosine+probe"]["values"], rows["probe"]["values"])]
        assert test["diff"] == pytest.approx(sum(diffs) / 2)
        assert test["p_holm"] == test["p"]  # one arm against the reference: Holm changes nothing
    assert result["steps_warning"] is None and "numbers of steps" not in err
    # Two fixed seeds cannot pass Holm: said before anything is trained, with the seeds that could.
    assert "automl: warning: --seeds 2 with 1 arm(s) tested cannot tell any arm better or worse" in err
    assert "give --seeds 6 or more, or leave --seeds out for the sequential design" in err


def _result_with_steps(budget: str, *spans: tuple[int, int]) -> dict:
    return {"budgets": [{"budget": budget, "arms": [
        {"arm": f"arm{i}", "steps": (low + high) / 2, "steps_range": [low, high]} for i, (low, high) in enumerate(spans)]}]}


def test_seeds_whose_steps_spread_more_than_a_tenth_are_warned_about_naming_the_fix():
    assert steps_warning(_result_with_steps("3s", (100, 109), (50, 54))) is None  # within 10% of the mean
    warning = steps_warning(_result_with_steps("3s", (100, 109), (3, 32), (40, 60)))
    assert warning.startswith("the seeds of 2 arm-budget cell(s) trained numbers of steps more than 10% apart")
    assert "the widest: arm arm1 at 3s, 3 to 32 steps (166% of the mean)" in warning
    assert "--budgets 300steps" in warning and "quiet machine" in warning


def test_the_table_shows_the_steps_range_where_seeds_differ():
    row = {"arm": "a", "steps": 17.5, "steps_range": [3, 32]}
    assert steps_text(row) == "17.5 (3-32)" and steps_text({**row, "steps": 6, "steps_range": [6, 6]}) == "6"


@pytest.mark.parametrize(("args", "message"), [
    (["--seeds", "1"], "--seeds 1: one seed gives no interval"),
    (["--budgets", "6steps,fast"], "--budgets: budget 'fast' is not a duration"),
    (["--reference", "cosin"], "--reference 'cosin' is not an arm of this comparison; arms: cosine+probe, probe"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(compare, sqlite_url, args, message):
    code, out, err = compare(*args)
    assert code == 2 and err.startswith(f"automl: error: {message}") and err.count("\n") == 1, err
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()


def test_a_range_left_open_is_named(write_study, sqlite_url, capsys):
    study = write_study(TWO_ARMS.replace("final = 0.0", "final = { low = 0.0, high = 0.1 }")
                        .replace('"cosine", "probe"', '"cosine"').replace("[tricks.probe]\nenabled = true\n", ""))
    assert main(["compare", str(study), "--storage", sqlite_url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("automl: error: cosine.final is left as a range [0, 0.1]") and "[tricks.cosine]" in err
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()


def test_an_arm_whose_recipe_changed_is_refused(compare, write_study, sqlite_url, capsys):
    assert compare("--seeds", "2")[0] == 0
    write_study(TWO_ARMS.replace("final = 0.0", "final = 0.05"))
    code, _, err = compare("--seeds", "3")
    assert code == 2 and "arm 'cosine+probe' was trained at 6steps with cosine.final = 0.0" in err, err
    assert len(_cells(sqlite_url)) == 4  # nothing queued
    study = optuna.load_study(study_name="tiny-compare-6steps", storage=sqlite_url)
    design = study.user_attrs[records.STUDY_COMPARE]
    assert design["study"] == "tiny" and design["budget"] == "6steps" and design["seeds"] == 2


NAMED = """
[tricks]
include = ["cosine", "step_decay"]

[tricks.step_decay]
gamma = 0.1

[compare]
reference = "constant"

[compare.arms.constant]

[compare.arms.cosine]
tricks = ["cosine"]
pins = { "cosine.final" = 0.0 }

[compare.arms.cosine_floor]
tricks = ["cosine"]
pins = { "cosine.final" = 0.05 }
"""


def test_a_compare_table_names_the_arms(write_study):
    prepared = prepare(load_study_file(write_study(NAMED)), get_host(), Overrides())
    arms = study_arms(prepared)
    assert [(a.name, a.tricks) for a in arms] == [("constant", ()), ("cosine", ("cosine",)),
                                                  ("cosine_floor", ("cosine",))]
    assert arms[0].params == {"owner.lr_schedule": "none"}
    assert arms[1].params == {"owner.lr_schedule": "cosine", "cosine.final": 0.0}
    assert arms[2].params == {"owner.lr_schedule": "cosine", "cosine.final": 0.05}


@pytest.mark.parametrize(("change", "message"), [
    (('pins = { "cosine.final" = 0.0 }', ""), "cosine.final is left as a range [0, 0.1]"),
    (('"cosine.final" = 0.05', '"cosine.final" = 0.5'), "pins cosine.final = 0.5 outside its range [0, 0.1]"),
    (('tricks = ["cosine"]\npins = { "cosine.final" = 0.0 }', 'tricks = ["cosine", "step_decay"]\npins = '
      '{ "cosine.final" = 0.0 }'), "[compare.arms.cosine] tricks: step_decay cannot be on together"),
    (('tricks = ["cosine"]\npins = { "cosine.final" = 0.0 }', 'tricks = ["cosin"]'),
     "[compare.arms.cosine] tricks: 'cosin' is not among the study's tricks"),
    (('[compare.arms.constant]', '[compare.arms.constant]\npins = { "cosine.final" = 0.0 }'),
     "[compare.arms.constant] pins 'cosine.final', which its recipe never asks for"),
    (('reference = "constant"', 'reference = "const"'), "[compare] reference 'const' is not an arm"),
])
def test_a_bad_compare_table_is_refused_naming_the_arm(write_study, sqlite_url, capsys, change, message):
    study = write_study(NAMED.replace(*change))
    assert main(["compare", str(study), "--storage", sqlite_url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("automl: error: ") and message in err and err.count("\n") == 1, err
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()


def test_workers_on_postgresql_train_each_cell_once_and_paired(write_study, postgres_url, tmp_path, capsys):
    plugin = tmp_path / "probe.py"
    plugin.write_text(PROBE)
    study = write_study(TWO_ARMS)
    argv = ["compare", str(study), "--storage", postgres_url, "--plugin", str(plugin), "--seeds", "3",
            "--workers", "2", "--device", "cpu", "--json"]
    assert main(argv) == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    assert [r["n"] for r in result["budgets"][0]["arms"]] == [3, 3]
    cells = _cells(postgres_url)
    assert len(cells) == 6 and all(t.state == TrialState.COMPLETE for t in cells)
    weights = {(t.user_attrs[records.ATTR_COMPARE_ARM], t.user_attrs[records.ATTR_COMPARE_SEED]):
               t.user_attrs["probe.weights"] for t in cells}
    assert all(weights[("probe", s)] == weights[("cosine+probe", s)] for s in range(3))
    assert main(argv) == 0  # resumed: nothing missing, nothing trained
    assert len(_cells(postgres_url)) == 6


def test_workers_on_sqlite_are_refused(compare):
    code, _, err = compare("--workers", "2")
    assert code == 2 and "--workers 2 needs a server database" in err


BREAKS = '''
from automl import Trick, hookimpl


class Breaks(Trick):
    name = "breaks"

    def on_step_end(self, run, loss):
        raise RuntimeError("boom")


@hookimpl
def automl_register_tricks():
    return [Breaks]
'''


def test_cells_without_a_result_are_said_and_not_tested(write_study, sqlite_url, tmp_path, capsys):
    plugin = tmp_path / "breaks.py"
    plugin.write_text(BREAKS)
    study = write_study('[tricks]\ninclude = ["breaks"]\n')
    assert main(["compare", str(study), "--storage", sqlite_url, "--plugin", str(plugin), "--seeds", "2"]) == 0
    out, err = capsys.readouterr()
    assert "automl: warning: 2 cell(s) at 6steps have no result yet" in err
    assert "breaks: not tested (fewer than 2 paired seeds) at 6steps" in out
    assert [t.state for t in _cells(sqlite_url)].count(TrialState.FAIL) == 2


@pytest.mark.slow
def test_a_comparison_killed_mid_cell_resumes_and_trains_each_missing_cell_once(write_study, sqlite_url, tmp_path,
                                                                                child_env, capsys):
    plugin = tmp_path / "probe.py"
    plugin.write_text(PROBE)
    study = write_study(TWO_ARMS)
    study.write_text(study.read_text().replace("seed = 0", "seed = 0\nheartbeat_interval = 1\ngrace_period = 2"))
    argv = ["compare", str(study), "--storage", sqlite_url, "--plugin", str(plugin), "--seeds", "3"]
    kill = tmp_path / "kill"
    kill.write_text("3")  # the third cell kills its own worker with SIGKILL at its third step
    killed_run = subprocess.run([sys.executable, "-m", "automl", *argv], cwd=tmp_path,
                                env={**child_env(), "PROBE_KILL_FILE": str(kill)}, capture_output=True, text=True)
    assert killed_run.returncode == -signal.SIGKILL, killed_run.stderr
    before = {t.number: t for t in _cells(sqlite_url)}
    done_before = {n: t.value for n, t in before.items() if t.state == TrialState.COMPLETE}
    killed = [n for n, t in before.items() if t.state == TrialState.RUNNING]
    assert len(killed) == 1 and len(done_before) == 2
    time.sleep(2.5)  # the grace period passes: the killed cell is stale, and the next run recovers it

    assert main(argv) == 0, capsys.readouterr().err
    cells = _cells(sqlite_url)
    assert {t.number: t.value for t in cells if t.number in done_before} == done_before  # nothing retrained
    by_cell = complete_by_cell(cells)
    assert sorted(by_cell) == [(arm, s) for arm in ("cosine+probe", "probe") for s in range(3)]
    assert all(len(trials) == 1 for trials in by_cell.values())  # each cell trained once
    (retry,) = [t for t in cells if t.system_attrs.get(records.SYS_RETRY_OF) == killed[0]]
    assert retry.state == TrialState.COMPLETE and retry.params == before[killed[0]].params
    for seed in range(3):  # the retried cell kept its seed: still paired with the other arm
        assert by_cell[("probe", seed)][0].user_attrs["probe.weights"] == \
            by_cell[("cosine+probe", seed)][0].user_attrs["probe.weights"]
