"""The exception that fails a trial when a trick raises, and where in the trick it was raised."""

from __future__ import annotations

import traceback
from dataclasses import dataclass

from automl.errors import TrialFailed
from automl.records import TRICK_ERROR
from automl.run import Run
from automl.trick import HOOKS, Trick


class TrickError(TrialFailed):
    """An exception from a trick's hook or ``__init__`` during a trial: that trial fails, the study goes on."""

    def __init__(self, trick: str, hook: str, step: int | None, error: BaseException) -> None:
        at = "before training" if step is None else f"at step {step}"
        super().__init__(TRICK_ERROR, f"{trick}.{hook} {at}: {type(error).__name__}: {error}")
        self.trick, self.hook, self.step, self.error = trick, hook, step, error


@dataclass(frozen=True)
class RaisedIn:
    """Where in a trick an exception was raised: the trick, its hook, and the run's step and progress then."""

    trick: Trick
    hook: str
    step: int | None
    progress: float | None
    hook_has_run: bool
    """Whether the hook was given the run (``lr_factor`` is not: its step is the loop's)."""

    def error(self, exc: BaseException) -> TrickError:
        return TrickError(self.trick.name, self.hook, self.step, exc)


def raised_in(exc: BaseException, trick: Trick | None = None) -> RaisedIn | None:
    """The outermost hook (or ``__init__``) of a trick (of ``trick``, if given) in ``exc``'s traceback, or None.

    Read from the traceback, so that calling a hook costs nothing extra; the step is that of the nearest
    ``run`` among the frames, also for a hook that is not given one.
    """
    frames = [frame for frame, _ in traceback.walk_tb(exc.__traceback__)]
    for i, frame in enumerate(frames):
        owner, local = frame.f_locals.get("self"), frame.f_locals
        if frame.f_code.co_name in (*HOOKS, "__init__") and isinstance(owner, Trick) and trick in (None, owner):
            runs = [f.f_locals["run"] for f in reversed(frames[:i + 1]) if isinstance(f.f_locals.get("run"), Run)]
            own = isinstance(local.get("run"), Run)
            progress = local["run"].progress if own else local.get("progress")
            return RaisedIn(owner, frame.f_code.co_name, runs[0].step if runs else None,
                            progress if isinstance(progress, float) else None, own)
    return None
