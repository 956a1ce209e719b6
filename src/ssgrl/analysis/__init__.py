"""Comparisons with their uncertainty (paired bootstrap), ablations and HTML reports of runs."""
