"""Reproduction report of Shen, Wu, Qiu and Chen ("Lookahead Optimizer 复现报告"),
§2.2: Lookahead(RAdam) with (k, alpha) = (5, 0.8), (10, 0.8), (5, 0.5) beside RAdam alone
(the same inner optimizer with Lookahead off).

Drawn by `_trained.report_curves`: the report's two curves per dataset, from
`make sweep-report_k_alpha collect`.
"""

from __future__ import annotations

from . import _trained

ARTIFACT = "report_k_alpha"
SWEEP, REQUIRES, load, summarize, plot = _trained.report_curves(ARTIFACT, "Report §2.2: Lookahead(RAdam) over (k, α)")
