"""edgercnn.evaluation.cocometrics: faster-coco-eval against pycocotools on a small synthetic set, perfect and empty
detections, and Boundary IoU worked out by hand and with numpy independently of the library."""

from __future__ import annotations

import contextlib
import copy
import io
import math

import numpy as np
import pytest
from faster_coco_eval import COCO as FastCOCO
from faster_coco_eval import COCOeval_faster
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from scipy import ndimage

from edgercnn.evaluation.cocometrics import coco_metrics
from edgercnn.evaluation.metrics import COCO_METRICS as METRICS, IOU_TYPES, METRIC_NAMES
from edgercnn.core.errors import EdgeRCNNError

CATEGORIES = [{"id": 1, "name": "square"}, {"id": 2, "name": "disk"}]


def rle(mask: np.ndarray) -> dict:
    """Compressed RLE with str counts, as in a COCO json."""
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in r["size"]], "counts": r["counts"].decode("ascii")}


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's crowd format: column-major run lengths, starting with a run of zeros."""
    flat = mask.astype(np.uint8).T.ravel()
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    return {"size": list(mask.shape), "counts": ([0] if flat[0] else []) + counts}


def rect(h, w, y0, x0, y1, x1):
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def disk(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)


def gt_ann(mask, cat, iscrowd=0):
    seg = uncompressed_rle(mask) if iscrowd else rle(mask)
    return {"category_id": cat, "segmentation": seg, "area": int(mask.sum()),
            "bbox": [float(v) for v in mask_utils.toBbox(rle(mask))], "iscrowd": iscrowd}


def synthetic():
    """Ground truth of 4 images (one empty) with small/medium/large instances of 2 categories, a crowd
    region and a polygon; the non-crowd masks by (image_id, category_id)."""
    images = [{"id": 1, "height": 64, "width": 64}, {"id": 2, "height": 96, "width": 128},
              {"id": 3, "height": 80, "width": 100}, {"id": 4, "height": 64, "width": 64}]
    for img in images:
        img["file_name"] = f"{img['id']}.png"
    masks = [(1, 1, rect(64, 64, 10, 8, 30, 28)), (1, 2, disk(64, 64, 45, 45, 12)), (1, 2, disk(64, 64, 15, 50, 5)),
             (2, 1, rect(96, 128, 2, 5, 94, 110)), (2, 2, disk(96, 128, 30, 60, 20)),
             (3, 1, rect(80, 100, 50, 60, 76, 96)), (3, 2, disk(80, 100, 40, 70, 18))]
    anns = [{"image_id": i, **gt_ann(m, c)} for i, c, m in masks]
    anns.append({"image_id": 2, **gt_ann(rect(96, 128, 0, 112, 96, 128), 2, iscrowd=1)})
    poly = [[10.0, 10.0, 60.0, 10.0, 35.0, 50.0]]
    poly_rle = mask_utils.merge(mask_utils.frPyObjects(poly, 80, 100))
    anns.append({"image_id": 3, "category_id": 1, "segmentation": poly, "iscrowd": 0,
                 "area": float(mask_utils.area(poly_rle)), "bbox": mask_utils.toBbox(poly_rle).tolist()})
    masks.append((3, 1, mask_utils.decode(poly_rle)))
    for k, a in enumerate(anns):
        a["id"] = k + 1
    return {"images": images, "annotations": anns, "categories": CATEGORIES}, masks


def shift(mask, dy, dx):
    out = np.zeros_like(mask)
    h, w = mask.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = mask[max(-dy, 0):h - max(dy, 0),
                                                                      max(-dx, 0):w - max(dx, 0)]
    return out


def det(image_id, cat, mask, score, jitter=np.zeros(4)):
    box = mask_utils.toBbox(rle(mask)) + jitter
    return {"image_id": image_id, "category_id": cat, "score": float(score), "segmentation": rle(mask),
            "bbox": [float(v) for v in box]}


def perturbed(masks, seed=0):
    """Shifted and eroded copies of every instance, false positives, a wrong class and a hit on the crowd."""
    rng = np.random.default_rng(seed)
    out = []
    for image_id, cat, m in masks:
        out.append(det(image_id, cat, shift(m, *rng.integers(-3, 4, 2)), rng.uniform(0.3, 1),
                       rng.normal(0, 1.5, 4)))
        out.append(det(image_id, cat, ndimage.binary_erosion(m, iterations=int(rng.integers(1, 4))).astype(np.uint8),
                       rng.uniform(0, 1)))
        out.append(det(image_id, 3 - cat, shift(m, 2, 2), rng.uniform(0, 0.5)))
    for image_id, h, w in ((1, 64, 64), (2, 96, 128), (3, 80, 100), (4, 64, 64)):
        for _ in range(3):
            y0, x0 = rng.integers(0, h - 12), rng.integers(0, w - 12)
            size = rng.integers(4, 12, 2)
            out.append(det(image_id, int(rng.integers(1, 3)), rect(h, w, y0, x0, y0 + size[0], x0 + size[1]),
                           rng.uniform(0, 1)))
    out.append(det(2, 2, rect(96, 128, 20, 114, 60, 126), 0.99))  # inside the crowd region: ignored
    return out


def pycocotools_metrics(gt_dataset, results, kind):
    gt = COCO()
    gt.dataset = copy.deepcopy(gt_dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), kind)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {f"{kind}_{n}": math.nan if v < 0 else 100 * v for n, v in zip(METRIC_NAMES, ev.stats[:6])}


def test_vocabulary():
    assert METRICS[:6] == ("segm_AP", "segm_AP50", "segm_AP75", "segm_APs", "segm_APm", "segm_APl")
    assert len(METRICS) == 18 and METRICS[-1] == "boundary_APl"
    assert IOU_TYPES == ("segm", "bbox", "boundary")


def test_same_as_pycocotools_and_quiet_and_leaves_inputs_alone(capfd):
    gt, masks = synthetic()
    results = perturbed(masks)
    gt_before, results_before = copy.deepcopy(gt), copy.deepcopy(results)
    ours = coco_metrics(gt, results, [1, 2, 3, 4])
    assert capfd.readouterr() == ("", "")
    assert gt == gt_before and results == results_before
    assert set(ours) == set(METRICS)
    for kind in ("segm", "bbox"):
        ref = pycocotools_metrics(gt, results, kind)
        for name in ref:
            assert ours[name] == pytest.approx(ref[name], abs=1e-6), name
        assert 10 < ref[f"{kind}_AP"] < 90  # a non-trivial case, not all 0 or all 100
        assert not any(math.isnan(v) for v in ref.values())  # every area range has ground truth
    assert 0 < ours["boundary_AP"] < ours["segm_AP"]  # boundary IoU <= mask IoU per pair


def test_image_ids_restrict_the_evaluation():
    gt, masks = synthetic()
    results = perturbed(masks)
    only_1 = coco_metrics(gt, results, [1], kinds=("segm",))
    gt1 = {**gt, "images": gt["images"][:1], "annotations": [a for a in gt["annotations"] if a["image_id"] == 1]}
    ref = pycocotools_metrics(gt1, [r for r in results if r["image_id"] == 1], "segm")
    assert only_1 == pytest.approx(ref, nan_ok=True)
    assert math.isnan(only_1["segm_APl"])  # image 1 has no large instance


def test_ground_truth_as_detections_scores_100():
    gt, masks = synthetic()
    results = [det(i, c, m, 0.9) for i, c, m in masks]
    out = coco_metrics(gt, results, [1, 2, 3, 4])
    for kind in IOU_TYPES:
        for name in METRIC_NAMES:
            assert out[f"{kind}_{name}"] == pytest.approx(100.0), f"{kind}_{name}"


def test_empty_results_score_zero():
    gt, _ = synthetic()
    out = coco_metrics(gt, [], [1, 2, 3, 4])
    assert out == {m: 0.0 for m in METRICS}


def test_bbox_only_results():
    gt, masks = synthetic()
    results = [{k: v for k, v in r.items() if k != "segmentation"} for r in perturbed(masks)]
    out = coco_metrics(gt, results, [1, 2, 3, 4], kinds=("bbox",))
    assert list(out) == [f"bbox_{n}" for n in METRIC_NAMES]
    assert out == pytest.approx(pycocotools_metrics(gt, results, "bbox"))
    with pytest.raises(EdgeRCNNError, match="only bbox AP"):
        coco_metrics(gt, results, [1, 2, 3, 4])


def test_entries_without_a_box_get_one_from_the_mask():
    gt, masks = synthetic()
    results = [det(i, c, m, 0.9) for i, c, m in masks]
    without = [results[0]] + [{k: v for k, v in r.items() if k != "bbox"} for r in results[1:]]
    assert coco_metrics(gt, without, [1, 2, 3, 4]) == pytest.approx(coco_metrics(gt, results, [1, 2, 3, 4]))


def test_detections_on_unknown_images_are_a_user_error():
    gt, masks = synthetic()
    with pytest.raises(EdgeRCNNError, match=r"image ids \[99\]"):
        coco_metrics(gt, [det(99, 1, masks[0][2], 0.5)], [1])


# --- Boundary IoU by hand -------------------------------------------------------------------------------
# A 100×100 image: diagonal 141.42, d = round(0.02 · 141.42) = round(2.83) = 3 pixels.
# Ground truth: the 40×40 square rows 20..59, cols 20..59. Its boundary is the square minus its erosion by
# 3 (rows/cols 23..56, 34×34): 1600 - 1156 = 444 pixels, a ring 3 wide.
# A detection shifted right by 1 (cols 21..60):
#   mask IoU     = 40·39 / (40·41) = 0.951
#   boundary: rows 20..22 and 57..59 of both rings overlap in cols 21..59 → 6 · 39 = 234;
#             rows 23..56: gt ring cols {20,21,22,57,58,59}, det {21,22,23,58,59,60} → 4 each → 34 · 4 = 136;
#             intersection 370, union 444 + 444 - 370 = 518 → boundary IoU = 370/518 = 5/7 = 0.714.
#   so the Boundary AP IoU is min(0.951, 5/7) = 5/7: matched at thresholds 0.50..0.70 (5 of 10).
# Shifted by 2: boundary overlap 6 · 38 + 34 · 2 = 296, union 888 - 296 = 592 → exactly 1/2.


def boundary(mask, ratio=0.02, outside=False):
    """Cheng et al.'s boundary in numpy: mask pixels within d (chessboard distance) of a background pixel,
    pixels outside the image counting as ``outside``."""
    h, w = mask.shape
    d = max(1, int(round(ratio * math.hypot(h, w))))
    padded = np.pad(mask.astype(bool), d, constant_values=outside)
    inner = np.ones((h, w), bool)
    for dy in range(2 * d + 1):
        for dx in range(2 * d + 1):
            inner &= padded[dy:dy + h, dx:dx + w]
    return mask.astype(bool) & ~inner


def iou(a, b):
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


def one_pair(gt_mask, dt_mask):
    h, w = gt_mask.shape
    gt = {"images": [{"id": 1, "height": h, "width": w, "file_name": "1.png"}], "categories": CATEGORIES[:1],
          "annotations": [{"id": 1, "image_id": 1, **gt_ann(gt_mask, 1)}]}
    return gt, [det(1, 1, dt_mask, 0.9)]


def library_iou(gt, results, kind):
    coco = FastCOCO(copy.deepcopy(gt), print_function=lambda *a: None)
    ev = COCOeval_faster(coco, coco.loadRes(copy.deepcopy(results)), iouType=kind, print_function=lambda *a: None)
    ev.evaluate()
    return float(np.asarray(ev.ious[(1, 1)])[0, 0])


@pytest.mark.parametrize("dx, expected", [(1, 5 / 7), (2, 1 / 2)])
def test_boundary_iou_by_hand(dx, expected):
    g = rect(100, 100, 20, 20, 60, 60)
    d = shift(g, 0, dx)
    assert boundary(g).sum() == 444
    assert min(iou(g, d), iou(boundary(g), boundary(d))) == pytest.approx(expected)
    gt, results = one_pair(g, d)
    assert library_iou(gt, results, "boundary") == pytest.approx(expected)
    assert library_iou(gt, results, "segm") == pytest.approx(iou(g, d))


def test_boundary_ap_counts_the_thresholds_it_passes():
    gt, results = one_pair(rect(100, 100, 20, 20, 60, 60), shift(rect(100, 100, 20, 20, 60, 60), 0, 1))
    out = coco_metrics(gt, results, [1], kinds=("segm", "boundary"))
    assert out["segm_AP"] == pytest.approx(100.0)  # mask IoU 0.951 passes every threshold up to 0.95
    assert out["boundary_AP"] == pytest.approx(50.0)  # 5/7 passes 0.50, 0.55, 0.60, 0.65, 0.70
    assert out["boundary_AP50"] == pytest.approx(100.0) and out["boundary_AP75"] == 0.0
    assert out["boundary_APm"] == out["boundary_AP"] and math.isnan(out["boundary_APs"])  # area 1600


def test_boundary_counts_the_image_border_as_boundary():
    # The same squares moved into the top-left corner. With the border counted the rings are as before
    # (5/7); were the outside foreground, only the inner two sides would be boundary and IoU would be 1/2.
    g = rect(100, 100, 0, 0, 40, 40)
    d = shift(g, 0, 1)
    counted = min(iou(g, d), iou(boundary(g), boundary(d)))
    not_counted = min(iou(g, d), iou(boundary(g, outside=True), boundary(d, outside=True)))
    assert (counted, not_counted) == pytest.approx((5 / 7, 1 / 2))
    assert library_iou(*one_pair(g, d), "boundary") == pytest.approx(counted)


def test_boundary_width_follows_the_image_diagonal():
    # 64×64: diagonal 90.5 → d = round(1.81) = 2; 200×150: diagonal 250 → d = 5. A 1-pixel shift of a
    # square of side s gives boundary IoU (ring overlap) / (ring union); numpy and the library must agree.
    for h, w, s in ((64, 64, 20), (150, 200, 60)):
        g = rect(h, w, 10, 10, 10 + s, 10 + s)
        d = shift(g, 1, 0)
        expected = min(iou(g, d), iou(boundary(g), boundary(d)))
        assert library_iou(*one_pair(g, d), "boundary") == pytest.approx(expected)


def test_one_presentation_table_covers_every_metric():
    """Every metric an evaluation records has one row of presentation; only the val loss is lower-is-better."""
    from edgercnn.evaluation.metrics import (CITYSCAPES_METRICS, METRICS as ALL, PRESENTATION, metric_summary,
                                             with_direction)

    assert set(ALL) | set(CITYSCAPES_METRICS) == set(PRESENTATION)
    assert [m for m in PRESENTATION if not PRESENTATION[m].higher_is_better] == ["val_loss_mask"]
    assert with_direction("x", "val_loss_mask") == "x (lower is better)" and with_direction("x", "segm_AP") == "x"
    assert metric_summary({"segm_AP": 62.64, "val_loss_mask": 0.15661}) == "segm AP 62.6 val mask loss 0.1566"
    assert metric_summary({"segm_AP": 62.644}, digits=2) == "segm AP 62.64"
