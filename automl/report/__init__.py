"""Showing studies to people: tables in the terminal (and, later, plots and HTML)."""
