"""COCO metrics of a results list against ground truth: segm, bbox and Boundary AP via faster-coco-eval.

The metric names and their presentation live in ``edgercnn.evaluation.metrics``. faster-coco-eval gives the same
segm/bbox numbers as pycocotools (tests/evaluation/test_cocometrics.py checks it) and adds iouType="boundary":
Boundary AP of Cheng et al., "Boundary IoU", CVPR 2021, where a detection's IoU with a non-crowd ground truth is
min(mask IoU, boundary IoU), the boundary of a mask being its pixels within d = round(0.02 × image diagonal) pixels
(at least 1) of the background, with the outside of the image counted as background.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import faster_coco_eval.core.mask as mask_utils
from faster_coco_eval import COCO, COCOeval_faster

from edgercnn.core.errors import EdgeRCNNError
from edgercnn.evaluation.metrics import IOU_TYPES, METRIC_NAMES
BOUNDARY_DILATION_RATIO = 0.02  # Cheng et al.'s d / image diagonal, as in their COCO evaluation


def _quiet(*_args: Any, **_kwargs: Any) -> None:
    """A print function for faster-coco-eval that prints nothing."""


def _with_boxes(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``results``, with a bbox from the mask for entries lacking one when others have one.

    The library takes the results format from the first entry: if it has a bbox, every entry must.
    """
    if all("bbox" in r for r in results) or not any("bbox" in r for r in results):
        return results
    return [r if "bbox" in r else {**r, "bbox": [float(v) for v in mask_utils.toBbox(r["segmentation"])]}
            for r in results]


def coco_metrics(gt_dataset: dict[str, Any], results: list[dict[str, Any]], image_ids: Sequence[int],
                 kinds: Sequence[str] = IOU_TYPES, progress: Callable[[str], None] | None = None,
                 copy_results: bool = True) -> dict[str, float]:
    """``{kind}_{AP, AP50, AP75, APs, APm, APl}`` for each of ``kinds`` on the 0–100 scale, over ``image_ids``.

    ``gt_dataset`` is a COCO instances dict (RLE or polygon segmentations, iscrowd honoured); ``results`` a
    COCO results list (image_id, category_id, bbox xywh, score, RLE segmentation). NaN where COCO reports
    -1 (no ground truth in that area range); an empty ``results`` scores 0. Neither argument is changed.
    segm and boundary need a segmentation in every entry (see ``detections.scorable_kinds``). ``progress`` is
    called with each kind before it is scored (for a progress display on large files). ``copy_results=False``
    lets the library add its keys (id, area, iscrowd) to the entries of ``results`` instead of copying them: half
    the memory for a large detections file the caller does not need afterwards.
    """
    unknown = [k for k in kinds if k not in IOU_TYPES]
    if unknown:
        raise ValueError(f"unknown metric kinds {unknown}; choose from {IOU_TYPES}")
    if any(k != "bbox" for k in kinds) and any("segmentation" not in r for r in results):
        raise EdgeRCNNError("some detections have no segmentation, so only bbox AP can be scored; "
                            "pass kinds=('bbox',) or add masks to the results")
    gt_images = {img["id"] for img in gt_dataset["images"]}
    wide = [i for i in (gt_images | {r["image_id"] for r in results}) if not (type(i) is int and -2**63 <= i < 2**63)]
    if wide:  # faster-coco-eval keeps ids as 64-bit integers and fails with a traceback past them
        raise EdgeRCNNError(f"image id {str(wide[0])[:40]} is not a 64-bit integer, which COCO evaluation needs; "
                            "renumber the images (and their detections) with smaller integer ids")
    stray = sorted({r["image_id"] for r in results} - gt_images)
    if stray:
        raise EdgeRCNNError(f"detections for image ids {stray[:5]} that are not in the ground truth; "
                            "score them against the split they were made on")
    # use_deepcopy: the library writes into the dicts it is given (ids, areas, RLEs, ignore flags);
    # loadRes copies the results because the ground truth COCO was made with it.
    if copy_results:
        gt = COCO(gt_dataset, use_deepcopy=True, print_function=_quiet)
    else:  # the library's flag is for both: copy the (small) ground truth here, use the results as they are
        gt = COCO(copy.deepcopy(gt_dataset), use_deepcopy=False, print_function=_quiet)
    dt = gt.loadRes(_with_boxes(results))
    metrics: dict[str, float] = {}
    for kind in kinds:
        if progress is not None:
            progress(kind)
        ev = COCOeval_faster(gt, dt, iouType=kind, print_function=_quiet,
                             boundary_dilation_ratio=BOUNDARY_DILATION_RATIO)
        ev.params.imgIds = sorted(int(i) for i in image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        for name, value in zip(METRIC_NAMES, ev.stats[:6]):
            metrics[f"{kind}_{name}"] = float("nan") if value < 0 else 100.0 * float(value)
    return metrics
