"""Showing studies to people: tables in the terminal, figures, and the HTML report of ``automl report``."""
