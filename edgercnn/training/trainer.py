"""The training loop: the paper's staged schedule (section 4), per-step loss CSV, checkpoints, resume.

Where its files go is the run folder's business (``edgercnn.training.rundir.RunDir``).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.utils.data import DataLoader

from edgercnn.core.checkpoint import read_checkpoint, rng_state, set_rng_state, write_checkpoint, write_weights
from edgercnn.config import Config
from edgercnn.core.commands import recorded_command
from edgercnn.builders.dataset import build_dataset
from edgercnn.data.dataset import collate, report_skipped, warn_if_empty
from edgercnn.data.manifest import dataset_fingerprint, load_manifest
from edgercnn.data.sampling import StepBatchSampler
from edgercnn.training import distributed
from edgercnn.core.errors import EdgeRCNNError, os_error_message, worker_errors
from edgercnn.core.io import check_writable
from edgercnn.evaluation.evaluate import evaluate_model
from edgercnn.evaluation.metrics import metric_summary
from edgercnn.model.rcnn import set_trainable
from edgercnn.builders.model import build_model
from edgercnn.builders.optimizer import build_optimizer
from edgercnn.model.sampling import install_per_image_sampling, set_image_seeds
from edgercnn.model.mask_terms import TERM_KEYS
from edgercnn.training.rundir import ADDED_LOSS_KEYS, LOSS_COLUMNS, LOSS_KEYS, RunDir
from edgercnn.config.schedule import lr_at, stage_at

#: Config keys a resumed run may change: where it runs and writes, not what it learns. ``data`` (the path) may
#: change too: the dataset's fingerprint (``dataset_fingerprint``) is compared instead.
RESUME_MAY_CHANGE = frozenset({"data", "device", "workers", "out_dir", "results_dir", "checkpoint_every", "eval_at_end", "eval_every",
                               "eval_max_images", "eval_score_threshold", "detections_per_image", "backbone_weights", "init",
                               "experiment", "name", "world_size",
                               "eval_nms_threshold", "postprocess", "eval_images"})  # inference-only keys


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise EdgeRCNNError(f"--device {name}: not a device name; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EdgeRCNNError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def resolve_config(cfg: Config) -> Config:
    """Fill what the dataset decides (num_classes) and check the data folder once, early."""
    manifest = load_manifest(cfg.data)
    if cfg.num_classes is None:
        return dataclasses.replace(cfg, num_classes=len(manifest["classes"]))
    if cfg.num_classes != len(manifest["classes"]):
        raise EdgeRCNNError(f"num_classes={cfg.num_classes} but {cfg.data}/manifest.json lists "
                            f"{len(manifest['classes'])} classes; drop num_classes from the config")
    return cfg


def check_outputs(cfg: Config) -> None:
    """Before any training: a one-line error when --out-dir (or --results-dir, when the run will write a result
    there) cannot be written, instead of an OSError after hours of training."""
    options = [("--out-dir", cfg.out_dir)] + ([("--results-dir", cfg.results_dir)] if cfg.eval_at_end else [])
    for option, path in options:
        try:
            check_writable(Path(path))
        except OSError as err:
            raise EdgeRCNNError(os_error_message(err, where=path, option=option)) from None


@dataclass
class TrainResult:
    run: RunDir
    steps: int
    wall_time_s: float
    last_losses: dict[str, float]
    #: The evaluation (metrics, COCO results) of the final weights made at the last step (eval_every), which
    #: ``experiments.pipeline.evaluate_run`` takes instead of evaluating the same weights again; None otherwise.
    final_evaluation: tuple[dict[str, float], list] | None = None


class Trainer:
    """Holds the model, optimizer and position of one run; ``run()`` trains to the end of the schedule."""

    def __init__(self, cfg: Config, *, resume: bool = False, console: Console | None = None,
                 command: str | None = None):
        cfg = distributed.setup(cfg)  # torchrun: join the process group, record world_size
        self.rank = distributed.rank_and_world()[0]  # only rank 0 writes files
        self.device = resolve_device(cfg.device)
        self.cfg = cfg = resolve_config(cfg)
        self.data_fingerprint = dataset_fingerprint(cfg.data)  # what the data is, not where (resume compares it)
        self.console = console or Console(stderr=True)
        if self.rank != 0:  # one progress display per run
            self.console = Console(quiet=True)
        if cfg.amp and self.device.type != "cuda":
            raise EdgeRCNNError("--amp needs a CUDA device; drop --amp or pass --device cuda")
        self.stages = cfg.resolved_stages()
        self.total_steps = cfg.total_steps()
        self.rundir = RunDir.of(self.cfg)
        self.command = command or recorded_command()
        self._final_evaluation: tuple[dict[str, float], list] | None = None

        check_outputs(cfg)
        # Held for the whole run (until close()): a second process on this folder would delete
        # this one's temp files and truncate its loss rows. Only rank 0 writes the folder, so only it locks.
        self.lock = self.rundir.lock() if self.rank == 0 else None
        if self.lock is not None:
            self.lock.acquire(self.command)
            if self.lock.note:
                self.console.print(self.lock.note, highlight=False)
        try:
            ckpt_path = self.rundir.checkpoint
            if ckpt_path.exists() and not resume:
                raise EdgeRCNNError(f"{self.rundir} already holds a run; pass --resume to continue it, "
                                    "or a different --seed/--name/--out-dir")
            torch.manual_seed(cfg.seed)  # the seed fixes initialisation ...
            random.seed(cfg.seed)
            np.random.seed(cfg.seed)
            self.model = build_model(cfg).to(self.device)
            install_per_image_sampling(self.model)  # RoI sampling: a function of (seed, sample index)
            self.optimizer = build_optimizer(cfg, self.model, float(self.stages[0]["lr"]))
            self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp)
            self.step = 0  # steps completed
            self.wall_time_s = 0.0
            if resume and ckpt_path.exists():
                self._load_checkpoint(ckpt_path)
            self.dataset = build_dataset(cfg, "train", "train")
            if len(self.dataset) == 0:
                raise EdgeRCNNError(f"{cfg.data}: the train split has no images; re-run edgercnn prepare")
            report_skipped(self.dataset, self.console)
            warn_if_empty(self.dataset, self.console)
            if self.rank != 0:  # the run folder is rank 0's to write
                return
            try:
                self.rundir.path.mkdir(parents=True, exist_ok=True)
                for tmp in self.rundir.remove_stale_temps():  # left by a write that was killed
                    self.console.print(f"note: removed {tmp.name}, a temporary file of an interrupted write",
                                       highlight=False)
                self.rundir.save_config(cfg)
                self.rundir.write_command(self.command)
                for note in (self.rundir.truncate_losses(self.step), self.rundir.truncate_evals(self.step)):
                    if note:
                        self.console.print(note, highlight=False)
            except OSError as err:
                raise EdgeRCNNError(os_error_message(err, where=self.rundir.path, option="--out-dir")) from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the run folder's lock, taken for the whole run (evaluation included) by ``__init__``."""
        if self.lock is not None and self.lock.held:
            self.lock.release()
        self.lock = None

    # ------------------------------------------------------------------ checkpoints
    def _load_checkpoint(self, path: Path) -> None:
        # on the CPU: RNG states must stay CPU tensors; load_state_dict moves the rest to the device
        state = read_checkpoint(path)  # checksum verified; weights_only: no pickled code runs
        saved, now = state["config"], self.cfg.to_dict()
        if state.get("data_fingerprint") != self.data_fingerprint:
            raise EdgeRCNNError(f"{path}: was trained on another dataset than --data {self.cfg.data} (manifest or "
                                f"annotations differ; it was {saved.get('data')!r}); resume with that dataset, or "
                                "start a new run (another --name/--out-dir)")
        for key in now:
            if key not in RESUME_MAY_CHANGE and saved.get(key) != now[key]:
                raise EdgeRCNNError(f"{path}: was trained with {key}={saved.get(key)!r}, now {key}="
                                    f"{getattr(self.cfg, key)!r}; resume with the same settings")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.wall_time_s = float(state["wall_time_s"])
        set_rng_state(state["rng"])

    def save_checkpoint(self) -> None:
        if self.rank != 0:
            return
        write_checkpoint(self.rundir.checkpoint, {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(), "step": self.step, "wall_time_s": self.wall_time_s,
            "rng": rng_state(), "config": self.cfg.to_dict(), "data_fingerprint": self.data_fingerprint,
        })

    # ------------------------------------------------------------------ training
    def _loader(self, end_step: int) -> DataLoader:
        sampler = StepBatchSampler(len(self.dataset), self.cfg.batch_size, self.cfg.seed, self.step, end_step,
                                   *distributed.rank_and_world())
        # Own generator: creating the iterator must not draw from the global RNG (RoI sampling uses it).
        return DataLoader(self.dataset, batch_sampler=sampler, collate_fn=collate, num_workers=self.cfg.workers,
                          generator=torch.Generator().manual_seed(self.cfg.seed),
                          persistent_workers=False, pin_memory=self.device.type == "cuda")

    def _set_lr(self, step: int) -> None:
        lr = lr_at(step, self.stages, self.cfg.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def train_step(self, images, targets) -> dict[str, float]:
        images = [im.to(self.device, non_blocking=True) for im in images]
        targets = [{k: v.to(self.device, non_blocking=True) for k, v in t.items()} for t in targets]
        set_image_seeds(self.model, distributed.image_seeds(len(self.dataset), self.cfg, self.step))
        self.model.roi_heads.loss_step = self.step  # the mask terms' schedules follow the run's step (and resume)
        with torch.autocast(self.device.type, enabled=self.cfg.amp):
            losses = distributed.reweight_losses(self.model, self.model(images, targets))
        set_image_seeds(self.model, None)
        total = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        distributed.average_gradients(self.model)
        if self.cfg.grad_clip_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        terms = [losses[k].detach().float() for k in TERM_KEYS if k in losses]
        if terms:
            losses = losses | {"loss_terms": torch.stack(terms).sum()}
        present = [k for k in LOSS_KEYS if k in losses]
        logged = distributed.average(torch.stack([losses[k].detach().float() for k in present] +
                                                 [total.detach().float()])).tolist()
        values = {k: 0.0 for k in LOSS_KEYS} | dict(zip(present, logged))  # one device→host copy per step
        values["loss_mrcnn"] = sum(v for k, v in values.items() if k not in ADDED_LOSS_KEYS)
        values["loss_total"] = logged[-1]
        if not math.isfinite(values["loss_total"]):
            raise EdgeRCNNError(f"loss became {values['loss_total']} at step {self.step + 1} ({self.rundir}); "
                                "lower the learning rate (--lr) or the edge weight (--alpha)")
        return values

    def evaluate_now(self) -> dict[str, float]:
        """Evaluate the current weights on val (RNG states and training mode restored) and append to evals.csv."""
        if self.rank != 0:
            return {}
        metrics, results = evaluate_model(self.model, self.cfg, self.device, console=self.console,
                                          show_progress=False)
        self.rundir.append_eval(self.step, metrics)
        self._final_evaluation = (metrics, results) if self.step == self.total_steps else None
        if not self.console.is_terminal:
            self.console.print(f"{self.cfg.config_name()} seed {self.cfg.seed}: step {self.step} "
                               f"{metric_summary(metrics)}", highlight=False)
        return metrics

    def run(self, stop_after: int | None = None) -> TrainResult:
        """Train until the schedule ends (or ``stop_after`` more steps, for tests/partial runs)."""
        try:
            with worker_errors():  # an image error in a DataLoader worker: the same one line as without workers
                return self._run(stop_after)
        except OSError as err:  # disk full, folder gone read-only: the last complete checkpoint is kept
            raise EdgeRCNNError(os_error_message(err, "free disk space or make the folder writable, then continue "
                                                 "with --resume (the last complete checkpoint is kept)", self.rundir.path)) from None

    def _run(self, stop_after: int | None = None) -> TrainResult:
        self.model.train()
        end = self.total_steps if stop_after is None else min(self.total_steps, self.step + stop_after)
        writer = _tensorboard(self.rundir.tensorboard) if self.rank == 0 else None
        stage = None
        last: dict[str, float] = {}
        log_every = max(1, self.total_steps // 10)  # plain log lines when the console is not a terminal
        with (self.rundir.losses.open("a", newline="") if self.rank == 0 else open(os.devnull, "w")) as handle, \
                _progress(self.console) as progress:
            rows = csv.DictWriter(handle, LOSS_COLUMNS, lineterminator="\n")  # as RunDir rewrites it
            task = progress.add_task(self.cfg.config_name(), total=self.total_steps, completed=self.step, info="")
            for images, targets in self._loader(end):
                if stage != stage_at(self.step + 1, self.stages):
                    stage = stage_at(self.step + 1, self.stages)
                    set_trainable(self.model, self.stages[stage]["layers"])
                    if self.cfg.optimizer_per_stage == "fresh" and self.step > 0 \
                            and stage != stage_at(self.step, self.stages):  # a stage starts now (not on resume)
                        lr = float(self.stages[stage]["lr"])
                        self.optimizer = build_optimizer(self.cfg, self.model, lr)
                self._set_lr(self.step + 1)
                t0 = time.perf_counter()
                last = self.train_step(images, targets)
                dt = time.perf_counter() - t0
                self.step += 1
                self.wall_time_s += dt
                row = {"step": self.step, "stage": stage + 1, "lr": self.optimizer.param_groups[0]["lr"], **last,
                       "step_time_s": dt}
                rows.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
                handle.flush()
                if writer is not None:
                    for key, value in last.items():
                        writer.add_scalar(f"train/{key}", value, self.step)
                info = (f"stage {stage + 1} lr {row['lr']:.2g} total {last['loss_total']:.3f} "
                        f"mask {last['loss_mask']:.3f} edge {last['loss_edge']:.3f}")
                progress.update(task, completed=self.step, info=info)
                if not self.console.is_terminal and (self.step % log_every == 0 or self.step == end):
                    self.console.print(f"{self.cfg.config_name()} seed {self.cfg.seed}: step {self.step}/"
                                       f"{self.total_steps} {info}", highlight=False)
                if self.cfg.eval_every and (self.step % self.cfg.eval_every == 0 or self.step == self.total_steps):
                    progress.update(task, info=f"evaluating at step {self.step}")
                    self.evaluate_now()
                if self.step % self.cfg.checkpoint_every == 0 or self.step == end:
                    self.save_checkpoint()
        if writer is not None:
            writer.close()
        if self.step >= self.total_steps and self.rank == 0:
            write_weights(self.rundir.final_weights, self.model.state_dict())
        final = self._final_evaluation if self.step >= self.total_steps else None
        return TrainResult(self.rundir, self.step, self.wall_time_s, last, final)


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                    console=console, transient=False, disable=not console.is_terminal)


def _tensorboard(folder: Path):
    """A TensorBoard writer when tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except (ImportError, ModuleNotFoundError):
        return None
    return SummaryWriter(str(folder))
