"""automl: tune the training tricks of deep networks under a fixed budget of device time.

Layers, from the bottom up. A module imports from its own layer and the layers below it, never from one above
(imports under ``TYPE_CHECKING`` and inside functions count too), and no imports go round in a cycle;
``tests/test_layers.py`` reads this table and holds the code to it. A package stands for all its modules.

- about: version
- base: errors, files, checks, imports, interrupts, devices, threads, records, clocks, budget, stats, seeds, sequential
- tricks: run, trick, trick_errors, overrides, trick_space, trick_checks, hookspecs
- host: registrations, host, authoring
- space: space
- train: train
- storage: storage
- study: study
- report: report
- commands: cli, api, integrations, testing, __main__, __init__

base holds what every layer needs (the trial's records: keys, states, endings, the best-trial rule); tricks is
what a plugin author sees; host discovers plugins and their source families; space picks a trial's tricks;
train trains one run; storage keeps studies, the ledger and artifacts; study runs trials, workers and
comparisons; report shows them; the commands, the Python API beside them (``automl.run``, ``automl.Recipe``: the
commands are thin wrappers of its functions), the integrations built on it and the test helpers sit on top. The
package itself re-exports what plugin authors use, and the Python API on its first use, so it sits on top.
"""

from automl.budget import Budget
from automl.errors import TrialFailed, UserError
from automl.hookspecs import hookimpl, hookspec
from automl.records import INFERENCE_COST, PLANNED_INFERENCE_COST
from automl.run import Run
from automl.trick import Trick
from automl.version import __version__

# The import above bound the submodule automl.run to the name `run` here; `automl.run` is the Python API's function
# (below), and `from automl.run import Run` still finds the submodule, as every plugin and module imports it.
del globals()["run"]

_API = ("Attached", "Comparison", "Configuration", "Recipe", "StudyResult", "compare", "confirm", "load", "run")


def __getattr__(name: str):
    """The Python API (``automl.api``), imported on its first use: ``automl --help`` and a plugin that imports
    ``Trick`` pay for none of it (Optuna, SQLAlchemy, rich)."""
    if name not in _API:
        raise AttributeError(f"module 'automl' has no attribute {name!r}")
    import automl.api

    value = globals()[name] = getattr(automl.api, name)
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = ["INFERENCE_COST", "PLANNED_INFERENCE_COST", "Attached", "Budget", "Comparison", "Configuration", "Recipe",
           "Run", "StudyResult", "Trick", "TrialFailed", "UserError", "__version__", "compare", "confirm", "hookimpl",
           "hookspec", "load", "run"]
