"""Shared fixtures: a tiny shapes dataset made once per test session."""

import pytest

from edgercnn.data.shapes import make_shapes


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
    """8 train / 3 val images of 64×64 pixels (seconds to train on with the small preset)."""
    out = tmp_path_factory.mktemp("data") / "shapes"
    make_shapes(out, train=8, val=3, size=64, seed=0)
    return out
