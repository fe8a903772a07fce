"""Tests of the batch-size trick: the loader yields batches of B and the LR is scaled by B / 256 (or its root)."""

from __future__ import annotations

import math

import pytest
import torch

from automl import Budget, TrialFailed
from automl.testing import StepRecorder, tiny_data, tiny_model, tiny_settings, train_tiny
from automl.train.splits import Dataset, Split
from automl.train.loop import train
from automl_plugins.batch_size import BatchSize, scaled_lr

pytestmark = pytest.mark.usefixtures("one_thread")


class BatchRecorder(StepRecorder):
    """Also records the number of examples each step trains on."""

    name = "batch_recorder"

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def transform_batch(self, run, x, y):
        self.sizes.append(x.shape[0])
        return x, y


def test_scaled_lr_by_hand():
    assert scaled_lr(0.1, 256) == pytest.approx(0.1)
    assert scaled_lr(0.1, 1024) == pytest.approx(0.4)
    assert scaled_lr(0.1, 64) == pytest.approx(0.025)
    assert scaled_lr(0.1, 1024, "sqrt") == pytest.approx(0.2)
    assert scaled_lr(0.1, 64, "sqrt") == pytest.approx(0.05)
    assert scaled_lr(0.1, 32, "linear", reference=128) == pytest.approx(0.025)
    with pytest.raises(ValueError, match="cubic"):
        scaled_lr(0.1, 64, "cubic")


@pytest.mark.parametrize(("size", "rule", "n_train"), [(64, "linear", 300), (32, "sqrt", 300), (96, "linear", 200)])
def test_a_run_trains_on_batches_of_b_at_the_scaled_lr(size, rule, n_train):
    lr, epochs = 0.2, 3
    data = tiny_data(n_train=n_train)
    rec = BatchRecorder()
    trick = BatchSize(size=size, rule=rule)
    # [train] batch_size = 16 is what the trick replaces.
    result = train_tiny([trick, rec], f"{epochs}ep", data=data, lr=lr, batch_size=16)
    ratio = size / 256
    expected = lr * (ratio if rule == "linear" else math.sqrt(ratio))
    assert rec.lrs[0] == pytest.approx(expected, rel=1e-12)
    assert set(rec.lrs) == {rec.lrs[0]}  # no schedule: the scaled LR throughout
    assert rec.sizes == [size] * result.steps
    assert result.steps == epochs * (n_train // size)
    assert result.attrs["batch_size.batch"] == size
    assert result.attrs["batch_size.lr"] == pytest.approx(expected)


def test_a_batch_larger_than_the_split_scales_to_the_split():
    lr, data = 0.2, tiny_data(n_train=100)
    rec = BatchRecorder()
    result = train_tiny([BatchSize(size=512), rec], "2ep", data=data, lr=lr)
    assert rec.sizes == [100, 100] and result.steps == 2
    assert rec.lrs[0] == pytest.approx(lr * 100 / 256)


def test_a_batch_that_cannot_be_allocated_fails_the_trial_as_oom():
    # Images of 2^38 pixels, held as a broadcast view of one value so the data set itself costs
    # nothing; a batch of 1024 of them is 2^50 bytes (1 PiB), more than a 64-bit process can map
    # whatever the overcommit policy, so the loader's real gather of the batch cannot be allocated.
    side = 2 ** 19
    x = torch.zeros(1, 1, 1, 1).expand(2048, 1, side, side)
    small = tiny_data()
    data = Dataset(name="huge", train=Split(x, torch.zeros(2048, dtype=torch.long)), val=small.val,
                   test=small.test, num_classes=small.num_classes, input_shape=(1, side, side))
    with pytest.raises(TrialFailed) as failed:
        train(tiny_model(small), data, tiny_settings(), Budget.parse("2steps"), tricks=[BatchSize(size=1024)])
    assert failed.value.reason == "oom"
    assert str(1024 * side * side * 4) in failed.value.detail


@pytest.mark.parametrize(("kwargs", "name"), [({"size": 0}, "size"), ({"size": 64.0}, "size"), ({"size": True}, "size"),
                                              ({"rule": "cubic"}, "rule"), ({"reference": 0}, "reference")])
def test_constructor_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        BatchSize(**kwargs)


def test_search_space_builds_valid_tricks():
    from automl.overrides import Choices
    from automl.trick_space import SpaceRecorder, build_trick

    rec = SpaceRecorder("batch_size")
    trick = build_trick(BatchSize, rec)
    assert set(rec.params) == {"size", "rule"}
    assert list(rec.params["size"].choices) == [64, 128, 256, 512, 1024]
    assert list(rec.params["rule"].choices) == ["linear", "sqrt"]
    assert trick.size in rec.params["size"].choices and trick.rule in rec.params["rule"].choices
    # A study restricts the batches with `size = {choices = [...]}`.
    narrow = SpaceRecorder("batch_size", {"size": Choices(choices=(128, 256))})
    assert build_trick(BatchSize, narrow).size == 128
    assert list(narrow.params["size"].choices) == [128, 256]
    assert BatchSize.owns == ("batch_size",)
