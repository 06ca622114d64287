"""User errors are one line on stderr (``error: ...``) and exit 2; ``--help`` is the project's own page.

Most cases run :func:`experiments.cli.preflight` in-process (what ``run.py`` calls before
``@hydra.main``); a few run ``run.py`` as a subprocess to pin the exit code end to end.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CONF_DIR, compose
from experiments import cli
from experiments.config import SCHEDULE_FREE_INNER, TIMM_INNER, TIMM_REJECTED, TORCH_INNER, TrainerConfig
from experiments.errors import DataError, UserError

ROOT = Path(__file__).resolve().parents[1]
BASE = ["task=nqm", "scale=smoke"]


def _run_py(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    # CUDA_VISIBLE_DEVICES="": trainer.device=cuda must fail the same way on a GPU machine.
    env = {**os.environ, "LOOKAHEAD_RUNS": str(tmp_path), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize("args, words", [
    (["trainer.epoch=3"], ["unknown key trainer.epoch", "did you mean trainer.epochs?"]),
    (["+trainer.max_stepz=5"], ["unknown key trainer.max_stepz", "did you mean trainer.max_steps?"]),
    (["trainer.device=cuda"], ["no CUDA device", "trainer.device=cpu"]),  # through experiments/main.py
])
def test_run_py_exits_2_with_one_line(args, words, tmp_path):
    out = _run_py(tmp_path, *BASE, *args)
    assert out.returncode == 2, out.stderr
    line = _one_line(out.stderr)
    assert all(w in line for w in words), line


def _preflight(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.preflight([*BASE, *args])
    assert exit_.value.code == 2
    return _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("args, words", [
    (["optim.lr=abc"], ["optim.lr=abc", "must be a number", "'abc'"]),
    (["optim.lookahead.k=2.5"], ["optim.lookahead.k=2.5", "must be an integer"]),
    (["optim=foo"], ["'optim/foo'", "optim options: adafactor, adam", "lookahead_sgd"]),
    (["task=imagenette"], ["Could not find 'task/imagenette'", "did you mean task=imagenet?", "nqm, ptb, wmt14"]),
    (["optim=sgd", "optim.lookahead.k=5"], ["optim.lookahead is null", "use optim=lookahead_sgd"]),
    (["optim=sgd", "+optim.lookahead.k=5"], ["optim.lookahead is null", "use optim=lookahead_sgd"]),
    (["task.dimm=3"], ["did you mean task.dim?"]),
    (["+task.dimx=3"], ["unknown key task.dimx", "did you mean task.dim?"]),
    (["optimizer=sgd"], ["did you mean optim?"]),
    (["trainer.log_every=0"], ["Invalid trainer.log_every: 0"]),
    (["trainer.eval_every=0"], ["Invalid trainer.eval_every: 0"]),
    (["optim=timm"], ["optim.inner has no value"]),
    (["optim=timm", "optim.inner=foo"], ["Unknown optim.inner: 'foo'", "TIMM_INNER"]),
    (["optim=timm", "optim.inner=lio"], ["did you mean lion"]),
    (["optim=lookahead_timm", "optim.inner=bnbadam8bit"], ["bitsandbytes", "CUDA"]),
    (["optim=timm", "optim.inner=adahessian"], ["create_graph"]),
    (["optim=timm", "optim.inner=lookahead_adam"], ["optim.lookahead block", "use optim=lookahead_adam"]),
    (["optim=timm", "optim.inner=lookahead_lion"], ["optim=lookahead_timm optim.inner=lion"]),
    (["seed=0,1"], ["Ambiguous value", "--multirun"]),
])
def test_config_errors_are_one_line(args, words, capsys):
    line = _preflight(capsys, *args)
    assert all(w in line for w in words), line
    assert "base_" not in line  # schema entries of the ConfigStore are not options


@pytest.mark.parametrize("args", [
    ["--cfg", "job", *BASE],
    [*BASE, "+optim.extra.foo=3"],  # optim.extra is a free dict
    [*BASE, "optim=timm", "optim.inner=lion"],
    [*BASE, "hydra.run.dir=elsewhere", "hydra/launcher=joblib", "hydra/job_logging=disabled"],
    ["-m", *BASE, "trainer.epoch=3"],  # sweeps are left to Hydra and the sweeper
    ["--info", "defaults", *BASE],
    [*BASE, "--cfg", "job", "trainer.epoch=3"],  # a malformed command line: Hydra says so
])
def test_good_configs_and_hydra_flags_go_on_to_hydra(args, capsys):
    assert cli.preflight(args) is None
    assert capsys.readouterr().err == ""


def _sweep_error(overrides):
    """The exception Hydra's load_sweep_config raises for one sweep member (as a sweeper sees it)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    compose(BASE)  # registers the schemas
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        hydra = GlobalHydra.instance().hydra
        master = hydra.compose_config("config", BASE, run_mode=RunMode.MULTIRUN, from_shell=True,
                                      with_log_configuration=False)
        with pytest.raises(Exception) as info:
            hydra.config_loader.load_sweep_config(master, [*BASE, *overrides])
    return info.value


@pytest.mark.parametrize("overrides, words", [
    (["optim=sgd", "optim.lookahead.k=5"], ["optim.lookahead is null", "optim=lookahead_sgd"]),
    (["trainer.epoch=3"], ["did you mean trainer.epochs?"]),
    (["optim.lr=abc"], ["optim.lr must be a number"]),
    (["optim=adamm"], ["did you mean optim=adam"]),
])
def test_explain_errors_of_load_sweep_config(overrides, words):
    text = cli.explain(_sweep_error(overrides))
    assert "\n" not in text and all(w in text for w in words), text


def test_explain_is_one_line_for_anything():
    assert cli.explain(RuntimeError("first\nsecond")) == "RuntimeError: first"
    assert cli.explain(UserError("fix this")) == "fix this"


def test_help_lists_user_facing_options_and_the_readme_commands(capsys):
    for flag in ("--help", "-h"):
        with pytest.raises(SystemExit) as exit_:
            cli.preflight([flag])
        assert exit_.value.code == 0
        page = capsys.readouterr().out
        assert "base_" not in page and "usage: python run.py" in page
        for group in ("task", "optim", "scale", "schedule", "logger", "+experiment"):
            assert f"\n  {group} " in page
        assert "lookahead_sgd*" in page and "table1_cifar" in page and "task_optim" not in page
    readme = (ROOT / "README.md").read_text()
    assert all(command in page and command in readme for command in cli.COMMANDS)


def test_run_py_help_exits_0(tmp_path):
    out = _run_py(tmp_path, "--help")
    assert out.returncode == 0 and "common commands:" in out.stdout and not out.stderr


def test_supported_inner_names_match_timm_and_the_readme():
    from timm.optim import list_optimizers

    from experiments.optim import INNER

    assert set(INNER) == set(TORCH_INNER) | set(SCHEDULE_FREE_INNER)
    timm = set(list_optimizers())
    rejected = {n for n in timm if n.startswith(tuple(prefix for prefix, _ in TIMM_REJECTED))}
    assert set(TIMM_INNER) <= timm and timm == set(TIMM_INNER) | rejected | set(TORCH_INNER)
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("**`optim.inner`.**"):readme.index("**User errors")]
    assert {w.strip("`,.") for w in section.split() if w.startswith("`")} >= set(TIMM_INNER)


def test_device_without_cuda_is_a_user_error(monkeypatch):
    import torch

    from experiments.runtime import select_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="trainer.device=cpu"):
        select_device(TrainerConfig(device="cuda"))
    with pytest.raises(UserError, match="Invalid trainer.device"):
        select_device(TrainerConfig(device="gpu0"))


def test_corrupt_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    from experiments.main import execute

    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as exit_:
        execute(compose(BASE), tmp_path, BASE)
    assert exit_.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert "checkpoint.pt is unreadable" in line and "Delete it" in line


def test_corrupt_cached_spm_model_names_the_file_to_delete(tmp_path):
    from experiments.data.spm import cached_spm

    lines = ["hello world", "the quick brown fox jumps over the lazy dog", "ein kleiner hund"] * 20
    cached_spm(lines, 40, tmp_path)
    (model,) = tmp_path.glob("*.model")
    model.write_bytes(b"garbage")
    with pytest.raises(DataError) as err:
        cached_spm(lines, 40, tmp_path)
    assert str(model) in str(err.value) and "delete it" in str(err.value) and "\n" not in str(err.value)
