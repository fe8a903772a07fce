"""The built-in tricks' messages for bad arguments, word for word: studies and users read them."""

from __future__ import annotations

import math

import pytest
import torch

from automl.host import get_host
from automl_plugins.freezeout import freeze_times
from automl_plugins.mixed_precision import autocast_settings

TRICKS = {name: info.cls for name, info in get_host().tricks.items()}

MESSAGES = [
    ("batch_ramp", {"factor": 1}, "batch_ramp factor must be an integer >= 2, got factor=1"),
    ("batch_ramp", {"max_batch": 0}, "batch_ramp max_batch must be a positive integer, got max_batch=0"),
    ("batch_size", {"size": 64.0}, "batch_size size must be a positive integer, got size=64.0"),
    ("batch_size", {"rule": "cubic"}, "batch_size rule must be one of linear, sqrt, got rule='cubic'"),
    ("batch_size", {"reference": 0}, "batch_size reference must be a positive integer, got reference=0"),
    ("cosine", {"final": 1.5}, "cosine final LR factor must be in [0, 1], got final=1.5"),
    ("cutout", {"size": 0}, "cutout size must be in (0, 1], got size=0"),
    ("cutout", {"p": 1.5}, "cutout p must be in (0, 1], got p=1.5"),
    ("cutout", {"seed": -1}, "cutout seed must be a non-negative integer or None, got seed=-1"),
    ("distillation", {"temperature": 0}, "distillation temperature must be > 0, got temperature=0"),
    ("distillation", {"weight": 1.5}, "distillation weight must be in [0, 1], got weight=1.5"),
    ("ema", {"half_life": math.inf}, "ema half_life must be a positive fraction of the budget, got half_life=inf"),
    ("ema", {"every": 0}, "ema every must be an integer >= 1, got every=0"),
    ("exp_decay", {"final": 0}, "exp_decay final LR factor must be in (0, 1], got final=0"),
    ("freezeout", {"t0": 0}, "freezeout t0 must be in (0, 1], got t0=0"),
    ("freezeout", {"schedule": "squared"}, "freezeout schedule must be one of ['cubic', 'linear'], got schedule='squared'"),
    ("freezeout", {"scale_lr": 1}, "freezeout scale_lr must be True or False, got scale_lr=1"),
    ("ghost_batch_norm", {"size": 1}, "ghost_batch_norm size must be an integer >= 2, got size=1"),
    ("label_smoothing", {"epsilon": 1.0}, "label smoothing epsilon must be in [0, 1), got epsilon=1.0"),
    ("lars", {"trust": 0}, "lars trust must be a positive number, got trust=0"),
    ("linear_decay", {"final": 1}, "linear_decay final LR factor must be in [0, 1), got final=1"),
    ("mixed_precision", {"dtype": "fp8"}, "mixed precision dtype must be one of ['bf16', 'fp16'], got dtype='fp8'"),
    ("mixed_precision", {"channels_last": "yes"},
     "mixed precision channels_last must be True or False, got channels_last='yes'"),
    ("mixup", {"alpha": 0.0}, "mixup alpha must be > 0, got alpha=0.0"),
    ("mixup", {"seed": -1}, "mixup seed must be a non-negative integer or None, got seed=-1"),
    ("one_cycle", {"peak": 1}, "one_cycle peak must be in (0, 1), got peak=1"),
    ("one_cycle", {"start": -0.5}, "one_cycle start LR factor must be in [0, 1], got start=-0.5"),
    ("one_cycle", {"final": 2}, "one_cycle final LR factor must be in [0, 1], got final=2"),
    ("snapshot_ensemble", {"cycles": 0}, "snapshot_ensemble cycles must be an integer >= 1, got cycles=0"),
    ("snapshot_ensemble", {"alpha0": -0.1}, "snapshot_ensemble alpha0 must be a positive LR, got alpha0=-0.1"),
    ("snapshot_ensemble", {"cycles": 3, "k": 4}, "snapshot_ensemble k must be an integer in [1, cycles=3], got k=4"),
    ("snapshot_ensemble", {"cycles": 4, "start": 0.2},
     "snapshot_ensemble start must be a fraction of the budget in [1/cycles = 0.25, 1), got start=0.2"),
    ("snapshot_ensemble", {"cycles": 1, "start": 0.5},
     "snapshot_ensemble cycles must be at least 2 when start is set, got cycles=1"),
    ("independent_ensemble", {"members": 0}, "independent_ensemble members must be an integer >= 1, got members=0"),
    ("independent_ensemble", {"alpha0": 0.0}, "independent_ensemble alpha0 must be a positive LR, got alpha0=0.0"),
    ("step_decay", {"gamma": 0.0}, "step_decay gamma must be in (0, 1], got gamma=0.0"),
    ("swa", {"fraction": 0}, "swa fraction must be in (0, 1], got fraction=0"),
    ("swa", {"every": 0}, "swa every must be an integer >= 1, got every=0"),
    ("warmup", {"fraction": 1.0}, "warmup fraction must be in [0, 1), got fraction=1.0"),
]


@pytest.mark.parametrize(("name", "kwargs", "expected"), MESSAGES)
def test_constructor_message(name, kwargs, expected):
    with pytest.raises(ValueError) as info:
        TRICKS[name](**kwargs)
    assert str(info.value) == expected


@pytest.mark.parametrize(("call", "expected"), [
    (lambda: freeze_times(0, 0.5), "freezeout needs at least one layer, got num_layers=0"),
    (lambda: freeze_times(3, 1.2), "freezeout t0 must be in (0, 1], got t0=1.2"),
    (lambda: freeze_times(3, 0.5, "squared"), "freezeout schedule must be one of ['cubic', 'linear'], got schedule='squared'"),
    (lambda: autocast_settings(torch.device("cpu"), "fp8"),
     "mixed precision dtype must be one of ['bf16', 'fp16'], got dtype='fp8'"),
])
def test_function_message(call, expected):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == expected
