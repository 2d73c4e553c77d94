"""Datasets stored as one instance-id PNG per image (0 background, each other value one instance; pedestrian, cell,
medical and robotics sets): converted to COCO JSON (RLE by pycocotools) in place, images not copied.

The mask of ``IMAGES/sub/name.jpg`` is ``MASKS/sub/name<suffix>.png``. Image ids are 1, 2, ... in the sorted
order of the images' relative paths (stable when an image is skipped or added at the end); one class.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from edgercnn.core.errors import EdgeRCNNError
from edgercnn.data.coco_import import (ImageProblem, Skips, annotation_warnings, check_image, split_by_fraction,
                                       write_prepared)
from edgercnn.data.coco_json import mask_annotation
from edgercnn.data.dataset import max_image_pixels
from edgercnn.data.manifest import check_owner, os_errors

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: PIL modes of a single-channel instance-id image (8-bit, palette indices, 16/32-bit integers, binary).
MASK_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L", "1")


def check_suffix(suffix: str, images: Path, masks: Path) -> None:
    """One line unless ``suffix`` is a plain name ending (no separator, no .png: that is added) that tells masks
    kept beside their images from the images (non-empty when both are in one folder)."""
    if "/" in suffix or "\\" in suffix or suffix.lower().endswith(".png") or "\0" in suffix:
        raise EdgeRCNNError(f"--suffix {suffix!r}: the ending of a mask's name before .png, without separators "
                            "or .png (the mask of sub/NAME.jpg is sub/NAME<suffix>.png under --masks), e.g. _mask")
    if not suffix and images.resolve() == masks.resolve():
        raise EdgeRCNNError("--suffix '': the masks are in the images folder, so they need a suffix that tells "
                            "them apart (e.g. _mask), or move them to a folder of their own")


def find_images(images: Path, suffix: str) -> list[str]:
    """Sorted relative paths (posix) of the image files under ``images``, leaving out files named like masks
    (``*<suffix>.png``, for masks kept beside their images)."""
    found = []
    for path in images.rglob("*"):
        is_mask = bool(suffix) and path.suffix.lower() == ".png" and path.stem.endswith(suffix)
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not is_mask:
            found.append(path.relative_to(images).as_posix())
    return sorted(found)


def mask_path(masks: Path, rel: str, suffix: str) -> Path:
    """``masks/<rel's folder>/<rel's stem><suffix>.png``."""
    rel_path = Path(rel)
    return masks / rel_path.parent / f"{rel_path.stem}{suffix}.png"


def read_instance_ids(path: Path) -> np.ndarray | ImageProblem:
    """The instance-id image [H, W] int64 of a single-channel PNG (palette PNGs give their indices), or why not."""
    if not path.is_file():
        return ImageProblem("no_mask", f"{path}: mask file not found")
    try:
        with Image.open(path) as im:
            if im.format != "PNG":  # a lossy JPEG saved as .png smears instance ids at every edge
                return ImageProblem("bad_mask", f"{path}: mask is a {im.format} file, not a PNG; masks must be "
                                                "lossless, save them as PNG")
            if im.mode not in MASK_MODES:
                return ImageProblem("bad_mask", f"{path}: mask has mode {im.mode}, not a single-channel "
                                                "instance-id image (0 background, 1..n instances)")
            return np.asarray(im).astype(np.int64)
    except (OSError, ValueError) as exc:
        return ImageProblem("bad_mask", f"{path}: cannot read the mask ({exc})")


def instance_annotations(ids: np.ndarray, category_id: int) -> list[dict[str, Any]]:
    """One COCO annotation (RLE, no ids) per non-zero value of ``ids``, in increasing value order."""
    return [mask_annotation(ids == value, category_id) for value in np.unique(ids) if value != 0]


def import_masks(images: Path | str, masks: Path | str, out: Path | str, *, suffix: str = "_mask",
                 class_name: str = "object", val_fraction: float | None = None, seed: int = 0,
                 val_rule: Callable[[int, str], bool] | None = None, strict: bool = False, name: str = "masks",
                 source: Any = None, expected: int | None = None, split_record: dict[str, Any] | None = None,
                 fix: str | None = None) -> dict[str, Any]:
    """Prepare an instance-id-mask dataset in ``out`` (see the module docstring). The val split is
    ``val_fraction`` of the images (seeded, recorded in the manifest), or those for which ``val_rule(index,
    relative path)`` holds (index in the sorted order; a fixed split such as Penn-Fudan's, described in the
    manifest by ``split_record``), or none. Images without
    a readable mask of their size are skipped and counted (``strict``: an error). Returns ``{"out", "splits",
    "skipped_images", "warnings"}``. ``fix``: the advice ending a ``strict`` error (default: fix it or drop
    --strict)."""
    images, masks, out = Path(images), Path(masks), Path(out)
    for option, folder in (("--images", images), ("--masks", masks)):
        if not folder.is_dir():
            raise EdgeRCNNError(f"{folder}: not a folder; pass an existing folder as {option}")
    if val_fraction is not None and val_rule is not None:
        raise ValueError("val_fraction and val_rule exclude each other")
    check_suffix(suffix, images, masks)
    max_image_pixels()  # a malformed $EDGERCNN_MAX_IMAGE_PIXELS is an error, before any work
    check_owner(out, name)
    with os_errors(out):
        out.mkdir(parents=True, exist_ok=True)
    names = find_images(images, suffix)
    if not names:
        raise EdgeRCNNError(f"{images}: no images ({', '.join(IMAGE_SUFFIXES)}) found; pass the images folder as "
                            "--images")
    if expected is not None and len(names) != expected:
        raise EdgeRCNNError(f"{images}: {len(names)} images, expected {expected}; restore the dataset")
    skips = Skips(strict, *([fix] if fix else []))

    def convert(rel: str) -> tuple[tuple[int, int], list[dict[str, Any]]] | ImageProblem:
        ids = read_instance_ids(mask_path(masks, rel, suffix))
        if isinstance(ids, ImageProblem):
            return ids
        check = check_image(images, rel, (ids.shape[1], ids.shape[0]))
        return check if isinstance(check, ImageProblem) else (check, instance_annotations(ids, 1))

    entries, anns = [], []
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # one mask in memory per worker
        for index, (rel, result) in enumerate(zip(names, pool.map(convert, names))):
            if isinstance(result, ImageProblem):
                skips.add(result)
                continue
            (width, height), image_anns = result
            image_id = index + 1
            entries.append({"id": image_id, "file_name": rel, "width": width, "height": height})
            anns += [{"id": len(anns) + k, "image_id": image_id, **ann} for k, ann in enumerate(image_anns, 1)]
    if val_fraction is not None:
        val_ids = split_by_fraction(range(1, len(names) + 1), val_fraction, seed)
        split_record = {"method": "val-fraction", "val_fraction": val_fraction, "seed": seed,
                        "val_images": len(val_ids), "of": len(names)}
    elif val_rule is not None:
        val_ids = {i + 1 for i, rel in enumerate(names) if val_rule(i, rel)}
    else:
        val_ids = set()
    parts = {"train": lambda i: i not in val_ids, "val": lambda i: i in val_ids} if val_ids else \
        {"train": lambda i: True}
    splits = {split: (images, [e for e in entries if keep(e["id"])], [a for a in anns if keep(a["image_id"])])
              for split, keep in parts.items()}
    src = source if source is not None else {"images": str(images.resolve()), "masks": str(masks.resolve()),
                                             "suffix": suffix}
    counts = write_prepared(out, name=name, categories=[{"id": 1, "name": class_name}], splits=splits, source=src,
                            info={"description": f"edgercnn prepare {name}"}, strict=strict, skips=skips,
                            split_record=split_record, **({"fix": fix} if fix else {}))
    warnings = skips.warnings() + annotation_warnings(counts)
    if "val" not in counts:
        warnings.append("no val split: train cannot evaluate; pass --val-fraction F")
    return {"out": str(out), "splits": counts, "skipped_images": dict(skips.counts), "warnings": warnings}
