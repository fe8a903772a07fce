"""Tests of the Trick base class: no-op hooks, ``overridden``, and that the trainer calls only the overridden ones."""

from __future__ import annotations


import pytest
import torch

from automl.budget import Budget
from automl.testing import tiny_data, tiny_model, tiny_settings
from automl.train.loop import train
from automl.trick import HOOKS, Trick, overridden

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return tiny_data()


# TrainSettings' defaults of augmentation with flips, with two rungs.
SETTINGS = tiny_settings(augment=True, flip=True, rungs=2)
BUDGET = Budget.parse("12steps")


class Empty(Trick):
    name = "empty"


class OnlyStep(Trick):
    name = "only_step"

    def __init__(self):
        self.calls = 0

    def on_step_start(self, run):
        self.calls += 1


def test_hooks_are_the_documented_ones_in_lifecycle_order():
    # Derived from Trick's methods: a helper method added to Trick would become a hook, and this says so.
    assert HOOKS == ("setup", "on_end", "on_trial_end", "lr_factor", "on_epoch_start", "on_step_start",
                     "transform_batch", "train_step", "after_backward", "on_step_end", "on_rung", "predict")
    assert all(callable(getattr(Trick, hook)) for hook in HOOKS)


def test_base_hooks_are_no_ops():
    trick = Empty()
    x, y = torch.randn(2, 1, 8, 8), torch.tensor([0, 1])
    assert trick.lr_factor(0.3) == 1.0
    assert trick.transform_batch(None, x, y) == (x, y)
    assert trick.predict(None, x) is None
    assert Empty.search_space(object()) == {}


def test_base_constructor_rejects_parameters():
    with pytest.raises(TypeError, match="Empty takes no parameters"):
        Empty(fraction=0.1)


def test_overridden():
    assert not any(overridden(Empty(), hook) for hook in HOOKS)
    assert [hook for hook in HOOKS if overridden(OnlyStep(), hook)] == ["on_step_start"]

    class Inherits(OnlyStep):
        name = "inherits"

    assert overridden(Inherits(), "on_step_start") and not overridden(Inherits(), "setup")


def test_trainer_calls_only_overridden_hooks(data, monkeypatch):
    called = {hook: 0 for hook in HOOKS}

    def spy(hook):
        original = getattr(Trick, hook)

        def wrapper(self, *args, **kwargs):
            called[hook] += 1
            return original(self, *args, **kwargs)

        return wrapper

    for hook in HOOKS:
        monkeypatch.setattr(Trick, hook, spy(hook))
    trick = OnlyStep()
    result = train(tiny_model(data), data, SETTINGS, BUDGET, tricks=[trick, Empty()], evaluate_test=True)
    assert trick.calls == result.steps == 12
    assert called == {hook: 0 for hook in HOOKS}


def test_a_trick_without_overrides_changes_nothing(data):
    plain_model, empty_model = tiny_model(data), tiny_model(data)
    plain = train(plain_model, data, SETTINGS, BUDGET, seed=1)
    empty = train(empty_model, data, SETTINGS, BUDGET, seed=1, tricks=[Empty()])
    for (name, a), (_, b) in zip(plain_model.state_dict().items(), empty_model.state_dict().items()):
        assert torch.equal(a, b), name
    assert (empty.steps, empty.val_error, empty.train_loss) == (plain.steps, plain.val_error, plain.train_loss)

    # The comparison can tell runs apart: another loader seed gives other weights.
    other_model = tiny_model(data)
    train(other_model, data, SETTINGS, BUDGET, seed=2)
    assert not all(torch.equal(a, b) for a, b in zip(plain_model.state_dict().values(),
                                                      other_model.state_dict().values()))


def test_repr_shows_public_params():
    class WithParams(Trick):
        name = "with_params"

        def __init__(self, rate=0.1):
            self.rate = rate
            self._cache = []

    assert repr(WithParams(0.2)) == "WithParams(rate=0.2)"


def test_fresh_model_draws_the_weights_its_seed_gives_as_the_run_built_its_own(data):
    from automl.testing import run_for, tiny_builder

    builder = tiny_builder(data, model="resnet20")
    run = run_for(tiny_model(data, seed=0, model="resnet20"), build_model=builder)
    before = torch.random.get_rng_state()
    fresh = run.fresh_model(7)
    assert torch.equal(torch.random.get_rng_state(), before)  # the run's own draws are left alone
    # Built by the run's builder, custom initialisation (resnet20's kaiming normal) included.
    expected = tiny_model(data, seed=7, model="resnet20").state_dict()
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in expected.items())
    assert fresh is not run.model
    # Without a builder: a copy of the model with every module re-initialised, as the seed draws it.
    bare = run_for(tiny_model(data, seed=0))
    a, b, c = bare.fresh_model(7), bare.fresh_model(7), bare.fresh_model(8)
    weight = "5.weight"
    assert torch.equal(a.state_dict()[weight], b.state_dict()[weight])
    assert not torch.equal(a.state_dict()[weight], c.state_dict()[weight])
    assert not torch.equal(a.state_dict()[weight], bare.model.state_dict()[weight])


def test_the_trainer_hands_the_run_its_seed_and_builder(data):
    from automl.testing import tiny_builder

    seen = {}

    class Looks(Trick):
        name = "looks"

        def setup(self, run):
            seen["seed"], seen["build"] = run.seed, run.build_model

    builder = tiny_builder(data)
    train(tiny_model(data), data, SETTINGS, BUDGET, tricks=[Looks()], seed=11, build_model=builder)
    assert seen == {"seed": 11, "build": builder}
