"""Cityscapes conversion of the real fixture frame, checked against cityscapesscripts' own reading; truncated
images, the pixel limit and a damaged JSON on a re-run."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from cityscapesscripts.evaluation.instances2dict import instances2dict
from cityscapesscripts.helpers.labels import id2label, name2label
from PIL import Image
from pycocotools.coco import COCO
from typer.testing import CliRunner

from edgercnn.cli import app
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.data.cityscapes import EVAL_CLASSES, convert_cityscapes
from edgercnn.data.dataset import MAX_PIXELS_ENV, CocoInstanceDataset

from tests.clirunner import invoke, one_line_error
from tests.paths import CITYSCAPES_FIXTURE

STEM = "frankfurt/frankfurt_000000_000294"


def _ids_png(root):
    return root / "gtFine/val" / f"{STEM}_gtFine_instanceIds.png"


def _expected(png, classes):
    """(label id, instance id, pixels) per instance region of the selected classes, per cityscapesscripts."""
    found = []
    for name, insts in next(iter(instances2dict([str(png)]).values())).items():
        if name in classes:
            found += [(i["labelID"], i["instID"], i["pixelCount"]) for i in insts]
    return sorted(found)


def test_fixture_frame_matches_cityscapesscripts(cs_root):
    summary = convert_cityscapes(cs_root, progress=False)
    assert summary["missing"] == ["train"] and list(summary["splits"]) == ["val"]
    assert any("500" in w for w in summary["warnings"])
    coco = COCO(str(cs_root / "edgercnn/instances_val.json"))
    assert coco.getImgIds() == [1]
    assert sorted(coco.getAnnIds()) == list(range(1, len(coco.anns) + 1))
    assert coco.imgs[1]["file_name"] == f"{STEM}_leftImg8bit.png"
    ids = np.array(Image.open(_ids_png(cs_root)))
    got = []
    for ann in coco.anns.values():
        mask = coco.annToMask(ann).astype(bool)
        values = np.unique(ids[mask])
        assert len(values) == 1 and mask.sum() == (ids == values[0]).sum() == ann["area"]  # exact masks
        assert ann["iscrowd"] == int(values[0] < 1000)
        got.append((ann["category_id"], int(values[0]), ann["area"]))
    expected = _expected(_ids_png(cs_root), EVAL_CLASSES)
    assert sorted(got) == expected and len(expected) > 0
    names = {c["id"]: c["name"] for c in coco.dataset["categories"]}
    assert set(names.values()) == set(EVAL_CLASSES)
    assert all(names[cat] == id2label[cat].name for cat, _, _ in got)
    manifest = json.loads((cs_root / "manifest.json").read_text())
    assert manifest["classes"] == EVAL_CLASSES and manifest["category_ids"] == [name2label[c].id for c in EVAL_CLASSES]
    ds = CocoInstanceDataset(cs_root, "val", canvas=(512, 400))
    image, target = ds[0]
    assert image.shape == (3, 400, 512) and len(target["labels"]) == len(got)


def test_group_regions_become_crowd_and_are_not_targets(cs_root):
    png = _ids_png(cs_root)
    ids = np.array(Image.open(png)).astype(np.int32)
    ids[100:120, 0:30] = name2label["car"].id  # a "cargroup" region: id < 1000 of an instance class
    Image.fromarray(ids.astype(np.uint16)).save(png)
    convert_cityscapes(cs_root, progress=False)
    coco = COCO(str(cs_root / "edgercnn/instances_val.json"))
    crowd = [a for a in coco.anns.values() if a["iscrowd"]]
    assert len(crowd) == 1 and crowd[0]["category_id"] == 26 and crowd[0]["area"] == (ids == 26).sum()
    ds = CocoInstanceDataset(cs_root, "val", canvas=(256, 128))
    assert len(ds[0][1]["labels"]) == len(coco.anns) - 1


def test_extra_classes_min_area_and_rerun(cs_root):
    png = _ids_png(cs_root)
    ids = np.array(Image.open(png)).astype(np.int32)
    ids[0:2, 0:2] = name2label["trailer"].id * 1000  # a 4-pixel trailer
    Image.fromarray(ids.astype(np.uint16)).save(png)
    s = convert_cityscapes(cs_root, progress=False)
    assert s["splits"]["val"]["other_classes"] == 1 and "trailer" not in s["splits"]["val"]["instances"]
    s = convert_cityscapes(cs_root, extra_classes=True, progress=False)
    assert s["splits"]["val"]["instances"]["trailer"] == 1 and not s["splits"]["val"]["up_to_date"]
    assert convert_cityscapes(cs_root, extra_classes=True, progress=False)["splits"]["val"]["up_to_date"]
    s = convert_cityscapes(cs_root, extra_classes=True, min_area=5, progress=False)
    assert s["splits"]["val"]["dropped_small"] >= 1 and "trailer" not in s["splits"]["val"]["instances"]


def test_parallel_conversion_keeps_order(cs_root):
    for kind, suffix in (("gtFine", "_gtFine_instanceIds.png"), ("leftImg8bit", "_leftImg8bit.png")):
        src = cs_root / kind / "val" / f"{STEM}{suffix}"
        shutil.copy(src, cs_root / kind / "val" / f"frankfurt/frankfurt_000000_000295{suffix}")
    convert_cityscapes(cs_root, workers=1, progress=False)
    one = (cs_root / "edgercnn/instances_val.json").read_bytes()
    convert_cityscapes(cs_root, workers=2, force=True, progress=False)
    assert (cs_root / "edgercnn/instances_val.json").read_bytes() == one
    assert len(json.loads(one)["images"]) == 2


def test_polygons_are_rasterised_by_cityscapesscripts(cs_root):
    poly = {"imgHeight": 128, "imgWidth": 256, "objects": [
        {"label": "road", "polygon": [[0, 64], [255, 64], [255, 127], [0, 127]]},
        {"label": "car", "polygon": [[10, 10], [60, 10], [60, 40], [10, 40]]},
        {"label": "persongroup", "polygon": [[100, 10], [140, 10], [140, 50]]},
        {"label": "car", "polygon": [[50, 20], [90, 20], [90, 50], [50, 50]]},  # occludes the first car
    ]}
    (cs_root / "gtFine/val" / f"{STEM}_gtFine_polygons.json").write_text(json.dumps(poly))
    s = convert_cityscapes(cs_root, masks="polygons", progress=False)
    assert s["splits"]["val"]["instances"] == {"car": 2} and s["splits"]["val"]["crowd"] == {"person": 1}
    coco = COCO(str(cs_root / "edgercnn/instances_val.json"))
    cars = sorted((a for a in coco.anns.values() if a["category_id"] == 26), key=lambda a: a["bbox"][0])
    assert cars[0]["area"] < 51 * 31 and cars[1]["area"] == 41 * 31  # the overlap belongs to the later car


def test_bad_inputs_name_the_file(cs_root, tmp_path):
    with pytest.raises(EdgeRCNNError, match="gtFine/ and leftImg8bit/"):
        convert_cityscapes(tmp_path / "nowhere", progress=False)
    img = cs_root / "leftImg8bit/val" / f"{STEM}_leftImg8bit.png"
    img.write_bytes(b"not a png")
    with pytest.raises(EdgeRCNNError, match="leftImg8bit.png: cannot read image"):
        convert_cityscapes(cs_root, progress=False)
    img.unlink()
    with pytest.raises(EdgeRCNNError, match="leftImg8bit.png: image missing"):
        convert_cityscapes(cs_root, progress=False)
    (cs_root / "gtFine/val" / f"{STEM}_gtFine_polygons.json").write_text('{"imgHeight": 1, "imgWidth": 1, "objects": [{"label": "dragon", "polygon": [[0,0],[1,0],[1,1]]}]}')
    shutil.copy(CITYSCAPES_FIXTURE / "leftImg8bit/val" / f"{STEM}_leftImg8bit.png", img)
    with pytest.raises(EdgeRCNNError, match="polygons.json: unknown label 'dragon'"):
        convert_cityscapes(cs_root, masks="polygons", progress=False)


def test_cli_prepare_cityscapes(cs_root, tmp_path):
    out = tmp_path / "ds"
    result = CliRunner().invoke(app, ["prepare", "cityscapes", "--root", str(cs_root), "--out", str(out),
                                      "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "person" in result.output and "train" in result.output and "500" in result.output
    ds = CocoInstanceDataset(out, "val", canvas=(256, 128))
    assert ds.images_dir == (cs_root / "leftImg8bit/val").resolve() and len(ds) == 1
    result = CliRunner().invoke(app, ["prepare", "cityscapes", "--root", str(tmp_path / "none")])
    assert result.exit_code == 1 and "gtFine" in result.output


def test_download_needs_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("CITYSCAPES_USERNAME", raising=False)
    monkeypatch.delenv("CITYSCAPES_PASSWORD", raising=False)
    result = CliRunner().invoke(app, ["prepare", "cityscapes", "--root", str(tmp_path), "--download"])
    assert result.exit_code == 1 and "CITYSCAPES_USERNAME" in result.output


# ---- truncated images and the pixel limit ---------------------------------------------------------------------------


def _cityscapes(tmp_path):
    root = tmp_path / "cityscapes"
    shutil.copytree(CITYSCAPES_FIXTURE, root)
    return root, next((root / "leftImg8bit").rglob("*_leftImg8bit.png"))


def test_prepare_cityscapes_refuses_a_truncated_image(tmp_path):
    root, image = _cityscapes(tmp_path)
    data = image.read_bytes()
    image.write_bytes(data[: len(data) * 2 // 3])
    line = one_line_error(invoke("prepare", "cityscapes", "--root", root, "--workers", "1"), "truncated")
    assert str(image) in " ".join(line.split()) or image.name in line
    assert "ready" not in line


def test_prepare_cityscapes_refuses_an_image_over_the_limit(tmp_path, monkeypatch):
    root, image = _cityscapes(tmp_path)
    monkeypatch.setenv(MAX_PIXELS_ENV, "100")
    one_line_error(invoke("prepare", "cityscapes", "--root", root, "--workers", "1"), "over the limit")


# ---- prepare verifies what it skips ---------------------------------------------------------------------------------


def test_cityscapes_rerun_notices_a_damaged_json(tmp_path):
    from edgercnn.data.cityscapes import convert_cityscapes

    root = tmp_path / "cityscapes"
    shutil.copytree(CITYSCAPES_FIXTURE, root)
    convert_cityscapes(root, workers=1, progress=False)
    assert convert_cityscapes(root, workers=1, progress=False)["splits"]["val"]["up_to_date"]
    json_path = root / "edgercnn/instances_val.json"
    good = json_path.read_bytes()
    json_path.write_bytes(good[: len(good) // 2])
    assert not convert_cityscapes(root, workers=1, progress=False)["splits"]["val"]["up_to_date"]
    assert json_path.read_bytes() == good
    (root / "edgercnn/instances_val.stamp.json").write_text("{")  # a garbled stamp: convert again, no traceback
    assert not convert_cityscapes(root, workers=1, progress=False)["splits"]["val"]["up_to_date"]
