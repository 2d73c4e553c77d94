"""A run folder, ``<out_dir>/<experiment>/<config name>/seed-<n>/``: the one place that knows its file names.

Layout: ``config.yaml`` (the resolved config), ``command.txt``, ``losses.csv`` (one row per step),
``evals.csv`` (evaluations during training), ``train.log`` (output of runs in worker processes), ``checkpoint.pt`` (model, optimizer, step, RNG states; atomic),
``model_final.pt`` (a plain torchvision ``MaskRCNN`` state_dict), and after evaluation ``metrics.json`` and
``detections.json``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import yaml

from edgercnn.config import Config, config_from_dict
from edgercnn.errors import EdgeRCNNError
from edgercnn.io import atomic_write_text

LOSS_KEYS = ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg", "loss_edge")
LOSS_COLUMNS = ("step", "stage", "lr", *LOSS_KEYS, "loss_mrcnn", "loss_total", "step_time_s")
#: evals.csv: the metrics of each evaluation during training (``train --eval-every N``), for convergence curves.
EVAL_COLUMNS = ("step", "segm_AP", "segm_AP50", "segm_AP75", "boundary_AP", "bbox_AP", "val_loss_mask")


class RunDir:
    """The files of one run. ``RunDir.of(cfg)`` is where ``cfg`` trains; ``RunDir(path)`` an existing folder."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    @classmethod
    def of(cls, cfg: Config) -> "RunDir":
        return cls(Path(cfg.out_dir) / cfg.experiment / cfg.config_name() / f"seed-{cfg.seed}")

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------------ file names
    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def command_file(self) -> Path:
        return self.path / "command.txt"

    @property
    def losses(self) -> Path:
        return self.path / "losses.csv"

    @property
    def evals(self) -> Path:
        return self.path / "evals.csv"

    @property
    def log(self) -> Path:
        """What a run started by ``reproduce`` in a worker process printed."""
        return self.path / "train.log"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def final_weights(self) -> Path:
        return self.path / "model_final.pt"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def detections(self) -> Path:
        return self.path / "detections.json"

    # ------------------------------------------------------------------ contents
    def save_config(self, cfg: Config) -> None:
        cfg.save(self.config_file)

    def load_config(self) -> Config:
        if not self.config_file.is_file():
            raise EdgeRCNNError(f"{self.config_file}: not found; pass a run folder made by edgercnn train "
                                "(runs/<experiment>/<config>/seed-<n>)")
        return config_from_dict(yaml.safe_load(self.config_file.read_text()), str(self.config_file))

    def write_command(self, command: str) -> None:
        atomic_write_text(self.command_file, command + "\n")

    def read_command(self) -> str:
        return self.command_file.read_text().strip() if self.command_file.is_file() else "unknown"

    def read_loss_rows(self, up_to_step: int | None = None) -> list[dict[str, str]]:
        """The rows of ``losses.csv`` (as strings), those after ``up_to_step`` left out."""
        return read_rows(self.losses, up_to_step)

    def truncate_losses(self, step: int) -> None:
        """Keep only the loss rows a checkpoint at ``step`` covers: no duplicated or missing rows after a resume."""
        atomic_write_text(self.losses, csv_text(LOSS_COLUMNS, self.read_loss_rows(step)))

    def truncate_evals(self, step: int) -> None:
        """Keep only the evaluation rows up to ``step`` (evaluations after the checkpoint are redone)."""
        if self.evals.is_file():
            atomic_write_text(self.evals, csv_text(EVAL_COLUMNS, read_rows(self.evals, step)))

    def append_eval(self, step: int, metrics: dict[str, float]) -> None:
        """Add one evaluation row (rewritten atomically: the file is small)."""
        rows = read_rows(self.evals) + [{"step": step, **{k: f"{metrics[k]:.6g}" for k in EVAL_COLUMNS[1:]}}]
        atomic_write_text(self.evals, csv_text(EVAL_COLUMNS, rows))


def read_rows(path: Path, up_to_step: int | None = None) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [r for r in rows if up_to_step is None or int(r["step"]) <= up_to_step]


def csv_text(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
