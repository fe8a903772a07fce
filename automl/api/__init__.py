"""automl from Python: run, compare and confirm studies as the commands do, read them as tables, and use a trial's
recipe in your own training loop.

    import automl
    result = automl.run("studies/quickstart.toml", total_budget="20s")
    result.trials            # one row per trial (a pandas DataFrame)
    result.best().tricks     # the best configuration, as `automl best` ranks them
    recipe = result.export() # the best trial's recipe, for `automl train` or your own loop
"""

from automl.api.binding import Attached
from automl.api.comparisons import Comparison, compare, confirm
from automl.api.recipe import Recipe
from automl.api.studies import Configuration, StudyResult, WorkerFailed, load, run

__all__ = ["Attached", "Comparison", "Configuration", "Recipe", "StudyResult", "WorkerFailed", "compare", "confirm",
           "load", "run"]
