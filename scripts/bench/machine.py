"""What machine a benchmark ran on: CPU model, cores, the ISA flags that decide speed, software.

Every benchmark record carries this, because our runs land on different machines (a 2-core
Intel Xeon with AVX-512 and AMX, a 2-core AMD EPYC without either) whose fp32 and bf16 speeds
differ by large factors. Flags come from ``/proc/cpuinfo``; ``bf16`` is
``experiments.runtime.native_bf16`` (the same check a run records).
"""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from typing import Any, Dict

import torch

from experiments import runtime

# The flags that decide which GEMM kernels oneDNN/MKL can use.
FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def describe() -> Dict[str, Any]:
    flags = runtime.cpu_flags()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "flags": [f for f in FLAGS if f in flags],
        "bf16": runtime.native_bf16(torch.device("cpu")),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_start": load_average(),
    }


def header(info: Dict[str, Any]) -> str:
    """One paragraph for a results file."""
    bf16 = info["bf16"]
    native = "native bf16" if bf16["native"] else "no native bf16"
    return (f"Machine: CPU {info['cpu']} ({info['cores']} cores), flags {' '.join(info['flags']) or 'none of interest'}; "
            f"{native} ({', '.join(bf16['features']) or 'no bf16 features'}; oneDNN bf16 kernels: {bf16['kernels']}); "
            f"torch {info['torch']} (CPU capability {info['torch_cpu_capability']}); {info['platform']}; "
            f"{info['date']}; 1-min load average {info['load_start']:.1f} at the start, "
            f"{load_average():.1f} at the end.")


def write_csv(rows, fields, path: Path) -> None:
    """Benchmark rows as CSV (floats to 4 significant digits), with only the named columns."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()})
