"""Reproduction report of Shen, Wu, Qiu and Chen ("Lookahead Optimizer 复现报告"),
§2.5 (an extension: the paper has no batch study): Lookahead(RAdam) with k x batch = 640,
(k, batch) in {(2, 320), (5, 128), (10, 64)}.

Drawn by `_trained.report_curves`: the report's two curves per dataset, from
`make sweep-report_batch_k collect`.
"""

from __future__ import annotations

from . import _trained

ARTIFACT = "report_batch_k"
SWEEP, REQUIRES, load, summarize, plot = _trained.report_curves(ARTIFACT, "Report §2.5: Lookahead(RAdam), k × batch = 640")
