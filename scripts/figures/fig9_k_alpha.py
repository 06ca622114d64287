"""Fig. 9 + Table 5: train loss and final test accuracy of Lookahead(SGD) over k in {5, 10} x
alpha in {0.5, 0.8}, beside SGD (the same inner optimizer with Lookahead off).

Paper (Fig. 9 and Table 5, read from an image of the paper [V, figure image]; CIFAR-100,
ResNet-18, 200 epochs [S]): every (k, alpha) ends above SGD, whose 77.72% is given in the
Table 5 caption, and within about 0.3 pp of each other. Ours, from `make sweep-table5_k_alpha
collect`, is another protocol (at cpu scale CIFAR-10, ResNet-20, 3 epochs: the dataset, model
and length are read from runs.csv), so ours and the paper's never share an axis:
(a) our train loss per epoch, mean over seeds, one colour per (k, alpha) arm;
(b) our final test accuracy per arm, mean +- Student-t 95% CI over seeds (no bar where n = 1),
    our baseline as a horizontal line;
(c) the paper's Table 5, mean +- std as printed, its SGD baseline (Table 5 caption) as a line.
The colours of the arms are the same in all three panels. The table itself is
results/table5_k_alpha/table.md.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd

from . import _style, _trained

ARTIFACT = "fig9_k_alpha"
SWEEP = "make sweep-table5_k_alpha SCALE=cpu && make collect"
REQUIRES = ["table5_k_alpha/curves.csv", "table5_k_alpha/table.csv", "table5_k_alpha/runs.csv"]
# The paper's protocol for Fig. 9 / Table 5 (../shared/reference/paper-and-peers.md §1.5): the
# dataset and the values are read from the image of the figure and table [V, figure image]; the
# model (the Cutout repository's ResNet-18) and the 200 epochs come from secondary sources [S].
PAPER_PROTOCOL = "CIFAR-100, ResNet-18, 200 epochs [S]"
PAPER_TAG = "[V, figure image]"
MODELS = {"resnet": "ResNet-", "preact": "PreAct ", "wrn": "WRN-"}


def _model_name(model: str) -> str:
    """resnet20 -> ResNet-20 (and the other model names of experiments/models)."""
    m = re.fullmatch(r"([a-z_]+?)(\d+)", str(model))
    if m and m.group(1) in MODELS:
        return f"{MODELS[m.group(1)]}{m.group(2)}"
    return str(model)


def protocol(runs: pd.DataFrame) -> str:
    """'ours: CIFAR-10, ResNet-20, 3 epochs' from the runs' dataset, task.model and trainer.epochs."""
    parts = []
    for column, fmt in (("dataset", _trained.task_name), ("task.model", _model_name),
                        ("trainer.epochs", lambda e: f"{float(e):g} epochs")):
        if column in runs:
            values = pd.unique(runs[column].dropna())
            parts.append(", ".join(fmt(v) for v in values) if len(values) else f"{column} unknown")
    return "ours: " + ", ".join(parts)


def load(results_dir: Path) -> pd.DataFrame:
    """Train-loss curves (panel 'curve'), the Table 5 cells (panel 'table') and the protocol of
    the runs (panel 'runs': dataset, model, epochs)."""
    grid = _trained.load_grid(results_dir, "table5_k_alpha", "train_loss")
    runs = pd.read_csv(Path(results_dir) / REQUIRES[2])
    runs = runs[runs["status"] == "completed"] if "status" in runs else runs
    keep = [c for c in ("run", "scale", "dataset", "task.model", "trainer.epochs") if c in runs]
    return pd.concat([grid, runs[keep].assign(panel="runs")], ignore_index=True)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Seed means of the curves per arm; the table cells and the runs' protocol as they are."""
    curves, table = _trained.summarize_grid(df[df["panel"] != "runs"])
    return pd.concat([curves, table, df[df["panel"] == "runs"]], ignore_index=True)


def _cells(table: pd.DataFrame) -> pd.DataFrame:
    """The cells in the order baseline, (5, .5), (5, .8), (10, .5), (10, .8), with their style."""
    rows = []
    for _, cell in table.iterrows():
        k, alpha = _trained.cell_arm(cell["row"], cell["column"])
        optim = "sgd" if np.isnan(k) else "lookahead_sgd"
        color, _, marker = _trained.grid_look(optim, k, alpha)
        label = "SGD (Lookahead off)" if np.isnan(k) else f"k={k:g}, α={alpha:g}"
        rows.append(dict(cell, k=k, alpha=alpha, optim=optim, color=color, marker=marker, label=label))
    out = pd.DataFrame(rows)
    return out.assign(order=out["k"].fillna(0)).sort_values(["order", "alpha"], kind="stable", na_position="first")


def _panel(ax, cells: pd.DataFrame, value: str, spread: str, ours: bool, ylabel: str) -> None:
    """One marker per arm at x = 0..4; the baseline also as a horizontal line across the arms."""
    for x, (_, c) in enumerate(cells.iterrows()):
        if pd.isna(c[value]) or (ours and c["n"] == 0):
            continue
        if ours:
            _trained.errorbars(ax, x, c[value], c[spread], c["n"], c["marker"], c["color"])
        else:
            ax.errorbar(x, c[value], yerr=np.nan_to_num(c[spread]), fmt=c["marker"], mfc="white",
                        color=c["color"], capsize=2)
        if c["optim"] == "sgd":
            ax.axhline(c[value], color=c["color"], lw=0.8, ls=":", zorder=0)
    n = [f"\n(n={int(c['n'])})" if ours else "" for _, c in cells.iterrows()]
    ax.set_xticks(range(len(cells)), [f"{c['label']}{m}" for (_, c), m in zip(cells.iterrows(), n)],
                  rotation=30, ha="right")
    ax.set(ylabel=ylabel)


def plot(summary: pd.DataFrame) -> tuple[mpl.figure.Figure, np.ndarray]:
    """(a) our curves, (b) our final accuracy, (c) the paper's Table 5; never saves."""
    fig, (ax_a, ax_b, ax_c) = _style.new_figure(3, "triple")
    curves, table = summary[summary["panel"] == "curve"], summary[summary["panel"] == "table"]
    ours = protocol(summary[summary["panel"] == "runs"])
    if curves.empty:
        _trained.no_data(ax_a, "train_loss")
    else:
        ns = _trained.draw_grid_curves(ax_a, curves)
        ax_a.set(yscale="log", xlabel="epoch", ylabel="train loss")
        _trained.titled(ax_a, f"(a) {ours}\ntrain loss", _trained.spread_note(ns, "mean"))
        # One legend for the three panels: an arm has the same colour in each.
        fig.legend(*ax_a.get_legend_handles_labels(), loc="outside lower center", ncol=5)
    cells = _cells(table)
    _panel(ax_b, cells, "mean", "ci95", True, "final test accuracy (%)")
    _trained.titled(ax_b, f"(b) {ours}\nfinal test accuracy", _trained.spread_note(cells["n"], "ci"))
    if cells["paper_value"].notna().any():
        _panel(ax_c, cells, "paper_value", "paper_std", False, "final test accuracy (%)")
        note = "mean ± std as printed"
        base = cells[(cells["optim"] == "sgd") & cells["paper_value"].notna()]
        if len(base):  # the baseline's value and where the paper gives it (paper_numbers.csv)
            source = str(base["paper_source"].iat[0]).removeprefix("paper ").split(" (")[0]
            note += f"; SGD line: {base['paper_value'].iat[0]:g}% ({source})"
        _trained.titled(ax_c, f"(c) paper's Table 5 {PAPER_TAG}\n{PAPER_PROTOCOL}", note, width=40)
    else:
        _trained.no_data(ax_c, "paper values (results/paper_numbers.csv)")
    for ax in (ax_b, ax_c):
        ax.margins(y=0.12)
    _style.title(fig, "Fig. 9 / Table 5: Lookahead(SGD) over k and α, ours and the paper's on separate axes",
                 summary[summary["panel"] != "runs"])
    return fig, np.array([ax_a, ax_b, ax_c])
