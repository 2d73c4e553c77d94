"""A run folder, ``<out_dir>/<experiment>/<config name>/seed-<n>/``: the one place that knows its file names.

Layout: ``config.yaml`` (the resolved config), ``command.txt``, ``losses.csv`` (one row per step),
``evals.csv`` (evaluations during training), ``train.log`` (output of runs in worker processes), ``checkpoint.pt`` (model, optimizer, step, RNG states,
dataset fingerprint; atomic, checksummed: ``edgercnn.training.checkpoint``),
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
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.core.io import atomic_write_text, remove_stale_temps

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
        """The rows of ``losses.csv`` (as strings) for steps 1, 2, ... (checked: complete, numeric, consecutive);
        with ``up_to_step`` exactly steps 1..up_to_step, a one-line error when one of them is missing or damaged.
        Without it, the intact rows before the first damaged one."""
        rows, _ = scan_rows(self.losses, LOSS_COLUMNS, consecutive=True)
        return rows if up_to_step is None else self._covered(rows, up_to_step)

    def _covered(self, rows: list[dict[str, str]], step: int) -> list[dict[str, str]]:
        if len(rows) < step:
            raise EdgeRCNNError(f"{self.losses}: the row of step {len(rows) + 1} is missing or damaged, but the run "
                                f"reached step {step}; restore the file, or delete {self.path} to start over")
        return rows[:step]

    def loss_csv_text(self, up_to_step: int) -> str:
        """``losses.csv`` of steps 1..up_to_step, checked (for the per-seed results)."""
        return csv_text(LOSS_COLUMNS, self.read_loss_rows(up_to_step))

    def truncate_losses(self, step: int) -> str | None:
        """Keep only the loss rows a checkpoint at ``step`` covers: no duplicated, missing or torn rows after a
        resume. Returns a note when rows after the checkpoint (an interrupted run's) were dropped."""
        good, lines = scan_rows(self.losses, LOSS_COLUMNS, consecutive=True)
        rows = self._covered(good, step)
        atomic_write_text(self.losses, csv_text(LOSS_COLUMNS, rows))
        dropped = lines - len(rows)
        if dropped > 0:
            return (f"note: {self.losses}: dropped {dropped} row(s) after the checkpoint at step {step} (written "
                    "after it, or torn by the interruption); they are trained again")
        return None

    def truncate_evals(self, step: int) -> str | None:
        """Keep only the intact evaluation rows up to ``step`` (evaluations after the checkpoint are redone).
        Returns a note when rows were dropped."""
        if not self.evals.is_file():
            return None
        good, lines = scan_rows(self.evals, EVAL_COLUMNS, consecutive=False)
        rows = [r for r in good if int(r["step"]) <= step]
        atomic_write_text(self.evals, csv_text(EVAL_COLUMNS, rows))
        if lines - len(rows) > 0:
            return (f"note: {self.evals}: dropped {lines - len(rows)} row(s), after the checkpoint at step {step} "
                    "or damaged; evaluations after the checkpoint are redone")
        return None

    def append_eval(self, step: int, metrics: dict[str, float]) -> None:
        """Add one evaluation row (rewritten atomically: the file is small)."""
        good, _ = scan_rows(self.evals, EVAL_COLUMNS, consecutive=False)
        rows = good + [{"step": step, **{k: f"{metrics[k]:.6g}" for k in EVAL_COLUMNS[1:]}}]
        atomic_write_text(self.evals, csv_text(EVAL_COLUMNS, rows))

    def remove_stale_temps(self) -> list[Path]:
        """Delete temp files of this run's files left by a write that was killed (``.checkpoint.pt.*.tmp``, ...)."""
        names = [self.config_file, self.command_file, self.losses, self.evals, self.checkpoint, self.final_weights,
                 self.metrics, self.detections]
        return remove_stale_temps(self.path, [p.name for p in names])


def read_rows(path: Path, up_to_step: int | None = None) -> list[dict[str, str]]:
    """The intact rows of a run CSV (see ``scan_rows``), those after ``up_to_step`` left out."""
    columns = EVAL_COLUMNS if Path(path).name == "evals.csv" else LOSS_COLUMNS
    rows, _ = scan_rows(path, columns, consecutive=columns is LOSS_COLUMNS)
    return [r for r in rows if up_to_step is None or int(r["step"]) <= up_to_step]


def _intact(row: dict[Any, Any], columns: tuple[str, ...]) -> bool:
    """Every column present and numeric (step and stage integers), nothing extra."""
    if None in row or any(row.get(c) in (None, "") for c in columns):
        return False
    try:
        for c in columns:
            int(row[c]) if c in ("step", "stage") else float(row[c])
    except ValueError:
        return False
    return True


def scan_rows(path: Path, columns: tuple[str, ...], consecutive: bool) -> tuple[list[dict[str, str]], int]:
    """(the intact rows before the first damaged one, the number of data lines). Intact: the header is
    ``columns``, every cell present and numeric, steps 1, 2, 3, ... (``consecutive``) or increasing."""
    path = Path(path)
    if not path.is_file():
        return [], 0
    try:
        with path.open(newline="", errors="replace") as handle:
            lines = [line for line in handle.read().splitlines() if line.strip()]
    except OSError:
        return [], 0
    if not lines:
        return [], 0
    data = lines[1:]
    good: list[dict[str, str]] = []
    if tuple(next(csv.reader([lines[0]]), [])) != columns:
        return good, len(data)
    try:
        for row in csv.DictReader(data, fieldnames=list(columns)):
            if not _intact(row, columns):
                break
            step = int(row["step"])
            previous = int(good[-1]["step"]) if good else 0
            if step != previous + 1 if consecutive else step <= previous:
                break
            good.append({c: row[c] for c in columns})
    except csv.Error:
        pass
    return good, len(data)


def csv_text(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
