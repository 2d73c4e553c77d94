"""The synthetic shapes dataset: determinism, COCO validity, re-runs, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from typer.testing import CliRunner

from edgercnn.cli import app
from edgercnn.data.manifest import load_manifest
from edgercnn.data.shapes import CLASSES, make_shapes
from edgercnn.core.errors import EdgeRCNNError


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_options_give_byte_identical_files(tmp_path):
    make_shapes(tmp_path / "a", train=3, val=2, size=64, seed=7)
    make_shapes(tmp_path / "b", train=3, val=2, size=64, seed=7)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert set(a) == set(b) and "manifest.json" in a and len(a) == 3 + 2 + 2 + 1
    assert a == b
    make_shapes(tmp_path / "c", train=3, val=2, size=64, seed=8)
    assert _files(tmp_path / "c")["images/train/000001.png"] != a["images/train/000001.png"]


def test_image_does_not_depend_on_counts(tmp_path):
    make_shapes(tmp_path / "a", train=2, val=1, size=64)
    make_shapes(tmp_path / "b", train=3, val=0, size=64)
    assert _files(tmp_path / "a")["images/train/000002.png"] == _files(tmp_path / "b")["images/train/000002.png"]


def test_coco_json_is_valid(tmp_path):
    make_shapes(tmp_path, train=6, val=2, size=96)
    manifest = load_manifest(tmp_path)
    assert manifest["classes"] == CLASSES and manifest["category_ids"] == [1, 2, 3, 4]
    assert "created" not in manifest  # deterministic dataset: no timestamp
    coco = COCO(str(tmp_path / "annotations/instances_train.json"))
    assert sorted(coco.getImgIds()) == list(range(1, 7))
    assert sorted(coco.getAnnIds()) == list(range(1, len(coco.anns) + 1))
    for ann in coco.anns.values():
        mask = coco.annToMask(ann)
        assert ann["area"] == mask.sum() > 0
        assert ann["bbox"] == [float(v) for v in mask_utils.toBbox(ann["segmentation"])]
        assert ann["iscrowd"] == 0
    # occlusion: visible masks of one image never overlap
    for img_id in coco.getImgIds():
        masks = [coco.annToMask(a) for a in coco.loadAnns(coco.getAnnIds(imgIds=img_id))]
        assert 1 <= len(masks) <= 4
        assert np.sum(masks, axis=0).max() <= 1


def test_rerun_skips_and_other_options_need_force(tmp_path):
    first = make_shapes(tmp_path, train=2, val=1, size=64)
    assert not first["skipped"]
    assert make_shapes(tmp_path, train=2, val=1, size=64)["skipped"]
    with pytest.raises(EdgeRCNNError, match="manifest.json.*--force"):
        make_shapes(tmp_path, train=3, val=1, size=64)
    again = make_shapes(tmp_path, train=3, val=1, size=64, force=True)
    assert again["splits"]["train"]["images"] == 3
    assert len(list((tmp_path / "images/train").iterdir())) == 3


def test_cli_prepare_shapes(tmp_path):
    runner = CliRunner()
    out = tmp_path / "shapes"
    args = ["prepare", "shapes", "--out", str(out), "--train", "4", "--val", "2", "--size", "64"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["name"] == "shapes"
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "already complete" in result.output
    result = runner.invoke(app, ["prepare", "shapes", "--out", str(out), "--train", "5"])
    assert result.exit_code == 1 and "--force" in result.output


@pytest.mark.parametrize("command", ["shapes", "cityscapes", "coco"])
def test_cli_help_explains_every_option(command):
    result = CliRunner().invoke(app, ["prepare", command, "--help"])
    assert result.exit_code == 0
    assert "--out" in result.output
