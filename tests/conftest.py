"""Shared fixtures: a tiny shapes dataset made once per test session (and a small private one per test); a copy of
the real Cityscapes fixture frame; a finished tiny run (copied per test) and a run stopped halfway."""

import dataclasses
import shutil

import pytest

from edgercnn.data.shapes import make_shapes
from edgercnn.training.rundir import RunDir
from edgercnn.training.trainer import Trainer

from tests.paths import CITYSCAPES_FIXTURE
from tests.tinyrun import tiny_cfg


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
    """8 train / 3 val images of 64×64 pixels (seconds to train on with the small preset)."""
    out = tmp_path_factory.mktemp("data") / "shapes"
    make_shapes(out, train=8, val=3, size=64, seed=0)
    return out


@pytest.fixture()
def shapes(tmp_path):
    """A private 2 train / 2 val shapes dataset of 64×64 pixels in tmp_path/shapes, free to damage."""
    out = tmp_path / "shapes"
    make_shapes(out, train=2, val=2, size=64, seed=0)
    return out


@pytest.fixture
def cs_root(tmp_path):
    """A writable copy of the Cityscapes fixture (gtFine + leftImg8bit, one val frame) in tmp_path/cityscapes."""
    root = tmp_path / "cityscapes"
    shutil.copytree(CITYSCAPES_FIXTURE, root)
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return root


@pytest.fixture(scope="session")
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
