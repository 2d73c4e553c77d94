"""training.rundir's lock: an advisory lock per run folder (two processes on one run, a held folder, a stale lock of
a dead process, kill -9 then --resume). Issue #18."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from edgercnn.core.errors import EdgeRCNNError
from edgercnn.training.rundir import RunDir

from tests.clirunner import TINY, invoke, one_line
from tests.paths import REPO

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def rows(path):
    with open(path, newline="") as handle:
        return [{k: v for k, v in r.items() if k != "step_time_s"} for r in csv.DictReader(handle)]


def _train_cmd(data, out):
    return [sys.executable, "-m", "edgercnn", "train", "--data", str(data), *TINY, "--steps", "8",
            "--checkpoint-every", "1", "--no-eval", "--out-dir", str(out), "--experiment", "lock"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _hold_lock(run_path: Path):
    """A process holding the run folder's lock until its stdin closes."""
    code = ("import sys; from edgercnn.training.rundir import RunDir; "
            f"lock = RunDir({str(run_path)!r}).lock().acquire('holder'); print('held', flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code], env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.slow
def test_two_trains_on_one_run_one_trains_the_other_gets_the_lock_line(tiny_shapes, tmp_path):
    subprocess.run(_train_cmd(tiny_shapes, tmp_path / "a"), env=ENV, check=True, capture_output=True, timeout=180)
    cmd = _train_cmd(tiny_shapes, tmp_path / "b")
    first = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    second = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outs = [p.communicate(timeout=180) for p in (first, second)]
    codes = [first.returncode, second.returncode]
    assert sorted(c == 0 for c in codes) == [False, True], (codes, outs)  # exactly one trained
    loser = outs[codes.index(next(c for c in codes if c != 0))]
    line = one_line(loser[1])
    assert "in use by PID" in line and socket.gethostname() in line, line
    run_a, run_b = (tmp_path / d / "lock" / "sobel-p2" / "seed-0" for d in ("a", "b"))
    assert rows(run_b / "losses.csv") == rows(run_a / "losses.csv")  # as an uninterrupted run, bit for bit
    sa = torch.load(run_a / "model_final.pt", weights_only=True)
    sb = torch.load(run_b / "model_final.pt", weights_only=True)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not (run_b / "run.lock.owner").exists()  # released at the end
    assert not list(run_b.glob(".*.tmp"))


def test_a_held_run_folder_is_one_line_naming_the_holder(tmp_path):
    run = RunDir(tmp_path / "runs" / "e" / "c" / "seed-0")
    holder = _hold_lock(run.path)
    try:
        with pytest.raises(EdgeRCNNError) as err:
            run.lock().acquire()
        assert f"PID {holder.pid} on {socket.gethostname()}" in str(err.value)
        assert "\n" not in str(err.value)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    with run.lock() as lock:  # free again once the holder exited
        assert lock.held and json.loads(run.lock_owner.read_text())["pid"] == os.getpid()
    assert not run.lock_owner.exists()


def test_eval_of_a_run_in_use_is_one_line(tmp_path):
    run = RunDir(tmp_path / "runs" / "e" / "c" / "seed-0")
    run.path.mkdir(parents=True)
    run.config_file.write_text("seed: 0\n")
    holder = _hold_lock(run.path)
    try:
        line = one_line(invoke("eval", run.path).output)
        assert f"PID {holder.pid}" in line
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    run = RunDir(tmp_path / "seed-0")
    run.path.mkdir()
    run.lock_file.touch()
    dead = _dead_pid()
    run.lock_owner.write_text(json.dumps({"pid": dead, "host": socket.gethostname(), "since": "then",
                                          "command": "edgercnn train"}))
    lock = run.lock().acquire()
    try:
        assert lock.note is not None and f"PID {dead}" in lock.note and "no longer running" in lock.note
        assert json.loads(run.lock_owner.read_text())["pid"] == os.getpid()
        assert run.lock().acquire() is lock  # re-entrant in one process
        lock.release()
        assert lock.held
    finally:
        lock.release()
    assert not lock.held and not run.lock_owner.exists()


@pytest.mark.slow
def test_kill_9_leaves_a_lock_the_next_resume_takes_over(tiny_shapes, tmp_path):
    cmd = _train_cmd(tiny_shapes, tmp_path)
    run = RunDir(tmp_path / "lock" / "sobel-p2" / "seed-0")
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while proc.poll() is None and not run.losses.exists() and time.time() < deadline:
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    assert json.loads(run.lock_owner.read_text())["pid"] == proc.pid  # left behind by kill -9
    done = subprocess.run(cmd + ["--resume"], env=ENV, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert f"took over the lock of PID {proc.pid}" in " ".join(done.stderr.split())
    assert [r["step"] for r in rows(run.losses)] == [str(s) for s in range(1, 9)]
