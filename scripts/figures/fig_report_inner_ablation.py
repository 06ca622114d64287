"""Reproduction report of Shen, Wu, Qiu and Chen ("Lookahead Optimizer 复现报告"),
§2.4: Lookahead (k = 5, alpha = 0.8) around SGD (lr 0.1), Adam (lr 1e-3) and RAdam
(lr 0.1), each beside its inner optimizer alone.

Drawn by `_trained.report_curves`: the report's two curves per dataset, from
`make sweep-report_inner_ablation collect`.
"""

from __future__ import annotations

from . import _trained

ARTIFACT = "report_inner_ablation"
SWEEP, REQUIRES, load, summarize, plot = _trained.report_curves(ARTIFACT, "Report §2.4: Lookahead around SGD, Adam and RAdam")
