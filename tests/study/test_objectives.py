"""Error and inference cost as objectives (issue 26): `[study] objectives` make an Optuna multi-objective study,
the cost is measured before training, a configuration over `[study] constraints` is not trained, rungs are
pruned on non-dominated fronts, and `automl best` lists the Pareto front, as Optuna's `best_trials` does."""

from __future__ import annotations

import json

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from automl.storage.models import TrialCostModel
from automl.study.costs import ATTR_COST_AFTER, ATTR_COST_BEFORE, OVER_CONSTRAINT
from automl.study.pareto import ATTR_RUNG_OBJECTIVES

# Snapshot ensembles of 1 to 4 members against cosine: the passes one prediction costs differ by configuration.
def cost_rows(url: str) -> dict[int, float]:
    """Each trial's charge in the ledger."""
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(sa.select(TrialCostModel.trial_number, TrialCostModel.spent_seconds)).all()
    engine.dispose()
    return dict(rows)


ENSEMBLES = """
[tricks]
include = ["snapshot_ensemble", "cosine"]
[tricks.snapshot_ensemble]
cycles = { low = 1, high = 4 }
"""



@pytest.mark.slow
def test_a_study_of_error_and_flops_searches_a_front_that_best_and_optuna_agree_on(write_study, sqlite_url,
                                                                                     run_cli):
    study_file = write_study(ENSEMBLES, n_trials=10, trial_budget="12steps")
    study_file.write_text(study_file.read_text().replace("intensify = 0\n",
                                                         'intensify = 0\nobjectives = ["error", "flops"]\n'))
    run_cli("run", study_file, "--storage", sqlite_url)
    study = optuna.load_study(study_name="tiny", storage=sqlite_url)
    assert len(study.directions) == 2
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert complete and all(len(t.values) == 2 for t in complete)
    for trial in complete:  # measured before training and once trained, both kept
        before, after = trial.user_attrs[ATTR_COST_BEFORE], trial.user_attrs[ATTR_COST_AFTER]
        assert trial.values[1] == pytest.approx(after["flops"])
        assert before["passes"] == after["passes"] >= 1
        assert before["flops"] == pytest.approx(after["flops"], rel=0.05)  # the estimate holds for FLOPs
        assert sorted(int(r) for r in trial.user_attrs[ATTR_RUNG_OBJECTIVES]) == [0, 1]
    _, out, _ = run_cli("best", "tiny", "--storage", sqlite_url, "--json")
    front = json.loads(out)
    assert isinstance(front, list)
    assert sorted(r["number"] for r in front) == sorted(t.number for t in study.best_trials)
    assert all(set(r["objectives"]) == {"error", "flops"} for r in front)
    _, text, _ = run_cli("best", "tiny", "--storage", sqlite_url)
    assert text.startswith(f"the Pareto front of tiny: {len(front)} trial")
    # The report draws the front, and the live display and the other figures take the error as the target.
    png = study_file.with_name("png")
    run_cli("report", "tiny", "--storage", sqlite_url, "--png", png)
    assert (png / "pareto_front.png").stat().st_size > 0 and (png / "optimization_history.png").exists()
    assert (png / "intermediate_values.png").exists()  # the rungs, from rung_objectives
    # Front members export and confirm as a single objective's best does.
    member = front[-1]["number"]
    _, out, _ = run_cli("export", "tiny", "--storage", sqlite_url, "--trial", member, "-o",
                        study_file.with_name("member.toml"), "--json")
    assert json.loads(out)["trial"] == member and json.loads(out)["value"] == front[-1]["value"]
    _, out, _ = run_cli("confirm", "tiny", "--storage", sqlite_url, "--top", 2, "--seeds", 3, "--json")
    assert sorted(r["trial"] for r in json.loads(out)["ranking"]) == sorted(r["number"] for r in front[:2])


@pytest.mark.slow
def test_a_configuration_over_a_constraint_is_not_trained_and_never_best(write_study, sqlite_url, run_cli):
    study_file = write_study(ENSEMBLES, n_trials=10, trial_budget="12steps")
    study_file.write_text(study_file.read_text().replace(
        "intensify = 0\n", 'intensify = 0\nobjectives = ["error", "passes"]\nconstraints = { passes = 2 }\n'))
    run_cli("run", study_file, "--storage", sqlite_url)
    study = optuna.load_study(study_name="tiny", storage=sqlite_url)
    trials = study.get_trials()
    over = [t for t in trials if t.user_attrs.get("end_reason") == OVER_CONSTRAINT]
    trained = [t for t in trials if t.state == TrialState.COMPLETE]
    assert over and trained, [(t.state, t.user_attrs.get("end_reason")) for t in trials]
    charged = cost_rows(sqlite_url)
    for trial in over:  # not trained: pruned before its first step, charged only what measuring took
        assert trial.state == TrialState.PRUNED
        assert "steps" not in trial.user_attrs and "train_seconds" not in trial.user_attrs
        assert charged[trial.number] == pytest.approx(trial.user_attrs["spent_seconds"]) and charged[trial.number] > 0
        assert trial.user_attrs[ATTR_COST_BEFORE]["passes"] > 2 and trial.constraints["passes"] > 0
        assert trial.user_attrs["end_detail"].startswith("not trained: its inference cost measured before "
                                                         "training breaks [study] constraints (passes ")
    _, out, _ = run_cli("best", "tiny", "--storage", sqlite_url, "--json")
    assert all(r["objectives"]["passes"] <= 2 for r in json.loads(out))
    _, table, _ = run_cli("trials", "tiny", "--storage", sqlite_url)  # the cost of a trial that never trained
    assert f"{over[0].user_attrs[ATTR_COST_BEFORE]['passes']}x" in table and "(before)" in table


@pytest.mark.parametrize("line, message", [
    ('objectives = ["latency", "error"]', 'objectives must start with "error"'),
    ('objectives = ["error", "flops", "flops"]', "objectives names one twice"),
    ('objectives = ["error", "speed"]', "objectives"),
    ('objectives = ["error", "flops"]', "cannot rank several objectives"),  # with pruner = "hyperband"
    ('objectives = ["error", "flops"]', "cannot search several objectives"),  # with sampler = "cmaes"
    ("constraints = { latency_ms = -1 }", "constraints must be positive bounds"),
    ("constraints = { seconds = 1 }", "constraints"),
])
def test_bad_objectives_and_constraints_are_one_line_exit_2_and_write_nothing(write_study, sqlite_url, tmp_path,
                                                                            run_cli, line, message):
    study_file = write_study()
    text = study_file.read_text().replace("intensify = 0\n", f"intensify = 0\n{line}\n")
    if "rank several" in message:
        text = text.replace('pruner = "none"', 'pruner = "hyperband"')
    if "search several" in message:
        text = text.replace('sampler = "random"', 'sampler = "cmaes"')
    study_file.write_text(text)
    _, _, err = run_cli("run", study_file, "--storage", sqlite_url, expect=2)
    assert err.startswith("automl: error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "studies.db").exists()


def test_a_study_keeps_its_objectives(write_study, sqlite_url, tmp_path, run_cli):
    study_file = write_study(n_trials=1)
    run_cli("run", study_file, "--storage", sqlite_url)
    before = (tmp_path / "studies.db").read_bytes()
    study_file.write_text(study_file.read_text().replace("intensify = 0\n",
                                                         'intensify = 0\nobjectives = ["error", "flops"]\n'))
    _, _, err = run_cli("run", study_file, "--storage", sqlite_url, expect=2)
    assert "was created with objectives ['error'], but" in err and err.count("\n") == 1
    assert (tmp_path / "studies.db").read_bytes() == before


def test_the_knee_is_the_front_member_farthest_from_the_line_through_its_ends():
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from automl.report.figures import knee_of

    def member(number: int, error: float, cost: float):
        trial = create_trial(state=TrialState.COMPLETE, values=[error, cost], params={"x": 0.0},
                             distributions={"x": FloatDistribution(0, 1)})
        trial.number = number
        return trial

    # Error falls steeply from cost 1 to 2, then barely: the bend is at cost 2.
    front = [member(0, 0.30, 1.0), member(1, 0.12, 2.0), member(2, 0.11, 3.0), member(3, 0.10, 4.0)]
    assert knee_of(front).number == 1
    assert knee_of(front[:2]).number == 0  # two members: no bend to find, the first (pareto_front: lowest error)


def test_several_objectives_prune_on_progress_unless_the_file_says():
    from automl.study.config import StudySection

    # benchmarks/pareto_quality.py: whole fronts kept at complete runs of every rung cost more than they tell.
    assert StudySection(name="x", trial_budget="9steps", objectives=["error", "flops"]).fidelity == "progress"
    assert StudySection(name="x", trial_budget="9steps", objectives=["error", "flops"],
                        fidelity="budget").fidelity == "budget"
    assert StudySection(name="x", trial_budget="9steps").fidelity == "budget"


@pytest.mark.parametrize("names, passes", [((), 1), (("tta_flip",), 2), (("snapshot_ensemble",), 3),
                                           (("snapshot_ensemble", "tta_flip"), 3)])
def test_the_cost_before_training_counts_the_passes_a_prediction_will_take(names, passes):
    from automl.study.costs import measure_before
    from automl.testing import train_tiny
    from automl_plugins.snapshot_ensemble import SnapshotEnsemble
    from automl_plugins.tta_flip import TTAFlip

    made = {"tta_flip": lambda: TTAFlip(), "snapshot_ensemble": lambda: SnapshotEnsemble(cycles=3, k=3)}
    seen = []
    result = train_tiny([made[name]() for name in names], "9steps",
                        on_start=lambda run: seen.append(measure_before(run)))
    assert seen[0].passes == passes
    # Known before the first step, it is what the trained model's predictions cost: the ensemble's 3 snapshots
    # (tta_flip abstains beside it), or tta_flip's two passes.
    assert result.attrs["inference_cost"] == passes
