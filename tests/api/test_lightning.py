"""A recipe in a Lightning Trainer (``RecipeCallback``) trains as the same recipe in a plain PyTorch loop, to the
bit, and stops at its budget (issue 27, item 3)."""

from __future__ import annotations

import pytest
import torch

import automl

pl = pytest.importorskip("lightning.pytorch", reason="Lightning is not installed (pip install -e '.[lightning]')")
from automl.integrations.lightning import RecipeCallback  # noqa: E402
from tests.api.by_hand import train_by_hand  # noqa: E402

PINNED = """
[tricks]
include = ["cosine", "label_smoothing", "grad_clip", "ema"]
[tricks.cosine]
enabled = true
[tricks.label_smoothing]
enabled = true
[tricks.grad_clip]
enabled = true
[tricks.ema]
enabled = true
"""


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> automl.Recipe:
    from tests.conftest import TINY_STUDY

    folder = tmp_path_factory.mktemp("lightning")
    study = folder / "study.toml"
    study.write_text(TINY_STUDY.format(name="tiny", trial_budget="6steps", n_trials=1,
                                       artifacts=(folder / "artifacts").as_posix()) + PINNED)
    result = automl.run(study, storage=f"sqlite:///{folder / 'studies.db'}", threads=1)
    return result.export(path=folder / "best.toml")


def loader_of(data):
    dataset = torch.utils.data.TensorDataset(data.train.x, data.train.y)
    return torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=False)


class Classifier(pl.LightningModule):
    def __init__(self, model, recipe, callback):
        super().__init__()
        self.model, self.recipe, self.callback = model, recipe, callback

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.callback.criterion(self(x), y)

    def configure_optimizers(self):
        return self.recipe.make_optimizer(self.parameters())


def test_a_recipe_in_lightning_trains_as_in_your_own_loop_to_the_bit(recipe, one_thread):
    assert sorted(recipe.tricks) == ["cosine", "ema", "grad_clip", "label_smoothing"]
    data = recipe.load_data()
    torch.manual_seed(0)
    plain = recipe.build_model(data)
    theirs = Classifier(recipe.build_model(data), recipe, None)
    theirs.model.load_state_dict(plain.state_dict())

    bound = recipe.attach(plain, recipe.make_optimizer(plain.parameters()), budget="10steps", steps_per_epoch=3,
                          batch_size=32, train_data=loader_of(data))
    train_by_hand(bound, loader_of(data))

    callback = RecipeCallback(recipe, module="model", budget="10steps")
    theirs.callback = callback
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=-1, callbacks=[callback], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(theirs, loader_of(data))
    assert trainer.global_step == callback.bound.run.step == 10
    for (key, ours), other in zip(plain.state_dict().items(), theirs.model.state_dict().values()):
        assert torch.equal(ours, other), key
    x = data.val.x[:16]
    assert torch.equal(bound.predict(x), callback.predict(x))  # EMA's average, not the live weights
    assert not torch.equal(callback.predict(x), theirs.model.eval()(x))


@pytest.mark.parametrize("trick, message", [
    ("sam", "trick sam owns the training step, which Lightning owns"),
    ("mixed_precision", "trains in mixed precision, which Lightning owns: leave it out and set Trainer"),
])
def test_a_step_or_precision_lightning_owns_is_refused_by_name(trick, message, tmp_path):
    from tests.conftest import TINY_STUDY

    study = tmp_path / "study.toml"
    study.write_text(TINY_STUDY.format(name="owner", trial_budget="4steps", n_trials=1,
                                       artifacts=(tmp_path / "artifacts").as_posix())
                     + f'[tricks]\ninclude = ["{trick}"]\n[tricks.{trick}]\nenabled = true\n')
    owner = automl.run(study, storage=f"sqlite:///{tmp_path / 'studies.db'}", threads=1).export(
        path=tmp_path / "run.toml")
    data = owner.load_data()
    callback = RecipeCallback(owner, budget="4steps")
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, callbacks=[callback], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(automl.UserError, match=message):
        trainer.fit(Classifier(owner.build_model(data), owner, callback), loader_of(data))
