"""Reproduction report of Shen, Wu, Qiu and Chen ("Lookahead Optimizer 复现报告"),
§2.1: RAdam vs Lookahead(RAdam) (k = 5, alpha = 0.8), lr 0.1, weight decay 5e-4,
x0.2 at 30/60/80 % of training.

Drawn by `_trained.report_curves`: the report's two curves per dataset, from
`make sweep-report_radam collect`.
"""

from __future__ import annotations

from . import _trained

ARTIFACT = "report_radam"
SWEEP, REQUIRES, load, summarize, plot = _trained.report_curves(ARTIFACT, "Report §2.1: RAdam vs Lookahead(RAdam)")
