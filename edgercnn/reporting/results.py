"""Per-seed result files, the one place that knows their names, columns, writer and reader.

``results/<experiment>/<config>/seed-<n>.csv``: one row of config columns, metrics, steps, wall time, versions,
git commit and command; beside it ``seed-<n>-losses.csv`` (the run's per-step losses, for the report's curves),
``seed-<n>-evals.csv`` (evaluations during training, for convergence curves; when the run had them) and
``seed-<n>.config.yaml`` (the resolved configuration).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import re
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

import edgercnn
from edgercnn.config import Config
from edgercnn.config.values import format_value
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.core.io import atomic_write_bytes, atomic_write_text
from edgercnn.training.rundir import RunDir

_SEED_CSV = re.compile(r"^seed-(\d+)\.csv$")
_SIDE_CSV = re.compile(r"^seed-(\d+)-(losses|evals)\.csv$")


class SeedResult:
    """The result files of one (experiment, config, seed) under a results root."""

    def __init__(self, results_dir: Path | str, experiment: str, config: str, seed: int):
        self.folder = Path(results_dir) / experiment / config
        self.seed = int(seed)

    @classmethod
    def of(cls, cfg: Config) -> "SeedResult":
        return cls(cfg.results_dir, cfg.experiment, cfg.config_name(), cfg.seed)

    @property
    def csv(self) -> Path:
        return self.folder / f"seed-{self.seed}.csv"

    @property
    def losses(self) -> Path:
        return self.folder / f"seed-{self.seed}-losses.csv"

    @property
    def evals(self) -> Path:
        return self.folder / f"seed-{self.seed}-evals.csv"

    @property
    def config_file(self) -> Path:
        return self.folder / f"seed-{self.seed}.config.yaml"

    def exists(self) -> bool:
        """The seed is done: its metrics CSV (written last) is there."""
        return self.csv.is_file()

    def copy_from(self, other: "SeedResult") -> None:
        """Take a finished seed of an identical configuration from another experiment: the side files first,
        the metrics CSV last (it marks the seed done)."""
        for name in ("losses", "evals", "config_file", "csv"):
            src = getattr(other, name)
            if src.is_file():
                atomic_write_bytes(getattr(self, name), src.read_bytes())


def git_commit(source: Path | None = None) -> str:
    """The commit of the edgercnn source tree (+ "-dirty" when its code has local changes), or "unknown".

    Only changes to the package itself (``source``, default the installed ``edgercnn/``; an uncommitted new module
    counts) and to the checkout's ``pyproject.toml`` (the dependency ranges) make it dirty: a checkout re-making its
    own ``results/`` trains the committed code, and says so."""
    here = source or Path(edgercnn.__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=normal", "--", ".",
                                "../pyproject.toml"], cwd=here, capture_output=True, text=True, timeout=10).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def config_columns(cfg: Config) -> dict[str, Any]:
    """Config keys as flat CSV values in their text form (``config.values.format_value``: lists joined, None as
    "none"); stages and lr as resolved."""
    out: dict[str, Any] = {}
    for key, value in cfg.to_dict().items():
        if key == "stages":
            value = cfg.resolved_stages()
        elif key == "lr":
            value = float(cfg.resolved_stages()[0]["lr"])
        out[key] = format_value(key, value)
    out["steps"] = cfg.total_steps()
    return out


def write_result(cfg: Config, run: RunDir, metrics: dict[str, Any], metric_names: tuple[str, ...], steps: int,
                 wall_time_s: float, command: str, data_fingerprint: str | None = None) -> Path:
    """Write the per-seed CSV (after the losses, evals and config beside it: it marks the seed done); returns
    the CSV path."""
    import torch
    import torchvision

    row = {"experiment": cfg.experiment, "config": cfg.config_name(), **config_columns(cfg)}
    row.update({m: metrics.get(m, math.nan) for m in metric_names})
    row.update({
        "val_images": metrics.get("val_images"), "data_fingerprint": data_fingerprint or "",
        "steps": steps, "wall_time_s": round(wall_time_s, 2),
        "torch_version": torch.__version__, "torchvision_version": torchvision.__version__,
        "edgercnn_version": edgercnn.__version__, "git_commit": git_commit(), "command": command,
    })
    out = SeedResult.of(cfg)
    atomic_write_text(out.losses, run.loss_csv_text(steps))  # checked: steps 1..steps, complete and numeric
    if run.evals.is_file():
        atomic_write_bytes(out.evals, run.evals.read_bytes())
    atomic_write_text(out.config_file, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, list(row), lineterminator="\n")
    writer.writeheader()
    writer.writerow(row)
    atomic_write_text(out.csv, buffer.getvalue())
    return out.csv


# --------------------------------------------------------------------------------------------- reading
def read_csv(path: Path, **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, UnicodeDecodeError) as err:
        raise EdgeRCNNError(f"{path}: not a readable CSV ({err.__class__.__name__}); delete it and re-run "
                            "edgercnn eval for that run") from err


def require_dir(exp_dir: Path) -> None:
    if not Path(exp_dir).is_dir():
        raise EdgeRCNNError(f"{exp_dir}: no such results folder; run edgercnn train --experiment "
                            f"{Path(exp_dir).name} ... first (or pass results/<experiment>)")


def has_runs(exp_dir: Path) -> bool:
    """Whether ``exp_dir`` holds at least one per-seed result CSV."""
    return any(_SEED_CSV.match(p.name) for p in Path(exp_dir).glob("*/seed-*.csv"))


def load_runs(exp_dir: Path, metric_names: tuple[str, ...]) -> pd.DataFrame:
    """All ``<exp_dir>/<config>/seed-<n>.csv`` as one DataFrame, one row per seed, sorted by config, seed.

    ``config`` falls back to the folder name when the CSV lacks it; ``seed`` to the number in the file name.
    Every column of ``metric_names`` exists in the result (NaN where a CSV lacks it).
    """
    exp_dir = Path(exp_dir)
    require_dir(exp_dir)
    frames = []
    for path in sorted(exp_dir.glob("*/seed-*.csv")):
        match = _SEED_CSV.match(path.name)
        if not match:
            continue  # seed-<n>-losses.csv and friends
        df = read_csv(path)
        if len(df) != 1:
            raise EdgeRCNNError(f"{path}: expected one row (one evaluated run), found {len(df)}; delete it and "
                                "re-run edgercnn eval for that run")
        if "config" not in df or pd.isna(df.at[0, "config"]):
            df["config"] = path.parent.name
        if "seed" not in df:
            df["seed"] = int(match.group(1))
        frames.append(df)
    if not frames:
        raise EdgeRCNNError(f"{exp_dir}: no <config>/seed-<n>.csv files; run edgercnn train --experiment "
                            f"{exp_dir.name} ... first")
    runs = pd.concat(frames, ignore_index=True)
    runs["config"] = runs["config"].astype(str)
    for m in metric_names:
        if m not in runs:
            runs[m] = math.nan
        runs[m] = pd.to_numeric(runs[m], errors="coerce")
    return runs.sort_values(["config", "seed"], kind="stable").reset_index(drop=True)


#: Config columns the seeds of one config may differ in: where and how a run ran, not what it learned (the
#: dataset is compared by its fingerprint, not its path, when the CSVs record it).
POOL_MAY_DIFFER = frozenset({"seed", "device", "workers", "out_dir", "results_dir", "world_size", "checkpoint_every",
                             "eval_every", "eval_at_end", "name"})


def check_pooled(runs: pd.DataFrame, split: bool = False) -> pd.DataFrame:
    """``runs`` (from ``load_runs``) when the seeds of each config agree in experiment, dataset fingerprint,
    steps and every config column but ``POOL_MAY_DIFFER``: otherwise a one-line error naming the config, the
    column and the seeds, or, with ``split``, each group of agreeing seeds as its own config (``config
    [column=value]``). A column a CSV lacks (an older version's) is not compared for it."""
    fields = {f.name for f in dataclasses.fields(Config)} - POOL_MAY_DIFFER
    columns = ["experiment", "data_fingerprint", "steps", *sorted(fields - {"experiment", "steps"})]
    if "data_fingerprint" not in runs or runs["data_fingerprint"].replace("", math.nan).isna().all():
        columns.remove("data_fingerprint")  # no fingerprints recorded: the dataset path stands in for it
    else:
        columns.remove("data")
    columns = [c for c in columns if c in runs]
    text = runs[columns].astype(object).where(runs[columns].notna(), None).map(
        lambda v: None if v is None or v == "" else str(v))
    out = runs.copy()
    for config, idx in runs.groupby("config", sort=True).groups.items():
        differ = [c for c in columns if text.loc[idx, c].dropna().nunique() > 1]
        if not differ:
            continue
        if not split:
            c = differ[0]
            seeds = "; ".join(f"{v}: seed(s) {', '.join(str(int(s)) for s in runs.loc[g.index, 'seed'])}"
                              for v, g in text.loc[idx].groupby(c, dropna=False))
            raise EdgeRCNNError(f"config {config}: its seeds differ in {', '.join(differ)} ({c} {seeds}); they are "
                                "not one config: move the odd seed CSVs away, or pass --split-mixed to report "
                                "each group as its own config")
        for i in idx:
            out.at[i, "config"] = f"{config} [" + ", ".join(f"{c}={text.at[i, c]}" for c in differ) + "]"
    return out.sort_values(["config", "seed"], kind="stable").reset_index(drop=True)


def load_curves(exp_dir: Path, kind: str, columns: tuple[str, ...]) -> pd.DataFrame:
    """All ``seed-<n>-<kind>.csv`` (kind: ``losses`` or ``evals``) in long format: config (folder name), seed,
    step, ``columns``. Empty (with those columns) when there are none."""
    frames = []
    for path in sorted(Path(exp_dir).glob(f"*/seed-*-{kind}.csv")):
        match = _SIDE_CSV.match(path.name)
        if not match or match.group(2) != kind:
            continue
        df = read_csv(path)
        missing = [c for c in ("step", *columns) if c not in df]
        if missing:
            raise EdgeRCNNError(f"{path}: missing column(s) {missing}; it is not a {kind} log from "
                                "edgercnn train, move it away")
        frames.append(df[["step", *columns]].assign(config=path.parent.name, seed=int(match.group(1))))
    if not frames:
        return pd.DataFrame(columns=["config", "seed", "step", *columns])
    return pd.concat(frames, ignore_index=True)[["config", "seed", "step", *columns]]

