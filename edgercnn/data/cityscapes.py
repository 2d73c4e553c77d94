"""Cityscapes: download (credentials from the environment) and conversion of gtFine instances to COCO JSON.

Instance ids follow cityscapesscripts: a pixel value v >= 1000 is instance v % 1000 of label v // 1000; a value
v < 1000 is label v itself, which for an instance class marks a group region (kept as ``iscrowd=1``, or dropped as
the authors' code did: ``CROWD_MODES``). ``area`` is the pixel count, or the box area as the authors' evaluation
stored it (``AREA_MODES``; it decides COCO's small/medium/large ranges).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from cityscapesscripts.helpers.labels import labels as CS_LABELS, name2label

from edgercnn.data.coco_json import mask_annotation, write_coco_json
from edgercnn.data.dataset import header_size
from edgercnn.data.download import download_file, extract_zip, requests_open
from edgercnn.data.manifest import check_owner, os_errors, relative_to, write_manifest
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.core.io import atomic_write_text

EVAL_CLASSES = [l.name for l in CS_LABELS if l.hasInstances and not l.ignoreInEval]  # the 8 evaluated classes
EXTRA_CLASSES = ["caravan", "trailer"]  # instance classes the authors' code also trained on
OFFICIAL_COUNTS = {"train": 2975, "val": 500}
SPLITS = ("train", "val")
CITYSCAPES_URL = "https://www.cityscapes-dataset.com"
PACKAGES = ("gtFine_trainvaltest.zip", "leftImg8bit_trainvaltest.zip")
#: Group regions: kept as iscrowd=1 (COCO's handling), or dropped (authors' CityscapesDataset.read_annotation_file
#: keeps only pixel values >= 1000).
CROWD_MODES = ("keep", "drop")
#: COCO ``area``: pixels of the mask, or width × height of its box (authors' cityscapes.py build_coco_results).
AREA_MODES = ("mask", "box")
_GT = {"instanceIds": "_gtFine_instanceIds.png", "polygons": "_gtFine_polygons.json"}


def class_names(extra_classes: bool = False) -> list[str]:
    """Selected class names in Cityscapes label-id order."""
    chosen = set(EVAL_CLASSES) | (set(EXTRA_CLASSES) if extra_classes else set())
    return [l.name for l in sorted(CS_LABELS, key=lambda l: l.id) if l.name in chosen and l.id >= 0]


def find_frames(root: Path, split: str, masks: str = "instanceIds") -> list[str]:
    """Sorted frame stems (``city/city_seq_frame``) of a split that have the chosen ground-truth file."""
    suffix = _GT[masks]
    gt_dir = root / "gtFine" / split
    return sorted(p.relative_to(gt_dir).as_posix()[: -len(suffix)] for p in gt_dir.glob(f"*/*{suffix}"))


def _instance_image(gt_path: Path, masks: str) -> np.ndarray:
    """The instance-id image [H, W] int32, read from the PNG or rasterised from the polygons by cityscapesscripts."""
    try:
        if masks == "instanceIds":
            header_size(gt_path, gt_path)  # over the pixel limit: refused before decoding
            with Image.open(gt_path) as im:
                return np.array(im).astype(np.int32)
        from cityscapesscripts.helpers.annotation import Annotation
        from cityscapesscripts.preparation.json2instanceImg import createInstanceImage

        ann = Annotation()
        ann.fromJsonFile(str(gt_path))
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise EdgeRCNNError(f"{gt_path}: cannot read ({type(exc).__name__}: {exc}); restore the file from the "
                            "official gtFine archive or use --download") from None
    for obj in ann.objects:  # createInstanceImage exits the process on an unknown label: check first
        name = obj.label[: -len("group")] if obj.label not in name2label and obj.label.endswith("group") else obj.label
        if name not in name2label:
            raise EdgeRCNNError(f"{gt_path}: unknown label {obj.label!r}; fix the label or use --masks instanceIds")
    return np.array(createInstanceImage(ann, "ids")).astype(np.int32)


def convert_frame(job: tuple[str, str, str, str, tuple[int, ...], int, str, str]) -> dict[str, Any]:
    """One frame → its image entry and annotations (no ids yet) plus counts. Runs in worker processes."""
    root, split, stem, masks, cat_ids, min_area, crowd_mode, area_mode = job
    root_p = Path(root)
    gt_path = root_p / "gtFine" / split / (stem + _GT[masks])
    img_rel = stem + "_leftImg8bit.png"
    img_path = root_p / "leftImg8bit" / split / img_rel
    if not img_path.is_file():
        raise EdgeRCNNError(f"{img_path}: image missing for {gt_path.name}; extract leftImg8bit_trainvaltest.zip "
                            "into the root or use --download")
    ids = _instance_image(gt_path, masks)
    height, width = ids.shape
    try:
        size = header_size(img_path, img_path)  # over the pixel limit: refused before decoding
        with Image.open(img_path) as im:  # complete: every chunk there, checksums right (nothing decoded)
            size = im.size
            im.verify()
    except (OSError, SyntaxError, ValueError) as exc:
        raise EdgeRCNNError(f"{img_path}: cannot read image, truncated or corrupt ({exc}); restore it from "
                            "leftImg8bit_trainvaltest.zip") from None
    if size != (width, height):
        raise EdgeRCNNError(f"{img_path}: image is {size[0]}x{size[1]} but {gt_path.name} is {width}x{height}; "
                            "restore matching files from the official archives")
    anns, small, other = [], 0, 0
    wanted = set(cat_ids)
    for value in np.unique(ids):
        label_id = int(value) // 1000 if value >= 1000 else int(value)
        crowd = value < 1000
        if crowd and not (0 <= label_id < 256 and _has_instances(label_id)):
            continue  # a stuff class (road, sky, ...), not an instance region
        if crowd and crowd_mode == "drop":
            continue
        if label_id not in wanted:
            other += 1
            continue
        mask = ids == value
        if mask.sum() < min_area:
            small += 1
            continue
        ann = mask_annotation(mask, label_id, iscrowd=int(crowd))
        if area_mode == "box":
            ann["area"] = float(ann["bbox"][2] * ann["bbox"][3])
        anns.append(ann)
    image = {"file_name": img_rel, "width": int(width), "height": int(height)}
    return {"image": image, "annotations": anns, "small": small, "other": other}


def _has_instances(label_id: int) -> bool:
    return any(l.id == label_id and l.hasInstances for l in CS_LABELS)


def _fingerprint(root: Path, split: str, stems: list[str], options: dict[str, Any]) -> str:
    """Hash of the options and every input file's name, size and mtime: equal → the output is up to date."""
    digest = hashlib.sha1(json.dumps(options, sort_keys=True).encode())
    for stem in stems:
        for path in (root / "gtFine" / split / (stem + _GT[options["masks"]]),
                     root / "leftImg8bit" / split / (stem + "_leftImg8bit.png")):
            st = path.stat() if path.exists() else None
            digest.update(f"{path}|{st and st.st_size}|{st and st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def convert_cityscapes(root: Path | str, *, out: Path | str | None = None, extra_classes: bool = False,
                       masks: str = "instanceIds", min_area: int = 0, workers: int | None = None,
                       force: bool = False, progress: bool = True, crowd: str = "keep", area: str = "mask"
                       ) -> dict[str, Any]:
    """Convert gtFine train/val under ``root`` to ``out/edgercnn/instances_<split>.json`` + ``out/manifest.json``.

    ``masks``: "instanceIds" (exact, from ``*_gtFine_instanceIds.png``) or "polygons" (rasterised from
    ``*_gtFine_polygons.json`` by cityscapesscripts). Instances smaller than ``min_area`` pixels are dropped and
    counted. Splits without frames are reported in ``missing``; a split whose inputs and options are unchanged
    is not converted again (unless ``force``). ``crowd`` and ``area``: see ``CROWD_MODES``, ``AREA_MODES``. The
    manifest records each split's gtFine folder (``gtFine``), which the official Cityscapes metric reads. Returns a summary dict (see the CLI for how it is shown).
    """
    root = Path(root)
    out = Path(out) if out is not None else root
    if masks not in _GT:
        raise EdgeRCNNError(f"--masks {masks}: choose instanceIds or polygons")
    if crowd not in CROWD_MODES or area not in AREA_MODES:
        raise EdgeRCNNError(f"--crowd {crowd} --area {area}: choose crowd from {CROWD_MODES}, area from {AREA_MODES}")
    if not (root / "gtFine").is_dir() or not (root / "leftImg8bit").is_dir():
        raise EdgeRCNNError(f"{root}: no gtFine/ and leftImg8bit/ folders; point --root at the Cityscapes folder "
                            "holding them, or add --download")
    check_owner(out, "cityscapes")
    with os_errors(out):
        (out / "edgercnn").mkdir(parents=True, exist_ok=True)  # an unwritable --out fails before converting
        return _convert(root, out, extra_classes, masks, min_area, workers, force, progress, crowd, area)


def _convert(root: Path, out: Path, extra_classes: bool, masks: str, min_area: int, workers: int | None,
             force: bool, progress: bool, crowd: str = "keep", area: str = "mask") -> dict[str, Any]:
    classes = class_names(extra_classes)
    cat_ids = tuple(name2label[c].id for c in classes)
    categories = [{"id": name2label[c].id, "name": c, "supercategory": name2label[c].category} for c in classes]
    options = {"masks": masks, "classes": classes, "min_area": min_area, "crowd": crowd, "area": area}
    summary: dict[str, Any] = {"out": str(out), "splits": {}, "missing": [], "warnings": []}
    manifest_splits = {}
    workers = workers or os.cpu_count() or 1
    for split in SPLITS:
        stems = find_frames(root, split, masks)
        if not stems:
            summary["missing"].append(split)
            continue
        json_path = out / "edgercnn" / f"instances_{split}.json"
        stamp_path = json_path.with_suffix(".stamp.json")
        fingerprint = _fingerprint(root, split, stems, options)
        if not force and _up_to_date(json_path, stamp_path, fingerprint):
            stats = {**json.loads(stamp_path.read_text())["stats"], "up_to_date": True}
        else:
            stats = _convert_split(root, split, stems, masks, cat_ids, min_area, workers, progress, json_path,
                                   categories, options, classes)
            atomic_write_text(stamp_path, json.dumps({"fingerprint": fingerprint, "stats": stats,
                                                      "json_size": json_path.stat().st_size}) + "\n")
        summary["splits"][split] = stats
        if stats["images"] != OFFICIAL_COUNTS[split]:
            summary["warnings"].append(f"{split}: {stats['images']} images, the official split has "
                                       f"{OFFICIAL_COUNTS[split]}")
        manifest_splits[split] = {"images": relative_to(root / "leftImg8bit" / split, out),
                                  "annotations": f"edgercnn/instances_{split}.json",
                                  "gtFine": relative_to(root / "gtFine" / split, out)}
    if not manifest_splits:
        raise EdgeRCNNError(f"{root}: no frames with *{_GT[masks]} under gtFine/train or gtFine/val; check --root "
                            "(and --masks), or add --download")
    write_manifest(out, name="cityscapes", classes=classes, category_ids=list(cat_ids), splits=manifest_splits,
                   source={"root": str(root.resolve()), **options})
    return summary


def _up_to_date(json_path: Path, stamp_path: Path, fingerprint: str) -> bool:
    """Whether the split's JSON was made from these inputs and options and is still the file that was written
    (same size; stamps from before sizes were recorded are trusted)."""
    try:
        stamp = json.loads(stamp_path.read_text())
        size = json_path.stat().st_size
    except (OSError, ValueError):
        return False
    return (isinstance(stamp, dict) and stamp.get("fingerprint") == fingerprint and isinstance(stamp.get("stats"), dict)
            and stamp.get("json_size", size) == size)


def _convert_split(root: Path, split: str, stems: list[str], masks: str, cat_ids: tuple[int, ...], min_area: int,
                   workers: int, progress: bool, json_path: Path, categories: list[dict], options: dict,
                   classes: list[str]) -> dict[str, Any]:
    jobs = [(str(root), split, stem, masks, cat_ids, min_area, options["crowd"], options["area"]) for stem in stems]
    workers = max(1, min(workers, len(jobs)))
    images, annotations = [], []
    instances, crowd = Counter(), Counter()
    small = other = 0
    with Progress(f"[bold]convert {split}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  disable=not progress, transient=True) as bar:
        task = bar.add_task(split, total=len(jobs))
        pool = mp.get_context().Pool(workers) if workers > 1 else None
        try:
            # imap keeps frame order, so ids are the same however many workers run
            results = pool.imap(convert_frame, jobs, chunksize=4) if pool else map(convert_frame, jobs)
            for image_id, res in enumerate(results, start=1):
                images.append({"id": image_id, **res["image"]})
                for ann in res["annotations"]:
                    annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
                    name = classes[cat_ids.index(ann["category_id"])]
                    (crowd if ann["iscrowd"] else instances)[name] += 1
                small += res["small"]
                other += res["other"]
                bar.advance(task)
        finally:
            if pool:
                pool.terminate()
    info = {"description": f"Cityscapes gtFine {split} instances (edgercnn)", "options": options}
    write_coco_json(json_path, images, annotations, categories, info)
    return {"images": len(images), "instances": dict(instances), "crowd": dict(crowd), "dropped_small": small,
            "other_classes": other, "up_to_date": False}


# ---- download ---------------------------------------------------------------------------------------------------


def cityscapes_login(base_url: str = CITYSCAPES_URL) -> Any:
    """A requests session logged in with CITYSCAPES_USERNAME / CITYSCAPES_PASSWORD (never printed or stored).

    Same form post as ``cityscapesscripts.download.downloader.login``, which instead prompts for the credentials
    and offers to store them unencrypted.
    """
    import requests

    username, password = os.environ.get("CITYSCAPES_USERNAME"), os.environ.get("CITYSCAPES_PASSWORD")
    if not username or not password:
        raise EdgeRCNNError("--download: set CITYSCAPES_USERNAME and CITYSCAPES_PASSWORD (an account from "
                            "https://www.cityscapes-dataset.com/register/) in the environment")
    session = requests.Session()
    try:
        session.get(f"{base_url}/login", allow_redirects=False, timeout=60).raise_for_status()
        r = session.post(f"{base_url}/login", data={"username": username, "password": password, "submit": "Login"},
                         allow_redirects=False, timeout=60)
        r.raise_for_status()
    except requests.RequestException as exc:
        raise EdgeRCNNError(f"{base_url}: login request failed ({type(exc).__name__}); check the network") from None
    if r.status_code != 302:  # the site redirects after a successful login
        raise EdgeRCNNError(f"{base_url}: login refused; check CITYSCAPES_USERNAME / CITYSCAPES_PASSWORD")
    return session


def download_cityscapes(root: Path | str, *, packages: tuple[str, ...] = PACKAGES, base_url: str = CITYSCAPES_URL,
                        progress: bool = True) -> list[Path]:
    """Download (resumable, md5-checked against the site's md5-sum endpoint) and safely extract ``packages``
    into ``root``; endpoints as in cityscapesscripts' downloader. Returns the archive paths."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    session = cityscapes_login(base_url)
    listing = session.get(f"{base_url}/downloads/?list", allow_redirects=False, timeout=60)
    listing.raise_for_status()
    name_to_id = {p["name"]: p["packageID"] for p in listing.json()}
    archives = []
    for name in packages:
        if name not in name_to_id:
            raise EdgeRCNNError(f"{base_url}: package {name} not available to this account; request access on "
                                "the Cityscapes website")
        pid = name_to_id[name]
        md5 = session.get(f"{base_url}/md5-sum/?packageID={pid}", allow_redirects=False, timeout=60).text.split()[0]
        archive = download_file(f"{base_url}/file-handling/?packageID={pid}", root / name, md5=md5,
                                open_url=requests_open(session), progress=progress)
        extract_zip(archive, root, progress=progress)
        archives.append(archive)
    return archives
