"""--resume: the dataset is compared by its content, not its path; a run killed with kill -9 resumes
bit-identical."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from edgercnn.config import Config
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.training.trainer import Trainer

from tests.clirunner import TINY
from tests.paths import REPO
from tests.tinyrun import rows, tiny_cfg

# ---- the dataset, not its path --------------------------------------------------------------------------------------


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


# ---- resume after kill -9 is bit-identical --------------------------------------------------------------------------


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
