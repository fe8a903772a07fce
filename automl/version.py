"""automl's version, written once: the package, the CLI's ``--version`` and exported run files read it here."""

__version__ = "0.1.0"

__all__ = ["__version__"]
