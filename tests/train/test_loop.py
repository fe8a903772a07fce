"""Tests of the budgeted training loop: budgets, progress, the LR of each step, rungs, failures, evaluation."""

from __future__ import annotations

import math

import pytest
import torch

from automl.budget import Budget
from automl.errors import TrialFailed
from automl.testing import StepRecorder, tiny_data, tiny_model, tiny_settings, train_tiny
from automl.train.augment import default_padding
from automl.train.loop import NAN_CHECK_EVERY, train
from automl.trick import Trick

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return tiny_data()


def _settings(**kw):
    # TrainSettings' default of four rungs, which these tests were written against.
    return tiny_settings(**{"rungs": 4, **kw})


def _train(data, tricks, budget, **kw):
    return train_tiny(tricks, budget, data=data, **{"rungs": 4, **kw})


class Recorder(StepRecorder):
    """Records what the loop shows a trick at every event: each step (see StepRecorder), pass, rung and end."""

    name = "recorder"

    def __init__(self):
        super().__init__()
        self.epochs: list[int] = []
        self.rungs: list[tuple[int, float, float]] = []
        self.ended = 0

    def on_epoch_start(self, run):
        self.epochs.append(run.epoch)

    def on_rung(self, run, rung, val_error):
        self.rungs.append((rung, run.progress, val_error))

    def on_end(self, run):
        self.ended += 1


def _error(model, split):
    model.eval()
    with torch.no_grad():
        return (model(split.x).argmax(1) != split.y).float().mean().item()


# ---------------------------------------------------------------------------- budgets


def test_steps_budget_runs_exactly_that_many_steps(data):
    rec = Recorder()
    result = _train(data, [rec], "20steps")
    assert result.steps == 20 and len(rec.steps) == 20
    assert [s[1] for s in rec.steps] == list(range(20))
    assert result.progress == 1.0 and not result.pruned
    assert rec.ended == 1
    assert math.isfinite(result.train_loss) and result.train_loss > 0
    assert 0 <= result.val_error <= 1 and result.val_error == result.val_error_model


def test_progress_is_non_decreasing_from_zero_and_below_one(data):
    rec = Recorder()
    n = 20
    _train(data, [rec], f"{n}steps")
    progress = rec.progress
    assert progress[0] == 0.0
    assert all(a <= b for a, b in zip(progress, progress[1:]))
    assert all(p < 1 for p in progress)
    assert progress[-1] >= 1 - 1 / n - 1e-12


@pytest.mark.parametrize(("epochs", "batch_size"), [(2, 32), (3, 16), (1.5, 32)])
def test_epoch_budget_ends_after_exactly_that_many_passes(data, epochs, batch_size):
    rec = Recorder()
    result = _train(data, [rec], f"{epochs}ep", batch_size=batch_size)
    batches = len(data.train) // batch_size
    assert result.steps == epochs * batches
    assert result.epochs == pytest.approx(epochs)
    assert result.progress == 1.0
    assert all(p < 1 for p in rec.progress)


def test_epoch_budget_starts_no_pass_after_the_last(data):
    """``on_epoch_start`` announces a pass; a budget of two passes announces two."""
    rec = Recorder()
    _train(data, [rec], "2ep", batch_size=32)
    assert rec.epochs == [0, 1]


# A budget in seconds ends within half a step of its amount: tests/train/test_clocks.py, on a substituted clock.


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
    train(tiny_model(data), data, settings, Budget.parse("16steps"), tricks=[Decay(), rec, Ramp()])
    assert len(rec.steps) == 16
    for progress, _, run_lr, group_lrs in rec.steps:
        group_lr = group_lrs[0]
        expected = settings.lr * (1.0 - 0.5 * progress) * (0.5 + 0.25 * progress)
        assert group_lr == pytest.approx(expected, rel=1e-12)
        assert run_lr == pytest.approx(expected, rel=1e-12)
    lrs = rec.lrs
    assert all(a > b for a, b in zip(lrs, lrs[1:]))  # the product falls: the LR really changed every step


def test_lr_without_factors_is_the_base_lr(data):
    rec = Recorder()
    _train(data, [rec], "4steps", lr=0.03)
    assert rec.lrs == [0.03] * 4


class Groups(Trick):
    """Splits the parameters into two groups, the second at a tenth of the LR."""

    name = "groups"

    def setup(self, run):
        params = list(run.model.parameters())
        run.optimizer = run.make_optimizer([{"params": params[:2]}, {"params": params[2:], "lr_scale": 0.1}])

    def lr_factor(self, progress):
        return 1.0 - progress


def test_param_group_lr_scale_multiplies_the_step_lr(data):
    rec = StepRecorder()
    _train(data, [Groups(), rec], "6steps")
    assert len(rec.steps) == 6
    for _, _, lr, (first, second) in rec.steps:
        assert first == pytest.approx(lr) and second == pytest.approx(0.1 * lr)


# ---------------------------------------------------------------------------- rungs


def test_rungs_are_evaluated_at_increasing_progress(data):
    rec = Recorder()
    reports = []

    def report(rung, progress, val_error):
        reports.append((rung, progress, val_error))
        return False

    n = 16
    result = train(tiny_model(data), data, _settings(), Budget.parse(f"{n}steps"), tricks=[rec], report=report)
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
    result = train(tiny_model(data), data, _settings(), Budget.parse(f"{n}steps"), tricks=[rec], report=report)
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
        _train(data, [poison], f"{n}steps")
    assert info.value.reason == "nan_loss"
    assert poison.steps <= NAN_CHECK_EVERY


def test_nan_in_the_last_step_fails_the_trial(data):
    with pytest.raises(TrialFailed) as info:
        _train(data, [Poison(start=5)], "6steps")
    assert info.value.reason == "nan_loss"


def test_divergent_lr_fails_the_trial(data):
    with pytest.raises(TrialFailed) as info:
        _train(data, [], "40steps", lr=1e6)
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
    plain = _train(data, [], "8steps")
    model = tiny_model(data)
    result = _train(data, [Abstain(), Always(label=3)], "8steps", model=model, eval_batch_size=10)
    assert result.val_error == pytest.approx((data.val.y != 3).float().mean().item())
    assert result.val_error_model == plain.val_error_model == plain.val_error
    assert result.val_error_model == pytest.approx(_error(model, data.val))
    assert all(e == result.val_error for _, e in result.history)


def test_first_predict_that_answers_wins(data):
    result = _train(data, [Always(label=1), Always(label=2)], "2steps")
    assert result.val_error == pytest.approx((data.val.y != 1).float().mean().item())


def test_abstaining_predict_keeps_the_models_error(data):
    result = _train(data, [Abstain()], "4steps")
    assert result.val_error == result.val_error_model


def test_evaluate_test_fills_test_errors(data):
    assert _train(data, [], "4steps").test_error is None
    model = tiny_model(data)
    result = train(model, data, _settings(), Budget.parse("4steps"), tricks=[Always(label=0)], evaluate_test=True)
    assert result.test_error == pytest.approx((data.test.y != 0).float().mean().item())
    assert result.test_error_model == pytest.approx(_error(model, data.test))
    assert result.eval_seconds > 0 and result.spent_seconds == result.train_seconds + result.eval_seconds


# ---------------------------------------------------------------------------- crop padding


class PaddingSeen(Trick):
    name = "padding_seen"

    def setup(self, run):
        self.padding = run.loader.padding


@pytest.mark.parametrize("side", [8, 16, 32])
def test_crop_padding_defaults_to_the_augmentation_rule(side):
    seen = PaddingSeen()
    _train(tiny_data(shape=(1, side, side)), [seen], "1steps", augment=True)
    assert seen.padding == default_padding(side)
    _train(tiny_data(shape=(1, side, side)), [seen], "1steps", augment=True, crop_padding=3)
    assert seen.padding == 3


class Ending(Trick):
    """Records every on_trial_end call, and writes an attr there."""

    name = "ending"

    def __init__(self, raise_at: int | None = None):
        self.ended: list[str] = []
        self.raise_at = raise_at

    def on_step_end(self, run, loss):
        if run.step == self.raise_at:
            raise RuntimeError("boom")

    def on_trial_end(self, run, ended):
        self.ended.append(ended)
        run.attrs["ending.ended"] = ended


def test_on_trial_end_is_called_once_when_the_run_completes_and_its_attrs_are_kept(data):
    trick = Ending()
    result = _train(data, [trick], "6steps")
    assert trick.ended == ["complete"] and result.attrs["ending.ended"] == "complete"


def test_on_trial_end_is_called_once_when_the_run_is_pruned_and_its_attrs_are_kept(data):
    trick, recorder = Ending(), Recorder()
    result = train(tiny_model(data), data, _settings(), Budget.parse("40steps"), tricks=[trick, recorder],
                   report=lambda rung, p, err: True)
    assert result.pruned and recorder.ended == 0  # on_end is for runs that trained to the end
    assert trick.ended == ["pruned"] and result.attrs["ending.ended"] == "pruned"


@pytest.mark.parametrize("failing", ["own_hook", "other_trick", "nan"])
def test_on_trial_end_is_called_once_when_the_run_fails(data, failing):
    trick = Ending(raise_at=3 if failing == "own_hook" else None)
    others = {"own_hook": [], "other_trick": [Ending(raise_at=2)], "nan": [Poison(start=1)]}[failing]
    with pytest.raises((RuntimeError, TrialFailed)):
        _train(data, [trick, *others], "40steps")
    assert trick.ended == ["failed"]


def test_a_failing_on_trial_end_notes_itself_on_the_error_that_failed_the_run(data):
    class AlsoBreaks(Ending):
        name = "also_breaks"

        def on_trial_end(self, run, ended):
            raise ValueError("cleanup failed")

    with pytest.raises(RuntimeError, match="boom") as caught:
        _train(data, [Ending(raise_at=2), AlsoBreaks()], "40steps")
    assert caught.value.__notes__ == ["also_breaks.on_trial_end raised too: ValueError('cleanup failed')"]


class TwoSteps(Trick):
    """Owns the step: the trainer's step written out, counted, so the loop's own step is provably not run."""

    name = "two_steps"
    owns = ("step",)

    def __init__(self):
        self.calls = 0

    def train_step(self, run, x, y):
        self.calls += 1
        return super().train_step(run, x, y)


def test_the_owner_of_the_step_replaces_the_trainers_step_with_the_same_result(data):
    owner = TwoSteps()
    model_a, model_b = tiny_model(data), tiny_model(data)
    a = _train(data, [owner], "6steps", model=model_a)
    b = _train(data, [], "6steps", model=model_b)
    assert owner.calls == a.steps == 6 and a.train_loss == b.train_loss
    assert all(torch.equal(p, q) for p, q in zip(model_a.parameters(), model_b.parameters()))


def test_two_owners_of_the_step_are_refused(data):
    class Other(TwoSteps):
        name = "other_steps"

    with pytest.raises(ValueError, match="two_steps and other_steps each replace the training step"):
        train(tiny_model(data), data, tiny_settings(), Budget.parse("2steps"), tricks=[TwoSteps(), Other()])
    # train_tiny, as a study, never has both on: its own check comes first.
    with pytest.raises(ValueError, match="tricks other_steps and two_steps both own 'step'"):
        _train(data, [TwoSteps(), Other()], "2steps")
