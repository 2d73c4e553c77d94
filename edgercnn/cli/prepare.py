"""`edgercnn prepare ...`: parse options, call one library function, print its summary."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgercnn.cli.errors import user_errors
from edgercnn.cli.recording import RecordedCommand
from edgercnn.core.errors import EdgeRCNNError, os_error_message

app = typer.Typer(help="Download/convert a dataset to the edgercnn layout (images + COCO JSON + manifest.json).",
                  no_args_is_help=True)
console = Console()


Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]


INTERRUPTED = "interrupted; finished files are kept: re-run the same prepare command to finish"


def _run(call: Callable[[], Any], debug: bool = False) -> Any:
    """Run a library call; an EdgeRCNNError (or a stray OSError) becomes one line on stderr and exit status 1,
    Ctrl-C exit status 130 with prepare's own advice (user_errors' --resume is for train)."""
    from edgercnn.data.dataset import max_image_pixels

    with user_errors(debug):
        try:
            max_image_pixels()  # a malformed $EDGERCNN_MAX_IMAGE_PIXELS: one line before any work, every command
            return call()
        except KeyboardInterrupt:
            Console(stderr=True).print(INTERRUPTED, highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None
        except OSError as exc:
            if debug:
                raise
            raise EdgeRCNNError(os_error_message(exc, where="prepare", option="--out")) from exc


def _warn(lines: list[str]) -> None:
    for line in lines:
        console.print(f"[yellow]warning:[/] {escape(line)}")


@app.command("shapes", cls=RecordedCommand, short_help="Write the synthetic shapes dataset (deterministic).")
def shapes(
    out: Annotated[Path, typer.Option(help="Dataset folder to write (manifest.json, images/, annotations/).")]
    = Path("data/shapes"),
    train: Annotated[int, typer.Option(help="Number of training images.")] = 400,
    val: Annotated[int, typer.Option(help="Number of validation images.")] = 100,
    size: Annotated[int, typer.Option(help="Image width and height in pixels.")] = 128,
    seed: Annotated[int, typer.Option(help="Random seed; same options give byte-identical files.")] = 0,
    max_objects: Annotated[int, typer.Option(help="Most objects per image (at least 1 each).")] = 4,
    force: Annotated[bool, typer.Option(help="Replace a shapes dataset made with other options in --out (deletes "
                                              "only the files prepare shapes wrote).")] = False,
    debug: Debug = False,
) -> None:
    """Write the deterministic synthetic shapes dataset (circle, triangle, square, star; occlusion, texture)."""
    from edgercnn.data.shapes import make_shapes

    summary = _run(lambda: make_shapes(out, train=train, val=val, size=size, seed=seed, max_objects=max_objects,
                                       force=force), debug)
    if summary["skipped"]:
        console.print(f"{out}: already complete with these options; nothing to do (--force rebuilds it)")
    elif summary["repaired"]:
        console.print(f"{out}: {summary['repaired']} files were missing or damaged; wrote the dataset again")
    for split, counts in summary["splits"].items():
        console.print(f"{split}: {counts['images']} images, {counts['instances']} instances")
    console.print(f"dataset ready: {out}")


class MaskSource(str, Enum):
    instanceIds = "instanceIds"
    polygons = "polygons"


@app.command("cityscapes", cls=RecordedCommand, short_help="Convert Cityscapes gtFine instances to COCO JSON.")
def cityscapes(
    root: Annotated[Path, typer.Option(help="Cityscapes folder holding gtFine/ and leftImg8bit/ (created by "
                                            "--download).")],
    out: Annotated[Optional[Path], typer.Option(help="Dataset folder for manifest.json and edgercnn/*.json "
                                                     "(default: the --root folder).")] = None,
    download: Annotated[bool, typer.Option(help="Download and extract gtFine_trainvaltest.zip and "
                                                "leftImg8bit_trainvaltest.zip first; needs CITYSCAPES_USERNAME "
                                                "and CITYSCAPES_PASSWORD in the environment.")] = False,
    extra_classes: Annotated[bool, typer.Option(help="Also keep caravan and trailer (as the authors' code did); "
                                                     "default: the 8 evaluated classes.")] = False,
    masks: Annotated[MaskSource, typer.Option(help="Mask source: exact *_gtFine_instanceIds.png, or "
                                                   "*_gtFine_polygons.json rasterised by cityscapesscripts.")]
    = MaskSource.instanceIds,
    min_area: Annotated[int, typer.Option(help="Drop (and count) instances smaller than this many pixels; "
                                               "0 keeps all.")] = 0,
    crowd: Annotated[str, typer.Option(help="Group regions (e.g. cargroup): keep (as iscrowd=1, COCO's handling) "
                                            "or drop (the authors' code).")] = "keep",
    area: Annotated[str, typer.Option(help="COCO 'area' of each instance (sets small/medium/large): mask (pixels) "
                                           "or box (width x height, as the authors' evaluation).")] = "mask",
    workers: Annotated[Optional[int], typer.Option(help="Worker processes (default: all cores).")] = None,
    force: Annotated[bool, typer.Option(help="Convert again even when the output is up to date.")] = False,
    debug: Debug = False,
) -> None:
    """Convert Cityscapes gtFine train/val instances to COCO JSON (RLE masks, group regions as iscrowd=1)."""
    from edgercnn.data.cityscapes import convert_cityscapes, download_cityscapes
    from edgercnn.data.manifest import check_owner

    if download:
        _run(lambda: check_owner(out or root, "cityscapes"), debug)  # before hours of downloading
        _run(lambda: download_cityscapes(root), debug)
    summary = _run(lambda: convert_cityscapes(root, out=out, extra_classes=extra_classes, masks=masks.value,
                                              min_area=min_area, workers=workers, force=force, crowd=crowd,
                                              area=area), debug)
    table = Table("split", "images", "instances per class", "crowd regions", "dropped < min-area", "status")
    for split, s in summary["splits"].items():
        per_class = ", ".join(f"{k} {v}" for k, v in s["instances"].items()) or "-"
        crowd = ", ".join(f"{k} {v}" for k, v in s["crowd"].items()) or "-"
        table.add_row(split, str(s["images"]), per_class, crowd, str(s["dropped_small"]),
                      "up to date" if s["up_to_date"] else "converted")
    console.print(table)
    if summary["missing"]:
        console.print(f"splits not found under {root}/gtFine: {', '.join(summary['missing'])}")
    _warn(summary["warnings"])
    console.print(f"dataset ready: {summary['out']}")


@app.command("coco", cls=RecordedCommand, short_help="Check (or download) MS COCO 2017 and write its manifest.")
def coco(
    root: Annotated[Path, typer.Option(help="COCO 2017 folder with train2017/, val2017/, annotations/ (created "
                                            "by --download).")],
    out: Annotated[Optional[Path], typer.Option(help="Folder for manifest.json (default: the --root folder).")] = None,
    download: Annotated[bool, typer.Option(help="Download the official 2017 train/val image and annotation "
                                                "archives (about 19 GB, resumable, md5-checked) and extract them.")]
    = False,
    keep_archives: Annotated[bool, typer.Option(help="Keep the .zip files after extracting them.")] = True,
    debug: Debug = False,
) -> None:
    """Check (or download) the MS COCO 2017 instance layout and write the manifest."""
    from edgercnn.data.coco import prepare_coco

    summary = _run(lambda: prepare_coco(root, out=out, download=download, keep_archives=keep_archives), debug)
    for split, s in summary["splits"].items():
        console.print(f"{split}: {s['images']} images ({s['files']} files), {s['annotations']} annotations")
    _warn(summary["warnings"])
    console.print(f"dataset ready: {summary['out']}")


def _print_import(summary: dict[str, Any]) -> None:
    """The per-split counts and warnings of an imported dataset (coco-json, masks, pennfudan)."""
    for split, s in summary["splits"].items():
        crowd = f", {s['crowd']} crowd regions" if s["crowd"] else ""
        console.print(f"{split}: {s['images']} images, {s['instances']} instances{crowd}", highlight=False)
    for line in summary["warnings"]:  # soft_wrap: paths stay whole, to copy
        console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)
    console.print(f"dataset ready: {summary['out']}", highlight=False)


ValFraction = Annotated[Optional[float], typer.Option(
    help="Put this fraction of the images (e.g. 0.2) in a val split, chosen by --seed; recorded in the manifest.")]
Seed = Annotated[int, typer.Option(help="Seed of the --val-fraction split (same seed, same split).")]
Strict = Annotated[bool, typer.Option(help="Stop at the first missing, undecodable or wrongly sized image (or bad "
                                           "annotation) instead of skipping it with a count.")]


@app.command("coco-json", cls=RecordedCommand, short_help="Import any COCO-format dataset (CVAT, Roboflow, ...).")
def coco_json(
    images: Annotated[Path, typer.Option(help="Folder the images' file_name entries are relative to (subfolders "
                                              "allowed); images stay there, nothing is copied.")],
    annotations: Annotated[Path, typer.Option(help="COCO instances JSON (polygons or RLE) of the train split, or "
                                                   "of all images with --val-fraction.")],
    out: Annotated[Path, typer.Option(help="Dataset folder to write (manifest.json, annotations/).")],
    val: Annotated[Optional[Path], typer.Option(help="COCO instances JSON of the val split (same categories).")]
    = None,
    val_images: Annotated[Optional[Path], typer.Option(help="Images folder of --val when it differs from "
                                                            "--images.")] = None,
    val_fraction: ValFraction = None,
    seed: Seed = 0,
    strict: Strict = False,
    debug: Debug = False,
) -> None:
    """Import any COCO-format instance dataset (CVAT, Label Studio, Roboflow, detectron2/mmdet exports); ids kept."""
    from edgercnn.data.coco_import import import_coco_json

    _print_import(_run(lambda: import_coco_json(images, annotations, out, val=val, val_images=val_images,
                                                val_fraction=val_fraction, seed=seed, strict=strict), debug))


@app.command("masks", cls=RecordedCommand, short_help="Import images with one instance-id mask PNG each.")
def masks(
    images: Annotated[Path, typer.Option(help="Folder of the images (subfolders allowed); nothing is copied.")],
    masks: Annotated[Path, typer.Option(help="Folder of the instance-id PNGs (0 background, each other value one "
                                             "instance), laid out like --images.")],
    out: Annotated[Path, typer.Option(help="Dataset folder to write (manifest.json, annotations/).")],
    suffix: Annotated[str, typer.Option(help="The mask of sub/NAME.jpg is sub/NAME<suffix>.png under --masks.")]
    = "_mask",
    class_name: Annotated[str, typer.Option("--class", help="Name of the single class.")] = "object",
    val_fraction: ValFraction = None,
    seed: Seed = 0,
    strict: Strict = False,
    debug: Debug = False,
) -> None:
    """Import a dataset of images with one instance-id mask PNG each, as COCO JSON (RLE) + manifest."""
    from edgercnn.data.masks import import_masks

    _print_import(_run(lambda: import_masks(images, masks, out, suffix=suffix, class_name=class_name,
                                            val_fraction=val_fraction, seed=seed, strict=strict), debug))


@app.command("pennfudan", cls=RecordedCommand, short_help="Prepare the Penn-Fudan pedestrians (170 photos).")
def pennfudan(
    root: Annotated[Optional[Path], typer.Option(help="The extracted PennFudanPed folder (PNGImages/, "
                                                      "PedMasks/).")] = None,
    download: Annotated[bool, typer.Option(help="Download the official PennFudanPed.zip (about 50 MB, resumable) "
                                                "into --out and extract it there.")] = False,
    out: Annotated[Path, typer.Option(help="Dataset folder to write (manifest.json, annotations/).")]
    = Path("data/pennfudan"),
    debug: Debug = False,
) -> None:
    """Prepare the Penn-Fudan pedestrians (170 photos, 423 instances); val: every 4th image by name, from the
    first (127 train / 43 val)."""
    from edgercnn.data.pennfudan import prepare_pennfudan

    _print_import(_run(lambda: prepare_pennfudan(root, out=out, download=download), debug))
