"""``hydra/sweeper=lookahead`` (the suite's default): Hydra's grid sweeper, made safe for long sweeps.

Hydra's ``BasicSweeper`` composes every member of a batch before launching any and raises on
the first that fails, so one bad grid cell (``optim.lookahead.k=2.5``, ``optim=foo``) stops the
whole sweep before anything runs, and a member that fails at run time ends the sweep at the end
of its batch, with exit 0 when the launcher swallowed it. This sweeper keeps the grid semantics
(``hydra.sweeper.params``, command-line sweeps, ``max_batch_size``) and changes only that:

1. each member is composed on its own; one that cannot be is recorded as ``failed`` with the
   one-line reason (``experiments.cli.explain``), and the valid members are launched;
2. a member that fails while running (the run records its own ``failed`` manifest) is recorded
   and the sweep goes on;
3. at the end one table (member, status, target metric, run directory) is printed and written to
   ``<sweep dir>/sweep_summary.csv``, and the process exits 1 when any member failed.
   ``diverged`` is a result, not a failure.

Explicit members (``hydra.sweeper.members``), for sweeps that are not a grid: a list whose items
are either a list of overrides or ``{name: NAME, overrides: [...]}``. The members run in the
given order, each with the command line's overrides first (so a member's value wins), batched
by ``max_batch_size``; a named member's run directory is ``<sweep dir>/NAME``
(``hydra.sweep.subdir``) and NAME is its row in the summary. The fair-comparison studies
(``scripts/study.py``) pass their precomputed trial points this way, so a trial is an ordinary
member: resumable, skipped once it is a result, fingerprinted. Members exclude grid sweeps
(``hydra.sweeper.params`` or ``a=1,2`` on the command line): one or the other.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

COLUMNS = ("member", "status", "metric", "value", "run_dir", "error")
# A member's name is a directory name and is quoted in a Hydra override: no quotes, slashes, spaces.
MEMBER_NAME = re.compile(r"[A-Za-z0-9_.=,+@-]+")


def _explain(err: BaseException) -> str:
    try:
        from experiments.cli import explain
    except ImportError:  # the suite's explainer is optional for the sweeper itself
        return (str(err).strip().splitlines() or [type(err).__name__])[0]
    return explain(err)


class LookaheadSweeper(BasicSweeper):
    def __init__(self, max_batch_size: Optional[int], params: Optional[Dict[str, str]] = None,
                 members: Optional[Sequence[Any]] = None) -> None:
        super().__init__(max_batch_size, params)
        self.members = _parse_members(members)
        self.names: Dict[Tuple[str, ...], str] = {}

    def sweep(self, arguments: List[str]) -> Any:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        if self.members is not None:
            try:
                self.overrides = self._member_batches(parser, list(arguments))
            except ValueError as err:  # a usage error: one line, exit 2, as for a single run
                print(f"error: {err}", file=sys.stderr)
                sys.exit(2)
        else:
            params = self._parse_config() + list(arguments)
            self.overrides = self.split_arguments(parser.parse_overrides(params), self.max_batch_size)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        rows: List[Dict[str, Any]] = []
        returns: List[Sequence[JobReturn]] = []
        job_idx = 0
        while not self.is_done():
            batch = self.get_job_batch()
            valid = []
            for job in batch:
                try:
                    self.hydra_context.config_loader.load_sweep_config(master_config=self.config,
                                                                       sweep_overrides=list(job))
                    valid.append(job)
                except Exception as err:  # noqa: BLE001 - any composition error fails this member only
                    rows.append(self._row(job, "failed", error=_explain(err)))
            results = self.launcher.launch(valid, initial_job_idx=job_idx) if valid else []
            for job, result in zip(valid, results):
                rows.append(self._result_row(job, result))
            job_idx += len(batch)
            returns.append(results)

        order = {self._member(job): i for i, job in enumerate(j for b in self.overrides for j in b)}
        rows.sort(key=lambda r: order.get(r["member"], len(order)))
        self._report(rows, sweep_dir)
        if any(r["status"] == "failed" for r in rows):
            sys.exit(1)
        return returns

    def _member_batches(self, parser: OverridesParser, arguments: List[str]) -> List[List[List[str]]]:
        """The explicit members as jobs (command-line overrides first), in batches."""
        sweeps = [o.input_line for o in parser.parse_overrides(arguments) if o.is_sweep_override()]
        if self.params or sweeps:
            raise ValueError("hydra.sweeper.members runs the listed members only; drop the grid "
                             f"({', '.join(sweeps) or 'hydra.sweeper.params'}) or the members")
        jobs = []
        for name, overrides in self.members or []:
            job = arguments + list(overrides)
            if name is not None:  # its run directory, named by the member (quoted: it holds = and ,)
                job.append(f"hydra.sweep.subdir='{name}'")
                self.names[tuple(job)] = name
            jobs.append(job)
        size = self.max_batch_size or len(jobs) or 1
        return [jobs[i : i + size] for i in range(0, len(jobs), size)]

    # --- one member --------------------------------------------------------------------------

    def _member(self, job: Sequence[str]) -> str:
        from hydra._internal.config_loader_impl import get_overrides_dirname

        if tuple(job) in self.names:
            return self.names[tuple(job)]

        parsed = [o for o in OverridesParser.create().parse_overrides(list(job)) if not o.is_hydra_override()]
        conf = self.config.hydra.job.config.override_dirname
        return get_overrides_dirname(parsed, exclude_keys=list(conf.exclude_keys), item_sep=conf.item_sep,
                                     kv_sep=conf.kv_sep) or "(no overrides)"

    def _row(self, job: Sequence[str], status: str, run_dir: str = "", metric: str = "", value: Any = "",
             error: str = "") -> Dict[str, Any]:
        return {"member": self._member(job), "status": status, "metric": metric, "value": value, "run_dir": run_dir,
                "error": error}

    def _result_row(self, job: Sequence[str], result: JobReturn) -> Dict[str, Any]:
        run_dir = ""
        if result.hydra_cfg is not None:
            run_dir = str(result.hydra_cfg.hydra.runtime.output_dir)
        manifest = _read_manifest(Path(run_dir) / "manifest.json") if run_dir else None
        if result.status != JobStatus.COMPLETED:
            err = result._return_value
            status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
            kept = run_dir if run_dir and Path(run_dir).is_dir() else ""  # a failed start leaves nothing
            return self._row(job, status, _rel(kept), error=_explain(err) if err is not None else "")
        if manifest is None:
            return self._row(job, "failed", _rel(run_dir), error="the run wrote no manifest")
        target = manifest.get("target_metric", "")
        value = (manifest.get("final") or {}).get(target, "")
        return self._row(job, str(manifest.get("status")), _rel(run_dir), target, value,
                         error=(str(manifest.get("error") or "").strip().splitlines() or [""])[-1])

    # --- the summary -------------------------------------------------------------------------

    def _report(self, rows: List[Dict[str, Any]], sweep_dir: Path) -> None:
        counts: Dict[str, int] = {}
        for r in rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        head = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        lines = [f"sweep summary ({sweep_dir}): {len(rows)} members: {head}"]
        width = max([len(r["member"]) for r in rows] + [6])
        lines.append(f"  {'status':<11} {'target metric':<22} {'member':<{width}}  run dir / error")
        for r in rows:
            value = r["value"]
            shown = f"{r['metric']} {value:.4g}" if isinstance(value, float) else (r["metric"] or "-")
            tail = r["run_dir"] if r["status"] != "failed" else f"{r['run_dir'] + ': ' if r['run_dir'] else ''}{r['error']}"
            lines.append(f"  {r['status']:<11} {shown:<22} {r['member']:<{width}}  {tail}")
        print("\n".join(lines), flush=True)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        tmp = sweep_dir / f".sweep_summary.csv.{os.getpid()}.tmp"
        tmp.write_text(buffer.getvalue())
        os.replace(tmp, sweep_dir / "sweep_summary.csv")


def _parse_members(members: Optional[Sequence[Any]]) -> Optional[List[Tuple[Optional[str], List[str]]]]:
    """``hydra.sweeper.members`` as ``[(name or None, overrides)]``; None when not given."""
    if members is None:
        return None
    if isinstance(members, str) or hasattr(members, "keys") or not hasattr(members, "__iter__"):
        raise ValueError(f"hydra.sweeper.members must be a list of members, got {members!r}")
    out: List[Tuple[Optional[str], List[str]]] = []
    seen = set()
    for i, item in enumerate(members):
        if hasattr(item, "keys"):  # {name: ..., overrides: [...]}
            extra = set(item.keys()) - {"name", "overrides"}
            if extra or "overrides" not in item:
                raise ValueError(f"hydra.sweeper.members[{i}]: give name and overrides (got keys "
                                 f"{', '.join(map(str, item.keys()))})")
            name, overrides = item.get("name"), item["overrides"]
            if name is not None:
                name = str(name)
                if not MEMBER_NAME.fullmatch(name) or name in (".", ".."):
                    raise ValueError(f"hydra.sweeper.members[{i}]: name {name!r} must be a directory name of "
                                     "letters, digits and _.=,+@-")
                if name in seen:
                    raise ValueError(f"hydra.sweeper.members: two members are named {name!r}")
                seen.add(name)
        else:
            name, overrides = None, item
        if isinstance(overrides, str) or not all(isinstance(o, str) for o in overrides):
            raise ValueError(f"hydra.sweeper.members[{i}]: overrides must be a list of strings (KEY=VALUE)")
        out.append((name, [str(o) for o in overrides]))
    return out


def _read_manifest(path: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _rel(path: str) -> str:
    if not path:
        return ""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)

