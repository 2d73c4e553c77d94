"""What the edge loss changes, as arrays: predicted masks of runs side by side (the paper's Figure 5) and one
RoI's target, filter responses, predicted probabilities and per-pixel |ΔE|^p (Figures 3 and 7).

Functions here return the arrays a figure shows (``edgercnn.reporting.figures`` only draws them), so tests can check them.
Everything runs on the CPU: a handful of images needs seconds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchvision.models.detection.roi_heads import project_masks_on_boxes

from edgercnn.builders.dataset import build_dataset
from edgercnn.config import Config
from edgercnn.config.values import is_none
from edgercnn.data.dataset import CocoInstanceDataset
from edgercnn.data.manifest import MANIFEST, load_manifest
from edgercnn.data.transforms import to_original
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.model.architecture import MASK_SIZES
from edgercnn.model.losses import KERNELS, EdgeLoss, channel_names, edge_distance, edge_maps, filter_input
from edgercnn.training.runmodel import load_run_model
from edgercnn.training.rundir import RunDir
from edgercnn.training.trainer import resolve_device

#: The edge loss shown for a run trained without one (the baseline) when no --filter is given.
DEFAULT_EDGE_LOSS = EdgeLoss()


# ---------------------------------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class LoadedRun:
    """A run folder's config and its model (eval mode, on the CPU unless asked otherwise)."""

    run: RunDir
    cfg: Config
    model: torch.nn.Module
    note: str  # "" for the final weights; says which checkpoint otherwise

    @property
    def title(self) -> str:
        """Config name and seed (the column title), with the checkpoint step when it is unfinished."""
        return f"{self.cfg.config_name()}, seed {self.cfg.seed}" + (f" ({self.note})" if self.note else "")


def load_run(path: Path | str, device: str = "cpu") -> LoadedRun:
    """The config and model of a run folder; one-line errors for a missing folder or unreadable weights."""
    run = RunDir(path)
    if not run.path.is_dir():
        raise EdgeRCNNError(f"{run}: run folder not found; pass a folder made by edgercnn train "
                            "(runs/<experiment>/<config>/seed-<n>)")
    loaded = load_run_model(run, "re-run or resume the training (edgercnn train --resume)")
    device = resolve_device(device)  # one-line error for an unknown or missing device
    note = "" if loaded.weights.final else f"unfinished: step {loaded.weights.step}"
    return LoadedRun(run, loaded.cfg, loaded.model.to(device).eval(), note)


def _data_identity(data: Path | str) -> tuple[str, list[str]] | None:
    """(dataset name, class names) from a dataset folder's manifest, or None where it has none."""
    if not (Path(data) / MANIFEST).is_file():
        return None
    manifest = load_manifest(data)
    return manifest["name"], list(manifest["classes"])


def check_same_data(runs: list[LoadedRun], data: Path | str) -> None:
    """Raise a one-line error unless every run was trained on a dataset like ``data``: the same number of classes,
    and the same dataset name and class names where the run's own data folder is still there."""
    name, classes = _data_identity(data) or (None, None)
    if classes is None:
        load_manifest(data)  # raises the usual one-line error
    for r in runs:
        if r.cfg.num_classes != len(classes):
            raise EdgeRCNNError(f"{r.run}: trained on {r.cfg.num_classes} classes ({r.cfg.data}) but {data} has "
                                f"{len(classes)} ({', '.join(classes)}); pass runs trained on that dataset, or its "
                                "--data")
        own = _data_identity(r.cfg.data)
        if own is not None and own != (name, classes):
            raise EdgeRCNNError(f"{r.run}: trained on {own[0]} ({', '.join(own[1])}) but {data} is {name} "
                                f"({', '.join(classes)}); compare runs of one dataset, or pass its --data")


# ---------------------------------------------------------------------------------------------------- data
def open_dataset(data: Path | str, split: str, cfg: Config) -> CocoInstanceDataset:
    """The split of ``data`` on ``cfg``'s canvas (size and resize mode, no flips, every image)."""
    return build_dataset(dataclasses.replace(cfg, data=str(data)), split, "view")


def check_image_id(dataset: CocoInstanceDataset, image_id: int) -> int:
    """The dataset index of ``image_id``; a one-line error naming the valid ids otherwise."""
    try:
        return dataset.ids.index(int(image_id))
    except ValueError:
        ids = dataset.ids
        have = f"{ids[0]}..{ids[-1]}" if ids else "none"
        raise EdgeRCNNError(f"image id {image_id}: not in the {dataset.split} split of {dataset.manifest['root']} "
                            f"({len(ids)} images, ids {have}); pass one of its ids") from None


def gt_instances(dataset: CocoInstanceDataset, image_id: int) -> tuple[np.ndarray, list[int]]:
    """Non-crowd ground-truth masks [G, H, W] (uint8, original pixels) and their labels (1..num_classes)."""
    info = dataset.coco.imgs[image_id]
    anns = [a for a in dataset.coco.imgToAnns.get(image_id, [])
            if not a.get("iscrowd", 0) and a.get("category_id") in dataset.cat_id_to_label]
    masks = [dataset.coco.annToMask(a) for a in anns]
    stack = np.stack(masks).astype(np.uint8) if masks else np.zeros((0, info["height"], info["width"]), np.uint8)
    return stack, [dataset.cat_id_to_label[a["category_id"]] for a in anns]


def read_image(dataset: CocoInstanceDataset, image_id: int) -> np.ndarray:
    """The original image [H, W, 3] uint8 RGB."""
    return dataset.image(image_id)  # the dataset's checks: pixel limit before decoding, complete, listed size


def spread(items: list, n: int) -> list:
    """``n`` of ``items`` evenly spaced from the first to the last (all of them when n >= len)."""
    if n >= len(items):
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def choose_rows(dataset: CocoInstanceDataset, n: int | None, image_ids: list[int] | None,
                crop: bool) -> list[tuple[int, int | None]]:
    """The figure's rows as (image id, GT instance or None): the given images, else ``n`` images with at least one
    instance spread evenly over the split by id; with ``crop``, one row per GT instance (``n`` instances spread
    evenly, or every instance of the given images)."""
    if image_ids:
        for i in image_ids:
            check_image_id(dataset, i)
    elif n is None or n < 1:
        raise EdgeRCNNError("--images: give a number >= 1 (or --image-ids 3,7)")
    ids = image_ids or [i for i in sorted(dataset.ids) if _count(dataset, i)]
    if not crop:
        return [(i, None) for i in (ids if image_ids else spread(ids, n))]
    rows = [(i, g) for i in ids for g in range(_count(dataset, i))]
    return rows if image_ids else spread(rows, n)


def _count(dataset: CocoInstanceDataset, image_id: int) -> int:
    return sum(1 for a in dataset.coco.imgToAnns.get(image_id, [])
               if not a.get("iscrowd", 0) and a.get("category_id") in dataset.cat_id_to_label)


# ---------------------------------------------------------------------------------------------------- Figure 5
@dataclass
class Panel:
    """One image (or one GT instance, cropped) as predicted by one run, in original pixels."""

    image: np.ndarray  # [H, W, 3] uint8
    masks: np.ndarray  # [K, H, W] uint8: predicted masks with score >= threshold (crop: the best match only)
    labels: list[str]  # class name per mask
    scores: list[float]  # score per mask
    gt: np.ndarray  # [G, H, W] uint8 ground truth (crop: the one instance)
    window: tuple[int, int, int, int] | None = None  # crop (x0, y0, x1, y1), pixel edges; None = whole image
    iou: float | None = None  # crop: mask IoU of the shown prediction with the GT instance


@torch.no_grad()
def predict_original(model: torch.nn.Module, dataset: CocoInstanceDataset, image_id: int,
                     score_threshold: float) -> dict[str, Tensor]:
    """One image's predictions with score >= ``score_threshold``, mapped back to original pixels by
    ``to_original`` (as evaluation does): boxes [K, 4], masks [K, H, W] uint8, scores, labels."""
    image, target = dataset[check_image_id(dataset, image_id)]
    device = next(model.parameters()).device
    pred = model([image.to(device)])[0]
    orig = to_original(pred, float(target["scale"]), tuple(int(x) for x in target["pad"]),
                       tuple(int(x) for x in target["orig_size"]))
    keep = orig["scores"] >= score_threshold
    return {k: v[keep] for k, v in orig.items()}


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [K, G] between binary masks a [K, H, W] and b [G, H, W]."""
    a2, b2 = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    inter = a2 @ b2.T
    union = a2.sum(1)[:, None] + b2.sum(1)[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def crop_window(mask: np.ndarray, margin: float = 0.35, min_size: int = 24) -> tuple[int, int, int, int]:
    """A square window (x0, y0, x1, y1) around a mask's box, ``margin`` of its size added on each side, at least
    ``min_size`` pixels, kept inside the image where it fits."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    if len(xs) == 0:
        return 0, 0, w, h
    cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
    side = max(min_size, (1 + 2 * margin) * max(xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()))
    side = min(side, max(w, h))
    x0 = int(round(min(max(cx - side / 2, 0), max(w - side, 0))))
    y0 = int(round(min(max(cy - side / 2, 0), max(h - side, 0))))
    return x0, y0, int(min(w, x0 + round(side))), int(min(h, y0 + round(side)))


def comparison_panels(runs: list[LoadedRun], data: Path | str, rows: list[tuple[int, int | None]], *,
                      split: str = "val", score_threshold: float = 0.5) -> list[list[Panel]]:
    """Panels [row][run] for the rows of ``choose_rows``. Each run sees the images at its own canvas; its
    predictions come back to original pixels, so runs with different canvases compare pixel for pixel."""
    datasets: dict[tuple, CocoInstanceDataset] = {}
    preds: dict[tuple[int, int], dict[str, Tensor]] = {}
    classes = list(load_manifest(data)["classes"])
    out = []
    for image_id, instance in rows:
        row = []
        for r_i, r in enumerate(runs):
            key = (*r.cfg.canvas, r.cfg.resize, r.cfg.resize_min_dim)
            if key not in datasets:
                datasets[key] = open_dataset(data, split, r.cfg)
            ds = datasets[key]
            if (r_i, image_id) not in preds:
                preds[(r_i, image_id)] = predict_original(r.model, ds, image_id, score_threshold)
            pred = preds[(r_i, image_id)]
            masks = pred["masks"].numpy()
            labels = [classes[int(lab) - 1] for lab in pred["labels"]]
            scores = [float(s) for s in pred["scores"]]
            gt, _ = gt_instances(ds, image_id)
            panel = Panel(read_image(ds, image_id), masks, labels, scores, gt)
            if instance is not None:
                panel = _crop_panel(panel, instance)
            row.append(panel)
        out.append(row)
    return out


def _crop_panel(panel: Panel, instance: int) -> Panel:
    """The panel reduced to one GT instance and its best-IoU prediction (any class), with a crop window."""
    gt = panel.gt[instance:instance + 1]
    window = crop_window(gt[0])
    if len(panel.masks) == 0:
        return Panel(panel.image, panel.masks, [], [], gt, window, 0.0)
    ious = mask_iou(panel.masks, gt)[:, 0]
    best = int(ious.argmax())
    if ious[best] == 0:
        return Panel(panel.image, panel.masks[:0], [], [], gt, window, 0.0)
    return Panel(panel.image, panel.masks[best:best + 1], [panel.labels[best]], [panel.scores[best]], gt, window,
                 float(ious[best]))


# ---------------------------------------------------------------------------------------------------- Figures 3, 7
@dataclass
class RoITarget:
    """One ground-truth instance on the canvas and its RoI-aligned target (the GT box as the RoI)."""

    image: Tensor  # [3, H, W] canvas image in [0, 1]
    canvas_mask: Tensor  # [H, W] the instance's canvas-sized mask
    box: Tensor  # [4] xyxy on the canvas
    label: int  # 1..num_classes
    class_name: str
    target: Tensor  # [M, M] project_masks_on_boxes(canvas masks, GT box, instance, M), as the loss sees it


def roi_target(dataset: CocoInstanceDataset, image_id: int, instance: int, mask_size: int,
               binary: bool = False) -> RoITarget:
    """The RoI-aligned target of GT instance ``instance`` (in the dataset target's order) of ``image_id``;
    ``binary`` rounds it to 0/1 as a run with ``mask_targets: binary`` trains on."""
    image, target = dataset[check_image_id(dataset, image_id)]
    n = len(target["masks"])
    if not 0 <= instance < n:
        raise EdgeRCNNError(f"--instance {instance}: image {image_id} has {n} ground-truth instances"
                            f"{f' (0..{n - 1})' if n else ''}; pick one of them or another image")
    box = target["boxes"][instance].float()
    projected = project_masks_on_boxes(target["masks"], box[None], torch.tensor([instance]), mask_size)[0]
    if binary:
        projected = (projected > 0.5).to(projected.dtype)
    label = int(target["labels"][instance])
    return RoITarget(image, target["masks"][instance], box, label, dataset.classes[label - 1], projected)


@torch.no_grad()
def roi_probability(model: torch.nn.Module, image: Tensor, box: Tensor, label: int) -> Tensor:
    """The mask branch on one box of one canvas image: sigmoid of class ``label``'s logits [M, M]
    (backbone features → mask_roi_pool → mask_head → mask_predictor)."""
    device = next(model.parameters()).device
    heads = model.roi_heads
    images, _ = model.transform([image.to(device)])
    features = model.backbone(images.tensors)
    pooled = heads.mask_roi_pool(features, [box[None].to(device)], images.image_sizes)
    logits = heads.mask_predictor(heads.mask_head(pooled))
    return logits[0, label].sigmoid().cpu()


@dataclass
class EdgeArrays:
    """What Figures 3/7 show for one RoI. Responses have one channel per ``channels`` name; the loss uses the
    first ``loss_channels`` of them (the magnitudes only when the loss has ``magnitude``)."""

    loss: EdgeLoss
    channels: list[str]
    target: Tensor  # [M, M] the RoI-aligned GT mask
    target_in: Tensor  # [M, M] what the filters see (Gaussian-smoothed for smooth = gt/both)
    target_edges: Tensor  # [C, M, M]
    pred: Tensor | None = None  # [M, M] predicted probability of the GT class
    pred_in: Tensor | None = None  # [M, M] smoothed for smooth = pred/both
    pred_edges: Tensor | None = None  # [C, M, M]
    diff_p: Tensor | None = None  # [loss_channels, M, M] |E(pred) − E(target)|^p
    loss_map: Tensor | None = None  # [M, M] weight · channel mean of diff_p; for "lp" its mean is the loss value

    @property
    def loss_channels(self) -> int:
        kernels = sum(len(KERNELS[f]) for f in self.loss.filters)
        return len(self.channels) if self.loss.magnitude else kernels


def edge_arrays(target: Tensor, loss: EdgeLoss, pred: Tensor | None = None) -> EdgeArrays:
    """Filter responses of a target [M, M] (and a prediction), and the per-pixel |ΔE|^p the loss averages, with
    the functions the loss uses (``filter_input``, ``edge_maps``, ``edge_distance``), so the figure cannot drift
    from the loss. Magnitudes are shown for every two-kernel filter; they enter ``diff_p`` only when
    ``loss.magnitude``."""
    show_magnitude = any(len(KERNELS[f]) == 2 for f in loss.filters)
    target = target.float()
    gt_in = filter_input(target[None], loss.smooth, "gt")[0]
    out = EdgeArrays(loss, channel_names(loss.filters, show_magnitude), target, gt_in,
                     edge_maps(gt_in[None], loss.filters, show_magnitude)[0])
    if pred is None:
        return out
    pred = pred.float()
    out.pred = pred
    out.pred_in = filter_input(pred[None], loss.smooth, "pred")[0]
    out.pred_edges = edge_maps(out.pred_in[None], loss.filters, show_magnitude)[0]
    n = out.loss_channels
    out.diff_p = edge_distance(out.pred_edges[:n], out.target_edges[:n], loss.p)
    out.loss_map = loss.weight * out.diff_p.mean(dim=0)
    return out


def figure_loss(cfg: Config | None, filters: list[str] | None = None, p: float | None = None,
                smooth: str | None = None, magnitude: bool | None = None) -> EdgeLoss:
    """The edge loss a figure shows: the run's (cfg) with the given options over it; sobel/p=2 for a baseline run
    or no run. A one-line error for options the loss does not allow."""
    base = EdgeLoss.from_config(cfg) if cfg is not None and cfg.filters else DEFAULT_EDGE_LOSS
    changes = {k: v for k, v in (("filters", tuple(filters) if filters else None), ("p", p),
                                 ("magnitude", magnitude)) if v is not None}
    if smooth is not None:
        changes["smooth"] = None if is_none(smooth) else smooth
    try:
        return dataclasses.replace(base, **changes)
    except ValueError as err:
        raise EdgeRCNNError(f"edge loss options: {err}") from None


# ---------------------------------------------------------------------------------------------------- commands
def visualize_runs(run_dirs: list[Path | str], out: Path | str, *, images: int | None = 4,
                   image_ids: list[int] | None = None, split: str = "val", data: Path | str | None = None,
                   crop: bool = False, score_threshold: float = 0.5, device: str = "cpu") -> Path:
    """``edgercnn visualize``: the same images (or GT instances, ``crop``) predicted by each run, one column per
    run; written to ``out`` (.png or .pdf). ``data`` defaults to the first run's."""
    from edgercnn.reporting.figures import check_output, render_comparison

    out = check_output(out)
    if not run_dirs:
        raise EdgeRCNNError("visualize: pass at least one RUN_DIR")
    if not 0 <= score_threshold <= 1:
        raise EdgeRCNNError(f"--score-threshold {score_threshold}: must be in [0, 1]")
    runs = [load_run(p, device) for p in run_dirs]
    data = data if data is not None else runs[0].cfg.data
    check_same_data(runs, data)
    dataset = open_dataset(data, split, runs[0].cfg)
    rows = choose_rows(dataset, images, image_ids, crop)
    if not rows:
        raise EdgeRCNNError(f"{data}: the {split} split has no image with an instance to show; pass --image-ids")
    panels = comparison_panels(runs, data, rows, split=split, score_threshold=score_threshold)
    names = [f"image {i}" if g is None else f"image {i}, GT {g}: {dataset.classes[gt_instances(dataset, i)[1][g] - 1]}"
             for i, g in rows]
    titles = [r.title for r in runs]
    name = load_manifest(data)["name"]
    return render_comparison(panels, names, titles, out, crop=crop,
                             title=f"{name} {split}, score ≥ {score_threshold:g}")


def visualize_edges(data: Path | str | None, image_id: int, out: Path | str, *, instance: int = 0,
                    filters: list[str] | None = None, mask_size: int | None = None, run_dir: Path | str | None = None,
                    p: float | None = None, smooth: str | None = None, magnitude: bool | None = None,
                    split: str = "val", canvas: tuple[int, int] | None = None, device: str = "cpu"
                    ) -> tuple[Path, EdgeArrays]:
    """``edgercnn visualize-edges``: Figure 3 (Figure 7 with smoothing) for one GT instance; the edge loss is the
    run's unless options override it. Returns the figure's path and its arrays."""
    from edgercnn.reporting.figures import check_output, render_edges

    out = check_output(out)
    run = load_run(run_dir, device) if run_dir is not None else None
    if data is None:
        if run is None:
            raise EdgeRCNNError("visualize-edges: pass --data DIR (a prepared dataset) or --run RUN_DIR")
        data = run.cfg.data
    if run is not None:
        check_same_data([run], data)
        if mask_size is not None and mask_size != run.cfg.mask_size:
            raise EdgeRCNNError(f"--mask-size {mask_size}: {run.run} predicts {run.cfg.mask_size}×"
                                f"{run.cfg.mask_size} masks; leave it out or pass {run.cfg.mask_size}")
    mask_size = mask_size or (run.cfg.mask_size if run is not None else Config().mask_size)
    if mask_size not in MASK_SIZES:
        raise EdgeRCNNError(f"--mask-size {mask_size}: choose {' or '.join(map(str, MASK_SIZES))}")
    geometry = run.cfg if run is not None else Config()
    if canvas is not None:
        geometry = dataclasses.replace(geometry, canvas=[int(canvas[0]), int(canvas[1])])
    loss = figure_loss(run.cfg if run is not None else None, filters, p, smooth, magnitude)
    dataset = open_dataset(data, split, geometry)
    binary = run is not None and run.cfg.mask_targets == "binary"  # what the run's loss compares with
    roi = roi_target(dataset, image_id, instance, mask_size, binary=binary)
    pred = roi_probability(run.model, roi.image, roi.box, roi.label) if run is not None else None
    arrays = edge_arrays(roi.target, loss, pred)
    value = float(loss(pred[None], roi.target[None])) if pred is not None else None
    where = f"{load_manifest(data)['name']} {split} image {image_id}, GT instance {instance} ({roi.class_name})"
    title = f"{run.title}: {where}" if run is not None else where
    return render_edges(arrays, roi, out, title=title, loss_value=value), arrays
