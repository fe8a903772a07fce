"""The hooks a plugin may implement; one docstring each, as pytest documents its own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:
    from torch import nn

    from automl.trick import Trick

hookspec = pluggy.HookspecMarker("automl")
hookimpl = pluggy.HookimplMarker("automl")


# -------------------------------------------------------------------------------------
# Discovery
# -------------------------------------------------------------------------------------


@hookspec
def automl_register_tricks() -> "list[type[Trick]]":
    """Return the :class:`automl.Trick` subclasses this plugin provides.

    Called once when the host starts. The results of every plugin are collected; a
    trick name may be provided by one plugin only. A plugin whose hook raises, or that
    returns something other than Trick subclasses with a valid search space, is
    reported by name and dropped; the other plugins keep working.
    """


@hookspec
def automl_register_models() -> "dict[str, Callable[..., nn.Module]]":
    """Return the models this plugin provides: ``{name: builder}``.

    A study names one in ``[task] model``. The builder is called by keyword as
    ``builder(in_channels=C, num_classes=K, **model_args)`` (``model_args`` from the study's
    ``[task]``; its keyword parameters other than those two are the model's options) and
    returns an ``nn.Module`` that maps a (N, C, H, W) batch to (N, K) scores; that is checked
    on one batch before a study is created. Called once when the host starts; a name may be
    provided by one plugin only and must match ``[a-z][a-z0-9_]*`` (names with a ``:`` are
    ``torchvision:NAME``, ``timm:NAME`` and ``package.module:callable``). A plugin whose hook
    raises or returns anything else is reported by name and dropped.
    """


@hookspec
def automl_register_datasets() -> "dict[str, Callable[..., Any]]":
    """Return the data sets this plugin provides: ``{name: source}``.

    A source is called by keyword with the arguments every data set takes (``root``,
    ``val_fraction``, ``seed``, ``device``, ``download``, ``verify``, ``loader``) plus the
    study's ``[task] dataset_args``, which are the keyword parameters of its own; it
    returns an :class:`automl.train.splits.Dataset` (``automl.train.torch_data.from_torch``
    makes one from two ``torch.utils.data.Dataset``s, in memory or streamed). Called once
    when the host starts; a name may be provided by one plugin only, and a name with a
    ``:`` is refused (those are ``torchvision:NAME`` and ``module:callable``). A plugin
    whose hook raises or returns anything else is reported by name and dropped.
    """
