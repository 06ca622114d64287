"""Paper Fig. 1 data: test accuracy on the plane through a Lookahead window's fast weights.

    python scripts/trajectory_plane.py RUN_DIR [--results results] [--grid 15] [--margin 0.25]
                                       [--test-batches 2] [--bn-batches 5] [--threads 1]
                                       [--data-root DIR]

RUN_DIR is a run of `make sweep-fig1_trajectory` (trainer.per_update with snapshots: true): its
`snapshots/step_XXXXXXXX.pt` hold the fast weights theta and the slow weights phi after every
step of the window. Protocol:

1. Plane: origin w0 = the first fast weights of the window, directions d1 = w_mid - w0 and
   d2 = w_last - w0 (middle and last fast weights), orthonormalized by Gram-Schmidt into e1, e2
   (all parameters flattened in the model's order).
2. Paths: every fast and slow snapshot w projects to (u, v) = ((w - w0).e1, (w - w0).e2); the
   distance from w to the plane is kept as `off_plane`.
3. Surface: on a grid x grid lattice covering the projected points plus a margin (a fraction of
   their range), the weights w0 + u e1 + v e2 are evaluated on the first `--test-batches` test
   batches (0: the whole test set).
   BatchNorm: the snapshots hold parameters only, and the run's running statistics belong to
   other weights, so the statistics are re-estimated at every grid point on `--bn-batches`
   training batches (`torch.optim.swa_utils.update_bn`, the stream the loop uses for slow-BN
   re-estimation); the paper does not say what it did [U].

Writes results/fig1_trajectory/surface.csv (u, v, test_acc, test_loss) and path.csv (step, kind,
u, v, off_plane, test_acc from the run's per-update log), each with the run's id, scale, dataset,
model, k and alpha; rerunning on the same run writes identical files.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ARTIFACT = "fig1_trajectory"


def load_config(run_dir: Path):
    """The run's resolved config (manifest.json) as the typed Config the task builders take."""
    from omegaconf import OmegaConf

    from experiments.config import Config
    from experiments.tasks import MODULES, TASK_SCHEMAS

    resolved = json.loads((run_dir / "manifest.json").read_text())["config"]
    base = OmegaConf.structured(Config)
    base.task = OmegaConf.structured(TASK_SCHEMAS[MODULES[resolved["task"]["name"]]])
    return OmegaConf.to_object(OmegaConf.merge(base, resolved))


def load_snapshots(run_dir: Path) -> list[tuple[int, dict]]:
    paths = sorted((run_dir / "snapshots").glob("step_*.pt"))
    if len(paths) < 3:
        raise ValueError(f"{run_dir}/snapshots holds {len(paths)} snapshots; the plane needs 3 "
                         "(run the fig1_trajectory experiment, which sets trainer.per_update.snapshots)")
    return [(int(p.stem.split("_")[1]), torch.load(p, map_location="cpu")) for p in paths]


def flat(weights: dict, names: list[str]) -> torch.Tensor:
    return torch.cat([weights[n].reshape(-1).double() for n in names])


def plane(w0: torch.Tensor, wm: torch.Tensor, wl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal e1, e2 spanning (wm - w0, wl - w0) (Gram-Schmidt)."""
    d1, d2 = wm - w0, wl - w0
    e1 = d1 / d1.norm()
    r = d2 - (d2 @ e1) * e1
    if r.norm() <= 1e-12 * d2.norm():
        raise ValueError("the first, middle and last fast weights are collinear; use a longer window")
    return e1, r / r.norm()


def project(w: torch.Tensor, w0: torch.Tensor, e1: torch.Tensor, e2: torch.Tensor) -> tuple[float, float, float]:
    d = w - w0
    u, v = float(d @ e1), float(d @ e2)
    return u, v, float((d - u * e1 - v * e2).norm())


def evaluate_at(task, params: list, point: torch.Tensor, test_batches: int, bn_batches: int) -> dict:
    """Load `point` into the parameters, re-estimate BatchNorm statistics, evaluate in eval mode."""
    from torch.optim.swa_utils import update_bn

    torch.nn.utils.vector_to_parameters(point.float(), params)
    model = task.model
    if task.bn_batches is not None and bn_batches > 0:
        update_bn(itertools.islice(task.bn_batches(bn_batches), bn_batches), model)
    model.eval()
    with torch.no_grad():
        fn = task.per_update_evaluate if test_batches and task.per_update_evaluate else task.evaluate
        return fn(model)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--grid", type=int, default=15, help="points per axis")
    parser.add_argument("--margin", type=float, default=0.25, help="extra range, fraction of the paths' span")
    parser.add_argument("--test-batches", type=int, default=2, help="test batches per point (0: all)")
    parser.add_argument("--bn-batches", type=int, default=5, help="training batches for BatchNorm statistics")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-root", default=None, help="dataset folder, if not the run's data.root")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from experiments.tasks import build_task

    cfg = load_config(args.run_dir)
    cfg.data.root = args.data_root or cfg.data.root
    if cfg.trainer.per_update is not None:  # the cheap per-update evaluation reads this
        cfg.trainer.per_update.max_batches = args.test_batches
    task = build_task(cfg, torch.device("cpu"))
    names = [n for n, _ in task.model.named_parameters()]
    params = [p for _, p in task.model.named_parameters()]
    snaps = load_snapshots(args.run_dir)
    fast = [flat(s["fast"], names) for _, s in snaps]
    w0, e1, e2 = fast[0], *plane(fast[0], fast[len(fast) // 2], fast[-1])

    log = pd.read_csv(args.run_dir / "metrics.csv")
    path = []
    for (step, snap), theta in zip(snaps, fast):
        row = log[log["step"] == step]
        for kind, w in (("fast", theta), ("slow", flat(snap["slow"], names) if snap["slow"] else None)):
            if w is None:
                continue
            u, v, off = project(w, w0, e1, e2)
            column = f"update_test_acc_{kind}"
            acc = row[column].dropna() if column in row else pd.Series(dtype=float)
            path.append({"step": step, "kind": kind, "u": u, "v": v, "off_plane": off,
                         "test_acc": float(acc.iloc[0]) if len(acc) else np.nan})
    path = pd.DataFrame(path)

    lo_u, hi_u, lo_v, hi_v = path["u"].min(), path["u"].max(), path["v"].min(), path["v"].max()
    span = max(hi_u - lo_u, hi_v - lo_v)
    us = np.linspace(lo_u - args.margin * span, hi_u + args.margin * span, args.grid)
    vs = np.linspace(lo_v - args.margin * span, hi_v + args.margin * span, args.grid)
    surface = []
    for u in us:
        for v in vs:
            metrics = evaluate_at(task, params, w0 + u * e1 + v * e2, args.test_batches, args.bn_batches)
            surface.append({"u": u, "v": v, "test_acc": metrics["test_acc"], "test_loss": metrics["test_loss"]})
        print(f"u = {u:.4g}: done", file=sys.stderr)
    la = cfg.optim.lookahead
    meta = {"run": args.run_dir.name, "scale": cfg.scale, "task": cfg.task.name, "dataset": cfg.task.dataset,
            "model": getattr(cfg.task, "model", ""), "k": la.k if la else np.nan,
            "alpha": la.alpha if la else np.nan,
            "bn": f"recomputed on {args.bn_batches} training batches", "test_batches": args.test_batches}
    out = args.results / ARTIFACT
    out.mkdir(parents=True, exist_ok=True)
    for name, df in (("surface.csv", pd.DataFrame(surface)), ("path.csv", path)):
        tmp = out / f".{name}.tmp"
        df.assign(**meta).to_csv(tmp, index=False, float_format="%.8g", lineterminator="\n")
        os.replace(tmp, out / name)
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
