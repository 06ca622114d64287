"""One figure per fair-comparison study (conf/tune/<study>.yaml), from `scripts/study.py analyze`.

Three panels, from the study's tables under `results/<study>/`:

(a) the expected best validation score against the number of trials n = 1..N per arm
    (`expected_max.csv`: the unbiased estimator of Dodge et al., +-1 std band of the best of n);
    an arm whose curve improves faster needs fewer trials (the paper's "less tuning" claim); the
    score axis is (b)'s, so points of few trials beyond it are edge marks with their value;
(b) the validation score of every trial against its lr per arm (`trials.csv`: sensitivity);
    diverged trials are the crosses on the bottom edge. The score axis spans the trials near the
    best (up to five times the best-to-median distance past the median): trials worse than that
    (an lr far too large that did not diverge) are the triangles on the top edge. A Lookahead arm's trials are drawn again,
    hollow, at lr x alpha: the slow weights move alpha times the k fast steps per period, so if
    Lookahead(lr, alpha) acted like its inner optimizer at the smaller lr alpha * lr (the
    report's open explanation), the hollow points would fall on the inner optimizer's;
(c) the paired per-seed difference (arm minus baseline) of the study's headline metric (the first
    of its `report`) with its Student-t 95% interval (thick) and bootstrap 95% interval (thin)
    (`paired.csv`), n in the label, zero marked; "no final runs yet" before there are any.

`make figures` builds one per study whose results exist (registered by scripts/make_figures.py,
not discovered as a fig*.py module: there is one figure per study file).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import List

import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter

from . import _style

ROOT = Path(__file__).resolve().parents[2]
TUNE_DIR = ROOT / "conf" / "tune"
FALLBACK = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")


def _percent(metric: str) -> bool:
    return "_acc" in metric


def load_study(results_dir: Path, study: str) -> pd.DataFrame:
    """The study's trials, expected-best curve and paired differences, one frame (column `panel`)."""
    base = Path(results_dir) / study
    parts = [pd.read_csv(base / name).assign(panel=panel)
             for name, panel in (("trials.csv", "trials"), ("expected_max.csv", "expected"), ("paired.csv", "paired"))]
    return pd.concat(parts, ignore_index=True)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """The tables are summaries already; keep the headline metric's paired rows only."""
    paired = df[df["panel"] == "paired"]
    headline = paired["metric"].iloc[0] if len(paired) else None
    return df[(df["panel"] != "paired") | (df["metric"] == headline)].reset_index(drop=True)


def _colors(df: pd.DataFrame) -> dict:
    """arm -> colour: its optimizer's (conf/optim name), lighter for a second arm of the same one."""
    trials = df[df["panel"] == "trials"].drop_duplicates("arm")
    out, seen = {}, {}
    for i, (arm, optim) in enumerate(zip(trials["arm"], trials["optim"])):
        try:
            _style.color(str(optim))
            out[arm] = _style.tint(str(optim), 1.0 - 0.45 * seen.get(optim, 0))
        except ValueError:  # an optimizer without a fixed style
            out[arm] = FALLBACK[i % len(FALLBACK)]
        seen[optim] = seen.get(optim, 0) + 1
    return out


def _score_window(scores: np.ndarray, lower_is_better: bool) -> tuple[float, float] | None:
    """(low, high) of the score axis around the good trials, or None when every trial fits.

    The window reaches five times the best-to-median distance past the median in the bad
    direction, so a few far-off trials do not flatten the differences near the best."""
    scores = scores[np.isfinite(scores)]
    if len(scores) < 3:
        return None
    best = scores.min() if lower_is_better else scores.max()
    med = float(np.median(scores))
    reach = 5.0 * max(abs(med - best), 1e-12)
    edge = med + reach if lower_is_better else med - reach
    worst = scores.max() if lower_is_better else scores.min()
    if (worst <= edge) if lower_is_better else (worst >= edge):
        return None
    pad = 0.05 * abs(edge - best)
    return (best - pad, edge) if lower_is_better else (edge, best + pad)


def plot(summary: pd.DataFrame):
    """(a) expected best vs trials, (b) score vs lr, (c) paired differences; returns (fig, axes)."""
    fig, (ax_a, ax_b, ax_c) = _style.new_figure(3, "triple")
    trials, expected = summary[summary["panel"] == "trials"], summary[summary["panel"] == "expected"]
    paired = summary[summary["panel"] == "paired"]
    head = str(paired["metric"].iloc[0]) if len(paired) else None  # the headline, with or without runs
    paired = paired[paired["n"].fillna(0) > 0]  # a comparison with no finished pair yet has no interval
    metric = str(expected["metric"].iloc[0])
    scale = 100.0 if _percent(metric) else 1.0
    colors = _colors(summary)
    for arm, g in expected.groupby("arm", sort=False):
        g = g.sort_values("n")
        y, s = scale * g["expected_best"].to_numpy(float), scale * g["std"].to_numpy(float)
        ax_a.plot(g["n"], y, marker="o", color=colors.get(arm), label=f"{arm} (N={int(g['budget'].iloc[0])})")
        ax_a.fill_between(g["n"], y - s, y + s, color=colors.get(arm), alpha=0.15, lw=0)
    ax_a.xaxis.get_major_locator().set_params(integer=True)
    first = expected.sort_values("n").groupby("arm", sort=False)["expected_best"]
    lower_is_better = bool((first.first() >= first.last()).all())  # the best of more trials only improves
    finished = trials[~trials["diverged"].astype(bool) & trials["score"].notna()]
    window = _score_window(scale * finished["score"].to_numpy(float), lower_is_better)
    off_note = ""
    if window is not None:  # the same score window as (b); the few-trial points beyond it on its edge, valued
        ax_a.set_ylim(*window)
        arms = list(expected["arm"].unique())
        for arm, g in expected.groupby("arm", sort=False):
            y = scale * g["expected_best"].to_numpy(float)
            off = ~((y >= window[0]) & (y <= window[1]))
            i = arms.index(arm)
            for n, v in zip(g["n"][off] + 0.08 * (i - (len(arms) - 1) / 2), y[off]):  # arms side by side
                ax_a.scatter([n], [1.0 if lower_is_better else 0.0], marker="^" if lower_is_better else "v",
                             color=colors.get(arm), s=18, transform=ax_a.get_xaxis_transform(), clip_on=False)
                ax_a.annotate(f"{v:.4g}", (n, 1.0 if lower_is_better else 0.0), xycoords=("data", "axes fraction"),
                              xytext=(4, -10 - 9 * i), textcoords="offset points", fontsize=6, color=colors.get(arm))
        off_note = f"; {'▲' if lower_is_better else '▼'} beyond, valued"
    ax_a.set(xlabel="trials n", ylabel=f"expected best {metric}" + (" (%)" if scale != 1 else ""),
             title=f"(a) expected best of n trials (±1 std{off_note})")
    ax_a.legend(loc="center right")
    for arm, g in trials.groupby("arm", sort=False):
        ok = g[~g["diverged"].astype(bool) & g["score"].notna()]
        if window is not None:  # far-off trials: triangles on the edge of the window
            inside = (scale * ok["score"]).between(*window)
            far = ok[~inside]
            ok = ok[inside]
            if len(far):
                ax_b.scatter(far["optim.lr"], np.full(len(far), 1.0 if lower_is_better else 0.0),
                             marker="^" if lower_is_better else "v", color=colors.get(arm), s=18,
                             transform=ax_b.get_xaxis_transform(), clip_on=False)
        ax_b.scatter(ok["optim.lr"], scale * ok["score"], color=colors.get(arm), s=14, label=arm)
        if "optim.lookahead.alpha" in ok and ok["optim.lookahead.alpha"].notna().any():
            la = ok[ok["optim.lookahead.alpha"].notna()]
            ax_b.scatter(la["optim.lr"] * la["optim.lookahead.alpha"], scale * la["score"], s=14,
                         facecolors="none", edgecolors=colors.get(arm), label=f"{arm} at lr × alpha")
        bad = g[g["diverged"].astype(bool)]
        if len(bad):
            ax_b.scatter(bad["optim.lr"], np.zeros(len(bad)), marker="x", color=colors.get(arm), s=18,
                         transform=ax_b.get_xaxis_transform(), clip_on=False)
    lrs = trials["optim.lr"].dropna()
    if "optim.lookahead.alpha" in trials:
        lrs = pd.concat([lrs, (trials["optim.lr"] * trials["optim.lookahead.alpha"]).dropna()])
    if len(lrs):  # every trial in view, the diverged ones too (drawn in axis units, not autoscaled)
        ax_b.set_xlim(lrs.min() / 1.3, lrs.max() * 1.3)
    far_note = f", {'▲' if lower_is_better else '▼'} beyond" if window is not None else ""
    ax_b.set(xscale="log", xlabel="lr", ylabel=f"{metric}" + (" (%)" if scale != 1 else ""),
             title=f"(b) every trial (× diverged{far_note})")
    if window is not None:
        ax_b.set_ylim(*window)
    ax_b.xaxis.set_minor_formatter(NullFormatter())  # the decades only: minor labels overlap
    ax_b.legend()
    head = head or metric
    hscale = 100.0 if _percent(head) else 1.0
    for i, (_, r) in enumerate(paired.iterrows()):
        mean = hscale * r["mean_diff"]
        ax_c.errorbar(mean, i, xerr=[[mean - hscale * r["t_low"]], [hscale * r["t_high"] - mean]], fmt="o",
                      color=colors.get(r["arm"]), capsize=3, lw=1.6)
        ax_c.errorbar(mean, i - 0.15, xerr=[[mean - hscale * r["boot_low"]], [hscale * r["boot_high"] - mean]],
                      fmt="none", color=colors.get(r["arm"]), capsize=2, lw=0.8)
    ax_c.axvline(0.0, color="black", lw=0.8)
    ax_c.set_ylim(max(len(paired), 1) - 0.5, -0.5)  # first comparison on top
    labels = [f"{r['arm']} − {r['baseline']}\n(n={int(r['n'])})" for _, r in paired.iterrows()]
    ax_c.set_yticks(range(len(paired)), labels)
    if not len(paired):
        ax_c.text(0.5, 0.5, "no final runs yet", transform=ax_c.transAxes, ha="center", va="center")
    ax_c.set(xlabel=f"paired difference in {head}" + (" (pp)" if hscale != 1 else ""),
             title="(c) 95% CI: t (thick), bootstrap (thin)")
    study = str(trials["study"].iloc[0])
    _style.title(fig, f"Study {study}: tuned with an equal budget per arm, selected on validation only", trials)
    return fig, np.array([ax_a, ax_b, ax_c])


def artifacts(tune_dir: Path = TUNE_DIR) -> List[SimpleNamespace]:
    """One make_figures module per declared study (load -> summarize -> plot)."""
    out = []
    for path in sorted(Path(tune_dir).glob("*.yaml")):
        name = path.stem
        out.append(SimpleNamespace(
            ARTIFACT=name, SWEEP=f"make tune-{name} select-{name} final-{name} analyze-{name}",
            REQUIRES=[f"{name}/trials.csv", f"{name}/expected_max.csv", f"{name}/paired.csv"],
            load=lambda results_dir, name=name: load_study(results_dir, name), summarize=summarize, plot=plot))
    return out
