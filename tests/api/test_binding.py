"""Every built-in trick in a hand-written PyTorch loop through ``Attached`` trains as automl's own loop does, to the
bit (weights, validation error, the tricks' records), or is refused by name with the reason (issue 27, item 2).

The families: LR schedules (cosine, step/exp/linear decay, one-cycle, warmup, the ensembles' cycles), the loss and the
batch (label smoothing, mixup, cutout, distillation), gradients and the optimizer (grad clip, no-bias decay, LARS,
mixed precision, SAM's own step), the model (FreezeOut, ghost batch norm, zero-gamma), averages (EMA, SWA),
ensembles (snapshot, independent, test-time flips), the batch size (batch_size; batch_ramp refused).
"""

from __future__ import annotations

import pytest
import torch

from automl.api.binding import Attached
from automl.errors import UserError
from automl.host import get_host
from automl.run import TrialContext
from automl.space import study_order
from automl.storage.artifacts import checkpoint
from automl.testing import tiny_builder, tiny_data, tiny_model, tiny_settings, train_tiny
from automl.train.loader import Loader
from automl.train.loop import build_optimizer, train
from automl.budget import Budget
from tests.api.by_hand import train_by_hand, val_error

BUDGET = "24steps"
REFUSED = {"batch_ramp": "changes the batch size from one pass to the next"}
OPTIONS = {"batch_size": {"size": 32}, "step_decay": {}, "swa": {"fraction": 0.5}, "ema": {},
           "snapshot_ensemble": {"cycles": 2}, "independent_ensemble": {"members": 2}}
"""Options that make a trick act within the short budget (a batch size other than the settings' own)."""


@pytest.fixture(scope="module")
def data():
    return tiny_data()


@pytest.fixture(scope="module")
def teacher(data, tmp_path_factory):
    model = tiny_model(data, seed=5)
    train_tiny(budget="20steps", data=data, model=model, lr=0.1)
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    torch.save(checkpoint(model, "small_cnn", {"width": 0.25}, 1, data.num_classes), path)
    return path


def make(name, teacher):
    cls = get_host().tricks[name].cls
    options = dict(OPTIONS.get(name, {}))
    if name == "distillation":
        options["teacher"] = str(teacher)
    return cls(**options)


def own_loop(tricks, data, settings, budget, seed):
    """The loop a user writes: their model, optimizer and loader, the recipe's hooks at the places automl calls
    them."""
    model = tiny_model(data, seed)
    optimizer = build_optimizer(settings, model.parameters())
    loader = Loader(data.train, 32 if any(t.name == "batch_size" for t in tricks) else settings.batch_size,
                    augment=settings.augment, flip=settings.flip, padding=settings.crop_padding, seed=seed)
    bound = Attached(study_order(tricks), model, optimizer, budget=budget, base_lr=settings.lr,
                     batch_size=loader.batch_size, steps_per_epoch=len(loader), train_data=data.train,
                     num_classes=data.num_classes, seed=seed,
                     build_model=tiny_builder(data), context=TrialContext("s", 0, lambda: None, model=model))
    train_by_hand(bound, loader)
    return bound, val_error(bound, data, settings.eval_batch_size)


def automl_loop(tricks, data, settings, budget, seed):
    model = tiny_model(data, seed)
    result = train(model, data, settings, Budget.parse(budget), tricks=study_order(tricks), seed=seed,
                   build_model=tiny_builder(data), context=TrialContext("s", 0, lambda: None, model=model))
    return model, result


BUILT_IN = sorted(get_host().tricks)


def test_every_built_in_trick_is_covered_or_refused():
    assert len(BUILT_IN) >= 25
    assert set(REFUSED) <= set(BUILT_IN)


@pytest.mark.parametrize("name", BUILT_IN)
def test_a_trick_in_your_loop_trains_as_in_automls_to_the_bit(name, data, teacher, one_thread):
    settings = tiny_settings(augment=True, crop_padding=1, lr=0.05)
    if name in REFUSED:
        with pytest.raises(UserError, match=f"trick {name} {REFUSED[name]}"):
            own_loop([make(name, teacher)], data, settings, BUDGET, seed=3)
        return
    model, result = automl_loop([make(name, teacher)], data, settings, BUDGET, seed=3)
    bound, val_error = own_loop([make(name, teacher)], data, settings, BUDGET, seed=3)
    assert bound.run.step == result.steps == 24
    for (key, ours), theirs in zip(bound.model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(ours, theirs), f"{name}: {key} differs"
    assert val_error == result.val_error
    kept = {k: v for k, v in result.attrs.items() if not k.startswith("inference")}
    assert {k: v for k, v in bound.attrs.items() if k in kept} == kept
    assert set(bound.weights) == set(result.weights)


@pytest.mark.parametrize("name, call, message", [
    ("sam", "after_backward", "trick sam owns the training step .*: call .train_step"),
    ("sam", "step", "trick sam owns the training step"),
    ("mixed_precision", "after_backward", "mixed precision through a GradScaler: call .step"),
])
def test_a_step_the_recipe_takes_its_own_way_is_refused_by_name_in_your_loop(name, call, message, data, teacher):
    trick = make(name, teacher)
    model = tiny_model(data, 0)
    bound = Attached([trick], model, build_optimizer(tiny_settings(), model.parameters()), budget="4steps",
                     base_lr=0.05, batch_size=16)
    if name == "mixed_precision" and bound.run.grad_scaler is None:
        pytest.skip("mixed precision on this device trains without a GradScaler (bfloat16 on the CPU)")
    with pytest.raises(UserError, match=message):
        getattr(bound, call)()


def test_a_batch_size_other_than_the_recipes_is_refused_with_the_one_to_use(data, teacher):
    model = tiny_model(data, 0)
    with pytest.raises(UserError, match="batch_size trains this recipe with batches of 32, your loop with 16: build "
                                        "your loader with batch_size=32"):
        Attached([make("batch_size", teacher)], model, build_optimizer(tiny_settings(), model.parameters()),
                 budget="4steps", base_lr=0.05, batch_size=16, train_data=data.train)
