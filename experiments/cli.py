"""The command line in front of Hydra: the project's ``--help``, and one line + exit 2 for a bad config.

Contract (README, "User errors"): a config the user must fix prints exactly one line on stderr,
``error: <what is wrong and how to fix it>``, and exits 2, without a traceback. ``run.py`` calls
:func:`preflight` before ``@hydra.main``. For a single run (no ``-m``) it composes the config
with the same overrides through Hydra's compose API against the same ``conf/``, rejects keys the
schemas do not declare, and builds the dataclasses (their ``__post_init__`` checks); any error
becomes one line via :func:`explain`. Then Hydra runs with ``sys.argv`` untouched, so its own
flags (``--cfg job``, ``--info``, ``--hydra-help``, ``hydra.*`` overrides) behave as before.

:func:`explain` turns any exception that Hydra's ``compose`` / ``load_sweep_config`` or the
schema validation raises into that one line, for callers that record errors instead of exiting
(a sweep member that does not compose).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple

from omegaconf import DictConfig, OmegaConf

from experiments.errors import UserError

CONF = Path(__file__).resolve().parents[1] / "conf"  # the tree run.py composes
# The README's most common commands, shown by --help.
COMMANDS = (
    "python run.py task=cifar10 optim=lookahead_sgd data.root=DIR",
    "python run.py task=nqm optim=lookahead_sgd --cfg job",
    "make sweep-table1_cifar SCALE=cpu JOBS=2",
)
# Hydra flags after which no job runs from this config tree: nothing to pre-check.
_NO_JOB = ("multirun", "hydra_help", "info", "shell_completion", "experimental_rerun",
           "config_path", "config_name", "config_dir")


def preflight(argv: Optional[Sequence[str]] = None) -> None:
    """Handle what must happen before Hydra parses ``argv`` (default ``sys.argv[1:]``).

    ``--help`` / ``-h`` prints :func:`help_text` and exits 0. A single run whose config does not
    compose or validate prints ``error: ...`` (one line) and exits 2. Otherwise returns, and
    Hydra takes over.
    """
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()  # the parser @hydra.main uses, so both read argv alike
    parser.error = _bad_usage  # a malformed command line is Hydra's to report, in its own words
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except _BadUsage:
        return
    if args.help:
        print(help_text())
        sys.exit(0)
    overrides = list(args.overrides)
    if any(getattr(args, flag) for flag in _NO_JOB) or any(o.replace(" ", "") == "hydra.mode=MULTIRUN"
                                                          for o in overrides):
        return
    try:
        validate(overrides)
    except Exception as err:  # noqa: BLE001 - every failure here is the user's config
        print(f"error: {explain(err)}", file=sys.stderr)
        sys.exit(2)


class _BadUsage(Exception):
    pass


def _bad_usage(message: str) -> None:
    raise _BadUsage(message)


def validate(overrides: Sequence[str]):
    """Compose ``overrides`` as ``run.py`` does and build the typed :class:`~experiments.config.Config`.

    Raises whatever Hydra raises for a composition error, :class:`UserError` for a key no schema
    declares (``+trainer.max_stepz=5``), and the schemas' ``ValueError`` for a bad value.
    """
    from omegaconf import open_dict

    from experiments.sweep import compose

    cfg = compose(overrides, hydra=True)  # with the hydra node: hydra.* overrides are checked too
    with open_dict(cfg):
        del cfg["hydra"]
    check_declared(cfg)
    return OmegaConf.to_object(cfg)


def check_declared(cfg: DictConfig) -> None:
    """Raise :class:`UserError` for the first key under a schema node that its dataclass does not declare.

    Hydra's ``+key=value`` adds keys even to struct nodes and ``OmegaConf.to_object`` then sets
    them as plain attributes, so a misspelt ``+trainer.max_stepz`` would otherwise be ignored.
    Free dicts (``optim.extra``) are not schema nodes and stay open.
    """
    first = next(_undeclared(cfg, ""), None)
    if first:
        full_key, declared = first
        raise UserError(_unknown_key(full_key, declared))


def _undeclared(node: DictConfig, prefix: str) -> Iterator[Tuple[str, List[str]]]:
    """(full key, the keys its schema declares) for each undeclared key under ``node``."""
    declared = _fields(node._metadata.object_type)
    for key in node.keys():
        if declared is not None and key not in declared:
            yield f"{prefix}{key}", declared
        child = node._get_node(key, validate_access=False)
        if isinstance(child, DictConfig) and not (child._is_none() or child._is_missing() or child._is_interpolation()):
            yield from _undeclared(child, f"{prefix}{key}.")


# ----------------------------------------------------------------------------------------------
# explain: exception -> one line


def explain(err: BaseException) -> str:
    """One line (no newline, no ``error:`` prefix) naming the bad value and the fix.

    Handles what composing and validating a config raises: Hydra's ``MissingConfigException``
    (unknown group option), ``OverrideParseException``, ``ConfigCompositionException`` around
    OmegaConf's unknown-key / wrong-type errors, an override into a block that is null
    (``optim=sgd optim.lookahead.k=5``), ``MissingMandatoryValue``, :class:`UserError` and the
    schemas' ``ValueError``. Anything else gives its type and first line. Never raises.
    """
    try:
        text = _explain(err)
    except Exception:  # noqa: BLE001 - explaining an error must not raise another
        text = _generic(err)
    return " ".join(text.split())


def _explain(err: BaseException) -> str:
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf.errors import (ConfigAttributeError, ConfigKeyError, ConfigTypeError, MissingMandatoryValue,
                                  OmegaConfBaseException, ValidationError)

    if isinstance(err, UserError):
        return str(err)
    if isinstance(err, MissingConfigException):
        return _missing_option(err)
    if isinstance(err, OverrideParseException):
        return (f"cannot parse the override {err.override!r}: {_first(err.message)}; "
                "write key=value, +key=value (add) or ~key (remove)")
    override = _override_in_flight(err)
    line = override[0].input_line if override else None
    null = _null_block(*override) if override else None
    if null:
        return null
    cause = err.__cause__ if isinstance(err, ConfigCompositionException) else err
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and getattr(cause, "full_key", None):
        declared = _fields(cause.object_type)
        if declared is None:  # a free dict such as optim.extra: adding a key is allowed
            return f"{cause.full_key} does not exist; add it with +{line or cause.full_key + '=...'}"
        return _unknown_key(cause.full_key, declared, line)
    if isinstance(cause, ValidationError) and getattr(cause, "full_key", None) and line:
        return _wrong_type(line, cause)
    if isinstance(cause, ConfigTypeError) and line and line.startswith("~"):
        return f"{line}: {cause.full_key} is part of the schema and cannot be removed; set a value instead"
    if isinstance(cause, MissingMandatoryValue) and getattr(cause, "full_key", None):
        return f"{cause.full_key} has no value (???); set it on the command line: {cause.full_key}=..."
    if isinstance(err, ConfigCompositionException):
        return "; ".join(filter(None, [_lines(err), _first(cause.msg if isinstance(cause, OmegaConfBaseException)
                                                           else str(cause or ""))]))
    if isinstance(cause, OmegaConfBaseException):
        key = getattr(cause, "full_key", None)
        return f"{key}: {_first(cause.msg)}" if key else _first(cause.msg)
    if isinstance(err, ValueError):  # the schemas' __post_init__ checks (one line each)
        return _first(str(err))
    return _generic(err)


def _first(text: Any) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _lines(text: Any) -> str:
    return "; ".join(ln.strip() for ln in str(text).strip().splitlines() if ln.strip())


def _generic(err: BaseException) -> str:
    return f"{type(err).__name__}: {_first(err)}" if _first(err) else type(err).__name__


def _fields(schema: Any) -> Optional[List[str]]:
    return [f.name for f in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else None


def _did_you_mean(word: str, choices: Sequence[str], render=lambda c: c) -> str:
    close = difflib.get_close_matches(word, list(choices), n=2)
    return f"; did you mean {' or '.join(render(c) for c in close)}?" if close else ""


def _unknown_key(full_key: str, declared: Sequence[str], line: Optional[str] = None) -> str:
    parent, _, key = full_key.rpartition(".")
    where = f"{parent} has no key {key!r}" if parent else f"the config has no top-level key {key!r}"
    dym = _did_you_mean(key, declared, lambda c: f"{parent}.{c}" if parent else c)
    if not parent:  # a misspelt group (optimizer=sgd) is a top-level key to Hydra
        dym = dym or _did_you_mean(key, _groups())
    keys = "" if dym else f"; its keys: {', '.join(declared)}"
    return f"{line + ': ' if line else ''}unknown key {full_key} ({where}){dym}{keys}"


_TYPE_WORDS = {"Float": "a number", "Integer": "an integer", "Boolean": "true or false", "String": "a string"}


def _wrong_type(line: str, cause: Any) -> str:
    match = re.search(r"could not be converted to (\w+)|is not a valid (bool)", cause.msg)
    kind = match and _TYPE_WORDS.get(match.group(1) or "Boolean")
    if kind:
        return f"{line}: {cause.full_key} must be {kind}, not {cause.value!r}"
    return f"{line}: {_first(cause.msg)}"


def _options(group: str, found: Optional[Sequence[str]] = None) -> List[str]:
    """The user-facing options of a group: its yaml files under conf/ (never the schemas ``base_*``)."""
    folder = CONF / group
    if folder.is_dir() and not group.startswith("hydra"):
        return sorted(p.stem for p in folder.glob("*.yaml"))
    return sorted(o for o in (found or []) if not o.startswith("base_"))


def _missing_option(err: Any) -> str:
    file = getattr(err, "missing_cfg_file", None) or ""
    if "/" not in file or err.options is None:
        return _first(err)
    group, name = file.rsplit("/", 1)
    options = _options(group, err.options)
    dym = _did_you_mean(name, options, lambda c: f"{group}={c}")
    return f"Could not find '{file}': {group} has no option {name!r}{dym or ';'} {group} options: {', '.join(options)}"


def _override_in_flight(err: BaseException) -> Optional[Tuple[Any, Any]]:
    """(override, config) of Hydra's ``_apply_overrides_to_config`` when ``err`` was raised inside it.

    Hydra reports some failures of an override with no word of which override it was (an
    ``AssertionError`` from OmegaConf for a key under a null node); the frame still holds both.
    """
    from hydra.core.override_parser.types import Override

    found, seen = None, set()
    stack = [err]
    while stack:  # the error and its causes: Hydra re-raises OmegaConf's errors from the same frame
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        tb = e.__traceback__
        while tb is not None:
            local = tb.tb_frame.f_locals
            if isinstance(local.get("override"), Override) and isinstance(local.get("cfg"), DictConfig):
                found = (local["override"], local["cfg"])
            tb = tb.tb_next
        if found:
            return found
        stack += [e.__cause__, e.__context__]
    return None


def _null_block(override: Any, cfg: DictConfig) -> Optional[str]:
    """The message for an override of (or under) a node that is null in ``cfg``, else None."""
    parts = str(override.key_or_group).split(".")
    node: Any = cfg
    for i, part in enumerate(parts):
        child = node._get_node(part, validate_access=False) if isinstance(node, DictConfig) else None
        if not isinstance(child, DictConfig):  # absent, or a value (a null value may be set)
            return None
        if child._is_none():
            block = ".".join(parts[: i + 1])
            return f"{override.input_line}: {block} is null here, so it cannot be set; {_enable(block, cfg)}"
        node = child
    return None


def _enable(block: str, cfg: DictConfig) -> str:
    """How to get a config in which ``block`` is set: an option of its group whose file sets it."""
    group, _, key = block.partition(".")
    folder = CONF / group
    if not key or not folder.is_dir():
        return f"choose a config that sets {block}"
    setters = sorted(p.stem for p in folder.glob("*.yaml") if key.split(".")[0] in (OmegaConf.load(p) or {}))
    current = OmegaConf.select(cfg, f"{group}.name", default=None)
    best = [s for s in setters if current and s.endswith(f"_{current}")]
    if best:
        return f"{group}={current} does not set it: use {group}={best[0]}"
    if setters:
        return f"{group}={current} does not set it: use {' or '.join(f'{group}={s}' for s in setters)}"
    return f"choose a config that sets {block}"


# ----------------------------------------------------------------------------------------------
# --help


def _defaults() -> dict:
    """group -> default option of the groups the user picks on the command line: the plain entries
    of conf/config.yaml's defaults list (not the ``optional`` ones chosen by interpolation)."""
    entries = OmegaConf.to_container(OmegaConf.load(CONF / "config.yaml").defaults)  # unresolved
    return {str(k): str(v) for e in entries if isinstance(e, dict) for k, v in e.items()
            if " " not in str(k) and "${" not in str(v) and (CONF / str(k)).is_dir()}


def _groups() -> List[str]:
    return list(_defaults())


def help_text() -> str:
    """The ``python run.py --help`` page, generated from conf/ so it lists what exists now."""
    rows = [(g, _options(g), default) for g, default in _defaults().items()]
    rows.append(("+experiment", _options("experiment"), None))
    width = max(len(g) for g, _, _ in rows) + 2
    lines = [
        "usage: python run.py [GROUP=OPTION ...] [KEY=VALUE ...] [--cfg job] [-m]",
        "",
        *textwrap.wrap(
            "Trains one run (with -m: a sweep) from the configs in conf/, composed by Hydra and checked "
            "against the schemas in experiments/config.py before anything runs. GROUP=OPTION picks a "
            "config file, KEY=VALUE sets any key (optim.lr=0.01, trainer.epochs=30), +experiment=NAME "
            "adds a paper sweep (run it with -m), optim=timm takes optim.inner=NAME (the timm names "
            "in the README). Each run writes runs/<experiment_name>/<overrides>/ and resumes when "
            "started again. A bad config or missing data prints one line and exits 2.", 96),
        "",
        "config groups (* default):",
    ]
    for group, options, default in rows:
        shown = ", ".join(f"{o}*" if o == default else o for o in options)
        wrapped = textwrap.wrap(shown, 96 - width - 2) or [""]
        lines += [f"  {group:<{width}}{wrapped[0]}"] + [f"  {'':<{width}}{w}" for w in wrapped[1:]]
    lines += ["", "common commands:", *(f"  {c}" for c in COMMANDS), "",
              "Hydra's flags work as usual: --cfg job|hydra|all, --info, --hydra-help, -m. See README.md."]
    return "\n".join(lines)
