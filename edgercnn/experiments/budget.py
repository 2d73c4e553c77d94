"""A CPU recipe scaled to a user's dataset: the canvas from its image sizes, the steps from a time budget.

The step count is measured, not guessed: a few training steps and a few evaluated images of the actual model on the
actual data, timed with the thread count each parallel job will get (``calibrate``), then divided into the budget
(``steps_for_budget``).
"""

from __future__ import annotations

import csv
import math
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from rich.console import Console

from edgercnn.builders.dataset import build_dataset
from edgercnn.config import Config
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.data.coco_json import read_coco_json
from edgercnn.data.manifest import load_manifest, split_paths
from edgercnn.evaluation.evaluate import evaluate_model
from edgercnn.training.trainer import Trainer

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
    ``cfg``'s model on its data with ``threads`` torch threads; the evaluation time is scaled to the val split.

    The steps are the trainer's own (``Trainer.run``: its optimizer, loader, schedule and loss code, timed as it
    logs ``step_time_s``), in a throw-away run folder."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory(prefix="edgercnn-calibrate-") as tmp:
            probe = replace(cfg, workers=0, out_dir=tmp, results_dir=tmp, eval_at_end=False, eval_every=0)
            trainer = Trainer(probe, console=Console(quiet=True), command="calibrate")
            try:
                result = trainer.run(stop_after=steps + 2)
                with result.run.losses.open(newline="") as handle:
                    times = [float(row["step_time_s"]) for row in csv.DictReader(handle)]
                val = build_dataset(trainer.cfg, "val", "eval")
                n = min(eval_images, len(val))
                t0 = time.perf_counter()
                evaluate_model(trainer.model, trainer.cfg, trainer.device, max_images=n, show_progress=False)
                eval_s = (time.perf_counter() - t0) / max(1, n) * len(val)
            finally:
                trainer.close()
    finally:
        torch.set_num_threads(before)
    return Timing(step_s=statistics.median(times[2:] or times), eval_s=eval_s)


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
