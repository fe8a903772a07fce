"""The loop a user writes by hand around a bound recipe, as README's "A recipe in your own loop" shows it."""

from __future__ import annotations

from typing import Any, Iterable

from automl.api.binding import Attached


def train_by_hand(bound: Attached, batches: Iterable[Any]) -> None:
    """Pass after pass over ``batches`` until the budget is spent: the hooks at the places automl's loop calls
    them, the step taken the way the recipe needs (a trick's own step, a GradScaler's, or yours)."""
    while not bound.done:
        for x, y in batches:
            if bound.done:
                break
            x, y = bound.before_step(x, y)
            if bound.hooks.train_step:
                loss = bound.train_step(x, y)
            else:
                with bound.amp():
                    loss = bound.criterion(bound.model(x), y)
                bound.optimizer.zero_grad(set_to_none=True)
                bound.backward(loss)
                if bound.run.grad_scaler is not None:
                    bound.step()
                else:
                    bound.after_backward()
                    bound.optimizer.step()
            bound.after_step(loss)
    bound.end()


def val_error(bound: Attached, data: Any, batch_size: int = 256) -> float:
    """The bound recipe's validation error on ``data.val``, with its predict."""
    wrong = sum(int((bound.predict(x).argmax(1) != y).sum()) for x, y in data.val.batches(batch_size))
    return wrong / len(data.val)
