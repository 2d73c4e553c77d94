"""A user's own dataset in COCO format (exports of CVAT, Label Studio, Roboflow, detectron2/mmdet), prepared in
place: ``out/manifest.json`` and ``out/annotations/instances_{train,val}.json`` that point at the user's images
folder (no copy). Image, annotation and category ids are kept as they are, so a results file made by another tool
on the same data scores against the prepared split.

Also the pieces every importer shares (``prepare masks`` and ``prepare pennfudan`` too): ``check_image`` (exists,
decodes as the training loader decodes it, size as annotated), ``Skips`` (skip-and-count, or the first problem is
an error with ``strict``), ``split_by_fraction`` (a seeded, recorded val split) and ``write_prepared``.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from edgercnn.core.errors import EdgeRCNNError
from edgercnn.data.coco_json import read_coco_json, write_coco_json
from edgercnn.data.dataset import (REASONS, Screened, check_file_name, decode_image, header_size, image_path, in_int64,
                                   max_image_pixels, orientation_note, screen_annotations)
from edgercnn.data.manifest import check_owner, os_errors, relative_to, write_manifest

#: Why an image is left out of a prepared dataset (skipped and counted, or an error with ``strict``).
IMAGE_PROBLEMS = {
    "outside": "a path outside the images folder",
    "missing": "a missing file",
    "undecodable": "a file that does not decode",
    "size_mismatch": "a size other than annotated",
    "too_large": "more pixels than allowed (data.dataset.max_image_pixels)",
    "no_mask": "no mask file",
    "bad_mask": "a mask that is not a readable single-channel instance-id image",
}
#: Where ``write_prepared`` puts each split's COCO JSON, relative to the dataset folder.
ANNOTATIONS = "annotations/instances_{split}.json"


@dataclass(frozen=True)
class ImageProblem:
    """Why one image cannot be used: a key of IMAGE_PROBLEMS and a one-line message naming the file."""

    reason: str
    line: str


def check_image(images_dir: Path, file_name: str, size: tuple[int, int] | None = None
                ) -> tuple[int, int] | ImageProblem:
    """(width, height) of ``images_dir/file_name`` when it lies inside the folder (links resolved), exists, is
    within the pixel limit, decodes as the training loader decodes it (``data.dataset.decode_image``: EXIF
    orientation applied, truncated PNG/JPEG refused) and, when ``size`` = (width, height) is given, has that
    size; else the ImageProblem. The path and pixel rules are data.dataset's (check_file_name, image_path,
    header_size); a malformed pixel limit (``$EDGERCNN_MAX_IMAGE_PIXELS``) is an error, not a skip."""
    max_image_pixels()
    try:
        check_file_name(file_name, str(images_dir))
        path = image_path(images_dir, file_name, str(images_dir))
    except EdgeRCNNError as err:
        return ImageProblem("outside", str(err).split("; fix")[0].split("; copy")[0])
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return ImageProblem("missing", f"{path}: image file not found")
    except OSError as exc:
        return ImageProblem("missing", f"{path}: cannot read the image ({exc.strerror})")
    try:
        header_size(data, path)
    except EdgeRCNNError as err:
        return ImageProblem("too_large", str(err))
    image = decode_image(data)
    if image is None:
        return ImageProblem("undecodable", f"{path}: cannot decode the image (corrupt, truncated or not an image)")
    found = (int(image.shape[1]), int(image.shape[0]))
    if size is not None and found != tuple(size):
        return ImageProblem("size_mismatch", f"{path}: image is {found[0]}x{found[1]}{orientation_note(data)} but "
                                             f"annotated as {size[0]}x{size[1]}")
    return found


def check_images(images_dir: Path, entries: Iterable[tuple[str, tuple[int, int] | None]]
                 ) -> list[tuple[int, int] | ImageProblem]:
    """``check_image`` over (file_name, size or None) pairs, in threads (OpenCV decodes without the GIL)."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda e: check_image(images_dir, e[0], e[1]), entries))


class Skips:
    """Problems met while importing: counted by reason (first message of each kept), or, with ``strict``, the
    first one is a one-line EdgeRCNNError ending in ``fix``."""

    def __init__(self, strict: bool, fix: str = "fix or remove it, or drop --strict to skip such images") -> None:
        self.strict, self.fix, self.counts, self.first = strict, fix, Counter(), {}

    def add(self, problem: ImageProblem) -> None:
        if self.strict:
            raise EdgeRCNNError(f"{problem.line}; {self.fix}")
        self.counts[problem.reason] += 1
        self.first.setdefault(problem.reason, problem.line)

    def warnings(self) -> list[str]:
        """One line per reason: how many images were skipped and the first of them."""
        return [f"skipped {n} image(s) with {IMAGE_PROBLEMS[r]}, e.g. {self.first[r]}; pass --strict to stop at "
                "the first" for r, n in sorted(self.counts.items())]


def split_by_fraction(image_ids: Iterable[int], fraction: float, seed: int) -> set[int]:
    """The val image ids: ``round(fraction * n)`` (at least 1, at most n - 1) of the sorted ids, chosen by a
    permutation seeded with ``seed`` (numpy's PCG64): the same ids, fraction and seed give the same split."""
    ids = sorted(image_ids)
    if not 0 < fraction < 1:
        raise EdgeRCNNError(f"--val-fraction {fraction}: must be between 0 and 1 (e.g. 0.2)")
    if len(ids) < 2:
        raise EdgeRCNNError(f"--val-fraction: {len(ids)} image(s) cannot be split into train and val; add images "
                            "or leave --val-fraction out")
    count = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    order = np.random.default_rng(seed).permutation(len(ids))
    return {ids[i] for i in order[:count]}


def write_prepared(out: Path, *, name: str, categories: list[dict[str, Any]],
                   splits: dict[str, tuple[Path, list[dict], list[dict]]], source: Any, info: dict[str, Any],
                   strict: bool, skips: Skips, split_record: dict[str, Any] | None = None,
                   fix: str = "fix the annotation, or drop --strict to skip such annotations") -> dict[str, Any]:
    """Screen each split's annotations as the training loader does (``data.dataset.screen_annotations``, so the
    counts agree) and refuse, before anything is written, a split without images, a train split without an
    instance to learn from and (``strict``) the first annotation problem (an error ending in ``fix``); then
    write each split's COCO JSON (``ANNOTATIONS``; annotations with unreadable values left out) and
    ``out/manifest.json`` (images folders relative when inside ``out``, else absolute). ``splits``: split →
    (images folder, image entries, annotations); ``skips``: the images skipped so far, named in the errors.
    Returns {split: {"images", "instances", "crowd", "skipped_annotations"}}."""
    cats = sorted(categories, key=lambda c: c["id"])
    screened: dict[str, Screened] = {}
    for split, (images_dir, images, anns) in splits.items():
        if not images:
            why = "; ".join(skips.warnings()) or "none listed or found"
            raise EdgeRCNNError(f"{split} split: no usable images in {images_dir} ({why}); nothing was written")
        found = screen_annotations({i["id"]: i for i in images}, anns, {c["id"] for c in cats})
        if strict and found.first:
            ann, reason = found.first
            raise EdgeRCNNError(f"{split} split: annotation {ann['id']} (image {ann['image_id']}) has "
                                f"{REASONS[reason]}; {fix}")
        screened[split] = found
    if not screened["train"].instance_count:
        skipped = sum(screened["train"].skipped.values())
        raise EdgeRCNNError(f"train split: {len(splits['train'][1])} images but no instance to learn from "
                            f"({skipped} annotation(s) unusable, the rest crowd regions or none); nothing was "
                            "written, fix the annotations")
    entries = {}
    with os_errors(out):
        for split in {"train", "val"} - set(splits):  # left by an earlier import with another split
            (out / ANNOTATIONS.format(split=split)).unlink(missing_ok=True)
        for split, (images_dir, images, _) in splits.items():
            rel = ANNOTATIONS.format(split=split)
            write_coco_json(out / rel, images, screened[split].kept, cats, info)
            entries[split] = {"images": relative_to(images_dir, out), "annotations": rel}
        write_manifest(out, name=name, classes=[str(c["name"]) for c in cats], category_ids=[c["id"] for c in cats],
                       splits=entries, source=source, extra={"split": split_record} if split_record else None)
    return {split: {"images": len(splits[split][1]), "instances": s.instance_count,
                    "crowd": sum(1 for a in s.kept if a.get("iscrowd")), "skipped_annotations": dict(s.skipped)}
            for split, s in screened.items()}


def annotation_warnings(counts: dict[str, Any]) -> list[str]:
    """One line per split whose annotations the training loader would skip (see data.dataset.REASONS)."""
    lines = []
    for split, c in counts.items():
        if not c["instances"]:  # train without any is an error (write_prepared)
            lines.append(f"{split}: {c['images']} images but no instance to score (crowd regions or none); "
                         "evaluation there will fail, move annotated images into it")
        if c["skipped_annotations"]:
            why = ", ".join(f"{n} with {REASONS[r]}" for r, n in sorted(c["skipped_annotations"].items()))
            lines.append(f"{split}: {sum(c['skipped_annotations'].values())} annotation(s) skipped, not trained on "
                         f"({why}); fix them, or pass --strict to make this an error")
    return lines


def _categories(path: Path, data: dict[str, Any], fix: str) -> list[dict[str, Any]]:
    cats = []
    for c in data["categories"]:
        if not (isinstance(c, dict) and in_int64(c.get("id")) and isinstance(c.get("name"), str)):
            raise EdgeRCNNError(f"{path}: a category lacks an integer 'id' or a string 'name' ({c!r:.80}); {fix}")
        cats.append({k: c[k] for k in ("id", "name", "supercategory") if k in c})
    if not cats:
        raise EdgeRCNNError(f"{path}: 'categories' is empty; {fix}")
    if len({c["id"] for c in cats}) != len(cats):
        raise EdgeRCNNError(f"{path}: duplicate category ids; {fix}")
    return cats


def _checked_split(path: Path, data: dict[str, Any], images_dir: Path, keep: set[int] | None, skips: Skips,
                   fix: str) -> tuple[list[dict], list[dict]]:
    """The image entries (of ``keep``, or all) that pass ``check_image`` and their annotations, as in the file."""
    images, seen = [], set()
    for img in data["images"]:
        if not (isinstance(img, dict) and in_int64(img.get("id")) and isinstance(img.get("file_name"), str)):
            raise EdgeRCNNError(f"{path}: an image entry lacks an integer 'id' (64-bit) or a string 'file_name' "
                                f"({img!r:.80}); {fix}")
        if img["id"] in seen:
            raise EdgeRCNNError(f"{path}: image id {img['id']} is listed twice; {fix}")
        seen.add(img["id"])
        w, h = img.get("width"), img.get("height")
        if (w is not None or h is not None) and not (type(w) is int and type(h) is int and w > 0 and h > 0):
            raise EdgeRCNNError(f"{path}: image {img['id']} has width/height {w!r}/{h!r}, not positive integers; "
                                f"{fix}")
        if keep is None or img["id"] in keep:
            images.append(img)
    results = check_images(images_dir, [(i["file_name"], (i["width"], i["height"]) if i.get("width") else None)
                                        for i in images])
    kept = []
    for img, result in zip(images, results):
        if isinstance(result, ImageProblem):
            skips.add(result)
        else:  # width/height filled in from the file where the export left them out; / for Windows' \\
            kept.append({**img, "file_name": img["file_name"].replace("\\", "/"), "width": result[0],
                         "height": result[1]})
    ann_ids, anns, ids = set(), [], {i["id"] for i in kept}
    for ann in data["annotations"]:
        if not (isinstance(ann, dict) and in_int64(ann.get("id")) and in_int64(ann.get("image_id"))):
            raise EdgeRCNNError(f"{path}: an annotation lacks an integer 'id' or 'image_id' (64-bit) ({ann!r:.80}); "
                                f"{fix}")
        if ann["id"] in ann_ids:
            raise EdgeRCNNError(f"{path}: annotation id {ann['id']} is listed twice; {fix}")
        ann_ids.add(ann["id"])
        if ann["image_id"] not in seen:
            raise EdgeRCNNError(f"{path}: annotation {ann['id']} refers to image {ann['image_id']}, which is not "
                                f"listed; {fix}")
        if ann["image_id"] in ids:
            anns.append(ann)
    return kept, anns


def import_coco_json(images: Path | str, annotations: Path | str, out: Path | str, *,
                     val: Path | str | None = None, val_images: Path | str | None = None,
                     val_fraction: float | None = None, seed: int = 0, strict: bool = False) -> dict[str, Any]:
    """Prepare a COCO-format instance dataset in ``out`` (see the module docstring). ``val``: a second COCO JSON
    for the val split (images under ``val_images``, default ``images``); or ``val_fraction`` of ``annotations``'
    images go to val (``split_by_fraction``, recorded in the manifest); neither: a train split only. Images that
    fail ``check_image`` are skipped and counted (``strict``: an error). Returns ``{"out", "splits",
    "warnings"}``."""
    images, annotations, out = Path(images), Path(annotations), Path(out)
    if val is not None and val_fraction is not None:
        raise EdgeRCNNError("--val and --val-fraction: pass one of them (a val file, or a fraction to split off)")
    if val_images is not None and val is None:
        raise EdgeRCNNError("--val-images: needs --val (the val annotation file)")
    for option, folder in (("--images", images), ("--val-images", val_images)):
        if folder is not None and not Path(folder).is_dir():
            raise EdgeRCNNError(f"{folder}: not a folder; pass the folder the file_name entries are relative to as "
                                f"{option}")
    inputs = [annotations] + ([Path(val)] if val is not None else [])
    for path in inputs:
        if not path.is_file():
            raise EdgeRCNNError(f"{path}: annotation file not found; pass a COCO instances JSON")
    targets = {(out / ANNOTATIONS.format(split=s)).resolve() for s in ("train", "val")}
    for path in inputs:
        if path.resolve() in targets:
            raise EdgeRCNNError(f"{path}: prepare would overwrite this input; choose another --out")
    max_image_pixels()  # a malformed $EDGERCNN_MAX_IMAGE_PIXELS is an error, before any work
    check_owner(out, "coco-json")
    with os_errors(out):
        out.mkdir(parents=True, exist_ok=True)
    fix = "fix the export (or export again from the annotation tool)"
    skips = Skips(strict)
    train_data = read_coco_json(annotations, fix)
    categories = _categories(annotations, train_data, fix)
    split_record = None
    if val is not None:
        val_data = read_coco_json(Path(val), fix)
        val_cats = _categories(Path(val), val_data, fix)
        if sorted((c["id"], c["name"]) for c in val_cats) != sorted((c["id"], c["name"]) for c in categories):
            raise EdgeRCNNError(f"{val}: its categories differ from those of {annotations}; export both splits "
                                "with the same classes")
        val_dir = Path(val_images) if val_images is not None else images
        splits = {"train": (images, *_checked_split(annotations, train_data, images, None, skips, fix)),
                  "val": (val_dir, *_checked_split(Path(val), val_data, val_dir, None, skips, fix))}
    elif val_fraction is not None:
        all_ids = [i.get("id") for i in train_data["images"] if isinstance(i, dict) and type(i.get("id")) is int]
        val_ids = split_by_fraction(set(all_ids), val_fraction, seed)
        split_record = {"method": "val-fraction", "val_fraction": val_fraction, "seed": seed,
                        "val_images": len(val_ids), "of": len(set(all_ids))}
        splits = {"train": (images, *_checked_split(annotations, train_data, images, set(all_ids) - val_ids,
                                                    skips, fix)),
                  "val": (images, *_checked_split(annotations, train_data, images, val_ids, skips, fix))}
    else:
        splits = {"train": (images, *_checked_split(annotations, train_data, images, None, skips, fix))}
    info = train_data.get("info") if isinstance(train_data.get("info"), dict) else {}
    source = {"images": str(images.resolve()), "annotations": str(annotations.resolve()),
              **({"val": str(Path(val).resolve())} if val is not None else {}),
              **({"val_images": str(Path(val_images).resolve())} if val_images is not None else {})}
    counts = write_prepared(out, name="coco-json", categories=categories, splits=splits, source=source, info=info,
                            strict=strict, skips=skips, split_record=split_record)
    warnings = skips.warnings() + annotation_warnings(counts)
    if "val" not in counts:
        warnings.append("no val split: train cannot evaluate; pass --val FILE.json or --val-fraction F")
    return {"out": str(out), "splits": counts, "skipped_images": dict(skips.counts), "warnings": warnings}
