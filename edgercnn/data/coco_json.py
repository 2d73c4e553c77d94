"""Small helpers shared by the converters and the Dataset: mask → COCO annotation, COCO JSON I/O."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from edgercnn.errors import EdgeRCNNError
from edgercnn.io import atomic_write_text


def mask_annotation(mask: np.ndarray, category_id: int, iscrowd: int = 0) -> dict[str, Any]:
    """COCO annotation (without ids) for a binary mask [H, W]: RLE, pixel ``area``, bbox from the mask."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {
        "category_id": int(category_id),
        "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
        "area": int(np.count_nonzero(mask)),  # pixel count, not box area
        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
        "iscrowd": int(iscrowd),
    }


def write_coco_json(path: Path, images: list[dict], annotations: list[dict], categories: list[dict],
                    info: dict[str, Any]) -> None:
    """Write a COCO instances JSON atomically and deterministically (compact, no timestamps)."""
    data = {"info": info, "licenses": [], "images": images, "annotations": annotations, "categories": categories}
    atomic_write_text(Path(path), json.dumps(data, separators=(",", ":")) + "\n")


def read_coco_json(path: Path, fix: str) -> dict[str, Any]:
    """A COCO instances JSON as a dict; one-line EdgeRCNNError (ending in ``fix``) when malformed."""
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgeRCNNError(f"{path}: malformed JSON ({exc}); {fix}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list)
                                             for k in ("images", "annotations", "categories")):
        raise EdgeRCNNError(f"{path}: not a COCO instances file (needs lists 'images', 'annotations', "
                            f"'categories'); {fix}")
    return data
