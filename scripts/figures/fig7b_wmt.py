"""Fig. 7b: Transformer training loss against steps for Adam with warmup, Adafactor, and
Lookahead(Adam) with and without warmup.

Paper (§5.4, Fig. 7b [V, figure image]): training loss over 50k inner (fast-weight) steps;
Lookahead + Adam without warmup trains as fast early on as Adam with warmup. Ours, from `make
sweep-fig7b_wmt collect`: (a) train loss, mean over seeds (+-1 std band where n > 1) against
optimizer steps; (b) test BLEU per evaluation. The BLEU of the intermediate evaluations and of
the last one are different measurements when the task says so (`task.eval_decode`,
`task.bleu_max_sentences` against `task.decode`; at cpu scale greedy decoding of the first 100
test sentences, then beam search on all 1000): the decoders are read from each run's manifest,
the intermediate points are drawn as open circles on a line, the last point (the number in
table.md) as a star joined to them only by a dotted segment, with a dashed vertical line at the
last step, and a legend under the panels says which decoder and how many sentences each is.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from . import _style, _trained

ARTIFACT = "fig7b_wmt"
SWEEP = "make sweep-fig7b_wmt SCALE=cpu && make collect"
REQUIRES = ["fig7b_wmt/curves.csv", "fig7b_wmt/runs.csv"]
METRICS = {"train_loss": "train loss", "test_bleu": "test BLEU"}
ARMS = {"adam_warmup": ("adam", "-", "Adam + warmup"), "adafactor_warmup": ("adafactor", "-", "Adafactor + warmup"),
        "lookahead_adam_warmup": ("lookahead_adam", "-", "Lookahead + Adam + warmup"),
        "lookahead_adam_nowarmup": ("lookahead_adam", "--", "Lookahead + Adam, no warmup"),
        "adam_nowarmup": ("adam", "--", "Adam, no warmup (control)")}
UNKNOWN = "decoder not recorded"


def _decoder(name: str, task: dict) -> str:
    return f"beam {task.get('beam_size')}, length penalty {task.get('length_penalty')}" if name == "beam" else str(name)


def decoders(manifest: dict) -> tuple[str, str]:
    """(intermediate, final) BLEU protocol of a run, from its manifest's task config and task_info."""
    task = (manifest.get("config") or {}).get("task") or {}
    if "decode" not in task:
        return UNKNOWN, UNKNOWN
    limit = int(task.get("bleu_max_sentences") or 0)
    inter = _decoder(task.get("eval_decode", task["decode"]), task)
    inter += f", first {limit} test sentences" if limit else ", all test sentences"
    sentences = (manifest.get("task_info") or {}).get("bleu_sentences")
    final = _decoder(task["decode"], task) + (f", all {sentences} test sentences" if sentences else ", all test sentences")
    return inter, final


def load(results_dir: Path) -> pd.DataFrame:
    """Train-loss and BLEU curves of every run; each BLEU row tagged `bleu_eval` ('intermediate'
    or 'final', the run's last step in runs.csv) and `decode` (its protocol, from the manifest)."""
    base = Path(results_dir) / ARTIFACT
    df = _trained.read(results_dir, ARTIFACT, "curves.csv", METRICS)
    runs = pd.read_csv(base / "runs.csv")
    last = dict(zip(runs["run"], runs["steps"]))
    protocol = {}
    for run in df["run"].unique():
        path = base / "manifests" / f"{run}.json"
        protocol[run] = decoders(json.loads(path.read_text())) if path.is_file() else (UNKNOWN, UNKNOWN)
    bleu = df["metric"] == "test_bleu"
    final = bleu & (df["step"] == df["run"].map(last))
    df["bleu_eval"] = np.where(final, "final", np.where(bleu, "intermediate", None))
    df["decode"] = [protocol[r][1] if f else protocol[r][0] if b else None
                    for r, b, f in zip(df["run"], bleu, final)]
    return df


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per arm and step (BLEU: per evaluation kind and decoder too)."""
    return _trained.seed_mean(df, ["scale", "task", "dataset", "optim", "wmt_arm", "bleu_eval", "decode"], x="step")


def _style_of(arm: str, g: pd.DataFrame) -> tuple[str, str, str]:
    return ARMS.get(arm, (g["optim"].iat[0], ":", arm))


def _train_loss(ax, part: pd.DataFrame) -> None:
    ns = []
    for arm, g in part.groupby("wmt_arm", sort=True):
        optim, dash, label = _style_of(arm, g)
        g = g.sort_values("step")
        n = int(g["n"].max())
        ns.append(n)
        ax.plot(g["step"], g["mean"], dash, color=_style.color(optim), label=f"{label}, n={n}")
        _trained.fill_std(ax, g["step"], g["mean"], g["std"], n, _style.color(optim), alpha=0.12)
    ax.set(xlabel="optimizer (fast-weight) step", ylabel="train loss", yscale="log")
    _trained.titled(ax, "(a) train loss", _trained.spread_note(ns))
    ax.legend()


def _bleu(ax, part: pd.DataFrame) -> list:
    """BLEU per arm, the intermediate and the last evaluation told apart when their decoders
    differ; returns the legend handles that say which is which (none if they do not differ)."""
    inter_all, final_all = part[part["bleu_eval"] == "intermediate"], part[part["bleu_eval"] == "final"]
    inter_names, final_names = sorted(inter_all["decode"].dropna().unique()), sorted(final_all["decode"].dropna().unique())
    switch = inter_names != final_names  # the last point is another measurement
    ns = []
    for arm, g in part.groupby("wmt_arm", sort=True):
        optim, dash, _ = _style_of(arm, g)
        color = _style.color(optim)
        inter = g[g["bleu_eval"] == "intermediate"].sort_values("step")
        final = g[g["bleu_eval"] == "final"].sort_values("step")
        ns += [int(v) for v in g["n"]]
        if not switch:  # one protocol throughout: one curve
            g = g.sort_values("step")
            ax.plot(g["step"], g["mean"], dash, marker="o", ms=3, color=color)
            _trained.fill_std(ax, g["step"], g["mean"], g["std"], int(g["n"].min()), color, alpha=0.12)
            continue
        if len(inter):
            ax.plot(inter["step"], inter["mean"], dash, marker="o", ms=3, mfc="white", color=color)
            _trained.fill_std(ax, inter["step"], inter["mean"], inter["std"], int(inter["n"].min()), color, alpha=0.12)
        for _, f in final.iterrows():
            if len(inter):  # same run, another decoder: a dotted join, never the curve's own line
                ax.plot([inter["step"].iat[-1], f["step"]], [inter["mean"].iat[-1], f["mean"]], ":", color=color, lw=0.8)
            ax.plot(f["step"], f["mean"], "*", ms=8, color=color, zorder=3)
            if f["n"] > 1:
                ax.errorbar(f["step"], f["mean"], yerr=f["std"], fmt="none", ecolor=color, capsize=2, zorder=3)
    handles = []
    if switch:
        for step in sorted(final_all["step"].unique()):
            ax.axvline(step, color="0.5", lw=0.6, ls="--", zorder=0)
        handles = [Line2D([], [], color="0.3", marker="o", mfc="white", ms=3,
                          label=f"○ intermediate evaluations: {', '.join(inter_names)}"),
                   Line2D([], [], color="0.3", marker="*", ms=8, ls="none",
                          label=f"★ last evaluation (the value in table.md): {', '.join(final_names)}"),
                   Line2D([], [], color="0.3", lw=0.8, ls=":", label="dotted: the same run across the decoder change"),
                   Line2D([], [], color="0.5", lw=0.6, ls="--", label="dashed grey: the last step (beam)"
                          if any("beam" in n for n in final_names) else "dashed grey: the last step")]
    ax.set(xlabel="optimizer (fast-weight) step", ylabel="test BLEU")
    note = _trained.spread_note(ns).replace("band:", "band and bars:")
    _trained.titled(ax, "(b) test BLEU" + (" (two decoders: ○ and ★)" if switch else ""), note, width=72)
    return handles


def plot(summary: pd.DataFrame) -> tuple[mpl.figure.Figure, np.ndarray]:
    """Train loss and test BLEU against optimizer steps; never saves."""
    fig, axes = _style.new_figure(len(METRICS), "triple")
    for ax, metric in zip(axes, METRICS):
        part = summary[summary["metric"] == metric]
        if part.empty:
            _trained.no_data(ax, metric)
        elif metric == "train_loss":
            _train_loss(ax, part)
        else:
            handles = _bleu(ax, part)
            if handles:  # which BLEU is which, under both panels (the arms' legend is in (a))
                fig.legend(handles=handles, loc="outside lower center", ncol=2)
    _style.title(fig, "Fig. 7b: Transformer, Lookahead(Adam) with and without warmup", summary)
    return fig, axes
