"""Process set-up shared by every run: device, threads, seeds, determinism, provenance."""

from __future__ import annotations

import os
import platform
import random
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch

from experiments.config import TrainerConfig

PACKAGES = ("torch", "torchvision", "timm", "hydra-core", "omegaconf", "numpy", "sacrebleu", "sentencepiece")


def select_device(cfg: TrainerConfig) -> torch.device:
    """The device ``trainer.device`` names (``auto``: CUDA if visible); a device this machine lacks is a UserError."""
    from experiments.errors import UserError

    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(cfg.device)
    except (RuntimeError, ValueError) as err:
        raise UserError(f"Invalid trainer.device: {cfg.device!r}; use auto, cpu, cuda or cuda:N") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"trainer.device={cfg.device} but no CUDA device is visible; use trainer.device=cpu "
                        "(or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"trainer.device={cfg.device} but only {torch.cuda.device_count()} CUDA device(s) are "
                        "visible; use trainer.device=cuda (or auto)")
    return device


def configure(cfg: TrainerConfig, seed: int, device: torch.device) -> int:
    """Set threads, seeds and determinism; returns the thread count in use.

    Threads are set explicitly because two CPU jobs that each take every core run several times
    slower than two one-thread jobs.
    """
    threads = cfg.threads or int(os.environ.get("LOOKAHEAD_THREADS", 0)) or (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
        torch.backends.cudnn.benchmark = False
        # Deterministic mode also fills every torch.empty with NaN, which guards against kernels
        # that read memory they never wrote. On CPU that fill was 14 % of CIFAR op time and the
        # weights come out bit-identical without it (tests/test_evaluation_overhead.py), so it
        # stays on only for CUDA, where warn_only lets nondeterministic kernels through.
        torch.utils.deterministic.fill_uninitialized_memory = device.type != "cpu"
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return threads


def autocast_dtype(cfg: TrainerConfig, device: torch.device) -> torch.dtype | None:
    if cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def cpu_flags() -> frozenset:
    """The feature flags of the first CPU in ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


# CPU features that execute bf16 arithmetic in hardware (AMX tiles, AVX-512 dot products).
# Without them oneDNN emulates bf16 with fp32 instructions (slower than fp32) or has no kernel
# at all: its bf16 LSTM primitive fails on AVX2-only CPUs such as the AMD EPYC we get.
BF16_CPU_FEATURES = ("amx_bf16", "avx512_bf16")


def native_bf16(device: torch.device) -> Dict[str, Any]:
    """Whether ``device`` computes in bf16 natively; the manifest records this next to the precision.

    Returns ``{"native": bool, "features": [...], "kernels": bool, "source": str}``:

    - CPU: ``features`` are the :data:`BF16_CPU_FEATURES` the CPU has, from ``/proc/cpuinfo``
      or, where that file is missing, torch's cpuinfo probes (``torch.cpu._is_*_supported``);
      ``kernels`` is oneDNN's own bf16 check (``torch.ops.mkldnn._is_mkldnn_bf16_supported``,
      which also honours ``ONEDNN_MAX_CPU_ISA``); ``native`` needs both.
    - CUDA: ``features`` is the compute capability (``["sm_90"]``); ``native`` means compute
      capability 8.0 or newer (``torch.cuda.is_bf16_supported(including_emulation=False)``).
    """
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return {"native": bool(native), "features": [f"sm_{major}{minor}"], "kernels": bool(native),
                "source": "torch.cuda.get_device_capability"}
    if device.type != "cpu":
        return {"native": False, "features": [], "kernels": False, "source": f"no check for {device.type}"}
    flags = cpu_flags()
    if flags:
        features, source = [f for f in BF16_CPU_FEATURES if f in flags], "/proc/cpuinfo"
    else:
        probes = {"amx_bf16": "_is_amx_tile_supported", "avx512_bf16": "_is_avx512_bf16_supported"}
        features = [f for f, probe in probes.items() if getattr(torch.cpu, probe, lambda: False)()]
        source = "torch.cpu probes"
    try:
        kernels = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        kernels = False
    return {"native": bool(features) and kernels, "features": features, "kernels": kernels,
            "source": f"{source} + oneDNN bf16 check"}


def device_description(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {cpu}, {threads} thread(s)"


def git_state(root: Path) -> Dict[str, Any]:
    """Commit and dirty flag of the project tree; a dirty tree also gives its ``diff``.

    The diff is ``git diff HEAD`` (tracked files) followed by a new-file patch for every untracked,
    not ignored file, so the exact code that ran can be rebuilt from the commit and the diff.
    """
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30).stdout

    try:
        commit = git("rev-parse", "--verify", "-q", "HEAD").strip()
        dirty = bool(git("status", "--porcelain").strip())
        diff = ""
        if dirty:
            diff = git("diff", "HEAD", "--binary")
            for path in git("ls-files", "--others", "--exclude-standard", "-z").split("\0"):
                if path:
                    patch = git("diff", "--no-index", "--binary", "--", "/dev/null", path)
                    if not patch and (root / path).is_symlink():  # git gives no patch for a new link
                        patch = f"new symlink {path} -> {os.readlink(root / path)}\n"
                    diff += patch
    except (OSError, subprocess.SubprocessError):
        commit, dirty, diff = "", False, ""
    return {"commit": commit or None, "dirty": dirty, "diff": diff}


def versions() -> Dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found
