"""Reading a COCO results file from any detector (detectron2, mmdetection, ours) and checking it against the
ground truth before scoring, so a mismatch is one clear line instead of a library traceback or a silent 0 AP.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

from pycocotools import mask as mask_utils

from edgercnn.evaluation.metrics import IOU_TYPES
from edgercnn.core.errors import EdgeRCNNError

FORMAT = "a JSON list of {image_id, category_id, score, bbox [x, y, w, h] and/or segmentation}"
ENCODE = "encode each binary mask [H, W] of the original image with pycocotools.mask.encode"


def _is_number(x: Any) -> bool:
    try:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
    except OverflowError:  # an int too large for a float
        return False


def _is_id_in(x: Any, ids: set[int] | dict[int, Any]) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x in ids


def _ids(ids: set[int]) -> str:
    """A short description of a set of ids for an error message: "ids 1..100" or "80 ids in 1..250"."""
    if not ids:
        return "none"
    lo, hi = min(ids), max(ids)
    return f"ids {lo}..{hi}" if len(ids) == hi - lo + 1 else f"{len(ids)} ids in {lo}..{hi}"


def _rle_runs(counts: str) -> list[int] | None:
    """Run lengths of a compressed COCO RLE string (pycocotools' rleFrString), or None if malformed.

    Parsed here because pycocotools.mask.decode trusts the runs: if they do not add up to the image it
    returns uninitialised memory instead of failing.
    """
    runs: list[int] = []
    p = 0
    while p < len(counts):
        x, k, more = 0, 0, True
        while more:
            if p == len(counts):
                return None  # a run cut off mid-way
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                return None
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]  # runs after the second are stored as differences
        if x < 0:
            return None
        runs.append(x)
    return runs


def _segmentation(seg: Any, height: int, width: int) -> tuple[dict | None, tuple[str, str] | None]:
    """(``seg`` as a compressed RLE with str counts, None), or (None, (what is wrong, what to do))."""
    if isinstance(seg, list):  # polygons
        if not seg or not all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0
                              and all(_is_number(v) for v in p) for p in seg):
            return None, ("segmentation is a list but not of polygons [x1, y1, x2, y2, x3, y3, ...]", ENCODE)
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
        return {"size": [height, width], "counts": rle["counts"].decode("ascii")}, None
    if not isinstance(seg, dict) or "size" not in seg or "counts" not in seg:
        return None, ("segmentation is neither an RLE {size, counts} nor a list of polygons", ENCODE)
    if seg["size"] != [height, width]:
        return None, (f"segmentation size {seg['size']} is not the image's [height, width] = [{height}, {width}]",
                      "write masks at the original image resolution")
    counts = seg["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            return None, ("segmentation counts is a list but not of run lengths >= 0", ENCODE)
        runs = counts
    elif isinstance(counts, (str, bytes)):
        try:
            runs = _rle_runs(counts.decode("ascii") if isinstance(counts, bytes) else counts)
        except UnicodeDecodeError:
            runs = None
        if runs is None:
            return None, ("segmentation counts is not a valid compressed COCO RLE string", ENCODE)
    else:
        return None, (f"segmentation counts has type {type(counts).__name__}, not an RLE string or list", ENCODE)
    if sum(runs) != height * width:
        return None, (f"segmentation counts cover {sum(runs)} pixels, not the image's {height}×{width}", ENCODE)
    if isinstance(counts, list):
        counts = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)["counts"]
    return {"size": [height, width], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}, None


def _problem(entry: Any, images: dict[int, dict], categories: set[int], gt_name: str) -> tuple[str, str] | None:
    """(what is wrong, what to do) for one results entry's fields other than the mask, or None if all fine."""
    if not isinstance(entry, dict):
        return f"has type {type(entry).__name__}, not an object", f"the file must be {FORMAT}"
    missing = [k for k in ("image_id", "category_id", "score") if k not in entry]
    if "bbox" not in entry and "segmentation" not in entry:
        missing.append("bbox or segmentation")
    if missing:
        return f"lacks {', '.join(missing)}", f"the file must be {FORMAT}"
    if not _is_id_in(entry["image_id"], images):
        return (f"image_id {_short(entry['image_id'])} is not in {gt_name} ({_ids(set(images))})",
                "score the detections against the split they were made on (--split)")
    if not _is_id_in(entry["category_id"], categories):
        return (f"category_id {_short(entry['category_id'])} is not a category of {gt_name} ({_ids(categories)})",
                "map the detector's class indices to the dataset's category ids")
    if not _is_number(entry["score"]):
        return f"score {_short(entry['score'])} is not a finite number", "write each detection's confidence as score"
    if "bbox" in entry and not (isinstance(entry["bbox"], list) and len(entry["bbox"]) == 4
                                and all(_is_number(v) for v in entry["bbox"])):
        return (f"bbox {_short(entry['bbox'])} is not 4 finite numbers",
                "write boxes as [x, y, width, height] in pixels")
    if "bbox" in entry and min(entry["bbox"][2:]) < 0:
        return (f"bbox {_short(entry['bbox'])} has a negative width or height",
                "write boxes as [x, y, width, height] (COCO), not [x1, y1, x2, y2] with x2 < x1")
    return None


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: one line even for a hostile value (no 5000-digit numbers)."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int too long to print, or a structure too deep
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_detections(path: Path, gt_dataset: dict[str, Any], gt_name: str = "the ground truth",
                    progress: Callable[[int], None] | None = None) -> list[dict]:
    """The entries of the COCO results file ``path``, checked against ``gt_dataset`` (a COCO instances dict).

    Any problem is an EdgeRCNNError naming the file, the index of the first bad entry, what is wrong and
    what to do; ``gt_name`` says which ground truth in it (e.g. "the val split of data/shapes"). Entries
    may have a bbox, a segmentation or both (see ``scorable_kinds``); segmentations come back as compressed
    RLE with str counts (polygons and uncompressed RLE are converted), other keys as they were. ``progress``
    is called with the number of entries checked since its last call (for a progress bar on large files).
    """
    path = Path(path)
    if not path.is_file():
        raise EdgeRCNNError(f"{path}: no such file; pass the COCO results JSON your detector wrote")
    try:
        with path.open("rb") as handle:  # parsed from the file: no second copy of its text in memory
            data = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgeRCNNError(f"{path}: not JSON ({_first_line(exc)}); pass a COCO results file, {FORMAT}") from None
    except RecursionError:
        raise EdgeRCNNError(f"{path}: JSON nested too deeply to be a COCO results file; pass one, {FORMAT}") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits (Python's int_max_str_digits)
        raise EdgeRCNNError(f"{path}: a value the file holds cannot be read ({_first_line(exc)[:120]}); pass a "
                            f"COCO results file, {FORMAT}") from None
    if not isinstance(data, list):
        hint = " (this looks like an annotations file)" if isinstance(data, dict) and "annotations" in data else ""
        raise EdgeRCNNError(f"{path}: a JSON {type(data).__name__}, not a list{hint}; pass a COCO results file, "
                            f"{FORMAT}")
    images = {img["id"]: img for img in gt_dataset["images"]}
    categories = {cat["id"] for cat in gt_dataset["categories"]}
    for i, entry in enumerate(data):
        problem = _problem(entry, images, categories, gt_name)
        if problem is None and "segmentation" in entry:
            img = images[entry["image_id"]]
            seg, problem = _segmentation(entry["segmentation"], img["height"], img["width"])
            if problem is None:
                data[i] = {**entry, "segmentation": seg}  # in place: one copy of the entries in memory
        if problem is not None:
            raise EdgeRCNNError(f"{path}: entry {i}: {problem[0]}; {problem[1]}")
        if progress is not None and (i + 1) % 1000 == 0:
            progress(1000)
    if progress is not None:
        progress(len(data) % 1000)
    return data


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def scorable_kinds(results: list[dict]) -> tuple[str, ...]:
    """The metric kinds ``results`` can be scored on: all of them if every entry has a mask, else bbox only."""
    return IOU_TYPES if all("segmentation" in r for r in results) else ("bbox",)
