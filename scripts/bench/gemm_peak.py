"""The CPU's measured matrix-multiply peak: ``torch.mm`` of two large square matrices.

For each (dtype, threads) it times ``torch.mm(a, b, out=c)`` on n x n matrices (2 n^3 FLOPs a
call), enough calls per sample for about 0.2 s, in repetitions interleaved over every
(dtype, threads) pair so that load drifts hit all alike, and reports the median and the best
sample. This is the ceiling the training steps are compared with: oneDNN/MKL's GEMM with AMX
tiles for bf16 where the CPU has them, AVX-512 or AVX2 FMA for fp32.
"""

from __future__ import annotations

import statistics
import time
from typing import Dict, List, Sequence, Tuple

import torch

Key = Tuple[str, int]  # (dtype name, threads)


def _calls_for(fn, target_s: float) -> int:
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    return max(1, round(target_s / max(once, 1e-6)))


def measure(n: int, dtypes: Sequence[torch.dtype], thread_counts: Sequence[int], reps: int,
            target_s: float = 0.2) -> List[Dict[str, object]]:
    """One row per (dtype, threads): median and best GFLOP/s over ``reps`` interleaved samples."""
    previous = torch.get_num_threads()
    g = torch.Generator().manual_seed(0)
    mats = {d: [torch.randn(n, n, generator=g).to(d) for _ in range(3)] for d in dtypes}
    keys = [(d, t) for d in dtypes for t in thread_counts]
    samples: Dict[Tuple[torch.dtype, int], List[float]] = {k: [] for k in keys}
    calls = {}
    try:
        for d, t in keys:  # warm-up (oneDNN/MKL pick and JIT their kernels) and calls per sample
            torch.set_num_threads(t)
            a, b, c = mats[d]
            torch.mm(a, b, out=c)
            calls[(d, t)] = _calls_for(lambda: torch.mm(a, b, out=c), target_s)
        for rep in range(reps):
            for d, t in keys[rep % len(keys):] + keys[: rep % len(keys)]:  # rotate the order
                torch.set_num_threads(t)
                a, b, c = mats[d]
                start = time.perf_counter()
                for _ in range(calls[(d, t)]):
                    torch.mm(a, b, out=c)
                samples[(d, t)].append(2 * n**3 * calls[(d, t)] / (time.perf_counter() - start) / 1e9)
    finally:
        torch.set_num_threads(previous)
    return [{"kind": "gemm", "dtype": str(d).replace("torch.", ""), "threads": t, "n": n, "reps": reps,
             "gflops": statistics.median(samples[(d, t)]), "gflops_best": max(samples[(d, t)])} for d, t in keys]


def peaks(rows: List[Dict[str, object]]) -> Dict[Key, float]:
    """(dtype, threads) -> median GFLOP/s."""
    return {(str(r["dtype"]), int(r["threads"])): float(r["gflops"]) for r in rows}
