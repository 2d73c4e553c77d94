"""Shared fixtures: a tiny shapes dataset made once per test session; a copy of the real Cityscapes fixture frame."""

import shutil
from pathlib import Path

import pytest

from edgercnn.data.shapes import make_shapes

#: One real Cityscapes val frame (downscaled), copied from ../shared/fixtures/cityscapes so a clean clone has it.
CITYSCAPES_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "cityscapes"


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
    """8 train / 3 val images of 64×64 pixels (seconds to train on with the small preset)."""
    out = tmp_path_factory.mktemp("data") / "shapes"
    make_shapes(out, train=8, val=3, size=64, seed=0)
    return out


@pytest.fixture
def cs_root(tmp_path):
    """A writable copy of the Cityscapes fixture (gtFine + leftImg8bit, one val frame) in tmp_path/cityscapes."""
    root = tmp_path / "cityscapes"
    shutil.copytree(CITYSCAPES_FIXTURE, root)
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return root
