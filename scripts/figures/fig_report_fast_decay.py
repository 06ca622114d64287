"""Reproduction report of Shen, Wu, Qiu and Chen ("Lookahead Optimizer 复现报告"),
§2.3.2: RAdam vs Lookahead(RAdam) with the lr decayed x0.2 at epochs 30, 48 and 58 of
200 (scaled to the run length).

Drawn by `_trained.report_curves`: the report's two curves per dataset, from
`make sweep-report_fast_decay collect`.
"""

from __future__ import annotations

from . import _trained

ARTIFACT = "report_fast_decay"
SWEEP, REQUIRES, load, summarize, plot = _trained.report_curves(ARTIFACT, "Report §2.3.2: RAdam vs Lookahead(RAdam), fast lr decay")
