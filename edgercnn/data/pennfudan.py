"""The Penn-Fudan Database for Pedestrian Detection and Segmentation (Wang, Shi, Song, Sheng; ACCV 2007):
170 photos ``PNGImages/*.png`` with instance-id masks ``PedMasks/*_mask.png`` (423 pedestrians), prepared through
``data.masks`` with a fixed split.

The split: the images sorted by file name (FudanPed00001 … PennPed00096), every 4th one starting with the first
(sorted index ``i % 4 == 0``) is val: 43 val, 127 train.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgercnn.core.errors import EdgeRCNNError
from edgercnn.data.download import download_file, extract_zip, verify_zip
from edgercnn.data.manifest import check_owner
from edgercnn.data.masks import import_masks

URL = "https://www.cis.upenn.edu/~jshi/ped_html/PennFudanPed.zip"
IMAGES, MASKS, SUFFIX, FOLDER = "PNGImages", "PedMasks", "_mask", "PennFudanPed"
COUNT = 170  # photos, one mask each
VAL_EVERY = 4  # sorted index i is val when i % VAL_EVERY == 0


def is_val(index: int, name: str) -> bool:
    """Penn-Fudan's fixed split: every 4th image (sorted by name) from the first is val."""
    return index % VAL_EVERY == 0


def check_contents(root: Path) -> None:
    """One-line error unless ``root`` holds PNGImages/ with 170 PNGs and PedMasks/ with their 170 masks."""
    images, masks = root / IMAGES, root / MASKS
    if not images.is_dir() or not masks.is_dir():
        raise EdgeRCNNError(f"{root}: needs {IMAGES}/ and {MASKS}/ (the extracted PennFudanPed.zip); pass that "
                            "folder as --root, or use --download")
    pngs = sorted(p.stem for p in images.glob("*.png"))
    mask_stems = sorted(p.stem[: -len(SUFFIX)] for p in masks.glob(f"*{SUFFIX}.png"))
    if len(pngs) != COUNT or len(mask_stems) != COUNT or pngs != mask_stems:
        raise EdgeRCNNError(f"{root}: {len(pngs)} images and {len(mask_stems)} masks ({len(set(pngs) ^ set(mask_stems))} "
                            f"without a partner), the Penn-Fudan Database has {COUNT} of each; extract "
                            f"PennFudanPed.zip again (or use --download)")


def download_pennfudan(into: Path, *, url: str = URL, progress: bool = True) -> Path:
    """Fetch PennFudanPed.zip into ``into`` (resumable), check its CRCs, extract it; returns ``into/PennFudanPed``.
    The server publishes no checksum, so the zip's own CRCs and the content check stand in for one."""
    archive = download_file(url, into / "PennFudanPed.zip", progress=progress)
    verify_zip(archive)
    extract_zip(archive, into, progress=progress)
    root = into / FOLDER
    check_contents(root)
    return root


def prepare_pennfudan(root: Path | str | None = None, *, out: Path | str = "data/pennfudan", download: bool = False,
                      url: str = URL, progress: bool = True) -> dict[str, Any]:
    """Prepare Penn-Fudan in ``out`` from the extracted folder ``root`` or (``download``) from the official zip
    fetched into ``out``; strict: every image and mask must be sound. Returns data.masks.import_masks' summary."""
    out = Path(out)
    if download == (root is not None):
        raise EdgeRCNNError("prepare pennfudan: pass --root DIR (the extracted PennFudanPed folder) or --download, "
                            "not both")
    check_owner(out, "pennfudan")  # before downloading
    if download:
        root = download_pennfudan(out, url=url, progress=progress)
    root = Path(root)
    check_contents(root)
    return import_masks(root / IMAGES, root / MASKS, out, suffix=SUFFIX, class_name="pedestrian", val_rule=is_val,
                        strict=True, name="pennfudan", expected=COUNT,
                        fix="the Penn-Fudan files are damaged: extract PennFudanPed.zip again (or use --download)",
                        source={"root": str(root.resolve()), "url": URL},
                        split_record={"method": "fixed", "rule": f"images sorted by name, index % {VAL_EVERY} == 0 "
                                                                 "is val"})
