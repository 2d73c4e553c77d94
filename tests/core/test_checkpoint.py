"""training.checkpoint: crafted checkpoints and weight files run no code, damaged or foreign ones are one-line
errors, RNG states round-trip as plain data, a full disk keeps the last checkpoint."""

from __future__ import annotations

import errno
import os
import random
import shutil

import numpy as np
import pytest
import torch

from edgercnn.core.errors import EdgeRCNNError
from edgercnn.experiments.pipeline import evaluate_run
from edgercnn.training.trainer import Trainer

from tests.clirunner import invoke, one_line_error
from tests.paths import REPO
from tests.tinyrun import rows, tiny_cfg

# ---- no pickled code runs -------------------------------------------------------------------------------------------


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
    import hashlib
    import io

    from edgercnn.core.checkpoint import MAGIC

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
    for path in [*REPO.glob("edgercnn/**/*.py"), *REPO.glob("scripts/**/*"), *REPO.glob("tests/**/*.py")]:
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


# ---- damaged, truncated or foreign checkpoint files -----------------------------------------------------------------


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


# ---- unwritable outputs and full disks ------------------------------------------------------------------------------


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
