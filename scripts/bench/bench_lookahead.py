"""Cost of the Lookahead sync: ours (foreach and for-loop) vs timm's vs the bare inner step.

For the parameter sets of torchvision's ResNet-50 and ResNet-18 and of a CIFAR ResNet-20, with
fake gradients (no forward/backward), it times in interleaved repetitions:

* ``sync``: one outer update (phi <- phi + alpha (theta - phi); theta <- phi), and
* ``step``: the mean time per ``step()`` over a block of k steps (k-1 fast steps and one
  fast step + sync) for the bare inner optimizer (SGD, momentum 0.9) and each wrapper.

The sync must read phi and theta and write both, so it moves at least 4 x the parameter bytes
(8 x with ``pullback="pullback"``, which does the same to the momentum buffers). With the
copy bandwidth B of this machine (a ``copy_`` of a tensor as large as the parameter set, timed
in the same rotation, read + write bytes / time), the bound is ``bytes / B``; the tables
report each sync's time relative to it. Our sync is ``lerp_`` then ``copy_`` (5 x the parameter bytes), so its floor is
1.25 x the bound.

It also times ``step()`` eager vs ``torch.compile(opt.step)`` (inductor) on ResNet-50's
parameter set, for SGD (momentum 0.9) and AdamW, bare and wrapped (the wrapper's counter and
sync stay eager behind a graph break): the first call's time (compilation included) and the
mean time per step over blocks of k steps.

Usage: ``python scripts/bench/bench_lookahead.py [--device cuda] [--quick] [--threads N]
[--parts sync,compile]``. Writes ``results/bench/lookahead_sync_<device>[_quick].{csv,md}`` and
``results/bench/lookahead_compile_<device>[_quick].{csv,md}``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import importlib.util
import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from experiments.runtime import cpu_flags
from lookahead import Lookahead
from machine import FLAGS

MODELS = {"resnet50": ("bottleneck", [3, 4, 6, 3]), "resnet18": ("basic", [2, 2, 2, 2])}


def torchvision_shapes(name: str) -> tuple[list[torch.Size], str]:
    """Parameter shapes of a torchvision ResNet, built by torchvision if it imports."""
    try:
        import torchvision

        model = getattr(torchvision.models, name)(weights=None)
        return [p.shape for p in model.parameters()], "torchvision.models"
    except Exception:  # noqa: BLE001 - any import/ABI failure: fall back to the same layout
        pass
    block, layers = MODELS[name]
    expansion, shapes, inplanes = (4 if block == "bottleneck" else 1), [], 64
    shapes += [(64, 3, 7, 7), (64,), (64,)]
    for stage, blocks in enumerate(layers):
        planes = 64 * 2**stage
        for b in range(blocks):
            if block == "bottleneck":
                convs = [(planes, inplanes, 1, 1), (planes, planes, 3, 3), (planes * 4, planes, 1, 1)]
            else:
                convs = [(planes, inplanes, 3, 3), (planes, planes, 3, 3)]
            for conv in convs:
                shapes += [conv, (conv[0],), (conv[0],)]  # conv weight, BN weight and bias
            if b == 0 and (stage > 0 or inplanes != planes * expansion):  # downsample branch
                out = planes * expansion
                shapes += [(out, inplanes, 1, 1), (out,), (out,)]
            inplanes = planes * expansion
    shapes += [(1000, 512 * expansion), (1000,)]
    return [torch.Size(s) for s in shapes], "torchvision layout, rebuilt (torchvision import failed)"


def resnet20_shapes() -> list[torch.Size]:
    """CIFAR ResNet-20 (He et al. 2016, option-A shortcuts without parameters)."""
    shapes = [(16, 3, 3, 3), (16,), (16,)]
    inplanes = 16
    for planes in (16, 32, 64):
        for _ in range(3):
            for conv in [(planes, inplanes, 3, 3), (planes, planes, 3, 3)]:
                shapes += [conv, (planes,), (planes,)]  # conv weight, BN weight and bias
            inplanes = planes
    return [torch.Size(s) for s in shapes + [(10, 64), (10,)]]


def timm_lookahead() -> tuple[type, str]:
    """timm's Lookahead class; loaded from its file when `import timm` fails (e.g. torchvision)."""
    try:
        from timm.optim import Lookahead as TimmLookahead

        return TimmLookahead, "timm.optim"
    except Exception:  # noqa: BLE001
        spec = importlib.util.find_spec("timm")
        path = Path(spec.origin).parent / "optim" / "lookahead.py"
        module_spec = importlib.util.spec_from_file_location("timm_optim_lookahead", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module.Lookahead, "timm/optim/lookahead.py loaded directly (import timm failed)"


def sync_device(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeat: int = 1) -> float:
    sync_device(device)
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync_device(device)
    return (time.perf_counter() - start) / repeat


def repeats(fn, device: torch.device, unit: int, target_s: float = 0.05) -> int:
    """How many calls (a multiple of ``unit``) make one timing sample last about target_s."""
    once = timed(fn, device, repeat=unit)
    return unit * max(1, math.ceil(target_s / max(once, 1e-9)))


def copy_probe(device: torch.device, nbytes: int):
    """``dst.copy_(src)`` on float32 tensors of nbytes: reads and writes 2 x nbytes.

    Sized like the parameter set, so that the bound of a small set that fits in cache uses the
    cache's bandwidth, and that of a large set the memory's.
    """
    src = torch.randn(max(nbytes // 4, 1), device=device)
    dst = torch.empty_like(src)
    return lambda: dst.copy_(src)


def build(shapes, device, k, alpha, timm_cls):
    """One shared parameter set with fake gradients; each method has its own optimizer state."""
    g = torch.Generator(device="cpu").manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=g).to(device)) for s in shapes]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3

    def sgd():
        return torch.optim.SGD(params, lr=1e-3, momentum=0.9)

    opts = {
        "inner SGD (no Lookahead)": sgd(),
        "ours foreach": Lookahead(sgd(), k=k, alpha=alpha, foreach=True),
        "ours for-loop": Lookahead(sgd(), k=k, alpha=alpha, foreach=False),
        "ours foreach pullback": Lookahead(sgd(), k=k, alpha=alpha, foreach=True, pullback="pullback"),
        "timm": timm_cls(sgd(), alpha=alpha, k=k),
    }
    for opt in opts.values():  # warm-up: creates momentum buffers, timm's lazy slow buffers
        for _ in range(k):
            opt.step()
    return params, opts


def sync_fn(opt):
    if isinstance(opt, Lookahead):
        return opt._sync
    if hasattr(opt, "sync_lookahead"):
        return opt.sync_lookahead
    return None


def bench_model(name, shapes, source, args, device, timm_cls):
    params, opts = build(shapes, device, args.k, args.alpha, timm_cls)
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    copy = copy_probe(device, param_bytes)
    step_t = {m: [] for m in opts}
    sync_t = {m: [] for m in opts if sync_fn(opts[m]) is not None}
    copy_t = []
    # Calls per sample: whole blocks of k steps, and enough calls for ~50 ms (small models).
    n_step = {m: repeats(opts[m].step, device, args.k) for m in opts}
    n_sync = {m: repeats(sync_fn(opts[m]), device, 1) for m in sync_t}
    n_copy = repeats(copy, device, 1)
    methods = [*opts, "copy"]
    for rep in range(args.reps):
        for method in methods[rep % len(methods):] + methods[: rep % len(methods)]:  # rotate
            if method == "copy":
                copy_t.append(timed(copy, device, repeat=n_copy))
                continue
            opt = opts[method]
            step_t[method].append(timed(opt.step, device, repeat=n_step[method]))
            if method in sync_t:
                sync_t[method].append(timed(sync_fn(opt), device, repeat=n_sync[method]))
    bandwidth = 2 * param_bytes / statistics.median(copy_t)
    best_bandwidth = 2 * param_bytes / min(copy_t)
    base = statistics.median(step_t["inner SGD (no Lookahead)"])
    rows = []
    for method in opts:
        row = {
            "model": name, "params": sum(p.numel() for p in params), "tensors": len(params),
            "param_MB": round(param_bytes / 2**20, 2), "shapes_from": source, "method": method,
            "copy_GBps": bandwidth / 1e9,
            "step_ms": 1e3 * statistics.median(step_t[method]),
        }
        row["step_overhead_pct"] = 100 * (row["step_ms"] / (1e3 * base) - 1)
        if method in sync_t:
            moved = (8 if "pullback" in method else 4) * param_bytes
            row["sync_ms"] = 1e3 * statistics.median(sync_t[method])
            row["sync_min_ms"] = 1e3 * min(sync_t[method])  # other jobs only ever add time
            row["sync_per_step_ms"] = row["sync_ms"] / args.k
            row["bound_ms"] = 1e3 * moved / bandwidth
            row["sync_over_bound"] = row["sync_ms"] / row["bound_ms"]
            row["min_over_bound"] = row["sync_min_ms"] / (1e3 * moved / best_bandwidth)
        rows.append(row)
    return rows


def compile_opts(shapes, device, k, alpha):
    """Per inner optimizer: bare and wrapped, each with its own parameters and fake gradients."""
    inner = {
        "SGD": lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9),
        "AdamW": lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=1e-2),
    }
    for name, make in inner.items():
        for wrapped in (False, True):
            g = torch.Generator(device="cpu").manual_seed(0)
            params = [torch.nn.Parameter(torch.randn(s, generator=g).to(device)) for s in shapes]
            for p in params:
                p.grad = torch.randn_like(p) * 1e-3
            opt = Lookahead(make(params), k=k, alpha=alpha) if wrapped else make(params)
            yield name, ("Lookahead" if wrapped else "bare"), opt


def bench_compile(name, shapes, args, device):
    """Eager vs compiled step() per optimizer; interleaved repetitions of blocks of k steps."""
    rows = []
    for inner, kind, opt in compile_opts(shapes, device, args.k, args.alpha):
        torch._dynamo.reset()
        steps = {"eager": opt.step, "compiled": torch.compile(opt.step)}
        first = {}
        for mode, fn in steps.items():  # warm-up: the inner state, compilation, a first sync
            first[mode] = timed(fn, device)
            for _ in range(args.k):
                fn()
        n = {mode: repeats(fn, device, args.k) for mode, fn in steps.items()}
        samples = {mode: [] for mode in steps}
        for rep in range(args.reps):
            for mode in (list(steps) if rep % 2 == 0 else list(steps)[::-1]):
                samples[mode].append(timed(steps[mode], device, repeat=n[mode]))
        for mode in steps:
            rows.append({
                "model": name, "params": sum(math.prod(s) for s in shapes), "inner": inner,
                "optimizer": kind, "mode": mode, "first_call_s": first[mode],
                "step_ms": 1e3 * statistics.median(samples[mode]),
                "step_min_ms": 1e3 * min(samples[mode]),
            })
        rows[-1]["speedup"] = rows[-2]["step_ms"] / rows[-1]["step_ms"]
        print(f"done compile {inner} {kind}", flush=True)
    return rows


def write_compile(rows, header, out: Path) -> None:
    fields = ["model", "params", "inner", "optimizer", "mode", "first_call_s", "step_ms",
              "step_min_ms", "speedup"]
    cols = {"inner": "{}", "optimizer": "{}", "mode": "{}", "first_call_s": "{:.1f}",
            "step_ms": "{:.2f}", "step_min_ms": "{:.2f}", "speedup": "{:.2f}"}
    write_table(rows, fields, cols, f"Lookahead step, eager vs torch.compile ({out.stem})", header, out)


def machine(device: torch.device, threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        lines = cpuinfo.read_text().splitlines()
        names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    flags = " ".join(f for f in FLAGS if f in cpu_flags()) or "none of interest"
    return (f"CPU {cpu} ({os.cpu_count()} cores, flags {flags}){gpu}; torch {torch.__version__}; {threads} threads; "
            f"{platform.platform()}; {date}")


def load_average() -> str:
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "n/a"


def write_table(rows, fields, cols, title: str, header: str, out: Path) -> None:
    """``out``.csv with ``fields`` of every row, ``out``.md with the ``cols`` formatted."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()})
    lines = [f"# {title}", "", header, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        lines.append("| " + " | ".join(fmt.format(row[c]) if c in row else "" for c, fmt in cols.items()) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def write(rows, header, out: Path) -> None:
    fields = ["model", "params", "tensors", "param_MB", "method", "step_ms", "step_overhead_pct",
              "sync_ms", "sync_min_ms", "sync_per_step_ms", "copy_GBps", "bound_ms",
              "sync_over_bound", "min_over_bound", "shapes_from"]
    cols = {"model": "{}", "method": "{}", "step_ms": "{:.2f}", "step_overhead_pct": "{:+.0f}",
            "sync_ms": "{:.2f}", "sync_min_ms": "{:.2f}", "sync_per_step_ms": "{:.3f}",
            "copy_GBps": "{:.1f}", "bound_ms": "{:.2f}", "sync_over_bound": "{:.2f}",
            "min_over_bound": "{:.2f}"}
    write_table(rows, fields, cols, f"Lookahead sync benchmark ({out.stem})", header, out)


def bench_sync(args, device, suffix) -> None:
    timm_cls, timm_source = timm_lookahead()
    load_start = load_average()
    sets = {"resnet20_cifar": (resnet20_shapes(), "CIFAR ResNet-20 layout")}
    for name in ["resnet50"] if args.quick else ["resnet18", "resnet50"]:
        sets[name] = torchvision_shapes(name)
    rows = []
    for name, (shapes, source) in sets.items():
        rows += bench_model(name, shapes, source, args, device, timm_cls)
        print(f"done {name}", flush=True)
    header = (
        f"{machine(device, args.threads)}; 1-min load average {load_start} at the start, "
        f"{load_average()} at the end. Inner optimizer SGD (momentum 0.9), k={args.k}, "
        f"alpha={args.alpha}, float32, fake gradients, {args.reps} interleaved repetitions, medians. "
        f"timm: {timm_source}. step_ms: mean time per step() over blocks of k steps (overhead vs "
        "the bare inner step in %); sync_ms: one outer update (sync_min_ms: the fastest sample); "
        "sync_per_step_ms = sync_ms / k; bound_ms: 4 x parameter bytes (8 x with pullback) / "
        "copy bandwidth (copy_GBps: median of an interleaved copy_ of the parameter set's size, "
        "read + write); min_over_bound: fastest sync over the bound at the fastest copy."
    )
    out = args.out / f"lookahead_sync_{suffix}"
    write(rows, header, out)
    print(out.with_suffix(".md").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="ResNet-20 and -50 only, 3 repetitions")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=None, help="interleaved repetitions (default 7)")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    parser.add_argument("--parts", default="sync,compile",
                        help="comma-separated: sync (the sync tables), compile (eager vs compiled step)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if not parts <= {"sync", "compile"}:
        parser.error(f"--parts: unknown {sorted(parts - {'sync', 'compile'})}")
    args.reps = args.reps or (3 if args.quick else 7)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    suffix = f"{device.type}{'_quick' if args.quick else ''}"
    if "sync" in parts:
        bench_sync(args, device, suffix)
    if "compile" in parts:
        load_start = load_average()
        shapes, source = torchvision_shapes("resnet50")
        rows = bench_compile("resnet50", shapes, args, device)
        header = (
            f"{machine(device, args.threads)}; 1-min load average {load_start} at the start, "
            f"{load_average()} at the end. ResNet-50 parameter set ({source}), float32, fake "
            f"gradients, k={args.k}, alpha={args.alpha}; torch.compile(opt.step) with the default "
            f"(inductor) backend. first_call_s: the first step() (compilation included); step_ms: "
            f"mean time per step() over blocks of k steps, median of {args.reps} interleaved "
            "repetitions (step_min_ms: the fastest); speedup: eager step_ms / compiled step_ms."
        )
        out = args.out / f"lookahead_compile_{suffix}"
        write_compile(rows, header, out)
        print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
