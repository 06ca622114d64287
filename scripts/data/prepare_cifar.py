"""Download the official CIFAR-10/100 python archives, check their md5, and unpack them.

    python scripts/data/prepare_cifar.py --dataset cifar10 --dest data/cifar10

leaves ``data/cifar10/cifar-10-batches-py/`` (the layout ``experiments/data/cifar.py`` reads;
point ``data.root`` at ``data/cifar10``). ``--archive FILE`` unpacks an archive fetched by
other means after the same md5 check. The archive is downloaded to a temporary name and
renamed only after its checksum matches, so an interrupted download never looks complete.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

ARCHIVES = {  # Krizhevsky (2009), https://www.cs.toronto.edu/~kriz/cifar.html
    "cifar10": ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                "cifar-10-batches-py"),
    "cifar100": ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
                 "cifar-100-python"),
}


def md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(url: str, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as f:
        shutil.copyfileobj(response, f)
    tmp.replace(dest)


def prepare(dataset: str, dest: Path, archive: Path | None = None) -> Path:
    url, checksum, folder = ARCHIVES[dataset]
    dest.mkdir(parents=True, exist_ok=True)
    if (dest / folder).is_dir():
        print(f"{dest / folder} exists; nothing to do")
        return dest / folder
    if archive is None:
        archive = dest / Path(url).name
        if not archive.exists():
            print(f"downloading {url}")
            fetch(url, archive)
    if not archive.is_file():
        print(f"error: no archive {archive}; give the path of the downloaded {Path(url).name}", file=sys.stderr)
        sys.exit(2)
    found = md5(archive)
    if found != checksum:
        print(f"error: {archive} has md5 {found}, expected {checksum} ({Path(url).name}): delete it and "
              "download it again", file=sys.stderr)
        sys.exit(2)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    print(f"wrote {dest / folder}")
    return dest / folder


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=sorted(ARCHIVES), required=True)
    p.add_argument("--dest", type=Path, required=True)
    p.add_argument("--archive", type=Path, help="an already downloaded official archive")
    args = p.parse_args(argv)
    try:
        prepare(args.dataset, args.dest, args.archive)
    except OSError as err:
        print(f"error: could not get {args.dataset}: {err}. Download {ARCHIVES[args.dataset][0]} by other "
              "means and pass it with ARCHIVE=file (make) or --archive.", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
