"""The hooks a plugin may implement; one docstring each, as pytest documents its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
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
