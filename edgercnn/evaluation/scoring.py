"""Every metric of a results list, composed in one place: COCO segm/bbox/boundary AP (``cocometrics``), the
official Cityscapes metric on Cityscapes datasets (``cityscapesmetrics``), the val mask loss when measured and the
image count; and the scoring of any detections file with them (``edgercnn eval --detections``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edgercnn.core.errors import EdgeRCNNError
from edgercnn.core.io import atomic_write_json
from edgercnn.data.coco_json import read_coco_json
from edgercnn.data.manifest import load_manifest, split_paths
from edgercnn.evaluation.cityscapesmetrics import cityscapes_metrics, gt_folder
from edgercnn.evaluation.cocometrics import coco_metrics
from edgercnn.evaluation.detections import load_detections, scorable_kinds
from edgercnn.evaluation.metrics import IOU_TYPES


def score_results(gt: dict[str, Any], results: list[dict[str, Any]], image_ids: Sequence[int],
                  gt_dir: Path | None = None, *, val_loss_mask: float | None = None, kinds: Sequence[str] = IOU_TYPES,
                  progress: Callable[[str], None] | None = None, copy_results: bool = True) -> dict[str, Any]:
    """The metrics dict of an evaluation: ``{kind}_AP..`` for each of ``kinds``, ``CITYSCAPES_METRICS`` when
    ``gt_dir`` (a Cityscapes gtFine folder, ``gt_folder``) is given and masks are scored, ``val_loss_mask`` when
    given, and ``val_images``. ``progress``/``copy_results``: as in ``coco_metrics`` (the official metric is
    scored first, so that ``copy_results=False`` cannot change its input)."""
    official = {}
    if gt_dir is not None and "segm" in kinds:  # a Cityscapes dataset: the official metric too
        official = cityscapes_metrics(gt, results, list(image_ids), gt_dir)
    metrics: dict[str, Any] = dict(coco_metrics(gt, results, image_ids, kinds, progress=progress,
                                                copy_results=copy_results))
    metrics.update(official)
    if val_loss_mask is not None:
        metrics["val_loss_mask"] = val_loss_mask
    metrics["val_images"] = len(image_ids)
    return metrics


def score_detections(detections: Path, data: Path, split: str = "val", out: Path | None = None,
                     console: Console | None = None) -> tuple[dict[str, float], Path]:
    """``edgercnn eval --detections``: score a COCO results file from any detector against a prepared dataset's
    split with the same metrics as a run (segm/boundary/bbox AP; bbox only for box-only results); writes them to
    ``out`` (default: ``<detections stem>-metrics.json`` beside the file) and returns (metrics, path)."""
    detections = Path(detections)
    manifest = load_manifest(data)
    _, annotation_file = split_paths(manifest, split)
    out = Path(out) if out is not None else detections.with_name(f"{detections.stem}-metrics.json")
    for given, what in ((detections, "--detections"), (annotation_file, f"the {split} annotations of --data")):
        if _same_file(out, Path(given)):  # the metrics would replace an input
            raise EdgeRCNNError(f"--out {out}: is {what} ({given}); pass another --out, the metrics would "
                                "overwrite it")
    gt = read_coco_json(annotation_file, "re-run edgercnn prepare for this dataset")
    console = console or Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        size = detections.stat().st_size if detections.is_file() else 0
        task = progress.add_task(f"reading {detections.name} ({size / 1e6:.0f} MB)", total=None)
        results = load_detections(detections, gt, f"the {split} split of {data}",
                                  progress=lambda n: progress.advance(task, n))
        progress.update(task, total=len(results), completed=len(results))
        kinds = scorable_kinds(results)
        scoring = progress.add_task(f"scoring {len(results)} detections", total=len(kinds))

        def scored(kind: str) -> None:
            progress.update(scoring, description=f"scoring {len(results)} detections: {kind} AP",
                            completed=kinds.index(kind))

        count = len(results)
        # copy_results=False: the entries are not needed afterwards; one copy of a large file in memory, not two
        metrics: dict[str, Any] = score_results(gt, results, [img["id"] for img in gt["images"]],
                                                gt_folder(manifest, split), kinds=kinds, progress=scored,
                                                copy_results=False)
        progress.update(scoring, completed=len(kinds))
    metrics.update({"detections": count, "data": str(data), "split": split})
    atomic_write_json(out, metrics)
    return metrics, out


def _same_file(a: Path, b: Path) -> bool:
    """The same path (after resolving links and ..) or the same file (a hard link)."""
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False
