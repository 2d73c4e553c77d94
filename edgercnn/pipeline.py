"""Run-level orchestration: train → evaluate → per-seed result CSV; evaluate an existing run folder.

Result files (CONVENTIONS): ``results/<experiment>/<config>/seed-<n>.csv`` (one row: config columns,
metrics, steps, wall time, versions, git commit, command), beside it ``seed-<n>-losses.csv`` (the per-step
losses, for the report's curves) and ``seed-<n>.config.yaml`` (the resolved configuration).
"""

from __future__ import annotations

import csv
import io
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
import torchvision
import yaml
from rich.console import Console

import edgercnn
from edgercnn.config import Config, config_from_dict
from edgercnn.errors import EdgeRCNNError
from edgercnn.evaluate import METRICS, evaluate_model, save_detections
from edgercnn.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from edgercnn.model import build_model
from edgercnn.train import CHECKPOINT, FINAL_WEIGHTS, LOSSES_CSV, Trainer, resolve_device


def git_commit() -> str:
    """The commit of the edgercnn source tree (+ "-dirty" with local changes), or "unknown"."""
    here = Path(edgercnn.__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def config_columns(cfg: Config) -> dict[str, Any]:
    """Config keys as flat CSV values (lists joined, None as "none")."""
    out: dict[str, Any] = {}
    for key, value in cfg.to_dict().items():
        if key == "filters":
            value = "+".join(value) if value else "none"
        elif key == "canvas":
            value = "x".join(str(v) for v in value)
        elif key == "stages":
            value = ",".join(f"{s['layers']}:{s['steps']}@{s['lr']:g}" for s in cfg.resolved_stages())
        elif key == "lr":
            value = float(cfg.resolved_stages()[0]["lr"])
        elif value is None:
            value = "none"
        out[key] = value
    out["steps"] = cfg.total_steps()
    return out


def result_paths(cfg: Config) -> tuple[Path, Path, Path]:
    folder = Path(cfg.results_dir) / cfg.experiment / cfg.config_name()
    return (folder / f"seed-{cfg.seed}.csv", folder / f"seed-{cfg.seed}-losses.csv",
            folder / f"seed-{cfg.seed}.config.yaml")


def write_result(cfg: Config, run_dir: Path, metrics: dict[str, float], steps: int, wall_time_s: float,
                 command: str) -> Path:
    """Write the per-seed CSV (and the losses and config beside it); returns the CSV path."""
    row = {"experiment": cfg.experiment, "config": cfg.config_name(), **config_columns(cfg)}
    row.update({m: metrics.get(m, float("nan")) for m in METRICS})
    row.update({
        "val_loss_mask": metrics.get("val_loss_mask", float("nan")), "val_images": metrics.get("val_images"),
        "steps": steps, "wall_time_s": round(wall_time_s, 2), "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__, "edgercnn_version": edgercnn.__version__,
        "git_commit": git_commit(), "command": command,
    })
    csv_path, losses_path, cfg_path = result_paths(cfg)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, list(row), lineterminator="\n")
    writer.writeheader()
    writer.writerow(row)
    atomic_write_text(csv_path, buffer.getvalue())
    atomic_write_bytes(losses_path, (run_dir / LOSSES_CSV).read_bytes())
    atomic_write_text(cfg_path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return csv_path


def load_run_config(run_dir: Path) -> Config:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise EdgeRCNNError(f"{path}: not found; pass a run folder made by edgercnn train "
                            "(runs/<experiment>/<config>/seed-<n>)")
    return config_from_dict(yaml.safe_load(path.read_text()), str(path))


def evaluate_run(run_dir: Path, *, device: str | None = None, max_images: int | None = None,
                 console: Console | None = None) -> tuple[dict[str, float], Path | None]:
    """Evaluate the final (or latest checkpointed) weights of a run folder; write metrics.json and
    detections.json, and the per-seed result CSV when the run is complete and the whole val split was used
    (its path is returned; None otherwise)."""
    console = console or Console(stderr=True)
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    cfg.backbone_weights = None  # the run's own weights replace them
    dev = resolve_device(device or cfg.device)
    final, ckpt = run_dir / FINAL_WEIGHTS, run_dir / CHECKPOINT
    if not ckpt.is_file():
        raise EdgeRCNNError(f"{run_dir}: no {CHECKPOINT}; train the run first (edgercnn train)")
    info = torch.load(ckpt, map_location=dev, weights_only=False)
    steps, wall = int(info["step"]), float(info["wall_time_s"])
    if final.is_file():
        state = torch.load(final, map_location=dev, weights_only=True)
    else:
        state = info["model"]
        console.print(f"[yellow]{run_dir}: training did not finish; evaluating the checkpoint at step {steps}")
    model = build_model(cfg).to(dev)
    model.load_state_dict(state)
    if max_images is not None and max_images < 1:
        raise EdgeRCNNError(f"--max-images {max_images}: must be >= 1 (or left out for the whole val split)")
    metrics, results = evaluate_model(model, cfg, dev, max_images=max_images, console=console)
    save_detections(results, run_dir / "detections.json")
    atomic_write_json(run_dir / "metrics.json", {**metrics, "steps": steps})
    if steps < cfg.total_steps() or max_images is not None:
        # a half-trained run or a partial val split is not a seed result: report/reproduce would count it
        console.print(f"{run_dir}/metrics.json written; no results CSV (steps {steps}/{cfg.total_steps()}"
                      f"{', --max-images' if max_images is not None else ''})", highlight=False)
        return metrics, None
    command_file = run_dir / "command.txt"
    command = command_file.read_text().strip() if command_file.is_file() else "unknown"
    return metrics, write_result(cfg, run_dir, metrics, steps, wall, command)


def train_and_evaluate(cfg: Config, *, resume: bool = False, console: Console | None = None,
                       command: str | None = None) -> tuple[Path, dict[str, float] | None, Path | None]:
    """``edgercnn train``: train to the end of the schedule, then evaluate (unless eval_at_end is off)."""
    console = console or Console(stderr=True)
    trainer = Trainer(cfg, resume=resume, console=console, command=command)
    started = time.perf_counter()
    result = trainer.run()
    console.print(f"trained {cfg.config_name()} seed {cfg.seed}: {result.steps} steps in "
                  f"{time.perf_counter() - started:.0f} s → {result.run_dir}", highlight=False)
    if not cfg.eval_at_end:
        return result.run_dir, None, None
    metrics, csv_path = evaluate_run(result.run_dir, console=console)
    return result.run_dir, metrics, csv_path
