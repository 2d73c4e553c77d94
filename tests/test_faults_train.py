"""Regressions from the training/evaluation fault campaign (issue #10): crafted and damaged checkpoints, torn
CSV rows, datasets moved or swapped under a run, strict config types, errors from DataLoader workers, unwritable
outputs and full disks, stale temp files, and resume bit-identity across kill -9."""

from __future__ import annotations

import csv
import dataclasses
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from edgercnn.cli import app
from edgercnn.config import Config, load_config
from edgercnn.core.errors import ConfigError, EdgeRCNNError
from edgercnn.experiments.pipeline import evaluate_run
from edgercnn.training.rundir import LOSS_COLUMNS, RunDir
from edgercnn.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
TINY = ["--backbone", "small", "--canvas", "64x64", "--lr", "0.01", "--workers", "0", "--device", "cpu"]


def tiny_cfg(data, out, **kw):
    base = dict(data=str(data), backbone="small", canvas=[64, 64], steps=3, lr=0.01, workers=0, checkpoint_every=1,
                out_dir=str(out / "runs"), results_dir=str(out / "results"), experiment="tiny", device="cpu")
    base.update(kw)
    return Config(**base)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], terminal_width=200)


def one_line_error(result, needle=None):
    """The CLI failed with exit status 1 and one line, not a traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output
    if needle is not None:
        assert needle in result.output, result.output
    return result.output


def rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def finished(tiny_shapes, tmp_path_factory):
    """A finished 3-step run (checkpoint every step, no evaluation), copied by ``run_copy``."""
    out = tmp_path_factory.mktemp("finished")
    cfg = tiny_cfg(tiny_shapes, out, eval_at_end=False)
    Trainer(cfg).run()
    return cfg, RunDir.of(cfg)


@pytest.fixture()
def run_copy(finished, tmp_path):
    """(cfg, RunDir) of a private copy of the finished run."""
    _, run = finished
    cfg = dataclasses.replace(run.load_config(), out_dir=str(tmp_path / "runs"), results_dir=str(tmp_path / "results"))
    shutil.copytree(run.path, RunDir.of(cfg).path)
    RunDir.of(cfg).save_config(cfg)  # its own results_dir
    return cfg, RunDir.of(cfg)


@pytest.fixture()
def half(tiny_shapes, tmp_path):
    """A run stopped after 2 of 4 steps (checkpoint at 2)."""
    cfg = tiny_cfg(tiny_shapes, tmp_path, steps=4)
    Trainer(cfg).run(stop_after=2)
    return cfg, RunDir.of(cfg)


# ---- 1. no pickled code runs --------------------------------------------------------------------------------------


class Boom:
    """Unpickling runs a shell command (what a crafted checkpoint does)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _crafted(path, marker):
    torch.save({"model": Boom(f"touch {marker}"), "step": 3, "wall_time_s": 1.0}, path)


def test_crafted_checkpoint_runs_no_code_on_eval_or_resume(run_copy, tmp_path):
    cfg, run = run_copy
    marker = tmp_path / "pwned"
    _crafted(run.checkpoint, marker)
    with pytest.raises(EdgeRCNNError, match="checkpoint.pt: not an edgercnn checkpoint"):
        evaluate_run(run.path)
    with pytest.raises(EdgeRCNNError, match="checkpoint.pt: not an edgercnn checkpoint"):
        Trainer(cfg, resume=True)
    one_line_error(invoke("eval", run.path), "checkpoint.pt")
    assert not marker.exists()
    # with a valid header and checksum over the crafted payload: weights_only still refuses to run it
    from edgercnn.core.checkpoint import MAGIC

    import hashlib
    import io

    buffer = io.BytesIO()
    torch.save({"model": Boom(f"touch {marker}"), "optimizer": {}, "scaler": {}, "step": 3, "wall_time_s": 1.0,
                "rng": {}, "config": {}}, buffer)
    payload = buffer.getvalue()
    run.checkpoint.write_bytes(MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    with pytest.raises(EdgeRCNNError, match="unreadable checkpoint"):
        Trainer(cfg, resume=True)
    assert not marker.exists()


def test_crafted_final_weights_run_no_code(run_copy, tmp_path):
    _, run = run_copy
    marker = tmp_path / "pwned"
    torch.save({"weight": Boom(f"touch {marker}")}, run.final_weights)
    one_line_error(invoke("eval", run.path), "model_final.pt: unreadable weights file")
    assert not marker.exists()


def test_no_unsafe_load_is_left_in_the_repository():
    unsafe = ("weights_only=" + "False", "pickle." + "load", "pickle." + "loads", "weights_only = " + "False")
    hits = []
    for path in [*REPO.glob("edgercnn/**/*.py"), *REPO.glob("scripts/**/*"), *REPO.glob("tests/*.py")]:
        if path.is_file():
            text = path.read_text(errors="replace")
            hits += [f"{path}: {u}" for u in unsafe if u in text]
    assert not hits


def test_rng_states_round_trip_exactly_as_plain_data(tmp_path):
    from edgercnn.core.checkpoint import read_checkpoint, rng_state, set_rng_state, write_checkpoint

    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # a cached gaussian in both python's and numpy's state
    np.random.standard_normal()
    state = rng_state()
    draws = (random.random(), random.gauss(0, 1), np.random.rand(4).tolist(), np.random.standard_normal(),
             torch.rand(3).tolist())
    write_checkpoint(tmp_path / "c.pt", {"model": {}, "optimizer": {}, "scaler": {}, "step": 0, "wall_time_s": 0.0,
                                         "rng": state, "config": {}})
    set_rng_state(read_checkpoint(tmp_path / "c.pt")["rng"])
    again = (random.random(), random.gauss(0, 1), np.random.rand(4).tolist(), np.random.standard_normal(),
             torch.rand(3).tolist())
    assert draws == again


# ---- 3. torn and garbage CSV rows ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tail", ["1\n", "\x00\x17garbage,,,\n", "3,2,0.01,nan,x,1,1,1,1,1,1,0.1\n", "1,2,3"])
def test_torn_loss_rows_after_the_checkpoint_are_dropped_on_resume(half, tail, tmp_path):
    cfg, run = half
    with open(run.losses, "a") as handle:
        handle.write(tail)
    resumed = Trainer(cfg, resume=True)
    assert resumed.step == 2
    assert [r["step"] for r in rows(run.losses)] == ["1", "2"]
    resumed.run()
    table = rows(run.losses)
    assert [r["step"] for r in table] == ["1", "2", "3", "4"]
    assert all(r[c] not in (None, "") for r in table for c in LOSS_COLUMNS)
    assert run.read_loss_rows(4) == table


def test_a_damaged_row_the_checkpoint_covers_is_a_one_line_error(half):
    cfg, run = half
    lines = run.losses.read_text().splitlines()
    run.losses.write_text("\n".join([lines[0], "1", lines[2]]) + "\n")
    with pytest.raises(EdgeRCNNError, match="losses.csv: the row of step 1 is missing or damaged"):
        Trainer(cfg, resume=True)


def test_torn_eval_rows_are_dropped_on_resume(half):
    cfg, run = half
    run.append_eval(2, {k: 1.0 for k in ("segm_AP", "segm_AP50", "segm_AP75", "boundary_AP", "bbox_AP",
                                         "val_loss_mask")})
    with open(run.evals, "a") as handle:
        handle.write("3,1.5,\ngarbage\n")  # a torn row, then garbage
    Trainer(cfg, resume=True)
    assert [r["step"] for r in rows(run.evals)] == ["2"]


def test_results_get_checked_loss_rows(run_copy):
    cfg, run = run_copy
    with open(run.losses, "a") as handle:
        handle.write("4,3,garbage\n")
    text = run.loss_csv_text(3)
    assert [r["step"] for r in csv.DictReader(text.splitlines())] == ["1", "2", "3"]


# ---- 4. the dataset, not its path -------------------------------------------------------------------------------


def test_resume_compares_the_dataset_not_its_path(tiny_shapes, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_shapes, tmp_path / "data")
    cfg = tiny_cfg("data", tmp_path, steps=4)  # a relative --data
    Trainer(cfg).run(stop_after=1)
    # the same dataset by its absolute path: resumes
    assert Trainer(Config(**{**cfg.to_dict(), "data": str(tmp_path / "data")}), resume=True).step == 1
    # another dataset at the same relative path: refused
    annotations = tmp_path / "data" / "annotations" / "instances_train.json"
    coco = json.loads(annotations.read_text())
    coco["annotations"] = coco["annotations"][:-1]
    annotations.write_text(json.dumps(coco))
    with pytest.raises(EdgeRCNNError, match="another dataset than --data data"):
        Trainer(cfg, resume=True)


# ---- 5. and 9. damaged, truncated or foreign checkpoint files ------------------------------------------------


def test_flipped_bytes_in_a_checkpoint_are_refused(half):
    cfg, run = half
    data = bytearray(run.checkpoint.read_bytes())
    rng = random.Random(0)
    for i in rng.sample(range(len(data) // 2, len(data)), 64):
        data[i] ^= 0xFF
    run.checkpoint.write_bytes(bytes(data))
    with pytest.raises(EdgeRCNNError, match="checkpoint.pt: checksum mismatch .*delete it to start the run over"):
        Trainer(cfg, resume=True)


@pytest.mark.parametrize("damage, needle", [
    ("truncate-checkpoint", "checkpoint.pt: checksum mismatch"),
    ("truncate-final", "model_final.pt: unreadable weights file"),
    ("final-over-checkpoint", "checkpoint.pt: not an edgercnn checkpoint"),
    ("empty-checkpoint", "checkpoint.pt: not an edgercnn checkpoint"),
])
def test_truncated_or_foreign_weight_files_are_one_line_errors_on_eval(run_copy, damage, needle):
    _, run = run_copy
    if damage == "truncate-checkpoint":
        run.checkpoint.write_bytes(run.checkpoint.read_bytes()[:5000])
    elif damage == "truncate-final":
        run.final_weights.write_bytes(run.final_weights.read_bytes()[:5000])
    elif damage == "final-over-checkpoint":
        shutil.copy(run.final_weights, run.checkpoint)
    else:
        run.checkpoint.write_bytes(b"")
    one_line_error(invoke("eval", run.path), needle)


# ---- 6. strict config types ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, needle", [
    ('magnitude: "false"\n', "magnitude: expected a boolean (true or false), got 'false' (str)"),
    ("batch_size: 2.5\n", "batch_size: expected an integer, got 2.5 (float)"),
    ('seed: "7"\n', "seed: expected an integer, got '7' (str)"),
    ("steps: 3.7\n", "steps: expected an integer or null, got 3.7 (float)"),
    ("amp: 1\n", "amp: expected a boolean (true or false), got 1 (int)"),
    ("hflip: true\n", "hflip: expected a number, got True (bool)"),
    ("canvas: [64, '64']\n", "canvas: expected a list of integers"),
    ("filters: [sobel, 3]\n", "filters: expected a list of strings"),
    ("lr: null\nexperiment: null\n", "experiment: expected a string, got None"),
    ("stages: [{steps: 3.7, layers: all, lr: 0.1}]\n", "stages[0].steps: expected an integer, got 3.7"),
    ("seed: -1\n", "seed: must be >= 0, got -1"),
])
def test_config_types_are_strict(tmp_path, text, needle):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_ints_are_numbers_and_none_where_optional():
    cfg = Config(p=2, alpha=1, lr=None, steps=None, grad_clip_norm=None, hflip=0, name=None)
    assert cfg.p == 2 and Config(**yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg


def test_bad_seed_and_binary_yaml_are_one_line_errors(tiny_shapes, tmp_path):
    one_line_error(invoke("train", "--data", tiny_shapes, "--seed", "-1", "--out-dir", tmp_path / "runs"),
                   "seed: must be >= 0")
    garbage = tmp_path / "g.yaml"
    garbage.write_bytes(bytes(range(256)) * 4)
    one_line_error(invoke("train", "--config", garbage), "g.yaml: not valid YAML")
    assert not (tmp_path / "runs").exists()


# ---- 7. errors in DataLoader workers ----------------------------------------------------------------------------


def test_an_image_error_in_a_worker_is_the_same_one_line(tiny_shapes, tmp_path):
    data = tmp_path / "shapes"
    shutil.copytree(tiny_shapes, data)
    for image in (data / "images" / "train").iterdir():
        image.unlink()  # every image: whichever worker reads first fails
    base = ["train", "--data", data, *TINY, "--steps", "3", "--no-eval"]
    outputs = []
    for workers in ("0", "2"):
        args = [*base, "--out-dir", tmp_path / f"runs{workers}"]
        args[args.index("--workers") + 1] = workers
        outputs.append(one_line_error(invoke(*args), "image file not found"))
    assert "DataLoader worker" not in outputs[1]
    assert outputs[1].split(": ", 2)[2] == outputs[0].split(": ", 2)[2]  # error: <image>: <the same words>


# ---- 8. unwritable outputs and full disks -------------------------------------------------------------------------


def _refuse_writes_in(monkeypatch, folder, code=errno.EROFS):
    """Make every temp file (atomic writes, writability probes) under ``folder`` fail like a read-only disk."""
    real = tempfile.mkstemp
    folder = Path(folder).resolve()

    def mkstemp(*args, **kwargs):
        where = Path(kwargs.get("dir") or ".").resolve()
        if where == folder or folder in where.parents:
            raise OSError(code, os.strerror(code), str(where))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


@pytest.mark.slow
def test_out_dir_under_a_file_is_one_line_before_training(tiny_shapes, tmp_path):
    (tmp_path / "afile").write_text("x")
    out = one_line_error(invoke("train", "--data", tiny_shapes, *TINY, "--steps", "3", "--no-eval", "--out-dir",
                                tmp_path / "afile" / "runs"), "not a folder")
    assert "--out-dir" in out


def test_read_only_results_dir_fails_before_training(tiny_shapes, tmp_path, monkeypatch):
    results = tmp_path / "results"
    results.mkdir()
    _refuse_writes_in(monkeypatch, results)
    out = one_line_error(invoke("train", "--data", tiny_shapes, *TINY, "--steps", "3", "--out-dir",
                                tmp_path / "runs", "--results-dir", results), "--results-dir")
    assert "Read-only" in out
    assert not (tmp_path / "runs").exists()  # nothing trained


def test_read_only_out_dir_via_os_access(tiny_shapes, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    runs.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if Path(p) == runs and mode == os.W_OK
                        else real(p, mode, *a, **k))
    one_line_error(invoke("train", "--data", tiny_shapes, *TINY, "--steps", "3", "--no-eval", "--out-dir", runs),
                   "--out-dir")
    assert not any(runs.iterdir())


def test_eval_in_a_read_only_run_folder(run_copy, monkeypatch):
    _, run = run_copy
    _refuse_writes_in(monkeypatch, run.path)
    one_line_error(invoke("eval", run.path), "make the run folder writable")


def test_read_only_plots_folder_for_report(run_copy, monkeypatch, tmp_path):
    _, run = run_copy
    assert invoke("eval", run.path).exit_code == 0  # a seed result to report
    plots = tmp_path / "plots"
    plots.mkdir()
    _refuse_writes_in(monkeypatch, plots)
    out = one_line_error(invoke("report", tmp_path / "results" / "tiny", "--plots", plots), str(plots))
    assert "Read-only" in out


def test_a_full_disk_keeps_the_last_checkpoint(tiny_shapes, tmp_path, monkeypatch):
    cfg = tiny_cfg(tiny_shapes, tmp_path, steps=4)
    trainer = Trainer(cfg)
    trainer.run(stop_after=2)
    good = trainer.rundir.checkpoint.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(EdgeRCNNError, match="No space left on device; free disk space .* --resume"):
        trainer.run(stop_after=1)
    monkeypatch.undo()
    assert trainer.rundir.checkpoint.read_bytes() == good
    assert not list(trainer.rundir.path.glob(".*.tmp"))
    resumed = Trainer(cfg, resume=True)  # the torn-off loss row of step 3 is dropped, step 3 trained again
    assert resumed.step == 2
    resumed.run()
    assert [r["step"] for r in rows(resumed.rundir.losses)] == ["1", "2", "3", "4"]


def test_any_uncaught_os_error_is_one_line_unless_debug(monkeypatch, tmp_path):
    import edgercnn.reporting.report

    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error", str(tmp_path / "x.csv"))

    monkeypatch.setattr(edgercnn.reporting.report, "report", broken)
    one_line_error(invoke("report", tmp_path), "x.csv: Input/output error")
    result = invoke("report", tmp_path, "--debug")
    assert isinstance(result.exception, OSError)


# ---- 10. stale temp files ---------------------------------------------------------------------------------------


def test_stale_temp_files_of_the_run_are_removed_on_start(half):
    cfg, run = half
    ours = [run.path / ".checkpoint.pt.k2j3h4g5.tmp", run.path / ".losses.csv.abc_123x.tmp"]
    theirs = [run.path / "notes.tmp", run.path / ".mine.tmp", run.path / ".checkpoint.pt.bak",
              run.path.parent / ".checkpoint.pt.zzzzzzzz.tmp"]
    for path in ours + theirs:
        path.write_bytes(b"x" * 100)
    Trainer(cfg, resume=True)
    assert not any(p.exists() for p in ours)
    assert all(p.exists() for p in theirs)


# ---- 11. resume after kill -9 is bit-identical ------------------------------------------------------------------


def _train_cmd(data, out):
    return [sys.executable, "-m", "edgercnn", "train", "--data", str(data), *TINY, "--steps", "8",
            "--checkpoint-every", "1", "--no-eval", "--out-dir", str(out), "--experiment", "kill"]


def _loss_rows(path, old_inode):
    """Rows of ``path`` once the process has rewritten it (a new inode: ``truncate_losses`` ran), else 0."""
    try:
        if path.stat().st_ino == old_inode:
            return 0
        return max(0, len(path.read_text().splitlines()) - 1)
    except OSError:
        return 0


def _inode(path):
    return path.stat().st_ino if path.exists() else None


@pytest.mark.slow
def test_resume_after_kill_9_is_bit_identical(tiny_shapes, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    subprocess.run(_train_cmd(tiny_shapes, tmp_path / "a"), env=env, check=True, capture_output=True, timeout=120)
    run_a = tmp_path / "a" / "kill" / "sobel-p2" / "seed-0"
    losses_b = tmp_path / "b" / "kill" / "sobel-p2" / "seed-0" / "losses.csv"
    kills = 0
    for k in (2, 4, 6):  # kill -9 once k loss rows are written (the checkpoint may or may not be there yet)
        cmd = _train_cmd(tiny_shapes, tmp_path / "b") + (["--resume"] if kills else [])
        inode = _inode(losses_b)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and _loss_rows(losses_b, inode) < k:
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills == 3
    subprocess.run(_train_cmd(tiny_shapes, tmp_path / "b") + ["--resume"], env=env, check=True,
                   capture_output=True, timeout=120)
    run_b = losses_b.parent
    a, b = rows(run_a / "losses.csv"), rows(run_b / "losses.csv")
    assert [r["step"] for r in b] == [str(s) for s in range(1, 9)]
    for ra, rb in zip(a, b):
        assert {k: v for k, v in ra.items() if k != "step_time_s"} == {k: v for k, v in rb.items()
                                                                      if k != "step_time_s"}
    sa = torch.load(run_a / "model_final.pt", weights_only=True)
    sb = torch.load(run_b / "model_final.pt", weights_only=True)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
