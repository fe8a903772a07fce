"""The quickstart's best trial in a hand-written PyTorch loop (``Recipe.attach``) reproduces `automl train`'s
validation error at the same seed and step budget, to the bit on the CPU (issue 27, item 4); and what a recipe
refuses."""

from __future__ import annotations

import json

import pytest
import torch

import automl
from automl.api.studies import StudyResult
from automl.train.loader import Loader
from tests.api.by_hand import train_by_hand, val_error
from tests.conftest import REPO_ROOT

QUICKSTART = REPO_ROOT / "studies" / "quickstart.toml"


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> StudyResult:
    """The quickstart, three trials of 20 steps (budgets in steps: the same training on any machine)."""
    folder = tmp_path_factory.mktemp("quickstart")
    return automl.run(QUICKSTART, storage=f"sqlite:///{folder / 'q.db'}", trial_budget="20steps", n_trials=3,
                      threads=1)


def your_loop(recipe: automl.Recipe, budget: str, seed: int) -> float:
    """A plain PyTorch loop as a user writes it, with the recipe's hooks; its validation error."""
    data = recipe.load_data()
    torch.manual_seed(seed)
    model = recipe.build_model(data)
    optimizer = recipe.make_optimizer(model.parameters())
    train = recipe.train
    loader = Loader(data.train, train.batch_size, augment=train.augment, flip=train.flip, padding=train.crop_padding,
                    seed=seed)
    bound = recipe.attach(model, optimizer, budget=budget, steps_per_epoch=len(loader), train_data=data.train,
                          num_classes=data.num_classes, seed=seed, build_model=lambda: recipe.build_model(data))
    train_by_hand(bound, loader)
    return val_error(bound, data, train.eval_batch_size)


def test_your_loop_on_the_quickstarts_best_trial_reproduces_automl_train(quickstart, tmp_path, run_cli):
    recipe = quickstart.export(path=tmp_path / "best.toml")
    assert recipe.tricks == quickstart.best().tricks
    _, out, _ = run_cli("train", str(recipe.path), "--budget", "40steps", "--json", "-o", str(tmp_path / "models"),
                        "--threads", "1")
    trained = json.loads(out)["runs"][0]
    assert trained["steps"] == 40
    assert your_loop(recipe, "40steps", trained["seed"]) == trained["val_error"]


def test_a_recipe_in_your_loop_refuses_a_time_budget_and_a_spent_one(quickstart, tmp_path):
    recipe = quickstart.export(path=tmp_path / "best.toml")
    data = recipe.load_data()
    model = recipe.build_model(data)
    with pytest.raises(automl.UserError, match="budget 5s: a budget of device time is measured by automl's own"):
        recipe.attach(model, recipe.make_optimizer(model.parameters()), budget="5s")
    with pytest.raises(automl.UserError, match="a budget in epochs needs steps_per_epoch"):
        recipe.attach(model, recipe.make_optimizer(model.parameters()), budget="2ep")
    bound = recipe.attach(model, recipe.make_optimizer(model.parameters()), budget="1steps")
    x, y = next(iter(data.train.batches(8)))
    x, y = bound.before_step(x, y)
    bound.after_step(bound.train_step(x, y))
    assert bound.done
    with pytest.raises(automl.UserError, match="the budget is spent"):
        bound.before_step(x, y)
