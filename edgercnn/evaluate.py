"""Evaluation: inference on the val split → COCO results JSON → segm/bbox AP (pycocotools) + mean val mask loss.

Predictions come out at canvas resolution; they are mapped back to the original image (undo the zero padding
at the bottom/right, then the aspect-preserving scale) before scoring against the original annotations.
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_util
import torch
import torch.nn.functional as F
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from rich.console import Console
from rich.progress import Progress
from torch.utils.data import DataLoader

from edgercnn.config import Config
from edgercnn.data.dataset import CocoInstanceDataset, collate, report_skipped
from edgercnn.io import atomic_write_json

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval.stats[0:6]
METRICS = tuple(f"{kind}_{m}" for kind in ("segm", "bbox") for m in METRIC_NAMES)


def to_original(prediction: dict[str, torch.Tensor], scale: float, orig_size: tuple[int, int]) -> dict[str, Any]:
    """Boxes [K,4] and binary masks [K,h,w] of one image in original pixels (masks thresholded at 0.5)."""
    h, w = orig_size
    boxes = (prediction["boxes"] / scale).cpu()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    valid_h, valid_w = min(round(h * scale), prediction["masks"].shape[-2]), min(round(w * scale),
                                                                                  prediction["masks"].shape[-1])
    masks = []
    for prob in prediction["masks"]:  # one at a time: full-resolution float masks add up fast
        m = F.interpolate(prob[None, :, :valid_h, :valid_w].float(), size=(h, w), mode="bilinear",
                          align_corners=False)
        masks.append((m[0, 0] > 0.5).to(torch.uint8).cpu())
    masks_t = torch.stack(masks) if masks else torch.zeros(0, h, w, dtype=torch.uint8)
    return {"boxes": boxes, "masks": masks_t, "scores": prediction["scores"].cpu(),
            "labels": prediction["labels"].cpu()}


def coco_results(image_id: int, pred: dict[str, Any], label_to_cat_id: dict[int, int]) -> list[dict[str, Any]]:
    """COCO results-format entries (bbox xywh + RLE segmentation) for one image."""
    out = []
    if len(pred["scores"]) == 0:
        return out
    rles = mask_util.encode(np.asfortranarray(pred["masks"].numpy().transpose(1, 2, 0)))
    for box, score, label, rle in zip(pred["boxes"].tolist(), pred["scores"].tolist(), pred["labels"].tolist(),
                                      rles):
        rle["counts"] = rle["counts"].decode("ascii")
        x0, y0, x1, y1 = box
        out.append({"image_id": int(image_id), "category_id": int(label_to_cat_id[int(label)]),
                    "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score), "segmentation": rle})
    return out


def coco_metrics(gt: COCO, results: list[dict[str, Any]], image_ids: list[int]) -> dict[str, float]:
    """segm_* and bbox_* AP on the 0–100 scale; NaN where COCO reports -1 (no ground truth in that range)."""
    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes(results)
    else:  # pycocotools cannot load an empty result list; an empty result set scores 0 AP
        dt = COCO()
        dt.dataset = {"images": gt.dataset["images"], "categories": gt.dataset["categories"], "annotations": []}
        with contextlib.redirect_stdout(io.StringIO()):
            dt.createIndex()
    metrics = {}
    for kind in ("segm", "bbox"):
        ev = COCOeval(gt, dt, kind)
        ev.params.imgIds = list(image_ids)
        with contextlib.redirect_stdout(io.StringIO()):
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        for name, value in zip(METRIC_NAMES, ev.stats[:6]):
            metrics[f"{kind}_{name}"] = float("nan") if value < 0 else 100.0 * float(value)
    return metrics


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, cfg: Config, device: torch.device, *,
                   max_images: int | None = None, console: Console | None = None) -> tuple[dict[str, float], list]:
    """Metrics dict (COCO + ``val_loss_mask``) and the COCO results list of ``model`` on the val split."""
    console = console or Console(stderr=True)
    dataset = CocoInstanceDataset(cfg.data, "val", canvas=tuple(cfg.canvas), train=False,
                                  max_images=max_images if max_images is not None else cfg.eval_max_images,
                                  strict=cfg.strict)
    report_skipped(dataset, console)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, collate_fn=collate, num_workers=cfg.workers)
    results: list[dict[str, Any]] = []
    mask_losses: list[float] = []
    was_training = model.training
    rng = torch.get_rng_state()
    torch.manual_seed(cfg.seed)  # RoI sampling of the loss pass: same every evaluation
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("evaluating", total=len(dataset))
        for images, targets in loader:
            images = [im.to(device) for im in images]
            # The paper's mask-quality measure (section 5): the mask loss on val data, training-mode heads.
            model.train()
            losses = model(images, [{k: v.to(device) for k, v in t.items()} for t in targets])
            mask_losses.append(float(losses["loss_mask"]))
            model.eval()
            for pred, target in zip(model(images), targets):
                orig = to_original(pred, float(target["scale"]), tuple(int(x) for x in target["orig_size"]))
                results.extend(coco_results(int(target["image_id"]), orig, dataset.label_to_cat_id))
            progress.advance(task, len(images))
    torch.set_rng_state(rng)
    model.train(was_training)
    metrics = coco_metrics(dataset.coco, results, dataset.ids)
    metrics["val_loss_mask"] = float(np.mean(mask_losses)) if mask_losses else math.nan
    metrics["val_images"] = len(dataset)
    return metrics, results


def save_detections(results: list[dict[str, Any]], path: Path) -> None:
    atomic_write_json(path, results, indent=None)
