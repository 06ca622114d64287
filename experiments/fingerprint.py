"""Fingerprints of what a run's result depends on: the resolved config and the data it reads.

A finished run is skipped only when both fingerprints equal the new command's (see
``experiments/main.py``), so an edited config file, another dataset or a changed file under
``data.root`` never passes for a result that is already there.

- **Config**: the resolved config minus the keys that cannot change a result (threads, progress
  bars, logging sinks, the device choice, ``resume``, the run's name and the study it is filed
  under), hashed as canonical JSON.
  :func:`config_diff` names the keys that differ.
- **Data**: the files each task reads under ``data.root`` (:func:`data_files`), each with its
  size and sha256; a tree too large to hash at every start (ImageNet) is fingerprinted by its
  file names and sizes, and the manifest says which (``method``). Hashes are cached per file
  (key: real path, size, mtime), so a second start costs a ``stat`` per file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

# Keys that never change a result: where it runs, how fast, what it prints, where it is logged.
IGNORED = ("trainer.threads", "trainer.progress", "trainer.device", "logger", "resume", "experiment_name", "study",
           "data.root", "data.num_workers", "task.cache_dir")
SHALLOW_BYTES = 4 << 30  # trees above this are fingerprinted by names and sizes, not contents


def _flatten(node: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(node, Mapping):
        out: Dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def _ignored(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in IGNORED)


def result_keys(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The flattened ``key -> value`` pairs of a resolved config that can change a result."""
    return {k: v for k, v in _flatten(config).items() if not _ignored(k)}


def config_hash(config: Mapping[str, Any]) -> str:
    blob = json.dumps(result_keys(config), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any], defaults: Mapping[str, Any] = {}) -> List[str]:
    """``key: old -> new`` for every result key that differs.

    A key the old run's config lacks (an option added to the schema after it ran) counts as equal
    when the new value is the option's default (``defaults``, flattened): the default is the
    behaviour the old run had.
    """
    a, b = result_keys(old), result_keys(new)
    out = []
    for key in sorted(set(a) | set(b)):
        missing = object()
        va, vb = a.get(key, missing), b.get(key, missing)
        if va is missing and key in defaults and defaults[key] == vb:
            continue
        if va != vb:
            show = lambda v: "(absent)" if v is missing else json.dumps(v, default=str)  # noqa: E731
            out.append(f"{key}: {show(va)} -> {show(vb)}")
    return out


def schema_defaults(resolved: Mapping[str, Any]) -> Dict[str, Any]:
    """Flattened defaults of the schema this config was validated against (for added options)."""
    from omegaconf import OmegaConf

    from experiments.config import AveragingConfig, Config, LookaheadConfig, OptimConfig
    from experiments.tasks import MODULES, TASK_SCHEMAS

    def flat(node: Any, prefix: str) -> Dict[str, Any]:
        tree = OmegaConf.to_container(OmegaConf.structured(node), resolve=False, throw_on_missing=False)
        return {f"{prefix}{k}": v for k, v in _flatten(tree).items()}

    out = flat(Config, "")
    out.update(flat(OptimConfig, "optim."))
    out.update(flat(LookaheadConfig, "optim.lookahead."))
    out.update(flat(AveragingConfig, "optim.averaging."))
    name = str(resolved.get("task", {}).get("name"))
    schema = TASK_SCHEMAS.get(MODULES.get(name, name))  # cifar10/cifar100 -> cifar, wmt14 -> wmt
    if schema is not None:
        out.update(flat(schema, "task."))
    return out


def config_changes(old: Mapping[str, Any], resolved: Mapping[str, Any]) -> List[str]:
    """What differs between a stored run's config and a new resolved config, in the keys that can
    change a result (``[]``: the same run). An option added to the schema since the old run
    counts as equal at its default (:func:`config_diff` with :func:`schema_defaults`)."""
    if config_hash(old) == config_hash(resolved):
        return []
    return config_diff(old, resolved, schema_defaults(resolved))


# --- data ------------------------------------------------------------------------------------

def data_files(config: Mapping[str, Any]) -> Tuple[Optional[Path], List[str], str]:
    """``(root, relative paths, method)`` of what the configured task reads.

    ``method`` is ``sha256`` (every file's contents) or ``names+sizes`` (a large image tree).
    Files that do not exist are listed too: the task itself reports missing data, with how to
    get it, when it builds.
    """
    task, root = config["task"], Path(str(config["data"]["root"]))
    name = task["name"]
    if name == "nqm":  # synthetic: the config (dim, seed) is the data
        return None, [], "none"
    if name in ("cifar10", "cifar100"):
        from experiments.data.cifar import LAYOUT

        folder, train, test, _ = LAYOUT[int(task.get("num_classes", 10 if name == "cifar10" else 100))]
        meta = "batches.meta" if folder.startswith("cifar-10-") else "meta"
        return root, [f"{folder}/{f}" for f in (*train, *test, meta)], "sha256"
    if name == "ptb":
        from experiments.data.ptb import SPLITS

        return root, [f"ptb.{s}.txt" for s in SPLITS], "sha256"
    if name == "wmt14":
        src, tgt = task["src_lang"], task["tgt_lang"]
        splits = [s for s in (task["train_split"], task["valid_split"], task["test_split"]) if s]
        names = [f"{s}.{lang}" for s in splits for lang in (src, tgt)]
        names += [f"{task['train_split']}.{src}-{tgt}.pt", "spm.model"]  # optional: "missing" when absent
        if task.get("spm_model"):
            names.append(str(Path(str(task["spm_model"])).resolve()))
        return root, names, "sha256"
    # Image trees (ImageNet) and anything else: every file under the root.
    return root, [], "tree"


class HashCache:
    """sha256 of files keyed by (real path, size, mtime_ns), kept in one JSON file."""

    def __init__(self, path: Optional[Path] = None) -> None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        self.path = path or Path(base) / "lookahead-repro" / "sha256.json"
        try:
            self.entries: Dict[str, str] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}
        self.dirty = False

    def sha256(self, path: Path) -> str:
        real, st = os.path.realpath(path), os.stat(path)
        key = f"{real}|{st.st_size}|{st.st_mtime_ns}"
        if key not in self.entries:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            self.entries[key] = h.hexdigest()
            self.dirty = True
        return self.entries[key]

    def save(self) -> None:
        if not self.dirty:
            return
        try:  # a cache: failing to write it only costs the hashing again next time
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.entries, sort_keys=True))
            os.replace(tmp, self.path)
        except OSError:
            pass


def _tree(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for f in sorted(filenames):
            if not f.startswith("."):
                yield Path(dirpath) / f


def data_fingerprint(config: Mapping[str, Any], cache: Optional[HashCache] = None) -> Dict[str, Any]:
    """``{"method", "files", "bytes", "sha256"}`` of the data the run reads (see the module doc).

    ``sha256`` hashes the sorted ``(relative name, size, content hash)`` lines; with
    ``names+sizes`` the content hash is left out. Missing files enter as ``missing``.
    """
    root, names, method = data_files(config)
    if root is None:
        return {"method": method, "files": 0, "missing": 0, "bytes": 0, "sha256": None}
    if method == "tree":
        files = list(_tree(root)) if root.is_dir() else []
        total = sum(p.stat().st_size for p in files)
        method = "sha256" if total <= SHALLOW_BYTES else "names+sizes"
        names = [p.relative_to(root).as_posix() for p in files]
    cache = cache or HashCache()
    lines, total, missing = [], 0, 0
    for name in sorted(names):
        path = root / name
        if not path.is_file():
            lines.append(f"{name}\tmissing")
            missing += 1
            continue
        size = path.stat().st_size
        total += size
        digest = cache.sha256(path) if method == "sha256" else "-"
        lines.append(f"{name}\t{size}\t{digest}")
    cache.save()
    blob = "\n".join(lines).encode()
    return {"method": method, "files": len(names), "missing": missing, "bytes": total,
            "sha256": hashlib.sha256(blob).hexdigest()}
