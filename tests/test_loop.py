"""Tests of the budgeted training loop: budgets, progress, the LR of each step, rungs, failures, evaluation."""

from __future__ import annotations

import math

import pytest
import torch

from automl.budget import Budget
from automl.errors import TrialFailed
from automl.train.data import load_dataset
from automl.train.loop import NAN_CHECK_EVERY, train
from automl.train.models import build_model
from automl.train.settings import TrainSettings
from automl.trick import Trick


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny models train several times faster on one thread than on two contended ones.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", shape=(1, 8, 8), n_train=128, n_val=64, n_test=64)


def _model(data, seed=0):
    torch.manual_seed(seed)
    return build_model("small_cnn", in_channels=data.input_shape[0], num_classes=data.num_classes, width=0.25)


def _settings(**kw):
    return TrainSettings(**{"batch_size": 16, "augment": False, "flip": False, **kw})


class Recorder(Trick):
    """Records what the loop shows a trick at every event."""

    name = "recorder"

    def __init__(self):
        self.steps: list[tuple[float, int, float, float]] = []  # (progress, step, run.lr, lr of group 0)
        self.epochs: list[int] = []
        self.rungs: list[tuple[int, float, float]] = []
        self.ended = 0

    def on_epoch_start(self, run):
        self.epochs.append(run.epoch)

    def on_step_start(self, run):
        self.steps.append((run.progress, run.step, run.lr, run.optimizer.param_groups[0]["lr"]))

    def on_rung(self, run, rung, val_error):
        self.rungs.append((rung, run.progress, val_error))

    def on_end(self, run):
        self.ended += 1

    @property
    def progress(self):
        return [s[0] for s in self.steps]


def _error(model, split):
    model.eval()
    with torch.no_grad():
        return (model(split.x).argmax(1) != split.y).float().mean().item()


# ---------------------------------------------------------------------------- budgets


def test_steps_budget_runs_exactly_that_many_steps(data):
    rec = Recorder()
    result = train(_model(data), data, _settings(), Budget.parse("20steps"), tricks=[rec])
    assert result.steps == 20 and len(rec.steps) == 20
    assert [s[1] for s in rec.steps] == list(range(20))
    assert result.progress == 1.0 and not result.pruned
    assert rec.ended == 1
    assert math.isfinite(result.train_loss) and result.train_loss > 0
    assert 0 <= result.val_error <= 1 and result.val_error == result.val_error_model


def test_progress_is_non_decreasing_from_zero_and_below_one(data):
    rec = Recorder()
    n = 20
    train(_model(data), data, _settings(), Budget.parse(f"{n}steps"), tricks=[rec])
    progress = rec.progress
    assert progress[0] == 0.0
    assert all(a <= b for a, b in zip(progress, progress[1:]))
    assert all(p < 1 for p in progress)
    assert progress[-1] >= 1 - 1 / n - 1e-12


@pytest.mark.parametrize(("epochs", "batch_size"), [(2, 32), (3, 16), (1.5, 32)])
def test_epoch_budget_ends_after_exactly_that_many_passes(data, epochs, batch_size):
    rec = Recorder()
    result = train(_model(data), data, _settings(batch_size=batch_size), Budget.parse(f"{epochs}ep"), tricks=[rec])
    batches = len(data.train) // batch_size
    assert result.steps == epochs * batches
    assert result.epochs == pytest.approx(epochs)
    assert result.progress == 1.0
    assert all(p < 1 for p in rec.progress)


def test_epoch_budget_starts_no_pass_after_the_last(data):
    """``on_epoch_start`` announces a pass; a budget of two passes announces two."""
    rec = Recorder()
    train(_model(data), data, _settings(batch_size=32), Budget.parse("2ep"), tricks=[rec])
    assert rec.epochs == [0, 1]


def test_seconds_budget_ends_within_one_step(data):
    rec = Recorder()
    budget = Budget.parse("1s")
    result = train(_model(data), data, _settings(rungs=1), budget, tricks=[rec])
    assert result.train_seconds >= budget.amount
    assert result.progress == 1.0
    progress = rec.progress
    assert len(progress) == result.steps >= 2
    # No step was taken once progress had reached 1 ...
    assert all(p < 1 for p in progress)
    assert all(a <= b for a, b in zip(progress, progress[1:]))
    # ... and the time after the last step began is about one step.
    longest_step = max(b - a for a, b in zip(progress, progress[1:])) * budget.amount
    assert result.train_seconds - progress[-1] * budget.amount <= 2 * longest_step


# ---------------------------------------------------------------------------- learning rate


class Decay(Trick):
    name = "decay"

    def lr_factor(self, progress):
        return 1.0 - 0.5 * progress


class Ramp(Trick):
    name = "ramp"

    def lr_factor(self, progress):
        return 0.5 + 0.25 * progress


def test_lr_is_base_times_the_product_of_factors(data):
    rec = Recorder()
    settings = _settings(lr=0.04)
    train(_model(data), data, settings, Budget.parse("16steps"), tricks=[Decay(), rec, Ramp()])
    assert len(rec.steps) == 16
    for progress, _, run_lr, group_lr in rec.steps:
        expected = settings.lr * (1.0 - 0.5 * progress) * (0.5 + 0.25 * progress)
        assert group_lr == pytest.approx(expected, rel=1e-12)
        assert run_lr == pytest.approx(expected, rel=1e-12)
    lrs = [s[3] for s in rec.steps]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))  # the product falls: the LR really changed every step


def test_lr_without_factors_is_the_base_lr(data):
    rec = Recorder()
    train(_model(data), data, _settings(lr=0.03), Budget.parse("4steps"), tricks=[rec])
    assert [s[3] for s in rec.steps] == [0.03] * 4


class Groups(Trick):
    """Splits the parameters into two groups, the second at a tenth of the LR."""

    name = "groups"

    def setup(self, run):
        params = list(run.model.parameters())
        run.optimizer = run.make_optimizer([{"params": params[:2]}, {"params": params[2:], "lr_scale": 0.1}])

    def lr_factor(self, progress):
        return 1.0 - progress

    def on_step_start(self, run):
        self.seen = getattr(self, "seen", []) + [(run.lr, [g["lr"] for g in run.optimizer.param_groups])]


def test_param_group_lr_scale_multiplies_the_step_lr(data):
    groups = Groups()
    train(_model(data), data, _settings(), Budget.parse("6steps"), tricks=[groups])
    assert len(groups.seen) == 6
    for lr, (first, second) in groups.seen:
        assert first == pytest.approx(lr) and second == pytest.approx(0.1 * lr)


# ---------------------------------------------------------------------------- rungs


def test_rungs_are_evaluated_at_increasing_progress(data):
    rec = Recorder()
    reports = []

    def report(rung, progress, val_error):
        reports.append((rung, progress, val_error))
        return False

    n = 16
    result = train(_model(data), data, _settings(rungs=4), Budget.parse(f"{n}steps"), tricks=[rec], report=report)
    assert len(result.history) == 4
    points = [p for p, _ in result.history]
    assert all(a < b for a, b in zip(points, points[1:]))
    assert points[-1] == 1.0
    for k, p in enumerate(points[:-1]):
        assert (k + 1) / 4 <= p < (k + 1) / 4 + 1 / n + 1e-12
    assert [r[0] for r in reports] == [0, 1, 2, 3]
    assert [(r[1], r[2]) for r in reports] == result.history
    assert [(r[0], r[2]) for r in rec.rungs] == [(k, e) for k, (_, e) in enumerate(result.history)]
    assert result.history[-1][1] == result.val_error
    assert all(0 <= e <= 1 for _, e in result.history)


def test_report_true_prunes_the_run(data):
    rec = Recorder()
    calls = []

    def report(rung, progress, val_error):
        calls.append(rung)
        return rung == 1

    n = 16
    result = train(_model(data), data, _settings(rungs=4), Budget.parse(f"{n}steps"), tricks=[rec], report=report)
    assert result.pruned
    assert calls == [0, 1]
    assert len(result.history) == 2
    assert result.steps < n and result.steps == len(rec.steps)
    assert result.progress == result.history[-1][0] < 1
    assert result.val_error == result.history[-1][1]
    assert rec.ended == 0


# ---------------------------------------------------------------------------- failures


class Poison(Trick):
    """Puts NaN into the inputs, from step ``start`` on."""

    name = "poison"

    def __init__(self, start=0):
        self.start = start
        self.steps = 0

    def transform_batch(self, run, x, y):
        self.steps += 1
        return (x * math.nan if run.step >= self.start else x), y


def test_nan_inputs_fail_the_trial_early(data):
    poison = Poison()
    n = 8 * NAN_CHECK_EVERY
    with pytest.raises(TrialFailed) as info:
        train(_model(data), data, _settings(), Budget.parse(f"{n}steps"), tricks=[poison])
    assert info.value.reason == "nan_loss"
    assert poison.steps <= NAN_CHECK_EVERY


def test_nan_in_the_last_step_fails_the_trial(data):
    with pytest.raises(TrialFailed) as info:
        train(_model(data), data, _settings(), Budget.parse("6steps"), tricks=[Poison(start=5)])
    assert info.value.reason == "nan_loss"


def test_divergent_lr_fails_the_trial(data):
    with pytest.raises(TrialFailed) as info:
        train(_model(data), data, _settings(lr=1e6), Budget.parse("40steps"))
    assert info.value.reason == "nan_loss"


# ---------------------------------------------------------------------------- evaluation


class Always(Trick):
    """Predicts one class for every input."""

    name = "always"

    def __init__(self, label=0):
        self.label = label

    def predict(self, run, x):
        scores = torch.zeros(len(x), run.data.num_classes, device=x.device)
        scores[:, self.label] = 1.0
        return scores


class Abstain(Trick):
    name = "abstain"

    def predict(self, run, x):
        return None


def test_predict_changes_val_error_but_not_the_models(data):
    budget = Budget.parse("8steps")
    plain = train(_model(data), data, _settings(), budget)
    model = _model(data)
    result = train(model, data, _settings(eval_batch_size=10), budget, tricks=[Abstain(), Always(label=3)])
    assert result.val_error == pytest.approx((data.val.y != 3).float().mean().item())
    assert result.val_error_model == plain.val_error_model == plain.val_error
    assert result.val_error_model == pytest.approx(_error(model, data.val))
    assert all(e == result.val_error for _, e in result.history)


def test_first_predict_that_answers_wins(data):
    result = train(_model(data), data, _settings(), Budget.parse("2steps"), tricks=[Always(label=1), Always(label=2)])
    assert result.val_error == pytest.approx((data.val.y != 1).float().mean().item())


def test_abstaining_predict_keeps_the_models_error(data):
    result = train(_model(data), data, _settings(), Budget.parse("4steps"), tricks=[Abstain()])
    assert result.val_error == result.val_error_model


def test_evaluate_test_fills_test_errors(data):
    budget = Budget.parse("4steps")
    assert train(_model(data), data, _settings(), budget).test_error is None
    model = _model(data)
    result = train(model, data, _settings(), budget, tricks=[Always(label=0)], evaluate_test=True)
    assert result.test_error == pytest.approx((data.test.y != 0).float().mean().item())
    assert result.test_error_model == pytest.approx(_error(model, data.test))
    assert result.eval_seconds > 0 and result.spent_seconds == result.train_seconds + result.eval_seconds
