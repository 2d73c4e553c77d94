"""Run-level orchestration: train → evaluate → per-seed result CSV; evaluate a run folder."""

from __future__ import annotations

import math
import time
from pathlib import Path

from rich.console import Console

from edgercnn.config import Config
from edgercnn.core.errors import EdgeRCNNError, os_error_message
from edgercnn.evaluation.evaluate import evaluate_model, save_detections
from edgercnn.evaluation.metrics import metric_names
from edgercnn.core.io import atomic_write_json
from edgercnn.training import runmodel as run_model
from edgercnn.reporting.results import write_result
from edgercnn.training.rundir import RunDir
from edgercnn.training.trainer import Trainer, resolve_device


def evaluate_run(run_dir: Path | RunDir, *, device: str | None = None, max_images: int | None = None,
                 console: Console | None = None,
                 evaluation: tuple[dict[str, float], list] | None = None) -> tuple[dict[str, float], Path | None]:
    """Evaluate the final (or latest checkpointed) weights of a run folder; write metrics.json and
    detections.json, and the per-seed result CSV when the run is complete and the whole val split was used
    (its path is returned; None otherwise). ``evaluation``: the trainer's evaluation of these final weights at
    its last step (``TrainResult.final_evaluation``), taken instead of evaluating them a second time."""
    console = console or Console(stderr=True)
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if not run.config_file.is_file():
        run.load_config()  # the one-line "not a run folder" error, before a lock file is made there
    with run.lock():  # re-entrant: train_and_evaluate holds it already; another process gets one line
        dev = resolve_device(device or run.load_config().device)
        loaded = run_model.load_run_model(run, f"delete it to evaluate {run.checkpoint.name} instead (the weights "
                                                "of the last checkpoint)")
        cfg, weights = loaded.cfg, loaded.weights
        # model_final.pt alone (no checkpoint.pt): training finished; its wall time is not known
        steps = int(weights.step) if weights.step is not None else cfg.total_steps()
        wall = float(weights.wall_time_s) if weights.wall_time_s is not None else math.nan
        if not weights.final and steps < cfg.total_steps():
            console.print(f"[yellow]{run}: training did not finish; evaluating the checkpoint at step {steps}")
        model = loaded.model.to(dev)
        if max_images is not None and max_images < 1:
            raise EdgeRCNNError(f"--max-images {max_images}: must be >= 1 (or left out for the whole val split)")
        if evaluation is not None and weights.final and max_images is None:
            metrics, results = evaluation  # the same function on the same weights: the same numbers
        else:
            metrics, results = evaluate_model(model, cfg, dev, max_images=max_images, console=console)
        try:
            save_detections(results, run.detections)
            atomic_write_json(run.metrics, {**metrics, "steps": steps})
        except OSError as err:
            raise EdgeRCNNError(os_error_message(err, "make the run folder writable (or copy it somewhere writable) "
                                                 "and evaluate again", run.path)) from None
        partial = max_images is not None or cfg.eval_max_images is not None
        if steps < cfg.total_steps() or partial:
            # a half-trained run or a partial val split is not a seed result: report/reproduce would count it
            console.print(f"{run.metrics} written; no results CSV (steps {steps}/{cfg.total_steps()}"
                          f"{', part of the val split only' if partial else ''})", highlight=False)
            return metrics, None
        try:
            return metrics, write_result(cfg, run, metrics, metric_names(metrics), steps, wall, run.read_command(),
                                         weights.data_fingerprint)
        except OSError as err:
            raise EdgeRCNNError(os_error_message(err, "make --results-dir writable (or pass another) and run edgercnn "
                                                 f"eval {run} again", cfg.results_dir)) from None


def train_and_evaluate(cfg: Config, *, resume: bool = False, console: Console | None = None,
                       command: str | None = None) -> tuple[RunDir, dict[str, float] | None, Path | None]:
    """``edgercnn train``: train to the end of the schedule, then evaluate (unless eval_at_end is off)."""
    console = console or Console(stderr=True)
    trainer = Trainer(cfg, resume=resume, console=console, command=command)  # checks out_dir/results_dir first
    try:  # the trainer holds the run folder's lock until close(): through the evaluation too
        started = time.perf_counter()
        result = trainer.run()
        console.print(f"trained {cfg.config_name()} seed {cfg.seed}: {result.steps} steps in "
                      f"{time.perf_counter() - started:.0f} s → {result.run}", highlight=False)
        if not cfg.eval_at_end or trainer.rank != 0:  # a distributed run is evaluated by rank 0 alone
            return result.run, None, None
        metrics, csv_path = evaluate_run(result.run, console=console, evaluation=result.final_evaluation)
        return result.run, metrics, csv_path
    finally:
        trainer.close()
