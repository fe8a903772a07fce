"""How many seeds a mean over seeds rests on: the fewest any of them allows, and the commands' default.

Kept apart from ``automl.stats`` (which re-exports ``MIN_SEEDS``) so that the command line can say both in its
help without loading scipy: ``automl --help`` imports every command's parser.
"""

MIN_SEEDS = 2
"""The fewest seeds a mean's interval, a paired test or a confirmation rests on: one seed gives no interval."""
DEFAULT_SEEDS = 5
"""Seeds of `automl confirm` (per trial) unless ``--seeds`` says."""
DEFAULT_MAX_SEEDS = 40
"""The most seeds `automl compare` gives an arm at a budget in its sequential design (``[compare] max_seeds``,
``--max-seeds``): benchmarks/race_vs_fixed.py chose it, for 90% power at a 2-image difference on digits' noise."""
DEFAULT_TOLERANCE = 0.005
"""`automl compare` calls an arm equivalent to the reference once its interval lies within this many (half a
percentage point of validation error) either side (``[compare] tolerance``, ``--tolerance``; 0: never)."""

__all__ = ["DEFAULT_MAX_SEEDS", "DEFAULT_SEEDS", "DEFAULT_TOLERANCE", "MIN_SEEDS"]
