"""Hydra sweeper plugin: every valid member runs, a summary is printed, failures set the exit code."""
