"""Evaluation post-processing at Cityscapes size: mask pasting (``to_original``) before/after, RLE encoding and
COCO scoring per image, on synthetic predictions (2048×1024 images, 100 detections each, 1024×800 canvas).

Predictions are made as the model makes them: 28×28 sigmoid masks pasted into their boxes on the canvas by
torchvision's ``paste_masks_in_image``. "before" is the full-image interpolation ``to_original`` used until
issue 11 (kept here as the reference) with C-ordered masks; "after" is ``edgercnn.data.transforms.to_original``
(masks laid out so that the RLE encoder needs no copy). The script also
checks that both give the same binary masks and the same metrics.

    python scripts/bench_eval.py                 # 3 images, 2048x1024, 100 detections
    python scripts/bench_eval.py --tiny          # seconds: 2 images, 256x128, 20 detections (the test runs it)
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pycocotools.mask as mask_util
import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import paste_masks_in_image

from edgercnn.evaluation.cocometrics import coco_metrics
from edgercnn.data.transforms import canvas_geometry, to_original
from edgercnn.evaluation.evaluate import coco_results


def to_original_interpolate(prediction, scale, pad, orig_size):
    """The masks of ``to_original`` before issue 11: every canvas probability map interpolated to the full image."""
    h, w = orig_size
    top, left = pad
    canvas_h, canvas_w = prediction["masks"].shape[-2:]
    valid_h, valid_w = min(round(h * scale), canvas_h - top), min(round(w * scale), canvas_w - left)
    masks = []
    for prob in prediction["masks"]:
        m = F.interpolate(prob[None, :, top:top + valid_h, left:left + valid_w].float(), size=(h, w),
                          mode="bilinear", align_corners=False)
        masks.append((m[0, 0] > 0.5).to(torch.uint8).cpu())
    return torch.stack(masks) if masks else torch.zeros(0, h, w, dtype=torch.uint8)


def synthetic_prediction(width: int, height: int, canvas: tuple[int, int], detections: int, seed: int):
    """One image's model output on the canvas: boxes, scores, labels and pasted [K, 1, H, W] probabilities."""
    g = torch.Generator().manual_seed(seed)
    scale, (top, left) = canvas_geometry(width, height, canvas)
    vw, vh = round(width * scale), round(height * scale)
    size = torch.rand(detections, 2, generator=g) ** 2 * torch.tensor([vw * 0.4, vh * 0.4]) + 4
    x0 = torch.rand(detections, generator=g) * (vw - size[:, 0]) + left
    y0 = torch.rand(detections, generator=g) * (vh - size[:, 1]) + top
    boxes = torch.stack([x0, y0, x0 + size[:, 0], y0 + size[:, 1]], 1)
    logits = F.avg_pool2d(torch.randn(detections, 1, 34, 34, generator=g) * 6, 7, 1)  # smooth blobs, 28x28
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 28), torch.linspace(-1, 1, 28), indexing="ij")
    logits = logits + 4 * (0.6 - (xx ** 2 + yy ** 2))  # mostly object in the middle, background at the border
    masks = paste_masks_in_image(torch.sigmoid(logits), boxes, (canvas[1], canvas[0]))
    return {"boxes": boxes, "masks": masks, "scores": torch.rand(detections, generator=g),
            "labels": torch.randint(1, 9, (detections,), generator=g)}, scale, (top, left)


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="2048x1024", help="original image WIDTHxHEIGHT (Cityscapes: 2048x1024)")
    ap.add_argument("--canvas", default="1024x800", help="model canvas WIDTHxHEIGHT")
    ap.add_argument("--detections", type=int, default=100, help="detections per image")
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--tiny", action="store_true", help="2 images of 256x128, 20 detections: a smoke run")
    args = ap.parse_args(argv)
    if args.tiny:
        args.size, args.canvas, args.detections, args.images = "256x128", "128x100", 20, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.split("x"))
    canvas = tuple(int(v) for v in args.canvas.split("x"))
    times = {"before": [], "after": [], "rle": [], "rle_before": []}
    differing, results_before, results_after, gt = 0, [], [], []
    for i in range(args.images):
        pred, scale, pad = synthetic_prediction(width, height, canvas, args.detections, seed=i)
        before, t_before = timed(to_original_interpolate, pred, scale, pad, (height, width))
        after, t_after = timed(to_original, pred, scale, pad, (height, width))
        differing += int((before != after["masks"]).sum())
        times["before"].append(t_before)
        times["after"].append(t_after)
        entries, t_rle = timed(coco_results, i + 1, after, {c: c for c in range(1, 9)})
        times["rle"].append(t_rle)
        results_after += entries
        entries_before, t_rle = timed(coco_results, i + 1, {**after, "masks": before}, {c: c for c in range(1, 9)})
        times["rle_before"].append(t_rle)
        results_before += entries_before
        for j, entry in enumerate(entries[::2]):  # ground truth: every other detection, its box jittered
            x, y, w, h = entry["bbox"]
            gt.append({"id": len(gt) + 1, "image_id": i + 1, "category_id": entry["category_id"],
                       "segmentation": entry["segmentation"], "area": float(mask_util.area(entry["segmentation"])),
                       "bbox": [x + j % 3, y, w, h], "iscrowd": 0})
    dataset = {"images": [{"id": i + 1, "width": width, "height": height} for i in range(args.images)],
               "categories": [{"id": c, "name": str(c)} for c in range(1, 9)], "annotations": gt}
    ids = list(range(1, args.images + 1))
    metrics_after, t_metrics = timed(coco_metrics, dataset, results_after, ids)
    metrics_before = coco_metrics(dataset, results_before, ids)
    same_metrics = all(metrics_before[k] == metrics_after[k] or (np.isnan(metrics_before[k]) and
                                                                 np.isnan(metrics_after[k])) for k in metrics_after)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.images} images {width}x{height}, "
          f"canvas {canvas[0]}x{canvas[1]}, {args.detections} detections each (median per image)")
    rows = [("to_original before (full interpolation)", med["before"]),
            ("to_original after (inside each mask's support)", med["after"]),
            ("RLE encoding (coco_results) before (C-ordered masks)", med["rle_before"]),
            ("RLE encoding (coco_results) after", med["rle"]),
            ("COCO scoring, segm+bbox+boundary (per image)", t_metrics / args.images)]
    for label, seconds in rows:
        print(f"  {label:50s} {seconds * 1e3:9.1f} ms")
    print(f"  speed-up of to_original: {med['before'] / med['after']:.1f}x; post-processing per image "
          f"{(med['before'] + med['rle_before']) * 1e3:.0f} ms → {(med['after'] + med['rle']) * 1e3:.0f} ms")
    print(f"  binary masks: {differing} of {args.images * args.detections * width * height} pixels differ; "
          f"metrics identical: {same_metrics} (segm AP {metrics_after['segm_AP']:.3f})")
    return {"speedup": med["before"] / med["after"], "differing_pixels": differing, "same_metrics": same_metrics}


if __name__ == "__main__":
    main()
