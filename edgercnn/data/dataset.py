"""The training Dataset over a prepared dataset folder (manifest + COCO-format JSON), torchvision's format."""

from __future__ import annotations

import contextlib
import io
import math
import os
import random
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from edgercnn.data.coco_json import read_coco_json, rle_sums
from edgercnn.data.manifest import load_manifest, split_paths
from edgercnn.data.transforms import boxes_to_canvas, build_transforms, canvas_geometry
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.data.vocab import EVAL_IMAGES  # noqa: F401 (owned there)


# per-annotation problems: skipped and counted, or fatal with strict=True
REASONS = {
    "unknown_category": "an unknown category id",
    "polygon_lt_3_points": "a polygon with fewer than 3 points",
    "zero_area_box": "a zero-area box",
    "zero_area_mask": "a zero-area mask",
    "bad_segmentation": "a missing or malformed segmentation",
    "bad_polygon": "a polygon coordinate that is not a finite number near the image (NaN, Infinity, 1e300, a "
                   "string, an odd count)",
    "bad_value": "a category_id, iscrowd, bbox or area that is not a number of the right kind",
}


#: Environment variable with the most pixels an image may have (default: PIL's decompression-bomb limit,
#: ``PIL.Image.MAX_IMAGE_PIXELS``, about 89 million; PIL itself refuses twice that, so it can be raised that far).
MAX_PIXELS_ENV = "EDGERCNN_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    """The pixel limit for images: ``$EDGERCNN_MAX_IMAGE_PIXELS`` or PIL's decompression-bomb limit."""
    text = os.environ.get(MAX_PIXELS_ENV)
    if text is None or not text.strip():
        return int(Image.MAX_IMAGE_PIXELS or 2**62)
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise EdgeRCNNError(f"{MAX_PIXELS_ENV}={text!r}: expected a positive number of pixels, e.g. 89478485")
    return value


def check_pixels(width: int, height: int, where: object) -> None:
    """A one-line error when a ``width`` x ``height`` image is over the pixel limit: refused before decoding (a
    small file can declare 30000x30000 pixels, 2.7 GB decoded)."""
    limit = max_image_pixels()
    if int(width) * int(height) > limit:
        raise EdgeRCNNError(f"{where}: image is {width}x{height} = {int(width) * int(height)} pixels, over the limit "
                            f"of {limit}; replace the image, or raise the limit with {MAX_PIXELS_ENV} if it is "
                            "genuine")


def header_size(source: Path | bytes, where: object) -> tuple[int, int] | None:
    """(width, height) from an image file's header (nothing decoded), checked against the pixel limit; None when
    PIL does not know the format (left to the decoder)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below, with our limit
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
                size = im.size
    except Image.DecompressionBombError as err:
        raise EdgeRCNNError(f"{where}: image is over the limit of {max_image_pixels()} pixels ({err}); replace "
                            f"the image ({MAX_PIXELS_ENV} cannot raise the limit past PIL's own, twice its "
                            "default)") from None
    except (OSError, ValueError, SyntaxError, EOFError):  # not an image PIL knows, or a broken header
        return None
    check_pixels(size[0], size[1], where)
    return size


def check_file_name(name: Any, where: str) -> None:
    """A COCO ``file_name`` must be a relative path inside its images folder (subfolders allowed): no ``..``,
    not absolute; one line naming ``where`` otherwise."""
    ok = isinstance(name, str) and name.strip() != "" and "\0" not in name
    if ok:
        parts = name.replace("\\", "/").split("/")
        ok = not (name.startswith(("/", "\\")) or Path(name).is_absolute() or ":" in parts[0]
                  or ".." in parts)
    if not ok:
        raise EdgeRCNNError(f"{where}: file_name {str(name)[:200]!r} is not a path inside the images folder "
                            "(absolute, or with ..); fix the annotation file")


def _load_coco(path: Path) -> COCO:
    """pycocotools COCO of ``path`` with one-line errors for a missing file or malformed JSON."""
    fix = "re-run edgercnn prepare for this dataset"
    if not path.is_file():
        raise EdgeRCNNError(f"{path}: annotation file not found; {fix}")
    data = read_coco_json(path, fix)
    for key, need in (("images", ("id", "file_name", "width", "height")), ("annotations", ("id", "image_id"))):
        for entry in data[key]:
            if not isinstance(entry, dict) or any(k not in entry for k in need):
                raise EdgeRCNNError(f"{path}: an entry of {key!r} lacks one of {need}; {fix}")
    for entry in data["images"]:
        if not (in_int64(entry["id"]) and type(entry["width"]) is int and type(entry["height"]) is int
                and entry["width"] > 0 and entry["height"] > 0):
            raise EdgeRCNNError(f"{path}: image {str(entry['id'])[:40]} needs an int64 'id' and positive integer "
                                f"'width'/'height'; {fix}")
        check_file_name(entry["file_name"], f"{path}: image {entry['id']}")
    if not all(in_int64(a["image_id"]) for a in data["annotations"]):
        raise EdgeRCNNError(f"{path}: an annotation's 'image_id' is not an int64 integer; {fix}")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def _rle_foreground(anns: list[dict[str, Any]]) -> dict[int, int]:
    """``id()`` of each annotation with an RLE segmentation → its foreground pixel count, or -1 where its
    ``counts`` do not add up to its ``size`` (pycocotools would raise, or leave pixels undefined): malformed
    strings, negative runs, wrong totals, sizes that are not two integers."""
    found, texts, pixels, text_anns = {}, [], [], []
    for ann in anns:
        seg = ann.get("segmentation")
        if not isinstance(seg, dict):
            continue
        size, counts = seg.get("size"), seg.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(type(n) is int and 0 <= n < 2**31 for n in size)):
            found[id(ann)] = -1
        elif isinstance(counts, str):
            texts.append(counts)
            pixels.append(size[0] * size[1])
            text_anns.append(ann)
        elif isinstance(counts, list) and all(type(n) is int and n >= 0 for n in counts) \
                and sum(counts) == size[0] * size[1]:
            found[id(ann)] = sum(counts[1::2])  # runs alternate background, foreground, ...
        else:
            found[id(ann)] = -1
    if texts:
        good = rle_sums(texts) == np.array(pixels)
        rles = [{"size": a["segmentation"]["size"], "counts": t.encode()}
                for a, t, ok in zip(text_anns, texts, good) if ok]
        # in chunks of 255: pycocotools' area() overflows a uint8 counter on longer lists (numpy 2)
        areas = iter([int(a) for k in range(0, len(rles), 255) for a in mask_utils.area(rles[k:k + 255])])
        for ann, ok in zip(text_anns, good):
            found[id(ann)] = int(next(areas)) if ok else -1
    return found


def _number(value: Any) -> bool:
    """A finite int or float (not a bool, not a string)."""
    try:
        return type(value) in (int, float) and math.isfinite(value)
    except OverflowError:  # an int past float's range
        return False


def in_int64(value: Any) -> bool:
    """An int that fits int64 (image ids become int64 tensors, and the evaluators store them so)."""
    return type(value) is int and -2**63 <= value < 2**63


_REAL = {int, float}


def _polygon_reasons(anns: list[dict[str, Any]], images: dict[int, dict[str, Any]]) -> dict[int, str | None]:
    """``id()`` of each annotation with a polygon segmentation → why it cannot be rasterised, or None.
    Coordinates must be finite numbers within the image widened by its own size on each side: pycocotools
    allocates memory in proportion to a polygon's extent, so one NaN, Infinity or 1e300 would exhaust it. A
    polygon without area, or wholly outside the image, is a zero-area mask. Vectorised over all polygons at once:
    cheap enough for every annotation at load time."""
    reasons: dict[int, str | None] = {}
    flat: list[Any] = []
    counts, owners, sizes, owned = [], [], [], []
    for ann in anns:
        seg = ann.get("segmentation")
        if not isinstance(seg, list):
            continue
        if not seg or not all(isinstance(p, list) for p in seg):
            reasons[id(ann)] = "bad_segmentation"
        elif any(len(p) % 2 or not set(map(type, p)) <= _REAL for p in seg):  # no str, bool or None
            reasons[id(ann)] = "bad_polygon"
        elif any(len(p) < 6 for p in seg):
            reasons[id(ann)] = "polygon_lt_3_points"
        else:
            img = images[ann["image_id"]]
            for poly in seg:
                flat += poly
                counts.append(len(poly) // 2)
                owners.append(len(owned))
            sizes.append((img["width"], img["height"]))
            owned.append(ann)
    if not owned:
        return reasons
    try:
        xy = np.asarray(flat, np.float64).reshape(-1, 2)
    except OverflowError:  # an integer beyond float's range
        xy = np.array([float(v) if abs(v) < 1e308 else np.inf for v in flat], np.float64).reshape(-1, 2)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    size = np.asarray(sizes, np.float64)[owners]  # per polygon: (width, height)
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.logical_and.reduceat(np.isfinite(xy).all(axis=1), starts)
        lo, hi = np.minimum.reduceat(xy, starts), np.maximum.reduceat(xy, starts)
        sane = finite & (lo >= -size).all(axis=1) & (hi <= 2 * size).all(axis=1)
        prev = np.arange(len(xy)) - 1
        prev[starts] = np.r_[starts[1:], len(xy)] - 1  # the first vertex follows the last
        area = np.abs(np.add.reduceat(xy[:, 0] * xy[prev, 1] - xy[:, 1] * xy[prev, 0], starts)) / 2  # shoelace
        touches = (hi > 0).all(axis=1) & (lo < size).all(axis=1)
    firsts = np.r_[0, np.flatnonzero(np.diff(owners)) + 1]  # first polygon of each annotation
    sane = np.logical_and.reduceat(sane, firsts)
    area = np.add.reduceat(np.where(touches, area, 0), firsts)
    for ann, ok, a in zip(owned, sane.tolist(), area.tolist()):
        reasons[id(ann)] = None if ok and a > 0 else "bad_polygon" if not ok else "zero_area_mask"
    return reasons


#: Reasons whose annotations are dropped from the ground truth as well (evaluation cannot read their values);
#: the others stay in it, as COCO's evaluation sees them, and are only left out of the training targets.
MALFORMED = ("bad_value", "bad_polygon", "bad_segmentation")


def annotation_problem(ann: dict[str, Any], img: dict[str, Any], known: set[int], foreground: dict[int, int],
                       polygons: dict[int, str | None]) -> str | None:
    """The reason (a key of REASONS) an annotation of image ``img`` cannot be a training target, or None; for a
    crowd region, only a MALFORMED reason (crowd regions are not targets). ``foreground``: ``_rle_foreground``;
    ``polygons``: ``_polygon_reasons``."""
    crowd = ann.get("iscrowd", 0)
    if crowd not in (0, 1, "0", "1") or type(ann.get("category_id")) is not int \
            or (ann.get("area") is not None and not (_number(ann["area"]) and ann["area"] >= 0)) \
            or (ann.get("bbox") is not None and not (isinstance(ann["bbox"], list) and len(ann["bbox"]) == 4
                                                     and all(_number(v) for v in ann["bbox"]))):
        return "bad_value"
    seg = ann.get("segmentation")
    if isinstance(seg, list):
        reason = polygons[id(ann)]
    elif isinstance(seg, dict):
        pixels = foreground.get(id(ann), -1)
        if "counts" not in seg or pixels < 0 or list(seg["size"]) != [img["height"], img["width"]]:
            reason = "bad_segmentation"
        else:
            reason = None if pixels else "zero_area_mask"
    else:
        reason = "bad_segmentation"
    if int(crowd):
        return reason if reason in MALFORMED else None
    if reason is None and ann["category_id"] not in known:
        reason = "unknown_category"
    if reason is None and ann.get("bbox") is not None and (ann["bbox"][2] <= 0 or ann["bbox"][3] <= 0):
        reason = "zero_area_box"
    if reason is None and ann.get("area") == 0:
        reason = "zero_area_mask"
    return reason


@dataclass
class Screened:
    """Annotations screened by ``screen_annotations``: ``kept`` (all but the MALFORMED, ``iscrowd`` as 0/1),
    ``targets`` (image id → its trainable non-crowd annotations), ``skipped`` (reason → count) and the first
    problem as (annotation, reason), for ``strict`` errors."""

    kept: list[dict[str, Any]]
    targets: dict[int, list[dict[str, Any]]]
    skipped: Counter
    first: tuple[dict[str, Any], str] | None

    @property
    def instance_count(self) -> int:
        return sum(len(t) for t in self.targets.values())


def screen_annotations(images: dict[int, dict[str, Any]], anns: list[dict[str, Any]], known: set[int]
                       ) -> Screened:
    """Check the annotations of ``images`` (id → COCO image entry) once, the same way for ``prepare`` and for
    training: values (category_id, iscrowd, bbox, area, polygon coordinates, RLE runs), then use as a target.
    Annotations of other images are left out of the result."""
    anns = [a for a in anns if a["image_id"] in images]
    foreground, polygons = _rle_foreground(anns), _polygon_reasons(anns, images)
    kept, skipped, first = [], Counter(), None
    targets: dict[int, list[dict[str, Any]]] = {i: [] for i in images}
    for ann in anns:
        reason = annotation_problem(ann, images[ann["image_id"]], known, foreground, polygons)
        if reason not in MALFORMED:
            if ann.get("iscrowd", 0) not in (0, 1):  # "0" is not crowd (pycocotools tests truthiness)
                ann = {**ann, "iscrowd": int(ann["iscrowd"])}
            kept.append(ann)
        if reason is not None:
            skipped[reason] += 1
            first = first or (ann, reason)
        elif not ann.get("iscrowd", 0):
            targets[ann["image_id"]].append(ann)
    return Screened(kept, targets, skipped, first)


class CocoInstanceDataset(torch.utils.data.Dataset):
    """(image, target) pairs of one split, resized to fit ``canvas`` = (W, H) and zero padded to exactly it.

    ``dataset[i]`` is never flipped; ``dataset[(i, seed)]`` is flipped (train only, probability ``hflip``)
    depending on ``seed`` alone, so a sampler that hands out (index, seed) pairs fixes order and flips.
    Crowd annotations are not targets (they stay in ``coco`` for evaluation; their boxes are in each target as
    ``crowd_boxes``). ``resize``/``min_dim``: see ``data.transforms.RESIZE_MODES``; ``annotated_only`` leaves out
    images without annotations; ``skip_empty`` (training, matterport's data_generator) those without a usable
    non-crowd instance. Per-annotation problems are skipped and counted in ``skipped`` (a Counter of
    reasons, see REASONS) or raise with ``strict=True``.
    """

    def __init__(self, root: Path | str, split: str, canvas: tuple[int, int] = (1024, 800), train: bool = False,
                 hflip: float = 0.5, strict: bool = False, max_images: int | None = None, resize: str = "fit",
                 min_dim: int = 800, annotated_only: bool = False, skip_empty: bool = False) -> None:
        max_image_pixels()  # a malformed $EDGERCNN_MAX_IMAGE_PIXELS: one line now, not in a loader worker later
        self.manifest = load_manifest(root)
        self.resize, self.min_dim = resize, int(min_dim)  # see data.transforms.RESIZE_MODES
        self.images_dir, self.annotation_file = split_paths(self.manifest, split)
        self.split, self.canvas, self.train, self.hflip = split, (int(canvas[0]), int(canvas[1])), train, hflip
        self.classes: list[str] = list(self.manifest["classes"])
        cat_ids: list[int] = self.manifest["category_ids"]
        self.label_to_cat_id = {i + 1: c for i, c in enumerate(cat_ids)}
        self.cat_id_to_label = {c: i + 1 for i, c in enumerate(cat_ids)}
        if not self.images_dir.is_dir():
            raise EdgeRCNNError(f"{self.images_dir}: images folder of split {split!r} not found (named in "
                                f"{Path(self.manifest['root']) / 'manifest.json'}); re-run edgercnn prepare")
        self.coco = _load_coco(self.annotation_file)
        self.ids: list[int] = sorted(self.coco.getImgIds())
        if annotated_only:  # images with at least one annotation, crowd included (matterport's COCO evaluation)
            self.ids = [i for i in self.ids if self.coco.imgToAnns.get(i)]
        if max_images is not None:
            self.ids = self.ids[: max(0, int(max_images))]
        own = [a for i in self.ids for a in self.coco.imgToAnns.get(i, [])]
        screened = screen_annotations({i: self.coco.imgs[i] for i in self.ids}, own, set(cat_ids))
        if strict and screened.first:
            ann, reason = screened.first
            raise EdgeRCNNError(f"{self.annotation_file}: annotation {ann['id']} (image {ann['image_id']}) has "
                                f"{REASONS[reason]}; fix the annotation, or drop --strict to skip such annotations")
        if len(screened.kept) != len(own) or any(a is not b for a, b in zip(screened.kept, own)):
            # values evaluation cannot read leave the ground truth too; iscrowd "0"/"1" become 0/1
            ids = set(self.ids)
            others = [a for a in self.coco.dataset["annotations"] if a["image_id"] not in ids]
            self.coco.dataset = {**self.coco.dataset, "annotations": others + screened.kept}
            with contextlib.redirect_stdout(io.StringIO()):
                self.coco.createIndex()
        self.skipped: Counter[str] = screened.skipped
        self._targets: dict[int, list[dict[str, Any]]] = screened.targets
        self.instance_count = screened.instance_count  # training targets, all images
        if skip_empty:  # config skip_empty_images: matterport skips images without a non-crowd instance
            self.ids = [i for i in self.ids if self._targets[i]]
        self._transforms: dict[tuple[bool, int, int], Any] = {}  # (flip, w, h) → Compose; fit: one per flip

    def __len__(self) -> int:
        return len(self.ids)

    def flips(self, sample_seed: int | None) -> bool:
        """Whether the sample with ``sample_seed`` is flipped (a function of the seed alone)."""
        return self.train and sample_seed is not None and random.Random(sample_seed).random() < self.hflip

    def _transform(self, flip: bool, width: int, height: int) -> Any:
        key = (flip, width, height) if self.resize == "square" else (flip, 0, 0)
        if key not in self._transforms:
            self._transforms[key] = build_transforms(self.canvas, flip=flip, resize=self.resize,
                                                     image_size=(width, height), min_dim=self.min_dim)
        return self._transforms[key]

    def _read_image(self, info: dict[str, Any]) -> np.ndarray:
        path = image_path(self.images_dir, info["file_name"], str(self.annotation_file))
        fix = "restore it or re-run edgercnn prepare for this dataset"
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise EdgeRCNNError(f"{path}: image file not found (listed in {self.annotation_file}); {fix}") from None
        except OSError as exc:
            raise EdgeRCNNError(f"{path}: cannot read the image ({exc.strerror}); {fix}") from None
        header_size(data, path)  # over the pixel limit: refused before decoding
        image = decode_image(data)
        if image is None:
            raise EdgeRCNNError(f"{path}: cannot decode the image (corrupt or truncated); {fix}")
        if image.shape[:2] != (info["height"], info["width"]):
            raise EdgeRCNNError(f"{path}: image is {image.shape[1]}x{image.shape[0]}{orientation_note(data)} but "
                                f"{self.annotation_file} says {info['width']}x{info['height']}; {fix}")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def image(self, img_id: int) -> np.ndarray:
        """The original image [H, W, 3] uint8 RGB of ``img_id``, checked (pixel limit, complete, size as listed)."""
        return self._read_image(self.coco.imgs[img_id])

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        index, seed = (key if isinstance(key, tuple) else (key, None))
        img_id = self.ids[index]
        info = self.coco.imgs[img_id]
        image = self._read_image(info)
        anns = self._targets[img_id]
        labels = np.array([self.cat_id_to_label[a["category_id"]] for a in anns], dtype=np.int64)
        transform = self._transform(self.flips(seed), info["width"], info["height"])
        if anns:
            masks = np.stack([self.coco.annToMask(a) for a in anns])
            out = transform(image=image, masks=masks)
            masks = np.asarray(out["masks"], dtype=np.uint8)
        else:  # albumentations cannot stack zero masks
            out = transform(image=image)
            masks = np.zeros((0, self.canvas[1], self.canvas[0]), np.uint8)
        canvas_img = out["image"]
        if canvas_img.shape[:2] != (self.canvas[1], self.canvas[0]):  # guard against rounding surprises
            raise EdgeRCNNError(f"canvas {self.canvas}: transform produced {canvas_img.shape[1]}x"
                                f"{canvas_img.shape[0]}; report this as a bug")
        boxes, keep = masks_to_boxes(masks)  # boxes from the transformed masks: always consistent
        scale, pad = canvas_geometry(info["width"], info["height"], self.canvas, self.resize, self.min_dim)
        crowd = [a["bbox"] for a in self.coco.imgToAnns.get(img_id, []) if a.get("iscrowd", 0)
                 and a.get("category_id") in self.cat_id_to_label and len(a.get("bbox") or ()) == 4]
        crowd_xyxy = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in crowd], dtype=torch.float32).reshape(-1, 4)
        target = {
            "boxes": torch.from_numpy(boxes[keep]),
            "labels": torch.from_numpy(labels[keep]),
            "masks": torch.from_numpy(np.ascontiguousarray(masks[keep])),
            "image_id": torch.tensor(img_id, dtype=torch.int64),
            "scale": torch.tensor(scale, dtype=torch.float32),
            "pad": torch.tensor(pad, dtype=torch.int64),  # (top, left) offsets of the image on the canvas
            "orig_size": torch.tensor([info["height"], info["width"]], dtype=torch.int64),
            # crowd regions (not targets) on the canvas: RoIs overlapping them may be left out of the negatives
            "crowd_boxes": boxes_to_canvas(crowd_xyxy, scale, pad, info["width"], self.flips(seed)),
        }
        tensor = torch.from_numpy(np.ascontiguousarray(canvas_img.transpose(2, 0, 1))).float().div_(255)
        return tensor, target


def image_path(images_dir: Path, file_name: str, where: str) -> Path:
    """``images_dir/file_name`` (Windows separators read as /), refused in one line when it resolves outside
    ``images_dir`` (a symlink pointing elsewhere; ``check_file_name`` checks the name itself)."""
    path = images_dir / file_name.replace("\\", "/")
    if not path.resolve().is_relative_to(images_dir.resolve()):
        raise EdgeRCNNError(f"{where}: {path} is a link to {path.resolve()}, outside the images folder "
                            f"{images_dir}; copy the file into the folder instead")
    return path


#: EXIF orientation: images are decoded as viewers and labelling tools (CVAT, Label Studio, Roboflow) show them,
#: rotated by their EXIF orientation tag, as OpenCV's imread, detectron2 and mmdetection read them; COCO's own
#: images carry no rotation, so they are unaffected.
ORIENTATION_TAG = 0x0112


def decode_image(data: bytes) -> np.ndarray | None:
    """BGR uint8 [H, W, 3] of image file bytes, EXIF orientation applied (see ORIENTATION_TAG); None when the
    bytes are empty, truncated (``is_truncated``) or not an image OpenCV decodes."""
    if not data or is_truncated(data):  # cv2 decodes a cut-off file, grey where the data ended
        return None
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        return None


def orientation_note(data: bytes) -> str:
    """" after its EXIF orientation N" for an image with a rotating orientation tag (2..8), else "": for the
    message when its size differs from the annotated one (annotations of the stored, unrotated pixels)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            tag = im.getexif().get(ORIENTATION_TAG)
    except Exception:  # noqa: BLE001 - only a hint for a message
        return ""
    if tag not in (2, 3, 4, 5, 6, 7, 8):
        return ""
    return (f" after its EXIF orientation {tag} (edgercnn shows images as viewers do; annotations of the "
            "unrotated pixels need the tag removed, e.g. exiftool -Orientation= FILE)")


def is_truncated(data: bytes) -> bool:
    """True for PNG bytes without the IEND chunk, or JPEG bytes whose last EOI marker precedes a start-of-scan
    (the EOI of an EXIF thumbnail); other formats are left to the decoder. Reads only the file's tail when intact."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data.rfind(b"IEND\xaeB`\x82") < 0
    if data.startswith(b"\xff\xd8\xff"):
        eoi = data.rfind(b"\xff\xd9")
        return eoi < 0 or data.find(b"\xff\xda", eoi) >= 0
    return False


def masks_to_boxes(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """xyxy float32 boxes [K, 4] around binary masks [K, H, W] (pixel edges: a 1-pixel mask is 1×1) and the
    boolean [K] of non-empty masks."""
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    keep = rows.any(axis=1)
    boxes = np.zeros((len(masks), 4), np.float32)
    for k in np.flatnonzero(keep):
        ys, xs = np.flatnonzero(rows[k]), np.flatnonzero(cols[k])
        boxes[k] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return boxes, keep


def collate(batch: list[tuple[torch.Tensor, dict]]) -> tuple[list[torch.Tensor], list[dict]]:
    """DataLoader collate for detection: (list of images, list of targets)."""
    images, targets = zip(*batch) if batch else ((), ())
    return list(images), list(targets)


def warn_if_empty(dataset: CocoInstanceDataset, console: Any) -> bool:
    """Print (on a rich Console) a loud warning when the split has images but no usable instances; True if so."""
    if len(dataset) == 0 or dataset.instance_count:
        return False
    skipped = sum(dataset.skipped.values())
    why = f"{skipped} annotations were skipped as unusable" if skipped else "it has no non-crowd annotations"
    console.print(f"[bold red]warning:[/] {dataset.annotation_file}: split {dataset.split!r} has {len(dataset)} "
                  f"images but no instances to learn from ({why}); fix the annotations or re-run edgercnn prepare",
                  highlight=False)
    return True


def report_skipped(dataset: CocoInstanceDataset, console: Any) -> None:
    """Print (on a rich Console) how many annotations were skipped and why; ``--strict`` makes them fatal."""
    if sum(dataset.skipped.values()):
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(dataset.skipped.items()))
        console.print(f"[yellow]{dataset.annotation_file}: skipped {sum(dataset.skipped.values())} annotations "
                      f"({reasons}); pass --strict to make this an error", highlight=False)
