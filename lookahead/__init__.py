"""Lookahead optimizer (Zhang, Lucas, Hinton, Ba 2019): ``from lookahead import Lookahead``."""

from lookahead._schedule import AlphaSchedule, alpha_power_schedule
from lookahead._sync import lookahead_sync_
from lookahead.optimizer import PULLBACK_MODES, Lookahead

__all__ = ["AlphaSchedule", "Lookahead", "PULLBACK_MODES", "alpha_power_schedule", "lookahead_sync_"]
