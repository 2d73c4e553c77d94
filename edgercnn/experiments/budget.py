"""A CPU recipe scaled to a user's dataset: the canvas from its image sizes, the steps from a time budget.

The step count is measured, not guessed: a few training steps and a few evaluated images of the actual model on the
actual data, timed with the thread count each parallel job will get (``calibrate``), then divided into the budget
(``steps_for_budget``).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from edgercnn.config import Config
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.data.coco_json import read_coco_json
from edgercnn.data.dataset import CocoInstanceDataset, collate
from edgercnn.data.manifest import load_manifest, split_paths
from edgercnn.evaluation.evaluate import evaluate_model
from edgercnn.model.optim import build_optimizer
from edgercnn.training.builder import build_model
from edgercnn.training.trainer import resolve_config, resolve_device, train_dataset

#: Canvas sides are multiples of this (the FPN's coarsest stride, so no feature map is rounded).
CANVAS_MULTIPLE = 32
#: Fewer steps than this cannot show the effect (the probes' curves separate after a few hundred steps).
MIN_STEPS = 300


def canvas_for_sizes(sizes: list[tuple[int, int]], pixels: int, multiple: int = CANVAS_MULTIPLE) -> list[int]:
    """[W, H] of about ``pixels`` pixels with the median aspect ratio of ``sizes`` ((width, height) pairs), each
    side a multiple of ``multiple``: the CPU recipe's pixel budget in the shape of the user's images."""
    if not sizes:
        raise ValueError("canvas_for_sizes: no image sizes")
    aspect = statistics.median(w / h for w, h in sizes)
    width = math.sqrt(pixels * aspect)
    w = max(multiple, round(width / multiple) * multiple)
    h = max(multiple, round(pixels / width / multiple) * multiple)
    return [int(w), int(h)]


def train_image_sizes(data: Path) -> list[tuple[int, int]]:
    """(width, height) of every image of the train split, as the prepared annotations list them."""
    manifest = load_manifest(data)
    _, annotations = split_paths(manifest, "train")
    coco = read_coco_json(annotations, f"re-run edgercnn prepare for {data}")
    return [(int(im["width"]), int(im["height"])) for im in coco.get("images", [])]


@dataclass(frozen=True)
class Timing:
    step_s: float  # seconds per training step
    eval_s: float  # seconds per evaluation of the whole val split

    def describe(self) -> str:
        return f"{self.step_s:.2f} s per training step, {self.eval_s:.0f} s per evaluation"


def calibrate(cfg: Config, threads: int, steps: int = 6, eval_images: int = 4) -> Timing:
    """Time ``steps`` training steps (after 2 untimed ones) and the evaluation of ``eval_images`` val images of
    ``cfg``'s model on its data with ``threads`` torch threads, on ``cfg.device`` (a GPU recipe is timed on the
    GPU); the evaluation time is scaled to the val split."""
    cfg = resolve_config(replace(cfg, workers=0))
    device = resolve_device(cfg.device)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(cfg.seed)
        model = build_model(cfg).to(device)
        optimizer = build_optimizer(cfg.optimizer, model, float(cfg.resolved_stages()[0]["lr"]), cfg.momentum,
                                    cfg.weight_decay, cfg.weight_decay_mode)
        dataset = train_dataset(cfg)
        if len(dataset) == 0:
            raise EdgeRCNNError(f"{cfg.data}: the train split has no images; re-run edgercnn prepare")
        model.train()
        times = []
        for i in range(steps + 2):
            batch = [dataset[(i * cfg.batch_size + k) % len(dataset)] for k in range(cfg.batch_size)]
            images, targets = collate(batch)
            images = [im.to(device) for im in images]
            targets = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
            _sync(device)
            t0 = time.perf_counter()
            loss = sum(model(images, targets).values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            _sync(device)
            times.append(time.perf_counter() - t0)
        val = CocoInstanceDataset(cfg.data, "val", canvas=tuple(cfg.canvas), train=False)
        t0 = time.perf_counter()
        evaluate_model(model, cfg, device, max_images=min(eval_images, len(val)), show_progress=False)
        eval_s = (time.perf_counter() - t0) / max(1, min(eval_images, len(val))) * len(val)
    finally:
        torch.set_num_threads(before)
    return Timing(step_s=statistics.median(times[2:]), eval_s=eval_s)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":  # CUDA runs asynchronously: wait before reading the clock
        torch.cuda.synchronize(device)


def steps_for_budget(minutes: float, runs: int, jobs: int, evals: int, timing: Timing,
                     multiple: int = 50) -> int:
    """The training steps per run that fit ``runs`` runs, ``jobs`` at a time, each with ``evals`` evaluations, into
    ``minutes``; rounded down to a multiple of ``multiple``. One-line error when not even ``MIN_STEPS`` fit."""
    rounds = math.ceil(runs / max(1, jobs))
    per_run_s = minutes * 60 / rounds
    steps = int((per_run_s - evals * timing.eval_s) / timing.step_s) // multiple * multiple
    if steps < MIN_STEPS:
        need = rounds * (MIN_STEPS * timing.step_s + evals * timing.eval_s) / 60
        raise EdgeRCNNError(f"--minutes {minutes:g}: only {max(steps, 0)} steps per run fit ({runs} runs, {jobs} at "
                            f"a time, {timing.describe()}); give at least {math.ceil(need)} minutes or fewer --seeds")
    return steps
