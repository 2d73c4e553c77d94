"""A deterministic synthetic instance-segmentation dataset ("shapes"), the embedded default.

After the "shapes" sample of matterport's Mask R-CNN, made harder so that boundaries matter: curved and sharp
contours (circle, triangle, square, star), varied size/aspect/rotation, occlusion (an occluded object's mask is
what stays visible), textured noisy backgrounds and textured objects. Every image is drawn from its own seed
``(seed, split, index)``, so image *i* does not depend on ``--train``/``--val``. Same options → byte-identical
files (PNG, compact COCO JSON with RLE masks, and a manifest without a creation time).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from edgercnn.data.coco_json import mask_annotation, write_coco_json
from edgercnn.data.manifest import MANIFEST, write_manifest
from edgercnn.errors import EdgeRCNNError
from edgercnn.io import atomic_write

CLASSES = ["circle", "triangle", "square", "star"]
_SPLIT_KEY = {"train": 1, "val": 2}
_SHIFT = 4  # cv2.fillPoly sub-pixel bits


def _outline(cls: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-radius outline [N, 2] of a class (before aspect, rotation and placement)."""
    if cls == "circle":
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], 1)
    if cls == "triangle":
        t = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        return np.stack([np.cos(t), np.sin(t)], 1)
    if cls == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float) * 0.75
    # star: 5 points, inner radius varies so the concave corners differ between instances
    inner = rng.uniform(0.38, 0.55)
    t = -np.pi / 2 + np.arange(10) * np.pi / 5
    r = np.where(np.arange(10) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth colour blobs + optional stripes + pixel noise, uint8 [size, size, 3]."""
    low = rng.uniform(40, 215, size=(4, 4, 3)).astype(np.float32)
    img = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.5:  # stripes of random direction and period
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        a = rng.uniform(0, np.pi)
        period = rng.uniform(6, 20) * size / 128
        img += (20 * np.sin((xx * np.cos(a) + yy * np.sin(a)) * 2 * np.pi / period))[..., None]
    img += rng.normal(0, 12, size=img.shape).astype(np.float32)
    return img


def _render_image(size: int, rng: np.random.Generator, max_objects: int) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """One image and its visible (class, mask) instances, occluders drawn last."""
    img = _background(size, rng)
    masks: list[np.ndarray] = []
    labels: list[str] = []
    min_area = max(20, int(0.002 * size * size))
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            cls = CLASSES[int(rng.integers(len(CLASSES)))]
            radius = rng.uniform(0.08, 0.24) * size
            aspect = rng.uniform(0.75, 1.33)
            angle = rng.uniform(0, 2 * np.pi)
            centre = rng.uniform(0.1 * size, 0.9 * size, size=2)
            pts = _outline(cls, rng) * radius * np.array([aspect, 1 / aspect])
            rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            pts = pts @ rot.T + centre
            new = np.zeros((size, size), np.uint8)
            cv2.fillPoly(new, [np.round(pts * (1 << _SHIFT)).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)
            if new.sum() < min_area:
                continue
            # accept only if every earlier object keeps >= half of its area and min_area (no unlabelled bits)
            kept = [m & (1 - new) for m in masks]
            if all(k.sum() >= max(min_area, 0.5 * m.sum()) for k, m in zip(kept, masks)):
                masks = kept + [new]
                labels.append(cls)
                under = img[new.astype(bool)].mean(0)
                for _c in range(10):  # keep the object visibly different from what it covers
                    colour = rng.uniform(0, 255, size=3)
                    if np.abs(colour - under).mean() > 50:
                        break
                # object texture: a gradient plus noise, so colour alone is not the whole cue
                grad = np.linspace(-25, 25, size, dtype=np.float32)[None, :, None] * rng.choice([-1, 1])
                tex = colour[None, None, :] + grad + rng.normal(0, 8, size=(size, size, 3))
                img = np.where(new[..., None].astype(bool), tex, img)
                break
    image = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return image, list(zip(labels, masks))


def _options(train: int, val: int, size: int, seed: int, max_objects: int) -> dict[str, int]:
    return {"train": train, "val": val, "size": size, "seed": seed, "max_objects": max_objects}


def make_shapes(
    out: Path | str = "data/shapes",
    *,
    train: int = 400,
    val: int = 100,
    size: int = 128,
    seed: int = 0,
    max_objects: int = 4,
    force: bool = False,
) -> dict[str, Any]:
    """Write the shapes dataset to ``out``; returns a summary ``{"out", "skipped", "splits": {split: counts}}``.

    An existing complete dataset made with the same options is left alone (``skipped=True``); one made with other
    options is an error unless ``force`` (which replaces this dataset's own files only).
    """
    out = Path(out)
    if min(train, val) < 0 or size < 32 or max_objects < 1:
        raise EdgeRCNNError("prepare shapes: need --train/--val >= 0, --size >= 32 and --max-objects >= 1")
    options = _options(train, val, size, seed, max_objects)
    manifest_path = out / MANIFEST
    if manifest_path.is_file() and not force:
        try:
            old = json.loads(manifest_path.read_text()).get("options")
        except json.JSONDecodeError:
            old = None
        if old == options:
            return {"out": str(out), "skipped": True, "splits": _counts(out)}
        raise EdgeRCNNError(f"{manifest_path}: a dataset with other options exists; use --force to replace it "
                            "or choose another --out")
    if force:
        manifest_path.unlink(missing_ok=True)  # incomplete until the manifest is back
        for sub in ("images", "annotations"):
            shutil.rmtree(out / sub, ignore_errors=True)

    categories = [{"id": i + 1, "name": c, "supercategory": "shape"} for i, c in enumerate(CLASSES)]
    splits = {}
    for split, count in (("train", train), ("val", val)):
        images, annotations = [], []
        img_dir = out / "images" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_KEY[split], i]))
            image, instances = _render_image(size, rng, max_objects)
            name = f"{i + 1:06d}.png"
            atomic_write(img_dir / name, lambda f, im=image: Image.fromarray(im).save(f, format="PNG"), mode="wb")
            images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
            for cls, mask in instances:
                ann = mask_annotation(mask, CLASSES.index(cls) + 1)
                annotations.append({"id": len(annotations) + 1, "image_id": i + 1, **ann})
        info = {"description": "edgercnn synthetic shapes", "split": split, "options": options}
        write_coco_json(out / "annotations" / f"instances_{split}.json", images, annotations, categories, info)
        splits[split] = {"images": f"images/{split}", "annotations": f"annotations/instances_{split}.json"}

    command = "edgercnn prepare shapes " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in options.items())
    write_manifest(out, name="shapes", classes=CLASSES, category_ids=[c["id"] for c in categories], splits=splits,
                   source="synthetic (edgercnn.data.shapes)", command=command, created=False,
                   extra={"options": options})
    return {"out": str(out), "skipped": False, "splits": _counts(out)}


def _counts(out: Path) -> dict[str, dict[str, int]]:
    """Images and instances per split, read back from the written JSON."""
    counts = {}
    for split in ("train", "val"):
        path = out / "annotations" / f"instances_{split}.json"
        if path.is_file():
            data = json.loads(path.read_text())
            counts[split] = {"images": len(data["images"]), "instances": len(data["annotations"])}
    return counts
