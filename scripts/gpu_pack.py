"""Prepare, on this machine, what a GPU session carries: ``make gpu-pack`` -> ``data/gpu_pack/``.

The device machine has torch, torchvision, timm, numpy, Pillow, pandas, pytest and joblib, but
not Hydra or OmegaConf, and no network. ``data/`` is ignored by git, so ``data/gpu_pack`` travels
only when a call names it in ``carry``. It holds:

- ``site/``: the files of the pure-Python distributions the suite needs there (hydra-core,
  omegaconf, antlr4-python3-runtime, hydra-joblib-launcher), copied from this interpreter's
  site-packages with their ``.dist-info`` (so the manifests record their versions);
  ``scripts/gpu_session.sh`` puts it on ``PYTHONPATH``;
- ``cifar10_jpeg/``: the 19 MB JPEG copy of CIFAR-10 and its decoder ``make_batches.py``
  (from ``../shared/data/cifar10_jpeg``, sha256-checked against ``SHA256SUMS``), decoded there
  into ``data/cifar10_from_jpeg/`` (about 30 s);
- ``PROVENANCE.txt``: the commit and the list of changed files of this checkout, since the device
  copy may have no git history (its manifests then record no commit).

    python scripts/gpu_pack.py [--shared ../shared/data] [--dest data/gpu_pack]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTIONS = ("hydra-core", "omegaconf", "antlr4-python3-runtime", "hydra-joblib-launcher")
CARRY_LIMIT_MIB = 64  # the device tool's limit on everything that travels


def copy_distribution(name: str, site: Path) -> int:
    """Copy one installed distribution's files into ``site``; refuses compiled extensions."""
    dist = metadata.distribution(name)
    base = Path(dist.locate_file(""))
    total = 0
    for rel in dist.files or []:
        src = Path(dist.locate_file(rel))
        if rel.suffix in (".so", ".pyd"):
            raise SystemExit(f"gpu_pack: {name} has a compiled file {rel}; carry a wheel for the device instead")
        if "__pycache__" in rel.parts or not src.is_file() or ".." in rel.parts:
            continue  # bytecode is rebuilt there; console scripts live outside site-packages
        dst = site / src.relative_to(base)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        total += src.stat().st_size
    return total


def checked_copy(src_dir: Path, sums: Path, dest: Path) -> None:
    """Copy the CIFAR-10 JPEG archive and its decoder, checking them against SHA256SUMS."""
    wanted = {}
    for line in sums.read_text().splitlines():
        digest, _, path = line.partition("  ")
        wanted[path.strip()] = digest
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("cifar10-jpeg.tar.gz", "make_batches.py"):
        src = src_dir / name
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        expected = wanted.get(f"cifar10_jpeg/{name}")
        if expected and digest != expected:
            raise SystemExit(f"gpu_pack: {src} has sha256 {digest[:12]}, SHA256SUMS says {expected[:12]}")
        shutil.copy2(src, dest / name)


def provenance() -> str:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = git("status", "--porcelain")
    return (f"commit {git('rev-parse', 'HEAD') or 'unknown'}\n"
            f"changed files (git status --porcelain) when the pack was made:\n{changed or '(none)'}\n")


def main(argv: list | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--dest", type=Path, default=ROOT / "data" / "gpu_pack")
    args = p.parse_args(argv)
    if args.dest.exists():
        shutil.rmtree(args.dest)
    site = args.dest / "site"
    sizes = {name: copy_distribution(name, site) for name in DISTRIBUTIONS}
    jpeg = args.shared / "cifar10_jpeg"
    if (jpeg / "cifar10-jpeg.tar.gz").is_file():
        checked_copy(jpeg, args.shared / "SHA256SUMS", args.dest / "cifar10_jpeg")
    else:
        print(f"gpu_pack: no {jpeg}/cifar10-jpeg.tar.gz; the session will use synthetic images only", file=sys.stderr)
    (args.dest / "PROVENANCE.txt").write_text(provenance())
    total = sum(f.stat().st_size for f in args.dest.rglob("*") if f.is_file())
    for name, size in sizes.items():
        print(f"  {name}: {size / 2**20:.1f} MiB")
    print(f"gpu_pack: wrote {args.dest} ({total / 2**20:.1f} MiB; with the working tree it must stay under "
          f"{CARRY_LIMIT_MIB} MiB). Carry it: run(command=\"bash scripts/gpu_session.sh\", "
          f"carry=[\"{args.dest.relative_to(ROOT) if args.dest.is_relative_to(ROOT) else args.dest}\"], timeout_s=600)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
