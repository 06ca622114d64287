"""Fig. 9 + Table 5: CIFAR-100 train loss and final test accuracy of Lookahead(SGD) over
k in {5, 10} x alpha in {0.5, 0.8}, beside SGD (the same inner optimizer with Lookahead off).

Paper (Fig. 9, Table 5 [V]): every (k, alpha) ends above SGD (77.72%) and within about 0.3 pp
of each other. Ours, from `make sweep-table5_k_alpha collect`: (a) train loss per epoch (mean
over seeds); (b) final test accuracy per arm, mean +- 95% CI over seeds (filled) beside the
paper's mean +- std (open diamonds). The table itself is results/table5_k_alpha/table.md.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd

from . import _style, _trained

ARTIFACT = "fig9_k_alpha"
SWEEP = "make sweep-table5_k_alpha SCALE=cpu && make collect"
REQUIRES = ["table5_k_alpha/curves.csv", "table5_k_alpha/table.csv"]
ARM = ["optim.lookahead.k", "optim.lookahead.alpha"]


def load(results_dir: Path) -> pd.DataFrame:
    """Train-loss curves (panel 'curve') and the Table 5 cells (panel 'table')."""
    curves = _trained.read(results_dir, "table5_k_alpha", "curves.csv", ["train_loss"])
    table = pd.read_csv(Path(results_dir) / REQUIRES[1])
    return pd.concat([curves.assign(panel="curve"), table.assign(panel="table")], ignore_index=True)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Seed means of the curves per arm; the table cells as they are."""
    curves = df[df["panel"] == "curve"]
    curves = _trained.seed_mean(curves, ["scale", "task", "dataset", "optim", *[c for c in ARM if c in curves]])
    return pd.concat([curves.assign(panel="curve"), df[df["panel"] == "table"]], ignore_index=True)


def plot(summary: pd.DataFrame) -> tuple[mpl.figure.Figure, np.ndarray]:
    """Curves per arm, then final accuracy per arm with the paper's values; never saves."""
    fig, (ax_a, ax_b) = _style.new_figure(2, "double")
    curves, table = summary[summary["panel"] == "curve"], summary[summary["panel"] == "table"]
    if curves.empty:
        _trained.no_data(ax_a, "train_loss")
    else:
        _trained.draw_arms(ax_a, curves, [c for c in ARM if c in curves], band=False, lw=0.9)
        ax_a.set(yscale="log", xlabel="epoch", ylabel="train loss", title="(a) train loss")
        ax_a.legend()
    labels = list(dict.fromkeys(f"{r}, {c}" if c != "baseline" else r for r, c in zip(table["row"], table["column"])))
    for i, (_, cell) in enumerate(table.drop_duplicates(["row", "column"]).iterrows()):
        optim = "sgd" if cell["column"] == "baseline" else "lookahead_sgd"
        if cell["n"] > 0:
            ax_b.errorbar(i, cell["mean"], yerr=np.nan_to_num(cell["ci95"]), fmt=_style.marker(optim),
                          color=_style.color(optim), capsize=2)
        if pd.notna(cell["paper_value"]):
            ax_b.errorbar(i + 0.25, cell["paper_value"], yerr=np.nan_to_num(cell["paper_std"]), fmt="D",
                          mfc="white", color=_style.color(optim), capsize=2, ms=3)
    ax_b.set_xticks(range(len(labels)), [t.replace("alpha", "α") for t in labels], rotation=30, ha="right")
    ax_b.set(ylabel="final test accuracy (%)", title="(b) ours ● (95% CI) vs paper ◇ (± std)")
    _style.title(fig, "Fig. 9 / Table 5: CIFAR-100, Lookahead(SGD) over k and α", summary)
    return fig, np.array([ax_a, ax_b])
