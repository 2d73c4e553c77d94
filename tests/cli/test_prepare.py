"""The prepare commands share their rules: no preparer writes over another dataset (a foreign manifest.json), and an
--out under a file is one line."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from edgercnn.cli import app
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.data.shapes import make_shapes

from tests.clirunner import one_line_error
from tests.crafted import file_bytes
from tests.paths import CITYSCAPES_FIXTURE

# ---- no preparer writes over another dataset ------------------------------------------------------------------------


def test_other_preparers_refuse_a_foreign_manifest(tmp_path):
    from edgercnn.data.cityscapes import convert_cityscapes
    from edgercnn.data.coco import prepare_coco

    out = tmp_path / "shapes"
    make_shapes(out, train=1, val=1, size=64)
    before = file_bytes(out)
    root = tmp_path / "cityscapes"
    shutil.copytree(CITYSCAPES_FIXTURE, root)
    with pytest.raises(EdgeRCNNError, match=r"manifest.json: a 'shapes' dataset is there.*another --out") as err:
        convert_cityscapes(root, out=out, workers=1, progress=False)
    assert "--force" not in str(err.value)
    with pytest.raises(EdgeRCNNError, match=r"manifest.json: a 'shapes' dataset is there.*another --out"):
        prepare_coco(tmp_path / "coco", out=out, progress=False)
    result = CliRunner().invoke(app, ["prepare", "cityscapes", "--root", str(root), "--out", str(out),
                                      "--force", "--workers", "1"])
    assert "--force" not in one_line_error(result)
    assert file_bytes(out) == before


# ---- an --out under a file ------------------------------------------------------------------------------------------


def test_other_preparers_out_under_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    root = tmp_path / "cityscapes"
    shutil.copytree(CITYSCAPES_FIXTURE, root)
    result = CliRunner().invoke(app, ["prepare", "cityscapes", "--root", str(root), "--out", str(blocker / "cs"),
                                      "--workers", "1"])
    assert "file.txt" in one_line_error(result)
    result = CliRunner().invoke(app, ["prepare", "coco", "--root", str(tmp_path), "--out", str(blocker / "coco")])
    assert "file.txt" in one_line_error(result)
