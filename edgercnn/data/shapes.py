"""A deterministic synthetic instance-segmentation dataset ("shapes"), the embedded default.

After the "shapes" sample of matterport's Mask R-CNN, made harder so that boundaries matter: curved and sharp
contours (circle, triangle, square, star), varied size/aspect/rotation, occlusion (an occluded object's mask is
what stays visible), textured noisy backgrounds and textured objects. Every image is drawn from its own seed
``(seed, split, index)``, so image *i* does not depend on ``--train``/``--val``. Same options → byte-identical
files (PNG, compact COCO JSON with RLE masks, and a manifest without a creation time).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from edgercnn.data.coco_json import mask_annotation, write_coco_json
from edgercnn.data.dataset import check_pixels
from edgercnn.data.manifest import MANIFEST, manifest_name, os_errors, write_manifest
from edgercnn.core.commands import format_command
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.core.io import atomic_write, atomic_write_text

CLASSES = ["circle", "triangle", "square", "star"]
SPLITS = ("train", "val")
PARTIAL = ".shapes-unfinished.json"  # present while a run is writing: marks the folder as this preparer's
_SPLIT_KEY = {"train": 1, "val": 2}
_SOURCE = "synthetic (edgercnn.data.shapes)"
_DESCRIPTION = "edgercnn synthetic shapes"
_OWN_IMAGE = re.compile(r"[0-9]{6}\.png")
_PNG_END = b"\0\0\0\0IEND\xaeB`\x82"  # the IEND chunk: length 0, type, CRC
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
    """Write the shapes dataset to ``out``; returns ``{"out", "skipped", "repaired", "splits": {split: counts}}``.

    An intact dataset made with the same options is left alone (``skipped``); missing or damaged files, or an
    unfinished earlier run, are written again (``repaired`` counts the damaged files). A shapes dataset with other
    options is an error unless ``force``, which deletes only the files this preparer made. A folder holding
    anything else (another dataset's manifest, ``images/`` without a shapes manifest) is always refused.
    """
    out = Path(out)
    if min(train, val) < 0 or size < 32 or max_objects < 1:
        raise EdgeRCNNError("prepare shapes: need --train/--val >= 0, --size >= 32 and --max-objects >= 1")
    check_pixels(size, size, f"prepare shapes --size {size}")  # the images it would draw
    options = _options(train, val, size, seed, max_objects)
    with os_errors(out):
        previous = _previous(out)
        repaired = 0
        if previous is not None:
            complete, old = previous
            if old != options and not force:
                where = out / (MANIFEST if complete else PARTIAL)
                raise EdgeRCNNError(f"{where}: a shapes dataset with other options exists ({old}); use --force to "
                                    "replace it or choose another --out")
            if complete and old == options and not force:
                repaired = len(_damaged(out, options))
                if not repaired:
                    return {"out": str(out), "skipped": True, "repaired": 0, "splits": _counts(out)}
        atomic_write_text(out / PARTIAL, json.dumps({"options": options}) + "\n")  # claims the folder first
        if previous is not None and (force or previous[1] != options):
            _remove_own_files(out, previous[1])
        if _own_manifest(out) is not None:
            (out / MANIFEST).unlink()  # the dataset is incomplete until it is back
        _write(out, options)
        (out / PARTIAL).unlink()
    return {"out": str(out), "skipped": False, "repaired": repaired, "splits": _counts(out)}


def _write(out: Path, options: dict[str, int]) -> None:
    categories = [{"id": i + 1, "name": c, "supercategory": "shape"} for i, c in enumerate(CLASSES)]
    seed, size, max_objects = options["seed"], options["size"], options["max_objects"]
    splits = {}
    for split in SPLITS:
        images, annotations = [], []
        img_dir = out / "images" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        for i in range(options[split]):
            rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_KEY[split], i]))
            image, instances = _render_image(size, rng, max_objects)
            name = _image_name(i)
            atomic_write(img_dir / name, lambda f, im=image: Image.fromarray(im).save(f, format="PNG"), mode="wb")
            images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
            for cls, mask in instances:
                ann = mask_annotation(mask, CLASSES.index(cls) + 1)
                annotations.append({"id": len(annotations) + 1, "image_id": i + 1, **ann})
        info = {"description": _DESCRIPTION, "split": split, "options": options}
        write_coco_json(out / "annotations" / f"instances_{split}.json", images, annotations, categories, info)
        splits[split] = {"images": f"images/{split}", "annotations": f"annotations/instances_{split}.json"}

    # the command that re-creates these files from their options, however they were made (byte-identical
    # datasets: the one exception to core.commands.recorded_command)
    command = format_command(["edgercnn", "prepare", "shapes",
                              *(x for k, v in options.items() for x in (f"--{k.replace('_', '-')}", v))])
    write_manifest(out, name="shapes", classes=CLASSES, category_ids=[c["id"] for c in categories], splits=splits,
                   source=_SOURCE, command=command, created=False, extra={"options": options})


def _image_name(i: int) -> str:
    return f"{i + 1:06d}.png"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _own_manifest(out: Path) -> dict[str, Any] | None:
    """``out``'s manifest when this preparer wrote it, else None."""
    manifest = _read_json(out / MANIFEST)
    if (isinstance(manifest, dict) and manifest.get("name") == "shapes" and manifest.get("source") == _SOURCE
            and isinstance(manifest.get("options"), dict)):
        return manifest
    return None


def _previous(out: Path) -> tuple[bool, Any] | None:
    """(complete, options) of the shapes dataset already in ``out``; None for a new folder (or one without
    dataset files). Anything else in the way is a one-line error (never replaced, not even with --force)."""
    if out.exists() and not out.is_dir():
        raise EdgeRCNNError(f"{out}: is a file, not a folder; choose another --out")
    refuse = "nothing was changed; choose another --out for the shapes dataset"
    if (out / PARTIAL).exists():  # an unfinished run of this preparer
        marker = _read_json(out / PARTIAL)
        return False, marker.get("options") if isinstance(marker, dict) else None
    if (out / MANIFEST).exists():
        manifest = _own_manifest(out)
        if manifest is None:
            name = manifest_name(out)
            what = f"a {name!r} dataset" if name else "an unreadable manifest"
            raise EdgeRCNNError(f"{out / MANIFEST}: {what}, not one made by prepare shapes; {refuse}")
        return True, manifest["options"]
    for sub in ("images", "annotations"):
        if (out / sub).exists():
            raise EdgeRCNNError(f"{out / sub}: exists but {out} has no shapes {MANIFEST}; {refuse}")
    return None


def _remove_own_files(out: Path, options: Any) -> None:
    """Delete what an earlier run with ``options`` wrote: its manifest, its annotation JSONs and the images they
    list (or its options imply); other files, and folders that are not empty then, stay."""
    for split in SPLITS:
        names = set()
        if isinstance(options, dict) and isinstance(options.get(split), int):
            names |= {_image_name(i) for i in range(options[split])}
        ann = out / "annotations" / f"instances_{split}.json"
        data = _read_json(ann)
        if isinstance(data, dict) and isinstance(data.get("info"), dict) \
                and data["info"].get("description") == _DESCRIPTION:
            names |= {e.get("file_name") for e in data.get("images", []) if isinstance(e, dict)}
            ann.unlink()
        for name in names:
            if isinstance(name, str) and _OWN_IMAGE.fullmatch(name):
                (out / "images" / split / name).unlink(missing_ok=True)
    if _own_manifest(out) is not None:
        (out / MANIFEST).unlink()
    for folder in (out / "images" / "train", out / "images" / "val", out / "images", out / "annotations"):
        try:
            folder.rmdir()
        except OSError:  # missing, or holds files this preparer did not make
            pass


def _damaged(out: Path, options: dict[str, int]) -> list[str]:
    """Files of a finished dataset that are missing or damaged: unreadable annotation JSONs, listed images that
    are missing, empty or cut short (no PNG end chunk). Cheap: a stat and a 12-byte read per image."""
    bad = []
    for split in SPLITS:
        ann = out / "annotations" / f"instances_{split}.json"
        data = _read_json(ann)
        try:
            names = [e["file_name"] for e in data["images"]]
        except (TypeError, KeyError):
            bad.append(str(ann))
            continue
        if len(names) != options[split]:
            bad.append(str(ann))
        bad += [str(out / "images" / split / n) for n in names if not _png_complete(out / "images" / split / n)]
    return bad


def _png_complete(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            if handle.seek(0, 2) < 8 + 25 + 12:  # signature, IHDR, IEND
                return False
            handle.seek(-12, 2)
            return handle.read(12) == _PNG_END
    except OSError:
        return False


def _counts(out: Path) -> dict[str, dict[str, int]]:
    """Images and instances per split, read back from the written JSON."""
    counts = {}
    for split in SPLITS:
        path = out / "annotations" / f"instances_{split}.json"
        if path.is_file():
            data = json.loads(path.read_text())
            counts[split] = {"images": len(data["images"]), "instances": len(data["annotations"])}
    return counts
