"""automl: tune the training tricks of deep networks under a fixed budget of device time."""

from automl.budget import Budget
from automl.errors import TrialFailed, UserError
from automl.hookspecs import hookimpl, hookspec
from automl.records import INFERENCE_COST
from automl.run import Run
from automl.trick import Trick

__all__ = ["INFERENCE_COST", "Budget", "Run", "Trick", "TrialFailed", "UserError", "hookimpl", "hookspec"]
__version__ = "0.1.0"
