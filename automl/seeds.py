"""How many seeds a mean over seeds rests on: the fewest any of them allows, and the commands' default.

Kept apart from ``automl.stats`` (which re-exports ``MIN_SEEDS``) so that the command line can say both in its
help without loading scipy: ``automl --help`` imports every command's parser.
"""

MIN_SEEDS = 2
"""The fewest seeds a mean's interval, a paired test or a confirmation rests on: one seed gives no interval."""
DEFAULT_SEEDS = 5
"""Seeds of `automl compare` (per arm and budget) and of `automl confirm` (per trial) unless ``--seeds`` says."""

__all__ = ["DEFAULT_SEEDS", "MIN_SEEDS"]
