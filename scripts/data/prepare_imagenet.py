"""Sort the official flat ImageNet validation folder into one folder per class (wnid).

``ILSVRC2012_img_val.tar`` extracts to 50,000 files ``ILSVRC2012_val_00000001.JPEG`` ... with no
labels; the suite reads ``val/<wnid>/<image>`` (ImageFolder). Labels come from either

- the ILSVRC2012 devkit (``--devkit ILSVRC2012_devkit_t12``, or ``--ground-truth`` and ``--meta``):
  ``data/ILSVRC2012_validation_ground_truth.txt`` holds one ILSVRC2012_ID (1..1000) per line, line
  ``i`` for image ``i``; ``data/meta.mat`` maps ILSVRC2012_ID to WNID in its ``synsets`` struct
  array (leaf synsets, ``num_children == 0``, are the 1000 classes); or
- a CSV like Kaggle's ``LOC_val_solution.csv`` (``--csv``): a header, then
  ``ImageId,PredictionString`` rows whose PredictionString starts with the wnid.

Usage::

    python scripts/data/prepare_imagenet.py --val-dir imagenet/val --devkit ILSVRC2012_devkit_t12 --dry-run
    python scripts/data/prepare_imagenet.py --val-dir imagenet/val --csv LOC_val_solution.csv

Files are moved (``--copy`` copies them) into ``--dest`` (default: ``--val-dir`` itself). Files
already in class folders are left alone, so a second run has nothing to do. The training set
needs no labels: ``ILSVRC2012_img_train.tar`` holds one ``<wnid>.tar`` per class; extract each
into ``train/<wnid>/``. ImageNet cannot be downloaded automatically (image-net.org terms).
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional

VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.JPEG$", re.IGNORECASE)
WNID = re.compile(r"^n\d{8}$")


def labels_from_devkit(ground_truth: Path, meta: Path) -> Dict[str, str]:
    """Image id (``ILSVRC2012_val_00000001``) -> wnid, from the devkit's two files."""
    from scipy.io import loadmat

    synsets = loadmat(str(meta), squeeze_me=True)["synsets"]
    wnid = {int(i): str(w) for i, w, c in zip(synsets["ILSVRC2012_ID"], synsets["WNID"], synsets["num_children"])
            if int(c) == 0}
    out = {}
    for line_no, line in enumerate(ground_truth.read_text().split(), start=1):
        if int(line) not in wnid:
            raise ValueError(f"{ground_truth}:{line_no}: ILSVRC2012_ID {line} is not a leaf synset of {meta}")
        out[f"ILSVRC2012_val_{line_no:08d}"] = wnid[int(line)]
    return out


def labels_from_csv(path: Path) -> Dict[str, str]:
    """Image id -> wnid from ``ImageId,PredictionString`` rows (the first token is the wnid)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or len(rows[0]) < 2:
        raise ValueError(f"{path}: expected a header and ImageId,PredictionString rows")
    return {r[0].strip(): r[1].split()[0] for r in rows[1:] if len(r) >= 2 and r[1].strip()}


def plan(val_dir: Path, labels: Dict[str, str]) -> Dict[Path, str]:
    """Flat validation image -> wnid; every flat image must have a label, every label be a wnid."""
    odd = sorted(w for w in set(labels.values()) if not WNID.match(w))
    if odd:
        raise ValueError(f"labels that are not wnids (n + 8 digits): {odd[:3]}; wrong label file or column?")
    files = sorted(p for p in val_dir.iterdir() if p.is_file() and VAL_NAME.match(p.name))
    missing = [p.name for p in files if p.name.split(".")[0] not in labels]
    if missing:
        raise ValueError(f"{len(missing)} images have no label (first: {missing[0]}); wrong label file?")
    return {p: labels[p.name.split(".")[0]] for p in files}


def sort_images(moves: Dict[Path, str], dest: Path, copy: bool = False, dry_run: bool = False) -> None:
    for path, wnid in moves.items():
        target = dest / wnid / path.name
        if dry_run:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copy2 if copy else shutil.move)(str(path), str(target))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--val-dir", type=Path, required=True, help="folder of ILSVRC2012_val_*.JPEG files")
    parser.add_argument("--devkit", type=Path, help="ILSVRC2012_devkit_t12 folder (uses its data/ files)")
    parser.add_argument("--ground-truth", type=Path, help="ILSVRC2012_validation_ground_truth.txt")
    parser.add_argument("--meta", type=Path, help="the devkit's meta.mat")
    parser.add_argument("--csv", type=Path, help="LOC_val_solution.csv-style labels")
    parser.add_argument("--dest", type=Path, help="where the class folders go (default: --val-dir)")
    parser.add_argument("--copy", action="store_true", help="copy instead of move")
    parser.add_argument("--dry-run", action="store_true", help="print what would happen; change nothing")
    args = parser.parse_args(argv)
    if args.devkit:
        args.ground_truth = args.ground_truth or args.devkit / "data" / "ILSVRC2012_validation_ground_truth.txt"
        args.meta = args.meta or args.devkit / "data" / "meta.mat"
    if not args.csv and not (args.ground_truth and args.meta):
        parser.error("give --devkit, --ground-truth with --meta, or --csv")
    for path in [args.val_dir, args.csv] if args.csv else [args.val_dir, args.ground_truth, args.meta]:
        if not path.exists():
            parser.error(f"{path} does not exist")
    try:
        labels = labels_from_csv(args.csv) if args.csv else labels_from_devkit(args.ground_truth, args.meta)
        moves = plan(args.val_dir, labels)
    except (ValueError, KeyError, IndexError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    dest = args.dest or args.val_dir
    sort_images(moves, dest, args.copy, args.dry_run)
    counts = Counter(moves.values())
    verb = "would " + ("copy" if args.copy else "move") if args.dry_run else ("copied" if args.copy else "moved")
    print(f"{verb} {len(moves)} images into {len(counts)} class folders under {dest}"
          + (f" ({min(counts.values())}-{max(counts.values())} per class)" if counts else ""))
    if len(moves) != len(labels):
        print(f"note: the label file lists {len(labels)} images; {len(moves)} flat images were found")
    for path, wnid in list(moves.items())[:3] if args.dry_run else []:
        print(f"  {path.name} -> {dest / wnid / path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
