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
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"trainer.device={cfg.device} but no CUDA device is visible; use trainer.device=cpu")
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
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "--verify", "-q", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    return {"commit": commit or None, "dirty": dirty}


def versions() -> Dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found
