"""Small helpers shared by the converters and the Dataset: mask → COCO annotation, COCO JSON I/O."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from edgercnn.core.errors import EdgeRCNNError
from edgercnn.core.io import atomic_write_text


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


def rle_sums(strings: list[str]) -> np.ndarray:
    """Sum of the run lengths of each compressed COCO RLE ``counts`` string, decoded as pycocotools'
    ``rleFrString`` does, or -1 where it is malformed (a character outside '0'..'o', a number cut off at the end,
    a negative run). Vectorised over all strings at once: cheap enough for every annotation at load time."""
    sums = np.full(len(strings), -1, np.int64)
    chunk, size = [], 0
    for i, text in enumerate(strings):
        chunk.append(i)
        size += len(text)
        if size >= 1 << 22 or i == len(strings) - 1:
            sums[chunk] = _rle_sums_chunk([strings[j] for j in chunk])
            chunk, size = [], 0
    return sums


def _rle_sums_chunk(strings: list[str]) -> np.ndarray:
    raw = [s.encode("utf-8", "replace") for s in strings]
    lens = np.array([len(r) for r in raw], np.int64)
    sums = np.zeros(len(raw), np.int64)  # "" is zero runs
    full = np.flatnonzero(lens)
    if not len(full):
        return sums
    c = np.frombuffer(b"".join(raw), np.uint8).astype(np.int16) - 48
    heads = np.r_[0, np.cumsum(lens[full])[:-1]]  # first character of each string
    more = (c & 0x20) != 0  # continuation bit: the number goes on in the next character
    bad = np.logical_or.reduceat((c < 0) | (c > 63), heads) | more[np.r_[heads[1:], len(c)] - 1]
    more[np.r_[heads[1:], len(c)] - 1] = False  # numbers never run across strings
    is_start = np.r_[True, ~more[:-1]]
    starts = np.flatnonzero(is_start)  # first character of each number
    pos = np.arange(len(c), dtype=np.int32) - starts[np.cumsum(is_start, dtype=np.int32) - 1]
    bad |= np.logical_or.reduceat(pos > 6, heads)  # more than 35 bits: not from any encoder
    np.minimum(pos, 6, out=pos)
    value = np.add.reduceat((c & 0x1F).astype(np.int64) << (5 * pos), starts)
    ends = np.r_[starts[1:], len(c)] - 1
    value -= np.where(c[ends] & 0x10, np.int64(1) << (5 * (pos[ends] + 1)), 0)  # sign bit in the last character
    # counts[m] = value[m] + counts[m - 2] for m > 2: running sums over chains (m = 0), (1, 3, 5, ...), (2, 4, ...)
    first = np.searchsorted(starts, heads)  # first number of each string
    owner = np.repeat(np.arange(len(heads)), np.diff(np.r_[first, len(starts)]))
    m = np.arange(len(value)) - first[owner]
    chain = owner * 3 + np.where(m == 0, 0, 2 - m % 2)
    order = np.argsort(chain, kind="stable")
    sorted_value, sorted_chain = value[order], chain[order]
    links = np.r_[0, np.flatnonzero(np.diff(sorted_chain)) + 1]
    running = np.cumsum(sorted_value)
    counts = running - np.repeat(running[links] - sorted_value[links], np.diff(np.r_[links, len(order)]))
    # the sort keeps each string's numbers together and in string order, so ``first`` still delimits them
    bad |= np.logical_or.reduceat(counts < 0, first)
    sums[full] = np.where(bad, -1, np.add.reduceat(counts, first))
    return sums


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
