"""prepare coco (data.coco): file names that leave the images folder and images over the pixel limit are refused
before anything is written."""

from __future__ import annotations

import json

import pytest

from edgercnn.core.errors import EdgeRCNNError


def test_prepare_coco_refuses_escaping_file_names_and_huge_images(tmp_path):
    from edgercnn.data.coco import prepare_coco

    root = tmp_path / "coco"
    for split in ("train", "val"):
        (root / f"{split}2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    cats = [{"id": 1, "name": "thing"}]
    for split, image in (("train", {"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}),
                         ("val", {"id": 2, "file_name": "../../../etc/hostname", "width": 10, "height": 10})):
        (root / "annotations" / f"instances_{split}2017.json").write_text(
            json.dumps({"images": [image], "annotations": [], "categories": cats}))
    with pytest.raises(EdgeRCNNError, match="not a path inside the images folder"):
        prepare_coco(root, out=tmp_path / "out", progress=False)
    val = root / "annotations" / "instances_val2017.json"
    val.write_text(json.dumps({"images": [{"id": 2, "file_name": "b.jpg", "width": 30000, "height": 30000}],
                               "annotations": [], "categories": cats}))
    with pytest.raises(EdgeRCNNError, match="over the limit"):
        prepare_coco(root, out=tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "manifest.json").exists()
