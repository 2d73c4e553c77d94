"""`edgercnn reproduce`: the embedded end-to-end experiment (baseline vs. Sobel/L2 on shapes, CPU preset).

It trains both configurations for N seeds with evaluations during training (convergence curves, speed-up),
runs several trainings at once (one process per job, the cores split between them), shows a live table of the
runs, and ends with the report and a comparison against the committed reference (``results/shapes``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from edgercnn.config import Config
from edgercnn.data.manifest import MANIFEST
from edgercnn.data.shapes import make_shapes
from edgercnn.reporting.report import report
from edgercnn.reporting.results import SeedResult, has_runs, load_runs
from edgercnn.experiments.runner import Executor, run_all
from edgercnn.reporting.stats import welch

#: The two configurations compared: the plain Mask R-CNN and the paper's best (Sobel, L2, alpha 1).
CONFIGS = {"baseline": {"filters": []}, "sobel-p2": {"filters": ["sobel"], "p": 2.0}}
#: The CPU recipe on 128×128 shapes, from random weights (nothing is downloaded). Measured on this data (baseline,
#: seed 0, 2500 steps, evaluations every 500; see results/shapes/README.md): the paper's setting (frozen batch norm,
#: i.e. no normalisation from random weights, SGD) barely learns; GroupNorm in ResNet + FPN with SGD lr 0.02 and
#: warm-up reached segm AP 17.6 / 30.7 at steps 1000 / 2000; the same with AdamW lr 0.001 reached 35.8 / 62.2.
#: So: GroupNorm, AdamW, 200 warm-up steps, all layers (a random backbone cannot be frozen), the paper's 10x lr drop
#: for the last 20 % of the steps.
PRESET: dict[str, Any] = {
    "backbone": "small", "norm": "gn", "optimizer": "adamw", "warmup_steps": 200, "canvas": [128, 128],
    "batch_size": 2, "stages": [{"steps": 4, "layers": "all", "lr": 0.001}, {"steps": 1, "layers": "all", "lr": 0.0001}],
}
STEPS, QUICK_STEPS = 2500, 500
#: Evaluations per run (the convergence curves' resolution); fewer for --quick, where early evaluations of a barely
#: trained detector (many low-score detections) cost as much as the training (measured: 10 evaluations made a quick
#: run 11.0 min instead of about 8).
EVALS_PER_RUN, QUICK_EVALS_PER_RUN = 10, 4
#: Compared with the committed reference: mean ± std and Welch's test of the user's seeds against its seeds.
COMPARE_METRICS = ("segm_AP", "boundary_AP", "bbox_AP", "val_loss_mask")


def reproduce_configs(data: Path, seeds: int, steps: int, experiment: str, out_dir: Path, results_dir: Path,
                      workers: int, device: str, evals: int = EVALS_PER_RUN) -> list[Config]:
    return [
        Config(experiment=experiment, name=name, data=str(data), out_dir=str(out_dir), results_dir=str(results_dir),
               seed=seed, steps=steps, workers=workers, device=device, eval_every=max(1, steps // evals),
               checkpoint_every=max(1, steps // 10), **PRESET, **edge)
        for name, edge in CONFIGS.items() for seed in range(seeds)
    ]


def compare_to_reference(ours: Path, reference: Path, metrics: tuple[str, ...] = COMPARE_METRICS) -> pd.DataFrame:
    """Per config and metric: our mean ± std, the reference's mean ± std and min–max, Welch's p of our seeds
    against its seeds, and whether ours is inside the reference's seed-to-seed spread (p ≥ 0.05)."""
    a, b = load_runs(ours, metrics), load_runs(reference, metrics)
    rows = []
    for config in sorted(set(a["config"]) & set(b["config"])):
        for m in metrics:
            x, y = a.loc[a["config"] == config, m].dropna(), b.loc[b["config"] == config, m].dropna()
            if x.empty or y.empty:  # e.g. a reference made before boundary AP existed
                continue
            test = welch(x.to_numpy(float), y.to_numpy(float))
            rows.append({"config": config, "metric": m, "ours": x.mean(), "ours_std": x.std(), "n": len(x),
                         "reference": y.mean(), "reference_std": y.std(), "reference_min": y.min(),
                         "reference_max": y.max(), "p": test["p"], "consistent": not test["p"] < 0.05})
    return pd.DataFrame(rows)


def _print_comparison(table: pd.DataFrame, reference: Path, console: Console) -> None:
    if table.empty:
        console.print(f"no config in common with the reference {reference}; nothing to compare", highlight=False)
        return
    t = Table(title=f"Your runs against the committed reference {reference} (mean ± std over seeds; Welch p)",
              title_justify="left")
    for col in ("config", "metric", "yours", "reference", "reference range", "p", "verdict"):
        t.add_column(col, justify="left" if col in ("config", "metric", "verdict") else "right")
    for r in table.itertuples():
        d = 4 if r.metric.startswith("val_loss") else 1
        t.add_row(r.config, r.metric, f"{r.ours:.{d}f} ± {r.ours_std:.{d}f}", f"{r.reference:.{d}f} ± "
                  f"{r.reference_std:.{d}f}", f"{r.reference_min:.{d}f}–{r.reference_max:.{d}f}", f"{r.p:.2f}",
                  "within the seed spread" if r.consistent else "differs (p < 0.05)")
    console.print(t)


def reproduce(*, data: Path = Path("data/shapes"), seeds: int = 3, steps: int | None = None, quick: bool = False,
              experiment: str | None = None, out_dir: Path = Path("runs/reproduce"),
              results_dir: Path = Path("runs/reproduce/results"), reference: Path | None = Path("results/shapes"),
              jobs: int | None = None, workers: int = 0, device: str = "cpu", console: Console | None = None,
              command: str = "edgercnn reproduce") -> float:
    """Prepare shapes if missing, train + evaluate every config × seed (skipping finished ones, resuming
    unfinished ones), print the report, the plot paths and the comparison with ``reference``; returns the wall
    time in seconds. ``quick``: the same pipeline with ``QUICK_STEPS`` steps (a smoke check; not compared)."""
    console = console or Console()
    started = time.perf_counter()
    steps = steps or (QUICK_STEPS if quick else STEPS)
    experiment = experiment or ("shapes-quick" if quick else "shapes")
    if not (Path(data) / MANIFEST).is_file():
        console.print(f"preparing the shapes dataset in {data}")
        make_shapes(data)
    todo = []
    evals = QUICK_EVALS_PER_RUN if quick else EVALS_PER_RUN
    for cfg in reproduce_configs(Path(data), seeds, steps, experiment, out_dir, results_dir, workers, device, evals):
        result = SeedResult.of(cfg)
        if result.exists():
            console.print(f"{cfg.config_name()} seed {cfg.seed}: done ({result.csv}), skipped", highlight=False)
        else:
            todo.append(cfg)
    jobs = jobs if jobs is not None else max(1, min(len(todo), os.cpu_count() or 1))
    if todo:
        console.print(f"training {len(todo)} runs of {steps} steps, {jobs} at a time; logs in each run folder "
                      f"under {out_dir}/{experiment}", highlight=False)
    run_all(todo, console, command, Executor(jobs=jobs), title="reproduce")
    ours = Path(results_dir) / experiment
    report(ours, console=console)  # prints the tables and the plot paths
    if reference is not None and not quick and Path(reference).resolve() != ours.resolve():
        if has_runs(Path(reference)):
            _print_comparison(compare_to_reference(ours, Path(reference)), Path(reference), console)
        else:
            console.print(f"no committed results in {reference} to compare with (run from the repository root, "
                          "or pass --reference)", highlight=False)
    elapsed = time.perf_counter() - started
    console.print(f"reproduce finished in {elapsed / 60:.1f} min", highlight=False)
    return elapsed
