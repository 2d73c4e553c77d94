"""edgercnn.evaluation.detections: every kind of bad results file is one line naming the entry and the cause; good files
(RLE, polygons, uncompressed RLE, boxes only) load and score."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from edgercnn.core.errors import EdgeRCNNError
from edgercnn.evaluation.cocometrics import coco_metrics
from edgercnn.evaluation.detections import _rle_runs, load_detections, scorable_kinds

from tests.clirunner import invoke, one_line_error
from tests.crafted import val_json

GT = {"images": [{"id": i, "height": 40, "width": 60, "file_name": f"{i}.png"} for i in range(1, 6)],
      "categories": [{"id": 1, "name": "a"}, {"id": 3, "name": "b"}], "annotations": []}


def mask_rle(y0=5, x0=5, y1=20, x1=30, h=40, w=60):
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    r = mask_utils.encode(np.asfortranarray(m))
    return {"size": [h, w], "counts": r["counts"].decode("ascii")}


def good(**over):
    return {"image_id": 2, "category_id": 3, "score": 0.8, "bbox": [5.0, 5.0, 25.0, 15.0],
            "segmentation": mask_rle(), **over}


def write(tmp_path, data, name="det.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_a_good_file_round_trips(tmp_path):
    entries = [good(), good(image_id=5, category_id=1, score=0.1, extra="kept")]
    assert load_detections(write(tmp_path, entries), GT) == entries
    assert scorable_kinds(entries) == ("segm", "bbox", "boundary")


def test_polygons_and_uncompressed_rle_become_compressed_rle(tmp_path):
    poly = good(segmentation=[[5, 5, 30, 5, 30, 20, 5, 20]])  # the same rectangle's corners
    counts = mask_utils.frPyObjects([[5, 5, 30, 5, 30, 20, 5, 20]], 40, 60)[0]
    m = mask_utils.decode(counts)
    flat = m.T.ravel()
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    raw = good(segmentation={"size": [40, 60], "counts": np.diff(bounds).tolist()})  # starts with zeros
    loaded = load_detections(write(tmp_path, [poly, raw]), GT)
    for entry in loaded:
        assert isinstance(entry["segmentation"]["counts"], str)
        assert (mask_utils.decode(entry["segmentation"]) == m).all()


def test_boxes_only_are_allowed_and_scored_as_bbox(tmp_path):
    entries = [{k: v for k, v in good().items() if k != "segmentation"}]
    assert load_detections(write(tmp_path, entries), GT) == entries
    assert scorable_kinds(entries) == ("bbox",)
    assert scorable_kinds(entries + [good()]) == ("bbox",)
    gt = {**GT, "annotations": [{"id": 1, "image_id": 2, "category_id": 3, "bbox": [5.0, 5.0, 25.0, 15.0],
                                 "area": 375.0, "iscrowd": 0, "segmentation": mask_rle()}]}
    assert coco_metrics(gt, entries, [2], kinds=scorable_kinds(entries))["bbox_AP"] == pytest.approx(100.0)


def test_segmentation_only_is_allowed(tmp_path):
    entries = [{k: v for k, v in good().items() if k != "bbox"}]
    assert load_detections(write(tmp_path, entries), GT) == entries


def test_file_level_problems(tmp_path):
    with pytest.raises(EdgeRCNNError, match=r"nope\.json: no such file"):
        load_detections(tmp_path / "nope.json", GT)
    with pytest.raises(EdgeRCNNError, match=r"det\.json: not JSON \(Expecting"):
        load_detections(write(tmp_path, "[{"), GT)
    with pytest.raises(EdgeRCNNError, match=r"a JSON dict, not a list \(this looks like an annotations file\)"):
        load_detections(write(tmp_path, GT), GT)


BAD = [
    ("not a dict", [1, 2], "has type list, not an object"),
    ("missing score", {"image_id": 2, "category_id": 3, "bbox": [0, 0, 1, 1]}, "lacks score"),
    ("no bbox or mask", {"image_id": 2, "category_id": 3, "score": 0.5}, "lacks bbox or segmentation"),
    ("unknown image", good(image_id=999), r"image_id 999 is not in the val split of data/shapes \(ids 1\.\.5\); "
                                          r"score the detections against the split they were made on \(--split\)"),
    ("string image id", good(image_id="2"), r"image_id '2' is not in"),
    ("unknown category", good(category_id=2), r"category_id 2 is not a category of the val split of data/shapes "
                                              r"\(2 ids in 1\.\.3\); map the detector's class indices"),
    ("nan score", good(score=math.nan), r"score nan is not a finite number"),
    ("string score", good(score="0.5"), r"score '0\.5' is not a finite number"),
    ("3-number bbox", good(bbox=[1, 2, 3]), r"bbox \[1, 2, 3\] is not 4 finite numbers"),
    ("bbox with null", good(bbox=[1, 2, 3, None]), r"bbox \[1, 2, 3, None\] is not 4 finite numbers"),
    ("mask at another size", good(segmentation=mask_rle(h=80, w=120)),
     r"segmentation size \[80, 120\] is not the image's \[height, width\] = \[40, 60\]; write masks at the original"),
    ("transposed mask", good(segmentation=mask_rle(h=60, w=40)), r"segmentation size \[60, 40\]"),
    ("garbage counts", good(segmentation={"size": [40, 60], "counts": "~~~~"}),
     "segmentation counts is not a valid compressed COCO RLE string; encode each binary mask"),
    ("short counts", good(segmentation={"size": [40, 60], "counts": "0<"}),  # 0 zeros, 12 ones: 12 of 2400 px
     r"segmentation counts cover 12 pixels, not the image's 40×60"),
    ("cut-off counts", good(segmentation={"size": [40, 60], "counts": "0X"}),  # 'X' continues a multi-char run
     "segmentation counts is not a valid compressed COCO RLE string"),
    ("numeric counts", good(segmentation={"size": [40, 60], "counts": 7}), "segmentation counts has type int"),
    ("uncompressed too long", good(segmentation={"size": [40, 60], "counts": [2000, 500]}),
     "segmentation counts cover 2500 pixels"),
    ("negative run", good(segmentation={"size": [40, 60], "counts": [2500, -100]}),
     "segmentation counts is a list but not of run lengths >= 0"),
    ("bad polygon", good(segmentation=[[1, 2, 3, 4]]), r"segmentation is a list but not of polygons \[x1, y1"),
    ("no counts", good(segmentation={"size": [40, 60]}),
     r"segmentation is neither an RLE \{size, counts\} nor a list of polygons"),
]


@pytest.mark.parametrize("entry, cause", [(e, c) for _, e, c in BAD], ids=[n for n, _, _ in BAD])
def test_bad_entries_name_the_file_the_index_and_the_cause(tmp_path, entry, cause):
    path = write(tmp_path, [good(), good(image_id=1), entry, good(image_id=999)])
    with pytest.raises(EdgeRCNNError, match=rf"^.*det\.json: entry 2: {cause}") as info:
        load_detections(path, GT, gt_name="the val split of data/shapes")
    assert "\n" not in str(info.value)


def test_rle_parser_agrees_with_pycocotools():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = (rng.random((17, 23)) < rng.random()).astype(np.uint8)
        counts = mask_utils.encode(np.asfortranarray(m))["counts"].decode("ascii")
        runs = _rle_runs(counts)
        assert sum(runs) == m.size
        assert sum(runs[1::2]) == m.sum()  # odd runs are ones


# ---- detections files -----------------------------------------------------------------------------------------------


def _det(**kw):
    entry = {"image_id": 1, "category_id": 1, "score": 0.9, "bbox": [1.0, 1.0, 5.0, 5.0]}
    entry.update(kw)
    return entry


@pytest.mark.parametrize("text,needle", [
    ("[" * 100000 + "]" * 100000, "nested too deeply"),
    ('[{"image_id": 1, "category_id": 1, "score": ' + "1" * 5001 + ', "bbox": [1, 1, 5, 5]}]', "cannot be read"),
    (json.dumps([_det(bbox=[10.0, 10.0, -4.0, 5.0])]), "negative width or height"),
    (json.dumps([_det(bbox=[10.0, 10.0, 4.0, -5.0])]), "negative width or height"),
    ('[{"image_id": 1, "category_id": 1, "score": ' + "9" * 4000 + ', "bbox": [1, 1, 5, 5]}]',
     "not a finite number"),
])
def test_hostile_detections_are_one_line(shapes, tmp_path, text, needle):
    dets = tmp_path / "dets.json"
    dets.write_text(text)
    line = one_line_error(invoke("eval", "--detections", dets, "--data", shapes), needle)
    assert len(line) < 600
    assert not (tmp_path / "dets-metrics.json").exists()


def test_valid_detections_score_and_the_input_is_kept(shapes, tmp_path):
    gt = json.loads(val_json(shapes).read_text())
    dets = tmp_path / "dets.json"
    entries = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0, "bbox": a["bbox"],
                "segmentation": a["segmentation"]} for a in gt["annotations"]]
    dets.write_text(json.dumps(entries))
    before = dets.read_bytes()
    result = invoke("eval", "--detections", dets, "--data", shapes)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "dets-metrics.json").read_text())
    assert metrics["segm_AP"] == pytest.approx(100.0) and metrics["detections"] == len(entries)
    assert dets.read_bytes() == before
