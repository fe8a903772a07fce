"""Every built-in trick trains, alone and beside every trick it is compatible with.

Settings for the test live here, one entry per trick: a new built-in plugin without an
entry fails ``test_every_builtin_trick_has_test_settings`` (Composer's registry pattern).
"""

from __future__ import annotations

import collections
import math

import optuna
import pytest
import torch

from automl.host import get_host
from automl.space import select_tricks
from automl.storage.artifacts import checkpoint
from automl.testing import tiny_data, tiny_model, train_tiny

pytestmark = pytest.mark.usefixtures("one_thread")

HOST = get_host()
BUILTIN = sorted(name for name, info in HOST.tricks.items() if info.source.startswith("automl "))
TEACHER = "<teacher>"  # replaced by the path of a checkpoint the test saves

# Constructor keywords for a tiny run: 128 training images of 8x8, batch 16, 8 steps.
TEST_SETTINGS: dict[str, dict] = {
    "batch_ramp": {"factor": 2, "max_batch": 64},
    "batch_size": {"size": 32},
    "cosine": {},
    "cutout": {"size": 0.5, "p": 0.5},
    "distillation": {"teacher": TEACHER, "temperature": 2.0, "weight": 0.5},
    "ema": {"half_life": 0.1},
    "exp_decay": {"final": 0.01},
    "freezeout": {"t0": 0.5, "schedule": "cubic"},
    "ghost_batch_norm": {"size": 8},
    "grad_clip": {"max_norm": 0.5},
    "independent_ensemble": {"members": 2, "alpha0": 0.1},
    "label_smoothing": {"epsilon": 0.1},
    "lars": {"trust": 0.02},
    "linear_decay": {},
    "mixed_precision": {"dtype": "bf16", "channels_last": True},
    "mixup": {"alpha": 0.2},
    "no_bias_decay": {},
    "one_cycle": {"peak": 0.3},
    "sam": {"rho": 0.05},
    "snapshot_ensemble": {"cycles": 2, "alpha0": 0.1},
    "step_decay": {"gamma": 0.1},
    "swa": {"fraction": 0.5},
    "tta_flip": {},
    "warmup": {"fraction": 0.2},
    "zero_gamma": {},
}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    data = tiny_data()
    model = tiny_model(data, seed=3, model="resnet20", width=0.25)
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    torch.save(checkpoint(model, "resnet20", {"width": 0.25}, 1, data.num_classes), path)
    return str(path)


def build(name: str, teacher: str):
    params = {k: (teacher if v == TEACHER else v) for k, v in TEST_SETTINGS[name].items()}
    return HOST.tricks[name].cls(**params)


def compatible_with(name: str, reverse: bool = False) -> list[str]:
    """``name`` and, in name order (or its reverse), every trick that owns none of the resources already taken."""
    chosen, taken = [name], set(HOST.tricks[name].cls.owns)
    for other in sorted(BUILTIN, reverse=reverse):
        owns = set(HOST.tricks[other].cls.owns)
        if other != name and not owns & taken:
            chosen.append(other)
            taken |= owns
    return chosen


def run_tiny(tricks):
    data = tiny_data()
    tricks = sorted(tricks, key=lambda t: (t.order, t.name))
    return train_tiny(tricks, budget="8steps", data=data, model=tiny_model(data, model="resnet20", width=0.25),
                      rungs=2)


def test_every_builtin_trick_has_test_settings():
    assert HOST.failures == []
    assert len(BUILTIN) >= 24
    missing = sorted(set(BUILTIN) - set(TEST_SETTINGS))
    assert not missing, f"add test settings for {missing} to TEST_SETTINGS"
    gone = sorted(set(TEST_SETTINGS) - set(BUILTIN))
    assert not gone, f"{gone} in TEST_SETTINGS are not built-in tricks (any more)"


@pytest.mark.parametrize("name", BUILTIN)
def test_trains_alone(name, teacher):
    result = run_tiny([build(name, teacher)])
    assert result.steps == 8 and not result.pruned
    assert math.isfinite(result.train_loss) and 0 <= result.val_error <= 1


# Two combinations per trick: with the first owner of each other resource in name order, and with the last,
# so that a trick also meets other owners of the resources it does not own (tta_flip both ema and swa).
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("name", BUILTIN)
def test_trains_with_every_compatible_trick(name, reverse, teacher):
    names = compatible_with(name, reverse)
    assert len(names) >= 8  # a combination, not just the trick itself
    result = run_tiny([build(n, teacher) for n in names])
    assert result.steps == 8 and math.isfinite(result.train_loss) and 0 <= result.val_error <= 1


# Resources and the built-in tricks that own them, exactly (tricks not named here may own them too).
OWNED = {
    "cosine": ("lr_schedule",),
    "ema": ("inference",),
    "exp_decay": ("lr_schedule",),
    "freezeout": ("lr_schedule",),
    "lars": ("optimizer",),
    "linear_decay": ("lr_schedule",),
    "sam": ("step",),
    "snapshot_ensemble": ("lr_schedule", "inference"),
    "step_decay": ("lr_schedule",),
    "swa": ("inference",),
    "tta_flip": (),  # changes inference through predict, and yields to the owners of inference
}


@pytest.mark.parametrize(("name", "owns"), sorted(OWNED.items()))
def test_builtin_tricks_own_their_resources(name, owns):
    assert HOST.tricks[name].cls.owns == owns


def test_select_tricks_never_enables_two_owners_of_one_resource():
    tricks = {name: HOST.tricks[name].cls for name in BUILTIN}
    owners = collections.defaultdict(set)
    for name, cls in tricks.items():
        for resource in cls.owns:
            owners[resource].add(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    ever_on, owned_by = set(), collections.defaultdict(set)
    for _ in range(200):
        trial = study.ask()
        on = {trick.name for trick in select_tricks(trial, tricks, {})}
        for resource, candidates in owners.items():
            holders = on & candidates
            assert len(holders) <= 1, f"trial {trial.number} enables {sorted(holders)}, all owning {resource!r}"
            owned_by[resource] |= holders
        ever_on |= on
        study.tell(trial, 0.0)
    # The test means something only if every resource had each of its rival owners, and every trick
    # that needs no teacher (distillation, without a study) was on in some trial.
    assert owned_by == owners
    assert ever_on == set(tricks) - {"distillation"}
