"""Run-record integrity: stale skips, the run-directory lock, half-records, dirty trees, feedback.

Each test pins one defect the suite had: a finished run skipped after its config or data
changed, two processes interleaving one directory, a failed start leaving a three-key manifest
(and the next good run claiming ``resumed``), temp files left by a full disk, dirty runs with no
record of what differed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import compose, train
from experiments import fingerprint, runtime
from experiments.main import execute
from experiments.rundir import RunDirInUse, RunDirLock
from fakes import write_cifar

ROOT = Path(__file__).resolve().parents[1]
NQM = ["task=nqm", "optim=lookahead_sgd", "scale=smoke"]


def _run_py(*args: str, runs: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "LOOKAHEAD_RUNS": str(runs), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def _error_lines(out: subprocess.CompletedProcess) -> list:
    return [line for line in out.stderr.splitlines() if line.strip()]


# --- stale results ----------------------------------------------------------------------------

def test_a_finished_run_with_another_config_is_not_skipped(tmp_path, capsys):
    train(NQM, tmp_path / "run")
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        execute(compose([*NQM, "task.dim=12"]), tmp_path / "run", NQM)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "task.dim: 10 -> 12" in err and "resume=false" in err
    # The same config is still a skip, and resume=false redoes the run in place.
    execute(compose(NQM), tmp_path / "run", NQM)
    assert "already completed (same config and data)" in capsys.readouterr().out
    execute(compose([*NQM, "task.dim=12", "resume=false"]), tmp_path / "run", NQM)
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["config"]["task"]["dim"] == 12


def test_keys_that_cannot_change_a_result_do_not_make_a_run_stale(tmp_path, capsys):
    train(NQM, tmp_path / "run")
    execute(compose([*NQM, "trainer.threads=1", "trainer.progress=true", "experiment_name=other"]),
            tmp_path / "run", NQM)
    assert "already completed" in capsys.readouterr().out


def test_an_option_added_after_a_run_counts_as_its_default(tmp_path, capsys):
    manifest = train(NQM, tmp_path / "run")
    del manifest["config"]["trainer"]["sync_bn"]  # as written before the option existed
    manifest["config_hash"] = "older"
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(manifest))
    execute(compose(NQM), tmp_path / "run", NQM)
    assert "already completed" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        execute(compose([*NQM, "trainer.sync_bn=true"]), tmp_path / "run", NQM)
    assert "trainer.sync_bn: (absent) -> true" in capsys.readouterr().err


def test_changed_data_makes_a_finished_run_stale(tmp_path, capsys):
    root = tmp_path / "cifar"
    write_cifar(root)
    args = ["task=cifar10", "optim=sgd", "scale=smoke", f"data.root={root}"]
    manifest = train(args, tmp_path / "run")
    fp = manifest["data_fingerprint"]
    assert fp["method"] == "sha256" and fp["files"] == 7 and len(fp["sha256"]) == 64
    batch = root / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(batch.read_bytes()[:-1] + b"\x00")  # one byte of one image
    with pytest.raises(SystemExit):
        execute(compose(args), tmp_path / "run", args)
    err = capsys.readouterr().err
    assert "on other data: data fingerprint" in err and fp["sha256"][:12] in err


def test_the_same_data_at_another_path_is_the_same_run(tmp_path, capsys):
    write_cifar(tmp_path / "a")
    args = ["task=cifar10", "optim=sgd", "scale=smoke"]
    train([*args, f"data.root={tmp_path / 'a'}"], tmp_path / "run")
    os.rename(tmp_path / "a", tmp_path / "b")
    execute(compose([*args, f"data.root={tmp_path / 'b'}"]), tmp_path / "run", args)
    assert "already completed" in capsys.readouterr().out


def test_an_unfinished_run_resumes_only_from_the_same_config(tmp_path, capsys):
    manifest = train(NQM, tmp_path / "run")
    manifest["status"] = "interrupted"
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SystemExit):
        execute(compose([*NQM, "optim.lr=0.3"]), tmp_path / "run", NQM)
    assert "holds an unfinished run with another config: optim.lr" in capsys.readouterr().err


def test_config_diff_names_every_differing_key():
    old = {"optim": {"lr": 0.1, "k": 5}, "trainer": {"threads": 1}}
    new = {"optim": {"lr": 0.2, "k": 5}, "trainer": {"threads": 2}, "seed": 1}
    assert fingerprint.config_diff(old, new) == ["optim.lr: 0.1 -> 0.2", "seed: (absent) -> 1"]
    assert fingerprint.config_hash(old) != fingerprint.config_hash(new)
    assert fingerprint.config_hash({**old, "trainer": {"threads": 8}}) == fingerprint.config_hash(old)


def test_data_hashes_are_cached_by_path_size_and_mtime(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text("abc")
    cache = fingerprint.HashCache(tmp_path / "cache.json")
    first = cache.sha256(f)
    cache.save()
    again = fingerprint.HashCache(tmp_path / "cache.json")
    assert again.entries and again.sha256(f) == first and not again.dirty
    f.write_text("abd")
    assert again.sha256(f) != first


# --- one process per run directory -------------------------------------------------------------

def test_a_second_process_on_a_run_directory_exits_2_naming_the_holder(tmp_path):
    run_dir = tmp_path / "x"
    with RunDirLock(run_dir):
        out = _run_py(*NQM, f"hydra.run.dir={run_dir}", runs=tmp_path)
        with pytest.raises(RunDirInUse, match=f"in use by pid {os.getpid()}"):
            RunDirLock(run_dir).acquire()
    assert out.returncode == 2, out.stderr
    assert _error_lines(out) == [f"error: run directory {run_dir} in use by pid {os.getpid()}; wait for it to "
                                 "finish or stop it (a killed run releases the directory and resumes when re-run)"]
    assert not (run_dir / "manifest.json").exists()


def test_a_killed_holder_never_leaves_a_stale_lock(tmp_path):
    run_dir = tmp_path / "x"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from experiments.rundir import RunDirLock; "
        "RunDirLock(__import__('pathlib').Path(sys.argv[2])).acquire(); print('held', flush=True); time.sleep(60)"),
        str(ROOT), str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunDirInUse, match=f"pid {holder.pid}"):
        RunDirLock(run_dir).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    RunDirLock(run_dir).acquire().release()


def test_temp_files_of_a_dead_writer_are_removed_on_the_next_start(tmp_path):
    run_dir = tmp_path / "run"
    train(NQM, run_dir)
    (run_dir / ".metrics.csv.99999.tmp").write_text("half")
    (run_dir / ".checkpoint.pt.99999.tmp").write_bytes(b"half")
    train(NQM, run_dir)  # a skip, but it still owns the directory first
    assert not list(run_dir.glob(".*.tmp"))


def test_a_full_disk_records_failed_and_leaves_no_temp_file(tmp_path, monkeypatch):
    import experiments.records as records

    real = records.atomic_write_bytes

    def full_disk_for_metrics(path, data):
        if path.name == "metrics.csv":
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(records, "atomic_write_bytes", full_disk_for_metrics)
    with pytest.raises(OSError):
        execute(compose(NQM), tmp_path / "run", NQM, multirun=True)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "No space left on device" in manifest["error"]
    assert not list((tmp_path / "run").glob(".*.tmp"))


def test_atomic_writes_use_a_temp_name_per_writer_and_clean_up(tmp_path, monkeypatch):
    from experiments.records import atomic_write_bytes

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "m.json", b"{}")
    assert list(tmp_path.iterdir()) == []


# --- failures before training leave nothing -----------------------------------------------------

@pytest.mark.parametrize("bad", [["optim.lookahead.alpha=2"], ["task=cifar10", "data.root=/nonexistent/cifar"]])
def test_a_failure_before_training_leaves_no_half_record(tmp_path, bad):
    out = _run_py(*NQM, *bad, "hydra.run.dir=" + str(tmp_path / "run"), runs=tmp_path)
    assert out.returncode == 2 and len(_error_lines(out)) == 1, out.stderr
    assert not (tmp_path / "run").exists()
    good = _run_py(*NQM, "hydra.run.dir=" + str(tmp_path / "run"), runs=tmp_path)
    assert good.returncode == 0, good.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["resumed"] is False and manifest["attempts"] == 1


def test_a_failure_before_training_leaves_an_existing_record_as_it_was(tmp_path):
    root = tmp_path / "cifar"
    write_cifar(root)
    run_dir = tmp_path / "run"
    args = ["task=cifar10", "optim=sgd", "scale=smoke", f"hydra.run.dir={run_dir}"]
    assert _run_py(*args, f"data.root={root}", runs=tmp_path).returncode == 0
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name not in ("run.log", ".lock")}
    out = _run_py(*args, f"data.root={tmp_path / 'gone'}", runs=tmp_path)
    assert out.returncode == 2
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name not in ("run.log", ".lock")} == before


# --- provenance and feedback -------------------------------------------------------------------

def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_a_dirty_tree_gives_its_diff_tracked_and_untracked(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "a.py")
    _git(repo, "commit", "-qm", "one")
    assert runtime.git_state(repo)["dirty"] is False
    (repo / "a.py").write_text("x = 2\n")
    (repo / "new.py").write_text("y = 3\n")
    (repo / "env").symlink_to(tmp_path)  # an untracked link (a venv beside the code) is named too
    state = runtime.git_state(repo)
    assert f"new symlink env -> {tmp_path}" in state["diff"]
    (repo / "env").unlink()
    state = runtime.git_state(repo)
    assert state["dirty"] and "-x = 1" in state["diff"] and "+x = 2" in state["diff"] and "+y = 3" in state["diff"]
    # The diff applies to the commit and rebuilds the tree that ran.
    _git(repo, "stash", "-u", "-q")
    (tmp_path / "p.diff").write_text(state["diff"])
    _git(repo, "apply", str(tmp_path / "p.diff"))
    assert (repo / "a.py").read_text() == "x = 2\n" and (repo / "new.py").read_text() == "y = 3\n"


def test_a_run_records_its_diff_when_the_tree_is_dirty(tmp_path, monkeypatch):
    import hashlib

    monkeypatch.setattr(runtime, "git_state", lambda root: {"commit": "c" * 40, "dirty": True, "diff": "+changed\n"})
    manifest = train(NQM, tmp_path / "run")
    assert manifest["git"]["diff_file"] == "git.diff"
    assert (tmp_path / "run" / "git.diff").read_text() == "+changed\n"
    assert manifest["git"]["diff_sha256"] == hashlib.sha256(b"+changed\n").hexdigest()


def test_a_finished_run_prints_one_summary_line_and_fills_run_log(tmp_path):
    out = _run_py(*NQM, f"hydra.run.dir={tmp_path / 'run'}", runs=tmp_path)
    assert out.returncode == 0, out.stderr
    summary = [line for line in out.stdout.splitlines() if line.startswith("completed:")]
    assert len(summary) == 1 and "val_loss" in summary[0] and "(fast " in summary[0] and "slow " in summary[0]
    assert "steps" in summary[0] and str(tmp_path / "run") in summary[0]
    log = (tmp_path / "run" / "run.log").read_text()
    assert summary[0] in log and "val_loss_slow" in log


def test_a_resumed_run_says_from_which_step(tmp_path, capsys):
    manifest = train([*NQM, "trainer.max_steps=30", "trainer.checkpoint_every=10"], tmp_path / "run")
    # Pretend the run was stopped at its last checkpoint: the status decides, the checkpoint stays.
    manifest["status"] = "interrupted"
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    again = train([*NQM, "trainer.max_steps=30", "trainer.checkpoint_every=10"], tmp_path / "run")
    assert f"resuming {tmp_path / 'run'} from step 30 of 30" in capsys.readouterr().out
    assert again["resumed"] is True and again["attempts"] == 2


def test_wandb_keeps_one_id_across_resumes(tmp_path, monkeypatch):
    import experiments.wandb_sink as sink

    seen = []

    class FakeRun:
        def __init__(self, **kw):
            seen.append(kw)
            self.id, self.summary = kw["id"], {}

        def log(self, *a, **k):
            pass

        def finish(self):
            pass

    monkeypatch.setitem(sys.modules, "wandb", type(sys)("wandb"))
    sys.modules["wandb"].init = lambda **kw: FakeRun(**kw)
    sys.modules["wandb"].api = type("api", (), {"api_key": None})
    args = [*NQM, "logger=wandb", "experiment_name=grp", "trainer.max_steps=30", "trainer.checkpoint_every=10"]
    manifest = train(args, tmp_path / "run")
    manifest["status"] = "interrupted"
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(manifest))
    again = train(args, tmp_path / "run")
    assert again["wandb_id"] == manifest["wandb_id"] and [s["id"] for s in seen] == [manifest["wandb_id"]] * 2
    assert seen[0]["group"] == "grp" and seen[0]["name"] == "run" and seen[0]["resume"] == "allow"


def test_logger_wandb_on_a_finished_run_replays_its_metrics(tmp_path, monkeypatch, capsys):
    logged = []

    class FakeRun:
        def __init__(self, **kw):
            self.id, self.summary = kw["id"], {}

        def log(self, row, step):
            logged.append(step)

        def finish(self):
            pass

    train(NQM, tmp_path / "run")
    monkeypatch.setitem(sys.modules, "wandb", type(sys)("wandb"))
    sys.modules["wandb"].init = lambda **kw: FakeRun(**kw)
    sys.modules["wandb"].api = type("api", (), {"api_key": None})
    execute(compose([*NQM, "logger=wandb"]), tmp_path / "run", NQM)
    out = capsys.readouterr().out
    assert "already completed" in out and "logged the finished run's metrics.csv to wandb" in out
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]
    assert logged == [int(r.split(",")[0]) for r in rows]
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["wandb_id"]


def test_added_task_options_are_known_for_every_task_name():
    from experiments.fingerprint import schema_defaults as _schema_defaults

    # Task names map to schema modules (cifar10/cifar100 -> cifar, wmt14 -> wmt).
    assert _schema_defaults({"task": {"name": "cifar10"}})["task.split_seed"] == 0
    assert "task.limit_eval" in _schema_defaults({"task": {"name": "wmt14"}})
    assert "task.limit_eval_tokens" in _schema_defaults({"task": {"name": "ptb"}})
