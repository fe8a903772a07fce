"""Tests of mixed precision: forward passes really run under autocast, channels-last really reaches the convs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from automl.budget import Budget
from automl.testing import tiny_data, tiny_model, tiny_settings, train_tiny
from automl.train.loop import train
from automl.trick import Trick
from automl_plugins.mixed_precision import MixedPrecision, autocast_settings

pytestmark = pytest.mark.usefixtures("one_thread")

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _convs(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


class ConvProbe:
    """Forward hooks on every conv: the output dtype, in training and in evaluation, and the layouts it sees."""

    def __init__(self, model):
        self.seen = {True: set(), False: set()}  # model.training -> output dtypes
        self.first_input_channels_last: list[bool] = []
        self.first_input_contiguous: list[bool] = []
        convs = _convs(model)
        for conv in convs:
            conv.register_forward_hook(self._output)
        convs[0].register_forward_pre_hook(self._input)

    def _output(self, module, inputs, output):
        self.seen[module.training].add(output.dtype)

    def _input(self, module, inputs):
        if module.training:
            self.first_input_channels_last.append(inputs[0].is_contiguous(memory_format=torch.channels_last))
            self.first_input_contiguous.append(inputs[0].is_contiguous())


def _run(tricks, data=None, budget="4steps", **settings):
    data = data or tiny_data()
    model = tiny_model(data)
    probe = ConvProbe(model)
    result = train_tiny(tricks, budget, data=data, model=model, **settings)
    return result, model, probe


def test_training_and_evaluation_forward_in_bf16_on_cpu():
    result, _, probe = _run([MixedPrecision(dtype="bf16")])
    assert probe.seen == {True: {torch.bfloat16}, False: {torch.bfloat16}}
    assert result.attrs["mixed_precision.dtype"] == "bf16"
    assert 0 <= result.val_error <= 1 and result.steps == 4
    _, _, plain = _run([])
    assert plain.seen == {True: {torch.float32}, False: {torch.float32}}


class DtypeProbe(Trick):
    """The dtypes of the model's floating-point weights and of the optimizer's params, after every step."""

    name = "dtype_probe"

    def __init__(self):
        self.seen = []

    def on_step_end(self, run, loss):
        self.seen.append((_float_dtypes(run.model), {p.dtype for g in run.optimizer.param_groups for p in g["params"]}))


def _float_dtypes(model):
    return {t.dtype for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()}


def test_the_weights_stay_fp32():
    # Master weights (Micikevicius et al.): autocast casts copies for the forward pass only, so the
    # weights the optimizer updates are fp32 at every step, not only once training has ended.
    probe = DtypeProbe()
    result, model, convs = _run([MixedPrecision(dtype="bf16"), probe])
    assert convs.seen[True] == {torch.bfloat16}  # the forward did run in bf16: fp32 weights alone prove nothing
    assert probe.seen == [({torch.float32}, {torch.float32})] * result.steps
    assert _float_dtypes(model) == {torch.float32}


def test_fp16_on_cpu_falls_back_to_bf16_and_says_so():
    result, _, probe = _run([MixedPrecision(dtype="fp16")])
    assert probe.seen[True] == {torch.bfloat16}
    assert result.attrs["mixed_precision.dtype"] == "bf16"


def test_channels_last_converts_the_conv_weights_and_the_batch():
    # Three channels: with one, an NCHW tensor is channels-last contiguous too and the test could not fail.
    data = tiny_data(shape=(3, 8, 8))
    result, model, probe = _run([MixedPrecision(channels_last=True)], data=data)
    for conv in _convs(model):
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        assert not conv.weight.is_contiguous()
    assert len(probe.first_input_channels_last) == result.steps
    assert all(probe.first_input_channels_last) and not any(probe.first_input_contiguous)
    _, model, probe = _run([MixedPrecision(channels_last=False)], data=data)
    assert all(conv.weight.is_contiguous() for conv in _convs(model))
    assert all(probe.first_input_contiguous) and not any(probe.first_input_channels_last)


def test_autocast_settings():
    cpu = torch.device("cpu")
    assert autocast_settings(cpu, "bf16") == ({"device_type": "cpu", "dtype": torch.bfloat16}, False)
    assert autocast_settings(cpu, "fp16") == ({"device_type": "cpu", "dtype": torch.bfloat16}, False)
    cuda = torch.device("cuda")  # a device object needs no GPU
    assert autocast_settings(cuda, "fp16") == ({"device_type": "cuda", "dtype": torch.float16}, True)
    assert autocast_settings(cuda, "bf16") == ({"device_type": "cuda", "dtype": torch.bfloat16}, False)
    with pytest.raises(ValueError, match="dtype"):
        autocast_settings(cpu, "fp8")


class ScalerProbe(Trick):
    """The grad scaler at each step, and its (scale, growth tracker) after each step."""

    name = "scaler_probe"

    def __init__(self):
        self.scalers, self.states = [], []

    def on_step_end(self, run, loss):
        self.scalers.append(run.grad_scaler)
        if run.grad_scaler is not None:
            state = run.grad_scaler.state_dict()
            self.states.append((state["scale"], state["_growth_tracker"]))


def _cuda_run(dtype):
    data = tiny_data(device="cuda")
    model = tiny_model(data)
    probe, scaler = ConvProbe(model), ScalerProbe()
    result = train(model, data, tiny_settings(), Budget.parse("4steps"),
                   tricks=[MixedPrecision(dtype=dtype), scaler], device="cuda")
    return result, probe, scaler


@needs_cuda
def test_fp16_on_cuda_uses_a_grad_scaler():
    result, probe, scaler = _cuda_run("fp16")
    assert probe.seen == {True: {torch.float16}, False: {torch.float16}}
    assert result.attrs["mixed_precision.dtype"] == "fp16"
    assert len(scaler.scalers) == 4 and all(isinstance(s, torch.amp.GradScaler) for s in scaler.scalers)
    assert scaler.scalers[0].is_enabled()
    # The loop steps through the scaler: every update() either counts one more finite step or,
    # after an overflow, halves the scale, so the state changes at every step.
    assert len(scaler.states) == 4
    assert all(a != b for a, b in zip([(65536.0, 0), *scaler.states], scaler.states))


@needs_cuda
def test_bf16_on_cuda_needs_no_scaler():
    result, probe, scaler = _cuda_run("bf16")
    assert probe.seen[True] == {torch.bfloat16}
    assert result.attrs["mixed_precision.dtype"] == "bf16"
    assert scaler.scalers == [None] * 4


def test_search_space_builds_valid_tricks():
    from automl.overrides import Pinned
    from automl.trick_space import SpaceRecorder, build_trick

    rec = SpaceRecorder("mixed_precision")
    trick = build_trick(MixedPrecision, rec)
    assert set(rec.params) == {"dtype", "channels_last"}
    assert set(rec.params["dtype"].choices) == {"bf16", "fp16"}
    assert set(rec.params["channels_last"].choices) == {True, False}
    assert trick.dtype in ("bf16", "fp16") and isinstance(trick.channels_last, bool)
    for dtype in ("bf16", "fp16"):
        for channels_last in (True, False):
            pinned = SpaceRecorder("mixed_precision", {"dtype": Pinned(dtype), "channels_last": Pinned(channels_last)})
            trick = build_trick(MixedPrecision, pinned)
            assert (trick.dtype, trick.channels_last) == (dtype, channels_last)


@pytest.mark.parametrize("kwargs, name", [({"dtype": "fp32"}, "dtype"), ({"dtype": torch.float16}, "dtype"),
                                          ({"channels_last": "yes"}, "channels_last"),
                                          ({"channels_last": 1}, "channels_last")])
def test_constructor_rejects_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MixedPrecision(**kwargs)
