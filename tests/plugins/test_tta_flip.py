"""Tests of test-time flip averaging: the prediction is the mean of the softmax of each image and of its mirror,
the validation error is that prediction's, training is untouched and the inference cost is 2."""

from __future__ import annotations

import pytest
import torch

from automl.testing import run_for, tiny_data, tiny_model, train_tiny, try_trick
from automl_plugins.swa import Swa
from automl_plugins.tta_flip import TTAFlip, flip_average

pytestmark = pytest.mark.usefixtures("one_thread")


def mean_of_softmaxes(model, x):
    """Written out here: the two forward passes in eval mode, their softmaxes, the mean."""
    model.eval()
    with torch.no_grad():
        return (torch.softmax(model(x), dim=1) + torch.softmax(model(torch.flip(x, dims=[3])), dim=1)) / 2


def test_flip_average_mirrors_left_to_right():
    x = torch.arange(6.0).view(1, 1, 2, 3)
    seen = []
    flip_average(lambda images: seen.append(images) or torch.zeros(1, 2), x)
    assert seen[0].equal(x) and seen[1].flatten().tolist() == [2.0, 1.0, 0.0, 5.0, 4.0, 3.0]


def test_the_prediction_is_the_mean_of_the_softmax_of_the_image_and_of_its_mirror():
    data = tiny_data()
    model = tiny_model(data)
    train_tiny([], "10steps", data=data, model=model)
    x = data.val.x
    trick = TTAFlip()
    got = trick.predict(run_for(model, data=data), x)
    want = mean_of_softmaxes(model, x)
    assert got.shape == (len(x), data.num_classes)
    assert torch.allclose(got, want, atol=1e-6)
    # Not the image's own softmax: the mirror changes the scores, and some of the predicted classes.
    own = torch.softmax(model(x), dim=1)
    assert (want - own).abs().max() > 1e-3 and (want.argmax(1) != own.argmax(1)).any()


def test_the_validation_error_is_that_of_the_flip_averaged_prediction_and_costs_two_passes():
    data = tiny_data()
    model = tiny_model(data)
    trick, result = try_trick(TTAFlip, "12steps", data=data)
    # The same training without the trick: tta_flip changes only inference.
    plain = train_tiny([], "12steps", data=data, model=model)
    assert plain.train_loss == result.train_loss and plain.val_error_model == result.val_error_model
    expected = (mean_of_softmaxes(model, data.val.x).argmax(1) != data.val.y).float().mean().item()
    assert result.val_error == pytest.approx(expected, abs=1e-9)
    assert result.attrs["inference_cost"] == 2


def test_an_average_that_starts_later_takes_over_and_its_cost_counts():
    # SWA predicts only once its average exists (the last 40% here): tta_flip predicts at the early rung.
    # In the order a study runs them (tta_flip's order is late), so SWA is asked first.
    swa, tta = Swa(fraction=0.4), TTAFlip()
    assert swa.order < tta.order
    result = train_tiny([swa, tta], "8steps", rungs=2)
    alone = train_tiny([TTAFlip()], "8steps", rungs=2)
    assert len(result.history) == len(alone.history) == 2
    assert result.history[0] == alone.history[0]  # the early rung: tta_flip's prediction in both
    assert result.attrs["inference_cost"] == 1 and alone.attrs["inference_cost"] == 2
