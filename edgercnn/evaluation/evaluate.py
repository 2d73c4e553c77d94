"""Evaluation: inference on the val split → COCO results JSON → every metric (``scoring.score_results``).

Predictions come out at canvas resolution; they are mapped back to the original image by the inverse of the data
pipeline's canvas mapping (``edgercnn.data.transforms.to_original``) before scoring against the original
annotations.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_util
import torch
from rich.console import Console
from rich.progress import Progress
from torch.utils.data import DataLoader

from edgercnn.evaluation.cityscapesmetrics import gt_folder
from edgercnn.evaluation.scoring import score_results
from edgercnn.config import Config
from edgercnn.builders.dataset import build_dataset
from edgercnn.data.dataset import collate, report_skipped, warn_if_empty
from edgercnn.data.transforms import to_original
from edgercnn.core.errors import EdgeRCNNError, worker_errors
from edgercnn.core.io import atomic_write_json

NORM_TYPES = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm, torch.nn.modules.instancenorm._InstanceNorm,
              torch.nn.LayerNorm)


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


def loss_mode(model: torch.nn.Module) -> None:
    """Training mode (the heads return losses) with every normalisation layer in eval mode, so that a loss
    pass on val data updates no running statistics or any other buffer."""
    model.train()
    for m in model.modules():
        if isinstance(m, NORM_TYPES):
            m.eval()


def losses_and_predictions(model: torch.nn.Module, images: list[torch.Tensor],
                           targets: list[dict[str, torch.Tensor]]) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """The loss pass (the paper's mask-quality measure, section 5: the mask loss on val data, training-mode heads;
    ``loss_mode``) and the detection pass of one batch, on ONE backbone forward; the model is left in eval mode.

    With every normalisation layer in eval mode nothing in the backbone (ResNet + FPN) depends on the mode, so both
    passes see the same features: computing them once halves the evaluation's largest cost, and the losses and
    detections are those of two whole forwards (the same calls in the same order: the loss pass's RoI sampling
    draws the same random numbers). The steps are torchvision's ``GeneralizedRCNN.forward`` (0.29), whose
    ``transform`` is the identity resize here (``model.rcnn.CanvasTransform``), so it batches the same in both modes.
    """
    net = getattr(model, "module", model)  # DistributedDataParallel: its module (no gradients here)
    sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
    loss_mode(net)
    batch, targets = net.transform(images, targets)
    features = net.backbone(batch.tensors)
    if isinstance(features, torch.Tensor):
        features = {"0": features}
    proposals, proposal_losses = net.rpn(batch, features, targets)
    _, detector_losses = net.roi_heads(features, proposals, batch.image_sizes, targets)
    net.eval()
    proposals, _ = net.rpn(batch, features)
    detections, _ = net.roi_heads(features, proposals, batch.image_sizes)
    return detector_losses | proposal_losses, net.transform.postprocess(detections, batch.image_sizes, sizes)


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, cfg: Config, device: torch.device, *,
                   max_images: int | None = None, console: Console | None = None,
                   show_progress: bool = True) -> tuple[dict[str, float], list]:
    """The metrics dict (``scoring.score_results``: COCO, Cityscapes on Cityscapes, ``val_loss_mask``,
    ``val_images``) and the COCO results list of ``model`` on the val split."""
    console = console or Console(stderr=True)
    dataset = build_dataset(cfg, "val", "eval", max_images=max_images)
    if len(dataset) == 0:  # NaN metrics are not a result: no metrics, no result CSV
        which = " with annotations" if cfg.eval_images == "annotated" else ""
        raise EdgeRCNNError(f"{cfg.data}: the val split has no images{which}; nothing to evaluate (no metrics or result CSV written); add val images (re-run "
                            "edgercnn prepare) or train with --no-eval")
    report_skipped(dataset, console)
    warn_if_empty(dataset, console)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, collate_fn=collate, num_workers=cfg.workers)
    results: list[dict[str, Any]] = []
    mask_losses: list[float] = []
    was_training = model.training
    rng = torch.get_rng_state()
    torch.manual_seed(cfg.seed)  # RoI sampling of the loss pass: same every evaluation
    with worker_errors(), Progress(console=console, transient=True,  # worker_errors: one line from a worker too
                                   disable=not (show_progress and console.is_terminal)) as progress:
        task = progress.add_task("evaluating", total=len(dataset))
        for images, targets in loader:
            images = [im.to(device) for im in images]
            losses, predictions = losses_and_predictions(model, images,
                                                         [{k: v.to(device) for k, v in t.items()} for t in targets])
            mask_losses.append(float(losses["loss_mask"]))
            for pred, target in zip(predictions, targets):
                orig = to_original(pred, float(target["scale"]), tuple(int(x) for x in target["pad"]),
                                   tuple(int(x) for x in target["orig_size"]))
                results.extend(coco_results(int(target["image_id"]), orig, dataset.label_to_cat_id))
            progress.advance(task, len(images))
    torch.set_rng_state(rng)
    model.train(was_training)
    metrics = score_results(dataset.coco.dataset, results, dataset.ids, gt_folder(dataset.manifest, "val"),
                            val_loss_mask=float(np.mean(mask_losses)) if mask_losses else math.nan)
    return metrics, results


def save_detections(results: list[dict[str, Any]], path: Path) -> None:
    atomic_write_json(path, results, indent=None)
