"""Penn Treebank: Lookahead over k in {5, 10} x alpha in {0.5, 0.8} around one inner optimizer,
beside that optimizer with Lookahead off (the issue list's PTB grid; the paper has none).

Ours, from `make sweep-ptb_k_alpha collect`: (a) validation perplexity per epoch (mean over
seeds, a colour per (k, alpha)) per arm; (b) final test perplexity per arm, mean +- Student-t
95% CI over seeds (no bar where n = 1), in the same colours. Only the inner
optimizers that were run are drawn. The table itself is results/ptb_k_alpha/table.md.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd

from . import _style, _trained

ARTIFACT = "fig_ptb_k_alpha"
SWEEP = "make sweep-ptb_k_alpha SCALE=cpu && make collect"
REQUIRES = ["ptb_k_alpha/curves.csv", "ptb_k_alpha/table.csv"]


def load(results_dir: Path) -> pd.DataFrame:
    """Validation-perplexity curves (panel 'curve') and the test-perplexity cells (panel 'table')."""
    return _trained.load_grid(results_dir, "ptb_k_alpha", "val_ppl", column="test")


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Seed means of the curves per arm; the cells of the inner optimizers that have runs."""
    curves, table = _trained.summarize_grid(df)
    inner = table["row"].str.extract(r"^(?:LA\()?(\w+)")[0]  # 'LA(SGD) k = 5, ...' / 'SGD (Lookahead off)'
    run = set(inner[table["n_runs"] > 0])
    return pd.concat([curves, table[inner.isin(run)].assign(inner=inner)], ignore_index=True)


def plot(summary: pd.DataFrame) -> tuple[mpl.figure.Figure, np.ndarray]:
    """Validation perplexity per arm, then final test perplexity per arm; never saves."""
    fig, ax_a, ax_b, table = _trained.grid_figure(summary, "val_ppl", "validation perplexity")
    optims = [inner.lower() if "Lookahead off" in row else f"lookahead_{inner.lower()}"
              for row, inner in zip(table["row"], table["inner"])]
    colors = [_trained.grid_look(optim, *_trained.cell_arm(row, column))[0]
              for optim, row, column in zip(optims, table["row"], table["column"])]
    _trained.draw_cells(ax_b, table, list(table["row"]), optims, "final test perplexity", colors=colors,
                        title="(b) final test perplexity per arm")
    _style.title(fig, "Penn Treebank LSTM: Lookahead over k and α", summary)
    return fig, np.array([ax_a, ax_b])
