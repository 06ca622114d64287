"""Reproduction report of Shen, Wu, Qiu and Chen ("Lookahead Optimizer 复现报告"),
§2.3.1: RAdam vs Lookahead(RAdam) at the lower learning rate 0.01.

Drawn by `_trained.report_curves`: the report's two curves per dataset, from
`make sweep-report_lr001 collect`.
"""

from __future__ import annotations

from . import _trained

ARTIFACT = "report_lr001"
SWEEP, REQUIRES, load, summarize, plot = _trained.report_curves(ARTIFACT, "Report §2.3.1: RAdam vs Lookahead(RAdam), lr 0.01")
