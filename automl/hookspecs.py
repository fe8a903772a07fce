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
    provided by one plugin only and must match ``[a-z][a-z0-9_]*`` (names with a ``:`` belong to a
    family, see :func:`automl_register_model_families`). A plugin whose hook raises or returns
    anything else is reported by name and dropped.
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
    ``:`` is refused (those belong to a family, see :func:`automl_register_dataset_families`).
    A plugin whose hook raises or returns anything else is reported by name and dropped.
    """


@hookspec
def automl_register_model_families() -> "dict[str, Callable[..., Any]]":
    """Return the families of models this plugin provides: ``{prefix: resolver}``.

    A study names one as ``[task] model = "PREFIX:NAME"`` (``torchvision:resnet18``). The resolver is
    called as ``resolver(spec, folders=[...])`` (``spec`` the whole ``PREFIX:NAME``, ``folders`` where the
    study looks for files) and returns an :class:`automl.train.models.ModelSource`; it raises
    :class:`automl.UserError` for a name the family does not have. The prefix
    ``"package.module:callable"`` (``automl.registrations.IMPORT_PATH``) is the family of every other
    ``PREFIX:NAME``. The built-in ``torchvision``, ``timm`` and import-path families are registered so, by
    the plugin ``automl_plugins.families``; a prefix may be provided by one plugin only, and every message
    that lists the forms a model may take is made from these.
    """


@hookspec
def automl_register_dataset_families() -> "dict[str, Callable[..., Any]]":
    """Return the families of data sets this plugin provides: ``{prefix: resolver}``.

    As :func:`automl_register_model_families`, for ``[task] dataset = "PREFIX:NAME"``: the resolver is
    called as ``resolver(spec, folders=[...])`` and returns ``(source, where)``, a data set's source (called
    like a registered one, see :func:`automl_register_datasets`) and where it comes from, for the record.
    """
