"""MS COCO 2017: download the official archives (resumable, md5-checked) or verify an existing standard layout
(``train2017/``, ``val2017/``, ``annotations/instances_{train,val}2017.json``), then write the manifest."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgercnn.data.coco_json import read_coco_json
from edgercnn.data.dataset import check_file_name, check_pixels
from edgercnn.data.download import download_file, extract_zip
from edgercnn.data.manifest import check_owner, os_errors, relative_to, write_manifest
from edgercnn.core.errors import EdgeRCNNError

# md5 sums of the official archives (as published with many loaders, e.g. torchvision/gluoncv/mmdet scripts)
COCO_ARCHIVES = {
    "train2017.zip": ("http://images.cocodataset.org/zips/train2017.zip", "cced6f7f71b7629ddf16f17bbcfab6b2"),
    "val2017.zip": ("http://images.cocodataset.org/zips/val2017.zip", "442b8da7639aecaf257c1dceb8ba8c80"),
    "annotations_trainval2017.zip": ("http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
                                     "f4bbac642086de4f52a3fdda2de5fa2c"),
}
OFFICIAL_COUNTS = {"train": 118287, "val": 5000}
SPLITS = ("train", "val")


def download_coco(root: Path | str, *, archives: dict[str, tuple[str, str]] = COCO_ARCHIVES,
                  progress: bool = True, keep_archives: bool = True) -> None:
    """Download and extract the archives into ``root`` (``root/<name>.zip``; ``.part`` while incomplete)."""
    root = Path(root)
    for name, (url, md5) in archives.items():
        archive = download_file(url, root / name, md5=md5, progress=progress)
        extract_zip(archive, root, progress=progress)
        if not keep_archives:
            archive.unlink()


def prepare_coco(root: Path | str, *, out: Path | str | None = None, download: bool = False,
                 archives: dict[str, tuple[str, str]] = COCO_ARCHIVES, progress: bool = True,
                 keep_archives: bool = True) -> dict[str, Any]:
    """Optionally download, then check the layout under ``root`` and write ``out/manifest.json`` (``out``
    defaults to ``root``). Returns ``{"out", "splits": {split: {"images", "annotations", "files"}}, "warnings"}``."""
    root = Path(root)
    out = Path(out) if out is not None else root
    check_owner(out, "coco")
    with os_errors(out):
        out.mkdir(parents=True, exist_ok=True)  # an unwritable --out fails before reading the annotations
    if download:
        download_coco(root, archives=archives, progress=progress, keep_archives=keep_archives)
    summary: dict[str, Any] = {"out": str(out), "splits": {}, "warnings": []}
    splits, categories = {}, None
    for split in SPLITS:
        images = root / f"{split}2017"
        ann = root / "annotations" / f"instances_{split}2017.json"
        for path in (images, ann):
            if not path.exists():
                raise EdgeRCNNError(f"{path}: missing; --root must hold train2017/, val2017/ and annotations/ "
                                    "(the official COCO 2017 layout), or add --download")
        data = read_coco_json(ann, "replace it from annotations_trainval2017.zip (or delete it and use --download)")
        try:
            cats = sorted((int(c["id"]), str(c["name"])) for c in data["categories"])
        except (KeyError, TypeError, ValueError):
            raise EdgeRCNNError(f"{ann}: a category lacks an integer 'id' or a 'name'; use the official "
                                "annotations") from None
        if categories is not None and cats != categories:
            raise EdgeRCNNError(f"{ann}: categories differ from the train split's; use the official annotations")
        categories = cats
        for entry in data["images"]:  # names and sizes the Dataset will trust: inside the folder, under the limit
            if not isinstance(entry, dict):
                raise EdgeRCNNError(f"{ann}: an entry of 'images' is not a mapping; use the official annotations")
            where = f"{ann}: image {entry.get('id')}"
            check_file_name(entry.get("file_name"), where)
            if isinstance(entry.get("width"), int) and isinstance(entry.get("height"), int):
                check_pixels(entry["width"], entry["height"], where)
        files = sum(1 for e in os.scandir(images) if e.is_file())
        summary["splits"][split] = {"images": len(data["images"]), "annotations": len(data["annotations"]),
                                    "files": files}
        if files < len(data["images"]):
            summary["warnings"].append(f"{images}: {files} files but {ann.name} lists {len(data['images'])} images")
        if len(data["images"]) != OFFICIAL_COUNTS[split]:
            summary["warnings"].append(f"{split}: {len(data['images'])} images, the official split has "
                                       f"{OFFICIAL_COUNTS[split]}")
        splits[split] = {"images": relative_to(images, out), "annotations": relative_to(ann, out)}
        del data
    assert categories is not None
    with os_errors(out):
        write_manifest(out, name="coco", classes=[n for _, n in categories], category_ids=[i for i, _ in categories],
                       splits=splits, source={"root": str(root.resolve()),
                                              "archives": {k: v[0] for k, v in archives.items()}})
    return summary
