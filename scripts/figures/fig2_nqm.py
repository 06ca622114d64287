"""Fig. 2: SGD vs Lookahead(SGD, k = 5) on the noisy quadratic model (NQM), analytic.

Paper (as we recall it; not verified against the PDF): the convergence of SGD and Lookahead
against their final loss, with Lookahead curves for many alpha in (0, 1] overlaid, so that each
vertical slice compares optimizers that reach the same final loss. Panels:
(a) E[L] against the inner step at the learning rate CURVE_LR (theory.csv);
(b) the asymptotic convergence rate 1 - rho^2 per step against the final (step -> infinity)
    E[L], one point per learning rate (theory_final.csv): the vertical-slice view;
(c) E[L] at the last step of theory.csv (10^4) against alpha, alpha = 1 being the inner
    optimizer alone, for the learning rates LRS_SHOWN, without momentum (solid) and with
    heavy-ball momentum (dashed). Trained runs from fig2_nqm/summary.csv (`make sweep-fig2_nqm`
    then `make collect`; mean +- 95% CI over seeds, slow weights for Lookahead, taken at the
    same step) are overlaid, and replace LRS_SHOWN, when that file exists.
CURVE_LR and LRS_SHOWN are our choices; the paper's grids are unknown to us.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm

from . import _style

ARTIFACT = "fig2_nqm"
SWEEP = "make nqm-theory"
REQUIRES = ["fig2_nqm/theory.csv", "fig2_nqm/theory_final.csv"]
TRAINED = "fig2_nqm/summary.csv"
CURVE_LR, LRS_SHOWN = 0.5, (0.2, 0.5, 1.0)
METRICS = ("final_val_loss_slow", "final_val_loss")  # the first one present wins
NAMES = {"optim": "method", "optim.lookahead.alpha": "alpha", "optim.lr": "lr",
         "optim.momentum": "momentum", "mean": "final_loss"}


def _trained(summary: pd.DataFrame) -> pd.DataFrame:
    """collect's long summary -> one row per (method, alpha, lr, momentum) of (Lookahead) SGD."""
    rows = summary[summary["metric"].isin(METRICS)
                   & summary["optim"].isin(["sgd", "lookahead_sgd"])]
    rows = rows.assign(rank=rows["metric"].map(METRICS.index)).sort_values("rank", kind="stable")
    extra = ["ci95", "n", "scale", "task"]
    rows = rows.rename(columns=NAMES).reindex(columns=[*NAMES.values(), *extra])
    rows["momentum"] = rows["momentum"].fillna(0.0)
    rows["alpha"] = rows["alpha"].where(rows["method"] != "sgd", 1.0)  # SGD = Lookahead, alpha 1
    return rows.drop_duplicates(["method", "alpha", "lr", "momentum"]).assign(panel="trained")


def load(results_dir: Path) -> pd.DataFrame:
    """Rows tagged by `panel`: 'curve' (theory.csv), 'rate' (theory_final.csv) and 'trained'
    (summary.csv, only if it exists)."""
    results_dir = Path(results_dir)
    curves, final = (pd.read_csv(results_dir / name) for name in REQUIRES)
    frames = [curves.assign(panel="curve"), final.assign(panel="rate")]
    if (results_dir / TRAINED).exists():
        frames.append(_trained(pd.read_csv(results_dir / TRAINED)))
    return pd.concat(frames, ignore_index=True)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Select what is drawn; analytic rows need no aggregation over seeds, and trained rows keep
    collect's mean, ci95 and n."""
    curves, trained = df[df["panel"] == "curve"], df[df["panel"] == "trained"]
    plain = curves[curves["momentum"] == 0]
    lrs = np.unique(plain["lr"])
    curve_lr = lrs[np.argmin(np.abs(np.log(lrs / CURVE_LR)))]
    shown = np.asarray(trained["lr"].unique() if len(trained) else LRS_SHOWN, float)
    last = curves[(curves["step"] == curves["step"].max()) & (curves["method"] == "lookahead_sgd")]
    last = last[np.isclose(last["lr"].to_numpy()[:, None], shown[None]).any(axis=1)]
    keep = [plain[plain["lr"] == curve_lr], df[df["panel"] == "rate"],
            last.assign(panel="last"), trained]
    return pd.concat(keep, ignore_index=True)


def _look(method: str, alpha: float, labelled: set) -> dict:
    """SGD dashed; Lookahead in tints of its colour, darker for larger alpha."""
    if method == "sgd":
        return dict(color=_style.color("sgd"), ls="--", lw=1.6, zorder=3, label="SGD")
    label = f"Lookahead α={alpha:g}" if alpha in labelled else None
    return dict(color=_style.tint("lookahead_sgd", alpha), lw=0.9, label=label)


def plot(summary: pd.DataFrame) -> tuple[mpl.figure.Figure, np.ndarray]:
    """Three panels (module docstring); returns the figure and its axes and never saves."""
    fig, (ax_a, ax_b, ax_c) = _style.new_figure(3, "triple")
    panel = {name: g for name, g in summary.groupby("panel")}
    alphas = np.sort(panel["curve"]["alpha"].dropna().unique())
    ends = {alphas[0], alphas[len(alphas) // 2], alphas[-1]} if len(alphas) else set()
    for (method, alpha), g in panel["curve"].groupby(["method", "alpha"], dropna=False):
        ax_a.plot(g["step"], g["expected_loss"], **_look(method, alpha, ends))
    for (method, alpha), g in panel["rate"].groupby(["method", "alpha"], dropna=False):
        ax_b.plot(g["final_loss"], g["rate"], **_look(method, alpha, set()) | dict(label=None))
    floor = panel["rate"]["final_loss"].min()
    ax_b.set_xlim(0.98 * floor, 2.5 * floor)  # zoom on the low-loss end, where the choice matters
    last = summary[summary["panel"].isin(["last", "trained"])]
    norm = LogNorm(last["lr"].min(), last["lr"].max() * 1.5) if len(last) else None
    for (lr, beta), g in last.groupby(["lr", "momentum"]):
        color, name = mpl.colormaps["viridis"](norm(lr)), f"lr={lr:g}, β={beta:g}"
        line = g[g["panel"] == "last"].sort_values("alpha")
        if len(line):  # a trained (lr, momentum) without an analytic curve is drawn alone
            ax_c.plot(line["alpha"], line["expected_loss"], color=color, ls="--" if beta else "-",
                      label=f"{name}, analytic")
        for method, t in g[g["panel"] == "trained"].groupby("method"):
            ns = sorted({int(n) for n in t["n"].dropna()})
            n = f"n={ns[0]}" if len(ns) == 1 else f"n={ns[0]}–{ns[-1]}" if ns else "n=?"
            has = (t["n"] > 1).to_numpy()  # one seed: a bare marker, no interval
            ax_c.errorbar(t["alpha"], t["final_loss"], yerr=t["ci95"].where(has), fmt=_style.marker(method),
                          color=color, mfc="white" if beta else color, capsize=2,
                          label=f"{name}, trained ({n})")
    step = panel["last"]["step"].iloc[0] if "last" in panel else np.nan
    ax_a.set(xscale="symlog", yscale="log", xlabel="inner step", ylabel="expected loss E[L]",
             title=f"(a) lr = {panel['curve']['lr'].iloc[0]:g}; Lookahead on slow weights")
    ax_b.set(yscale="log", xlabel="final E[L] (step → ∞)",
             ylabel="convergence rate 1 − ρ² per step",
             title="(b) vertical slice = same final loss\n(colours as in a)")
    ax_c.set(yscale="log", xlabel="α (α = 1: inner optimizer alone)",
             ylabel=f"E[L] at the end (analytic: step {step:g})",
             title="(c) loss against α; trained runs if any\n"
                   "trained: mean ± t 95% CI over seeds\n(n in the legend)")
    ax_a.legend(loc="upper right")
    ax_c.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    k = ", ".join(f"{v:g}" for v in summary["k"].dropna().unique())
    _style.title(fig, f"Fig. 2: SGD vs Lookahead (k = {k}) on the noisy quadratic model", summary)
    return fig, np.array([ax_a, ax_b, ax_c])
