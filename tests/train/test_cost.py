"""Tests of the measured inference cost: FLOPs per image counted on the prediction the trial is judged on,
latency timed after training on neither the training nor the evaluation clock, recorded with the trial."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch
from torch import nn

from automl.budget import Budget
from automl.testing import run_for, tiny_data, tiny_model, tiny_settings, train_tiny
from automl.train import cost
from automl.train.loop import train
from automl.trick import Trick
from automl_plugins.snapshot_ensemble import SnapshotEnsemble

pytestmark = pytest.mark.usefixtures("one_thread")


def _linear(data):
    torch.manual_seed(0)
    c, h, w = data.input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 32), nn.ReLU(), nn.Linear(32, data.num_classes))


def test_flops_per_image_are_those_of_the_model_s_matrix_products():
    data = tiny_data()
    result = train_tiny([], "4steps", data=data, model=_linear(data))
    inputs = math.prod(data.input_shape)
    # Two FLOPs per multiply-add of each Linear layer (the additions of the biases are not counted).
    assert result.inference.flops_per_image == 2 * (inputs * 32 + 32 * data.num_classes)
    assert result.inference.device == "cpu"
    assert 0 < result.inference.ms_per_1000 < math.inf


@pytest.mark.parametrize("k", [1, 3])
def test_an_ensemble_s_cost_is_measured_through_its_prediction(k):
    data = tiny_data()
    single = train_tiny([], "12steps", data=data, model=_linear(data)).inference.flops_per_image
    ensemble = train_tiny([SnapshotEnsemble(cycles=3, k=k)], "12steps", data=data, model=_linear(data))
    assert ensemble.inference.flops_per_image == k * single
    assert ensemble.attrs["inference_cost"] == k


class SlowPrediction(Trick):
    """A prediction that takes at least ``SLEEP`` seconds, counting its calls once training has ended."""

    name = "slow_prediction"
    owns = ("inference",)
    SLEEP = 0.2

    def __init__(self):
        self.ended = False
        self.calls: list[int] = []

    def on_end(self, run):
        self.ended = True

    def predict(self, run, x):
        if not self.ended:
            return None
        self.calls.append(len(x))
        time.sleep(self.SLEEP)
        return run.model(x)


def test_latency_is_the_median_of_timed_predictions_after_warm_up_off_the_trial_s_clocks():
    data = tiny_data()
    trick = SlowPrediction()
    result = train_tiny([trick], "4steps", data=data)
    warmup, repeats = cost.CPU_REPEATS
    # One call for the final evaluation of the 64 validation images, then the measurement's: warm-up,
    # timed repeats, and one counted on a few images.
    assert trick.calls == [64] * (1 + warmup + repeats) + [cost.FLOP_BATCH]
    # Every timed prediction sleeps SLEEP over 64 images: at least that per image, scaled to 1000.
    assert result.inference.ms_per_1000 >= SlowPrediction.SLEEP / 64 * 1e6
    # The measurement's (1 + warmup + repeats) sleeps are on neither clock: evaluation holds one only.
    measuring = SlowPrediction.SLEEP * (warmup + repeats + 1)
    assert result.eval_seconds < SlowPrediction.SLEEP + measuring / 2
    assert result.spent_seconds == result.train_seconds + result.eval_seconds


def test_a_pruned_run_measures_nothing():
    data = tiny_data()
    assert train_tiny([], "8steps", data=data, rungs=2).inference is not None
    pruned = train(tiny_model(data), data, tiny_settings(rungs=2), Budget.parse("8steps"),
                   report=lambda rung, p, error: True)
    assert pruned.pruned and pruned.inference is None


def test_the_measurement_leaves_the_model_as_it_was():
    data = tiny_data()
    model = tiny_model(data)
    run = run_for(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    measured = cost.measure_inference(run, data.val)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics untouched
    assert measured.flops_per_image > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_latency_on_cuda_is_synchronised():
    data = tiny_data(device="cuda")
    result = train(tiny_model(data), data, tiny_settings(), Budget.parse("4steps"), device="cuda")
    assert result.inference.device.startswith("cuda")
    assert 0 < result.inference.ms_per_1000 < math.inf


@pytest.mark.usefixtures("one_thread")
def test_every_completed_trial_records_its_measured_cost_and_the_commands_show_it(run_cli, write_study,
                                                                                  sqlite_url, tmp_path):
    run_cli("run", write_study('[tricks]\ninclude = ["snapshot_ensemble"]\n[tricks.snapshot_ensemble]\n'
                               'enabled = true\ncycles = 2\nk = 2\n', n_trials=2), "--storage", sqlite_url)
    _, out, _ = run_cli("trials", "tiny", "--storage", sqlite_url, "--json")
    for record in json.loads(out):
        attrs = record["user_attrs"]
        assert attrs["inference_cost"] == 2
        assert attrs["inference_ms_per_1000"] > 0 and attrs["inference_device"] == "cpu"
        assert attrs["inference_flops_per_image"] > 0
    _, table, _ = run_cli("trials", "tiny", "--storage", sqlite_url)
    assert "ms/1k" in table and "FLOP" in table
    _, text, _ = run_cli("best", "tiny", "--storage", sqlite_url)
    assert "inference: 2 forward passes per prediction" in text and "ms per 1000 images on cpu" in text
    report = tmp_path / "report.html"
    run_cli("report", "tiny", "--storage", sqlite_url, "-o", report)
    assert "Inference: 2 forward passes per prediction" in report.read_text()
