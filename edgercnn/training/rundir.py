"""A run folder, ``<out_dir>/<experiment>/<config name>/seed-<n>/``: the one place that knows its file names
(``RunDir``; the two weight files and their reader are its base's, ``edgercnn.builders.runweights``, which sits below
training so that ``build_model`` can read them for ``--init RUN``).

Layout: ``config.yaml`` (the resolved config), ``command.txt``, ``losses.csv`` (one row per step),
``evals.csv`` (evaluations during training), ``train.log`` (output of runs in worker processes), ``checkpoint.pt`` (model, optimizer, step, RNG states,
dataset fingerprint; atomic, checksummed: ``edgercnn.core.checkpoint``),
``model_final.pt`` (a plain torchvision ``MaskRCNN`` state_dict), and after evaluation ``metrics.json`` and
``detections.json``; ``run.lock`` (the advisory lock train/eval/resume hold: ``RunDir.lock``) and, while it is held,
``run.lock.owner`` (who holds it: PID, host, since when).
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import time
import weakref
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock, Timeout

from edgercnn.builders.runweights import RunWeightFiles
from edgercnn.config import Config, config_from_dict
from edgercnn.core.errors import EdgeRCNNError, os_error_message
from edgercnn.core.io import atomic_write_json, atomic_write_text, remove_stale_temps
from edgercnn.evaluation.metrics import TRAINING_METRICS

LOSS_KEYS = ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg", "loss_edge",
             "loss_terms")
#: Not Mask R-CNN's own: the edge loss and ``loss_terms``, the sum of the other mask-loss terms (mask_terms.TERM_KEYS).
ADDED_LOSS_KEYS = ("loss_edge", "loss_terms")
LOSS_COLUMNS = ("step", "stage", "lr", *LOSS_KEYS, "loss_mrcnn", "loss_total", "step_time_s")
#: evals.csv: the metrics of each evaluation during training (``train --eval-every N``), for convergence curves.
EVAL_COLUMNS = ("step", *TRAINING_METRICS)


class RunDir(RunWeightFiles):
    """The files of one run. ``RunDir.of(cfg)`` is where ``cfg`` trains; ``RunDir(path)`` an existing folder. Its
    weight files (``checkpoint``, ``final_weights``) and their reader (``load_weights``) come from
    ``RunWeightFiles``."""

    @classmethod
    def of(cls, cfg: Config) -> "RunDir":
        return cls(Path(cfg.out_dir) / cfg.experiment / cfg.config_name() / f"seed-{cfg.seed}")

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

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
    def tensorboard(self) -> Path:
        """TensorBoard event files of the training (when tensorboard is installed)."""
        return self.path / "tb"

    @staticmethod
    def job_files(cfg: Config) -> Path:
        """submitit's job files (scripts, logs) of an experiment's runs: ``<out_dir>/<experiment>/submitit``."""
        return Path(cfg.out_dir) / cfg.experiment / "submitit"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def detections(self) -> Path:
        return self.path / "detections.json"

    @property
    def lock_file(self) -> Path:
        return self.path / "run.lock"

    @property
    def lock_owner(self) -> Path:
        return self.path / "run.lock.owner"

    def lock(self) -> "RunLock":
        """The advisory lock of this folder (one object per folder and process, so taking it again is re-entrant):
        ``with run.lock():`` around anything that writes the run's files."""
        key = str(self.path.resolve())
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = RunLock(self)
        return lock

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
                 self.metrics, self.detections, self.lock_owner]
        return remove_stale_temps(self.path, [p.name for p in names])


#: Seconds to wait for a lock whose recorded owner is a dead process on this host (its DataLoader workers, which
#: inherited the lock, exit within seconds of noticing).
STALE_WAIT_S = 15.0

_LOCKS: "weakref.WeakValueDictionary[str, RunLock]" = weakref.WeakValueDictionary()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or not a pid we can ask about): assume alive
    return True


class RunLock:
    """An advisory lock on one run folder, held by train/eval/resume for the whole run: two processes on one
    folder (a double-submitted job, a re-run sweep) would delete each other's temp files and truncate each other's
    loss rows. An OS file lock (``filelock``: released by the kernel when the holder dies, even by kill -9) on
    ``run.lock``; ``run.lock.owner`` records the holder for the message a second process gets. An owner file left
    by a dead process on this host is recognised as stale and taken over. Re-entrant within a process."""

    def __init__(self, run: RunDir):
        self.run = run
        self._file_lock: FileLock | None = None
        self._count = 0
        self.note: str | None = None  # set on acquire when a stale owner was taken over

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        if self._count:
            self._count = 1
            try:
                self.release()
            except Exception:  # at interpreter exit; the OS releases the lock with the process anyway
                pass

    @property
    def held(self) -> bool:
        return self._count > 0

    def owner(self) -> dict[str, Any] | None:
        """The recorded holder ({pid, host, since, command}), or None when there is none or it is unreadable."""
        try:
            owner = json.loads(self.run.lock_owner.read_text())
        except (OSError, ValueError, RecursionError):
            return None
        if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int):
            return None
        return owner

    def _stale(self, owner: dict[str, Any] | None) -> bool:
        return owner is not None and owner.get("host") == socket.gethostname() and not _alive(owner["pid"]) \
            and owner["pid"] != os.getpid()

    def acquire(self, command: str = "") -> "RunLock":
        """Take the lock (without waiting: a busy run folder is a one-line error naming its holder)."""
        if self._count:
            self._count += 1
            return self
        try:
            self.run.path.mkdir(parents=True, exist_ok=True)
            file_lock = FileLock(str(self.run.lock_file))
            before = self.owner()
            try:
                file_lock.acquire(timeout=0)
            except Timeout:
                if not self._stale(before):
                    raise EdgeRCNNError(self._busy_message()) from None
                try:  # its workers still hold the OS lock for a moment
                    file_lock.acquire(timeout=STALE_WAIT_S)
                except Timeout:
                    raise EdgeRCNNError(self._busy_message()) from None
            self._file_lock = file_lock
            self.note = (f"note: {self.run.lock_file}: took over the lock of PID {before['pid']} on {before['host']}"
                         ", which is no longer running") if self._stale(before) else None
            try:
                atomic_write_json(self.run.lock_owner, {
                    "pid": os.getpid(), "host": socket.gethostname(),
                    "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": command})
            except BaseException:
                file_lock.release()
                self._file_lock = None
                raise
        except OSError as err:
            raise EdgeRCNNError(os_error_message(err, "make the run folder writable (or copy it somewhere "
                                                 "writable) and run again", self.run.path)) from None
        self._count = 1
        return self

    def _busy_message(self) -> str:
        owner = self.owner()
        if owner is None:
            who = "another process (not recorded yet)"
        else:
            who = f"PID {owner['pid']} on {owner.get('host', '?')} since {owner.get('since', '?')}"
            if self._stale(owner):
                who += f" (not running, but its lock is still held after {STALE_WAIT_S:.0f} s)"
        return (f"{self.run}: in use by {who}; wait for it to finish (or stop it), then re-run with --resume; "
                "two processes on one run folder would overwrite each other's checkpoints and loss rows")

    def release(self) -> None:
        """Give the lock back (the last of nested acquires does): the owner file goes, the lock file stays (deleting
        it would let a waiting process lock a file no one else sees)."""
        if not self._count:
            return
        self._count -= 1
        if self._count or self._file_lock is None:
            return
        owner = self.owner()
        if owner is not None and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
            try:
                self.run.lock_owner.unlink(missing_ok=True)
            except OSError:
                pass
        self._file_lock.release()
        self._file_lock = None


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
