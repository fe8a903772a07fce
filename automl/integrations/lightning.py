"""A recipe in a Lightning Trainer: a callback that calls the recipe's hooks where automl's own loop calls them.

    recipe = automl.Recipe.load("best.toml")
    callback = RecipeCallback(recipe, budget="2000steps")
    trainer = lightning.Trainer(callbacks=[callback], max_epochs=-1)   # the callback stops it at the budget

In your LightningModule, compute the loss with ``callback.criterion`` (label smoothing and distillation wrap it),
return the optimizer of ``recipe.make_optimizer`` or your own (no LR scheduler: the recipe sets the LR of each
step), and score with ``callback.predict(x)`` where the recipe ensembles or averages. Lightning owns the step and
the precision, so a trick that owns the training step (SAM) or trains in mixed precision is refused by name: set
``Trainer(precision=...)`` for the latter. Batch transforms (mixup, cutout) replace the batch in place, so the
loader must yield lists (a DataLoader of (x, y) pairs does).
"""

from __future__ import annotations

from typing import Any

import torch

try:
    import lightning.pytorch as pl
except ImportError as exc:  # pragma: no cover - said once, on import
    raise ImportError("automl.integrations.lightning needs Lightning: pip install 'automl[lightning]'") from exc

from automl.api.binding import Attached
from automl.api.recipe import Recipe
from automl.errors import UserError


class RecipeCallback(pl.Callback):
    """Binds ``recipe`` to the Trainer's model and optimizer when training starts (``Recipe.attach``'s keywords
    pass through), and stops the Trainer once the budget is spent.

    ``module``: the attribute of your LightningModule that holds the network (``"model"``), where the module holds
    more than it (a trick that averages or ensembles copies the network it is bound to); default the module."""

    def __init__(self, recipe: Recipe, *, module: str | None = None, **attach: Any) -> None:
        self.recipe, self.module, self.attach = recipe, module, attach
        self.bound: Attached | None = None

    @property
    def criterion(self):
        """The recipe's loss (your criterion wrapped by its tricks): compute the training loss with it."""
        return self._bound().criterion

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The recipe's scores for ``x`` (an ensemble's, an average's), as automl evaluates it."""
        return self._bound().predict(x)

    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        # Not on_fit_start: the training loader, and so its length, are set up between the two.
        if len(trainer.optimizers) != 1:
            raise UserError(f"a recipe trains with one optimizer; configure_optimizers gave {len(trainer.optimizers)}")
        if trainer.lr_scheduler_configs:
            raise UserError("the recipe sets the LR of every step (its schedule): configure no LR scheduler")
        loader = trainer.train_dataloader
        options = {"steps_per_epoch": trainer.num_training_batches, "train_data": loader,
                   "batch_size": getattr(loader, "batch_size", None), **self.attach}
        network = pl_module if self.module is None else getattr(pl_module, self.module)
        self.bound = bound = self.recipe.attach(network, trainer.optimizers[0], **options)
        if bound.hooks.train_step:
            raise UserError(f"trick {bound.hooks.train_step[0].__self__.name} owns the training step, which "
                            "Lightning owns: train this recipe with `automl train` or your own loop (.train_step)")
        if bound.run.autocast or bound.run.grad_scaler is not None:
            raise UserError("a trick of this recipe trains in mixed precision, which Lightning owns: leave it out "
                            "and set Trainer(precision='16-mixed' or 'bf16-mixed')")
        if bound.optimizer is not trainer.optimizers[0]:  # a trick regrouped or replaced it
            trainer.optimizers = [bound.optimizer]

    def on_train_batch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", batch: Any,
                             batch_idx: int) -> int | None:
        bound = self._bound()
        if bound.done:
            trainer.should_stop = True
            return -1  # Lightning skips the rest of the epoch; should_stop ends the fit
        x, y = batch[0], batch[1]
        new_x, new_y = bound.before_step(x, y)
        if new_x is not x or new_y is not y:
            if not isinstance(batch, list):
                raise UserError("a trick of this recipe transforms the batch (mixup, cutout), which replaces it in "
                                f"place: make your loader yield lists [x, y], not {type(batch).__name__}")
            batch[0], batch[1] = new_x, new_y
        return None

    def on_before_optimizer_step(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule",
                                 optimizer: torch.optim.Optimizer) -> None:
        self._bound().after_backward()

    def on_train_batch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        bound = self._bound()
        bound.after_step(loss.detach())
        if bound.done:
            trainer.should_stop = True

    def on_train_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._bound().end()

    def _bound(self) -> Attached:
        if self.bound is None:
            raise UserError("the recipe is bound when the Trainer starts training: call trainer.fit first")
        return self.bound


__all__ = ["RecipeCallback"]
