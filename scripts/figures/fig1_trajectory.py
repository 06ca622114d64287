"""Fig. 1 (left): test accuracy on the plane through the first, middle and last fast weights of a
Lookahead window, with the fast (dashed) and slow (solid) paths projected onto it.

Paper (Fig. 1 [V]): Lookahead (k = 10) on a ResNet-32, CIFAR-100, epoch 100; the slow weights
step towards higher accuracy than the fast weights reach. Ours: `make sweep-fig1_trajectory`,
then `python scripts/trajectory_plane.py runs/fig1_trajectory/<run>` writes
results/fig1_trajectory/{surface,path}.csv (plane, grid and BatchNorm protocol in that script's
docstring; the bottom line of the title says how BatchNorm statistics were set).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd

from . import _style

ARTIFACT = "fig1_trajectory"
SWEEP = "make sweep-fig1_trajectory SCALE=cpu && python scripts/trajectory_plane.py runs/fig1_trajectory/<run>"
REQUIRES = ["fig1_trajectory/surface.csv", "fig1_trajectory/path.csv"]


def load(results_dir: Path) -> pd.DataFrame:
    """Grid points (panel 'surface') and projected snapshots (panel 'path')."""
    surface, path = (pd.read_csv(Path(results_dir) / f) for f in REQUIRES)
    return pd.concat([surface.assign(panel="surface"), path.assign(panel="path")], ignore_index=True)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """One run's plane: nothing to average; order the paths by step."""
    return df.sort_values(["panel", "kind", "step", "u", "v"], kind="stable", na_position="first").reset_index(drop=True)


def plot(summary: pd.DataFrame) -> tuple[mpl.figure.Figure, np.ndarray]:
    """Filled contour of test accuracy (%) with the fast and slow paths; never saves."""
    fig, axes = _style.new_figure(1, "single")
    ax = axes[0]
    surface = summary[summary["panel"] == "surface"]
    grid = surface.pivot_table(index="v", columns="u", values="test_acc")
    filled = ax.contourf(grid.columns, grid.index, 100 * grid.to_numpy(), levels=12, cmap="viridis")
    fig.colorbar(filled, ax=ax, label="test accuracy (%)")
    path = summary[summary["panel"] == "path"]
    for kind, dash, name in (("fast", "--", "fast weights"), ("slow", "-", "slow weights")):
        g = path[path["kind"] == kind].sort_values("step")
        if kind == "slow":  # the slow weights move only at syncs: draw one point per slow step
            g = g.drop_duplicates(["u", "v"])
        ax.plot(g["u"], g["v"], dash, marker="o" if kind == "slow" else None, ms=3,
                color=_style.color("lookahead_sgd" if kind == "slow" else "sgd"), label=name)
    ax.set(xlabel="u (first → middle fast weights)", ylabel="v (orthogonal, towards last)")
    ax.legend()
    k = ", ".join(f"{v:g}" for v in summary["k"].dropna().unique())
    model = ", ".join(map(str, summary["model"].dropna().unique()))
    bn = ", ".join(map(str, summary["bn"].dropna().unique()))
    _style.title(fig, f"Fig. 1: Lookahead (k = {k}) on a {model}\nBatchNorm {bn}", summary)
    return fig, axes
