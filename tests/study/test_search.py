"""A search whose best is real (issue 23): budget rungs that are complete runs, no pruning inside the validation
noise, repeats of the best configurations at new seeds ranked by their mean, and a killed study that resumes its
rungs and repeats without training a finished run again."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from automl import records
from automl.budget import Budget
from automl.study.fidelity import climb, rung_budgets
from automl.study.incumbent import Intensifier, configurations
from automl.study.pruning import NoiseAwarePruner

PROBE = '''
import json
import os
import signal

from automl import Trick, hookimpl


class Probe(Trick):
    """Writes, at the end of each run, the run's budget, its steps and how far its schedule went; sends its
    process SIGTERM at step 2 of the run of trial PROBE_STOP_TRIAL at the trial budget (PROBE_STOP_BUDGET)."""

    name = "probe"

    def on_step_end(self, run, loss):
        self.lr_ratio = run.lr / run.base_lr
        stop = (str(run.context.trial_number) == os.environ.get("PROBE_STOP_TRIAL")
                and str(run.budget) == os.environ.get("PROBE_STOP_BUDGET"))
        if stop and run.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_trial_end(self, run, ended):
        with open(os.environ["PROBE_FILE"], "a") as out:
            out.write(json.dumps({"trial": run.context.trial_number, "rank": run.rank,
                                  "budget": str(run.budget), "steps": run.step,
                                  "progress": run.progress, "lr_ratio": self.lr_ratio}) + "\\n")


@hookimpl
def automl_register_tricks():
    return [Probe]
'''

BUDGET_STUDY = '''
[tricks]
include = ["cosine", "probe"]
[tricks.cosine]
enabled = true
final = 0.0
[tricks.probe]
enabled = true
'''


def _budget_study(write_study, n_trials: int, intensify: float, budget: str = "27steps"):
    text = BUDGET_STUDY
    path = write_study(text, n_trials=n_trials, trial_budget=budget)
    study = (path.read_text().replace('pruner = "none"', 'pruner = "asha"')
             .replace('fidelity = "progress"', 'fidelity = "budget"')
             .replace("intensify = 0\n", f"intensify = {intensify}\n"))
    path.write_text(study.replace("lr = 0.05", "lr = { low = 0.01, high = 0.5, log = true }"))
    return path


def _probe_env(child_env, tmp_path, **stop):
    plugin = tmp_path / "probe_plugin.py"
    plugin.write_text(PROBE)
    env = dict(child_env(), PROBE_FILE=str(tmp_path / "probe.jsonl"), **stop)
    return plugin, env


def _runs(tmp_path) -> list[dict]:
    path = tmp_path / "probe.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _automl_run(study, url, plugin, env, *extra: str):
    return subprocess.run([sys.executable, "-m", "automl", "run", str(study), "--storage", url, "--plugin",
                           str(plugin), "--threads", "1", *extra], cwd=study.parent, env=env, capture_output=True,
                          text=True, timeout=600)  # a guard against a hang only


def _stopped_by_sigterm(study, url, plugin, env) -> None:
    stopped = _automl_run(study, url, plugin, env)
    assert stopped.returncode != 0 and "interrupted by SIGTERM" in stopped.stderr, stopped.stderr


def _resumed(study, url, plugin, env) -> None:
    resumed = _automl_run(study, url, plugin, env)
    assert resumed.returncode == 0, resumed.stderr


def _trials(url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="tiny", storage=url).get_trials()


def test_rung_budgets_grow_by_eta_up_to_the_trial_budget():
    assert [b.amount for b in rung_budgets(Budget.parse("27steps"), 3, 3)] == [3, 9, 27]
    assert [b.amount for b in rung_budgets(Budget.parse("9s"), 3, 3)] == [1.0, 3.0, 9.0]
    assert [b.amount for b in rung_budgets(Budget.parse("4steps"), 3, 3)] == [1, 4]  # 4/9 and 4/3 round to 1
    assert [str(b) for b in rung_budgets(Budget.parse("6steps"), 1, 3)] == ["6steps"]


def test_each_budget_rung_is_a_complete_run_whose_schedule_ends_at_its_own_budget(write_study, sqlite_url,
                                                                                 child_env, tmp_path):
    study = _budget_study(write_study, n_trials=1, intensify=0)
    plugin, env = _probe_env(child_env, tmp_path)
    done = _automl_run(study, sqlite_url, plugin, env)
    assert done.returncode == 0, done.stderr
    runs = _runs(tmp_path)
    # Three runs from fresh weights, each to its own budget, its cosine schedule landing on its own end; a
    # progress rung a third of the way through the 27-step run would have seen the LR at 0.75 of its peak.
    assert [(r["budget"], r["steps"], r["progress"]) for r in runs] == [
        ("3steps", 3, 1.0), ("9steps", 9, 1.0), ("27steps", 27, 1.0)]
    assert all(r["lr_ratio"] < 0.3 for r in runs)
    [trial] = _trials(sqlite_url)
    assert trial.state == TrialState.COMPLETE and sorted(trial.intermediate_values) == [0, 1, 2]
    assert trial.user_attrs[records.ATTR_RUNG_BUDGETS] == ["3steps", "9steps", "27steps"]
    assert trial.user_attrs[records.ATTR_SPENT] == pytest.approx(sum(trial.user_attrs[records.ATTR_RUNG_SPENT]))
    assert trial.value == trial.intermediate_values[2]


def _rung_study(values: list[float], val_size: int | None) -> tuple[optuna.Study, NoiseAwarePruner]:
    """A study whose trials reported ``values`` at rung 0, with the noise-aware asha pruner."""
    pruner = NoiseAwarePruner("asha", val_size)
    study = optuna.create_study(pruner=pruner)
    for value in values:
        study.add_trial(create_trial(state=TrialState.PRUNED, params={"x": 0.5},
                                     distributions={"x": FloatDistribution(0, 1)}, intermediate_values={0: value}))
    return study, pruner


def _asked(study: optuna.Study, value: float) -> tuple[bool, optuna.Trial]:
    trial = study.ask()
    trial.report(value, 0)
    return trial.should_prune(), trial


@pytest.mark.parametrize(("rule", "wrong"), [("asha", 11), ("median", 12)])
def test_a_one_image_difference_does_not_prune_where_a_plain_comparison_would(rule, wrong):
    n = 288
    others = [10 / n, 10 / n, 10 / n, 12 / n, 14 / n, 30 / n]  # cut-offs: 10 (best third), 11 (median)
    plain, _ = _rung_study(others, None)
    plain.pruner.rule = rule
    assert _asked(plain, wrong / n)[0]  # one image worse than the cut-off: a plain comparison prunes it
    guarded, pruner = _rung_study(others, n)
    pruner.rule = rule
    pruned, trial = _asked(guarded, wrong / n)
    assert not pruned and trial.number not in pruner.decisions
    pruned, trial = _asked(guarded, 60 / n)  # far outside the noise: pruned, with why
    assert pruned
    decision = pruner.decisions[trial.number]
    assert decision.rung == 0 and decision.value == 60 / n and decision.z > 1.96
    assert f"pruned at rung 0: validation error {60 / n:.4f}" in decision.detail(rule)


@pytest.mark.parametrize("trials", [4, 10])
def test_the_noise_guard_holds_its_error_rate_on_equal_trials(trials):
    """Trials that are all equally good (each image wrong with probability 0.05, 288 images): the guard prunes
    at most 6% of them at a rung of 4 trials and 2.5% at 10 (measured 6.0% and 1.8% over 2000), where a plain
    comparison with the best third prunes most."""
    import numpy as np

    n, rng, asked = 288, np.random.default_rng(trials), 600
    pruned = {None: 0, n: 0}
    for size in pruned:
        for _ in range(asked):
            values = list(rng.binomial(n, 0.05, size=trials) / n)
            study, _ = _rung_study(values[:-1], size)
            pruned[size] += _asked(study, values[-1])[0]
    assert pruned[n] / asked <= (0.08 if trials == 4 else 0.035) and pruned[None] / asked > 0.5


def _frozen(number: int, lr: float, value: float, **attrs) -> optuna.trial.FrozenTrial:
    trial = create_trial(state=TrialState.COMPLETE, value=value, params={"train.lr": lr},
                         distributions={"train.lr": FloatDistribution(0.001, 1)},
                         user_attrs={records.ATTR_SPENT: 1.0, records.ATTR_VAL_SIZE: 288, **attrs})
    trial.number = number
    return trial


def test_best_ranks_configurations_by_their_mean_and_a_lucky_single_seed_does_not_win():
    trials = [_frozen(0, 0.1, 0.020), _frozen(1, 0.1, 0.030, repeat_of=0), _frozen(2, 0.3, 0.010),
              _frozen(3, 0.05, 0.040), _frozen(4, 0.05, 0.042, repeat_of=3)]
    ranked = configurations(trials)
    assert [(c.first.number, c.n_seeds) for c in ranked] == [(0, 2), (3, 2), (2, 1)]
    assert ranked[0].mean == pytest.approx(0.025)
    # The single seed of trial 2 beats the best's mean: it is the challenger to repeat next.
    assert Intensifier(share=0.5).choose(trials).first.number == 2
    # Repeats already took their share of the device time: nothing more is queued.
    assert Intensifier(share=0.1).choose(trials) is None


def test_a_best_seen_once_is_repeated_and_a_separated_best_is_not():
    once = [_frozen(0, 0.1, 0.02), _frozen(1, 0.2, 0.1), _frozen(2, 0.3, 0.1), _frozen(3, 0.4, 0.1)]
    assert Intensifier().choose(once).first.number == 0
    assert Intensifier(share=0.25).choose(once[:2]) is None  # a quarter of two trials' time: no room for a third
    separated = [_frozen(0, 0.1, 0.020), _frozen(1, 0.1, 0.021, repeat_of=0), _frozen(2, 0.1, 0.020, repeat_of=0),
                 _frozen(3, 0.3, 0.300), _frozen(4, 0.3, 0.310, repeat_of=3), _frozen(5, 0.2, 0.5),
                 _frozen(6, 0.4, 0.5), _frozen(7, 0.45, 0.5), _frozen(8, 0.5, 0.5), _frozen(9, 0.6, 0.5)]
    assert Intensifier(share=0.5).choose(separated) is None


def test_intensification_repeats_the_best_at_new_seeds_and_best_ranks_by_the_mean(write_study, sqlite_url, run_cli):
    study = write_study('[tricks]\ninclude = ["cosine"]\n', n_trials=8, trial_budget="6steps")
    text = study.read_text().replace("intensify = 0\n", "intensify = 0.5\n")
    study.write_text(text.replace("lr = 0.05", "lr = { low = 0.01, high = 0.5, log = true }"))
    run_cli("run", study, "--storage", sqlite_url)
    trials = {t.number: t for t in _trials(sqlite_url)}
    repeats = [t for t in trials.values() if records.ATTR_REPEAT_OF in t.user_attrs]
    assert repeats and len(repeats) < len(trials)
    for repeat in repeats:  # each started only where repeats, its expected cost included, kept to half the time
        before = [t for t in trials.values() if t.number < repeat.number]
        spent = [t.user_attrs[records.ATTR_SPENT] for t in before]
        repeated = sum(t.user_attrs[records.ATTR_SPENT] for t in before if records.ATTR_REPEAT_OF in t.user_attrs)
        mean = sum(spent) / len(spent)
        assert repeated + mean <= 0.5 * (sum(spent) + mean) + 1e-9
    for repeat in repeats:
        original = trials[repeat.user_attrs[records.ATTR_REPEAT_OF]]
        assert repeat.params == original.params
        assert repeat.user_attrs[records.ATTR_SEED] != original.user_attrs[records.ATTR_SEED]
    _, out, _ = run_cli("best", study, "--storage", sqlite_url, "--json")
    best = json.loads(out)
    assert best["n_seeds"] >= 2 and len(best["trials"]) == best["n_seeds"]
    values = [trials[n].value for n in best["trials"]]
    assert best["mean"] == pytest.approx(sum(values) / len(values))
    assert best["mean_ci"][0] <= best["mean"] <= best["mean_ci"][1]
    assert best["mean"] == min(c.mean for c in configurations(trials.values()) if c.n_seeds >= 2)


def test_a_killed_trial_resumes_its_rungs_without_training_a_finished_one(write_study, sqlite_url, child_env,
                                                                           tmp_path):
    study = _budget_study(write_study, n_trials=1, intensify=0)
    plugin, env = _probe_env(child_env, tmp_path, PROBE_STOP_TRIAL="0", PROBE_STOP_BUDGET="27steps")
    _stopped_by_sigterm(study, sqlite_url, plugin, env)
    stopped_at = [("3steps", 3), ("9steps", 9), ("27steps", 2)]  # the third run stopped at step 2
    assert [(r["budget"], r["steps"]) for r in _runs(tmp_path)] == stopped_at
    _resumed(study, sqlite_url, plugin, env)
    assert [(r["budget"], r["steps"]) for r in _runs(tmp_path)] == [*stopped_at, ("27steps", 27)]
    first, retry = _trials(sqlite_url)
    assert first.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retry.user_attrs[records.ATTR_RUNG_BUDGETS] == ["27steps"]
    assert retry.intermediate_values[0] == first.intermediate_values[0]
    assert retry.intermediate_values[1] == first.intermediate_values[1]


def test_a_killed_repeat_is_retried_as_a_repeat_at_the_trial_budget_only(write_study, sqlite_url, child_env,
                                                                          tmp_path):
    study = _budget_study(write_study, n_trials=2, intensify=0.9)
    plugin, env = _probe_env(child_env, tmp_path, PROBE_STOP_TRIAL="1", PROBE_STOP_BUDGET="27steps")
    _stopped_by_sigterm(study, sqlite_url, plugin, env)
    _resumed(study, sqlite_url, plugin, env)
    first, repeat, retry = _trials(sqlite_url)
    assert repeat.user_attrs[records.ATTR_REPEAT_OF] == 0 and retry.user_attrs[records.ATTR_REPEAT_OF] == 0
    assert retry.state == TrialState.COMPLETE and retry.user_attrs[records.ATTR_RUNG_BUDGETS] == ["27steps"]
    assert retry.params == first.params
    # Trial 0 trained three runs; the repeat (stopped at step 2) and its retry, one each at the trial budget.
    assert [(r["trial"], r["budget"], r["steps"]) for r in _runs(tmp_path)] == [
        (0, "3steps", 3), (0, "9steps", 9), (0, "27steps", 27), (1, "27steps", 2), (2, "27steps", 27)]


def test_climb_reports_each_rung_and_stops_where_the_pruner_says():
    class Trial:
        def __init__(self, prune_at):
            self.reported, self.prune_at = [], prune_at

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return self.reported[-1][0] == self.prune_at

    budgets = rung_budgets(Budget.parse("27steps"), 3, 3)
    trained = []

    def run_at(rung, budget):
        trained.append(str(budget))
        return 0.5 - rung / 10, None

    trial = Trial(prune_at=1)
    climbed = climb(trial, budgets, run_at)
    assert climbed.pruned and climbed.rung == 1 and trained == ["3steps", "9steps"]
    trained.clear()
    trial = Trial(prune_at=None)
    climbed = climb(trial, budgets, run_at, done={0: 0.9, 1: 0.8})
    assert not climbed.pruned and trained == ["27steps"] and trial.reported == [(0, 0.9), (1, 0.8), (2, 0.3)]


def test_two_ranks_climb_the_same_rungs_and_repeat_the_same_run(write_study, sqlite_url, child_env, tmp_path):
    study = _budget_study(write_study, n_trials=2, intensify=0.9)
    plugin, env = _probe_env(child_env, tmp_path)
    done = _automl_run(study, sqlite_url, plugin, env, "--device", "cpu", "--gpus-per-trial", "2")
    assert done.returncode == 0, done.stderr
    runs = _runs(tmp_path)
    by_rank = [[(r["trial"], r["budget"], r["steps"]) for r in runs if r["rank"] == rank] for rank in (0, 1)]
    assert by_rank[0] == by_rank[1] == [(0, "3steps", 3), (0, "9steps", 9), (0, "27steps", 27), (1, "27steps", 27)]
    first, repeat = _trials(sqlite_url)
    assert repeat.user_attrs[records.ATTR_REPEAT_OF] == 0 and repeat.params == first.params
    assert sorted(first.intermediate_values) == [0, 1, 2] and sorted(repeat.intermediate_values) == [2]


@pytest.mark.postgres
@pytest.mark.slow
def test_workers_on_postgresql_climb_rungs_and_repeat_within_the_share(write_study, postgres_url, child_env,
                                                                        tmp_path):
    from tests.study.test_fault_signals import ledger_settled

    study = _budget_study(write_study, n_trials=8, intensify=0.4)
    plugin, env = _probe_env(child_env, tmp_path)
    done = _automl_run(study, postgres_url, plugin, env, "--workers", "2")
    assert done.returncode == 0, done.stderr
    trials = {t.number: t for t in _trials(postgres_url)}
    assert len(trials) == 8 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials.values())
    repeats = [t for t in trials.values() if records.ATTR_REPEAT_OF in t.user_attrs]
    assert repeats
    for repeat in repeats:
        assert repeat.user_attrs[records.ATTR_RUNG_BUDGETS] == ["27steps"]
        assert repeat.params == trials[repeat.user_attrs[records.ATTR_REPEAT_OF]].params
    # Every run a trial trained was charged to it, and the ledger holds what the trials say they spent.
    per_trial = {}
    for run in _runs(tmp_path):
        per_trial.setdefault(run["trial"], []).append(run["budget"])
    for number, trial in trials.items():
        assert per_trial[number] == trial.user_attrs[records.ATTR_RUNG_BUDGETS]
    reserved, unbalanced, _ = ledger_settled(postgres_url)
    assert reserved == pytest.approx(0, abs=1e-9) and unbalanced == pytest.approx(0, abs=1e-6)


def test_the_defaults_climb_budget_rungs_prune_with_asha_and_crown_a_mean_over_seeds(write_study, sqlite_url,
                                                                                     run_cli):
    study = write_study('[tricks]\ninclude = ["cosine"]\n', n_trials=6, trial_budget="27steps")
    text = study.read_text()
    for line in ('pruner = "none"\n', 'fidelity = "progress"\n', "intensify = 0\n"):
        text = text.replace(line, "")  # the schema's defaults, as a study file that says nothing of them gets
    study.write_text(text.replace("lr = 0.05", "lr = { low = 0.01, high = 0.5, log = true }"))
    run_cli("run", study, "--storage", sqlite_url)
    trials = _trials(sqlite_url)
    climbed = [t for t in trials if records.ATTR_REPEAT_OF not in t.user_attrs]
    assert all(t.user_attrs[records.ATTR_RUNG_BUDGETS][0] == "3steps" for t in climbed)
    _, out, _ = run_cli("best", study, "--storage", sqlite_url, "--json")
    best = json.loads(out)
    assert best["n_seeds"] >= 2 and best["mean_ci"] is not None


@pytest.mark.parametrize(("line", "named"), [("eta = 1", "eta"), ('fidelity = "rungs"', "fidelity"),
                                             ("intensify = 1.5", "intensify"), ("budget_rungs = 0", "budget_rungs"),
                                             ('pruner = "successive"', "pruner")])
def test_a_bad_search_setting_is_one_line_and_writes_nothing(line, named, write_study, tmp_path, run_cli):
    study = write_study()
    key = line.split(" = ")[0]
    text = "\n".join(x for x in study.read_text().splitlines() if not x.startswith(f"{key} = "))
    study.write_text(text.replace("[study]\n", f"[study]\n{line}\n", 1))
    database = tmp_path / "bad.db"
    _, _, err = run_cli("run", study, "--storage", f"sqlite:///{database}", expect=2)
    assert err.count("\n") == 1 and err.startswith("automl: error: ") and named in err, err
    assert not database.exists()


def _study_of(*trials: optuna.trial.FrozenTrial) -> optuna.Study:
    study = optuna.create_study()
    for trial in trials:
        study.add_trial(trial)
    return study


def test_export_the_display_and_the_trials_table_follow_the_best_configuration():
    from automl.report.progress import _best_text
    from automl.report.tables import budgets_text
    from automl.study.export import pick_trial

    # Trial 2's lucky single seed is the best trial; trial 0's configuration, seen twice, is the best one.
    study = _study_of(_frozen(0, 0.1, 0.020), _frozen(1, 0.1, 0.030, repeat_of=0), _frozen(2, 0.3, 0.010))
    assert pick_trial(study, None).number == 0
    assert _best_text(study) == "0.0250 (#0, 2 seeds)"
    assert budgets_text({records.ATTR_RUNG_BUDGETS: ["3steps", "9steps", "27steps"]}) == "3, 9, 27steps"
    assert budgets_text({records.ATTR_RUNG_BUDGETS: ["27steps"], records.ATTR_REPEAT_OF: 4}) == "27steps (repeat of 4)"
    assert budgets_text({}) == "-"
