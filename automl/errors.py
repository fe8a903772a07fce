"""Exceptions that carry a user-facing, one-line message and decide the exit code."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the person at the keyboard: printed as one line, exit code 2.

    The message names what was wrong and, where there is one, the fix.
    """

    exit_code = 2


def unknown(kind: str, name: str, valid: object) -> str:
    """The message for a name that is not one of ``valid``: ``unknown model 'x'; valid: a, b``."""
    return f"unknown {kind} {name!r}; valid: {', '.join(sorted(valid)) or '(none)'}"


class TrialFailed(Exception):
    """A trial that cannot go on (NaN loss, out of memory, no teacher, ...).

    ``reason`` is a short machine-readable tag (``"nan_loss"``, ``"oom"``) stored
    with the trial; the study goes on with the next trial.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
