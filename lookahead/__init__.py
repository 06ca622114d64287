"""Lookahead optimizer (Zhang, Lucas, Hinton, Ba 2019): ``from lookahead import Lookahead``."""

from lookahead._sync import lookahead_sync_
from lookahead.optimizer import PULLBACK_MODES, Lookahead

__all__ = ["Lookahead", "PULLBACK_MODES", "lookahead_sync_"]
