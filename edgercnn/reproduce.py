"""`edgercnn reproduce`: the embedded end-to-end experiment (baseline vs. Sobel/L2 on shapes, CPU preset).

It trains both configurations for N seeds with evaluations during training (convergence curves, speed-up),
runs several trainings at once (one process per job, the cores split between them), shows a live table of the
runs, and ends with the report and a comparison against the committed reference (``results/shapes``).
"""

from __future__ import annotations

import dataclasses
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.live import Live
from rich.table import Table

from edgercnn.config import Config
from edgercnn.data.manifest import MANIFEST
from edgercnn.data.shapes import make_shapes
from edgercnn.errors import EdgeRCNNError
from edgercnn.report import report
from edgercnn.results import SeedResult, load_runs
from edgercnn.rundir import RunDir
from edgercnn.stats import welch

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
#: Evaluations per run (the convergence curves' resolution).
EVALS_PER_RUN = 10
#: Compared with the committed reference: mean ± std and Welch's test of the user's seeds against its seeds.
COMPARE_METRICS = ("segm_AP", "boundary_AP", "bbox_AP", "val_loss_mask")


def reproduce_configs(data: Path, seeds: int, steps: int, experiment: str, out_dir: Path, results_dir: Path,
                      workers: int, device: str) -> list[Config]:
    return [
        Config(experiment=experiment, name=name, data=str(data), out_dir=str(out_dir), results_dir=str(results_dir),
               seed=seed, steps=steps, workers=workers, device=device, eval_every=max(1, steps // EVALS_PER_RUN),
               checkpoint_every=max(1, steps // 10), **PRESET, **edge)
        for name, edge in CONFIGS.items() for seed in range(seeds)
    ]


def _run_one(cfg: Config, threads: int, command: str) -> str:
    """One run in a worker process: train (resuming) and evaluate, or only evaluate when trained; logs to the
    run folder's ``train.log``. Returns the per-seed CSV path."""
    import torch

    from edgercnn.pipeline import evaluate_run, train_and_evaluate

    torch.set_num_threads(threads)
    run = RunDir.of(cfg)
    run.path.mkdir(parents=True, exist_ok=True)
    with run.log.open("a") as log:
        console = Console(file=log, width=160, force_terminal=False)
        if run.final_weights.is_file():  # trained, evaluation missing
            _, csv_path = evaluate_run(run, console=console)
        else:
            _, _, csv_path = train_and_evaluate(cfg, resume=run.checkpoint.is_file(), console=console,
                                                command=command)
    return str(csv_path)


def _steps_done(cfg: Config) -> int:
    path = RunDir.of(cfg).losses
    if not path.is_file():
        return 0
    with path.open("rb") as handle:
        return max(0, sum(1 for _ in handle) - 1)


def _status_table(todo: list[Config], state: dict[int, str], started: float, done_before: int) -> Table:
    """Runs × (state, step, ETA); the ETA assumes the step rate seen so far."""
    steps = [_steps_done(c) for c in todo]
    total = sum(c.total_steps() for c in todo)
    rate = (sum(steps) - done_before) / max(1e-9, time.perf_counter() - started)
    eta = (total - sum(steps)) / rate if rate > 0 else float("nan")
    table = Table(title=f"reproduce: {sum(steps)}/{total} steps, "
                        f"ETA {'?' if np.isnan(eta) else f'{eta / 60:.1f} min'} (evaluations included in the rate)",
                  title_justify="left")
    for col in ("config", "seed", "state", "step"):
        table.add_column(col, justify="left" if col in ("config", "state") else "right")
    for i, cfg in enumerate(todo):
        table.add_row(cfg.config_name(), str(cfg.seed), state[i], f"{steps[i]}/{cfg.total_steps()}")
    return table


def run_all(todo: list[Config], jobs: int, console: Console, command: str) -> None:
    """Train and evaluate ``todo``, ``jobs`` at a time in worker processes (in this process when 1), with a live
    status table (plain progress lines when the console is not a terminal)."""
    if not todo:
        return
    if jobs <= 1:
        for cfg in todo:
            console.print(f"{cfg.config_name()} seed {cfg.seed}: training", highlight=False)
            _run_inline(cfg, console, command)
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)
    state = {i: "queued" for i in range(len(todo))}
    started, done_before = time.perf_counter(), sum(_steps_done(c) for c in todo)
    last_line = started
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool, \
            Live(console=console, refresh_per_second=1, transient=False) if console.is_terminal else \
            _NoLive() as live:
        futures: dict[Future, int] = {pool.submit(_run_one, cfg, threads, command): i for i, cfg in enumerate(todo)}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=2.0, return_when=FIRST_COMPLETED)
            for fut in finished:
                i = futures[fut]
                cfg = todo[i]
                try:
                    fut.result()
                except EdgeRCNNError as err:
                    raise EdgeRCNNError(f"{cfg.config_name()} seed {cfg.seed}: {err} (log: "
                                        f"{RunDir.of(cfg).log})") from None
                state[i] = "done"
                if not console.is_terminal:
                    console.print(f"{cfg.config_name()} seed {cfg.seed}: done", highlight=False)
            for i, cfg in enumerate(todo):
                if state[i] == "queued" and _steps_done(cfg) > 0:
                    state[i] = "running"
            table = _status_table(todo, state, started, done_before)
            if console.is_terminal:
                live.update(table)
            elif time.perf_counter() - last_line > 60:
                last_line = time.perf_counter()
                console.print(table.title, highlight=False)


class _NoLive:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _run_inline(cfg: Config, console: Console, command: str) -> None:
    from edgercnn.pipeline import evaluate_run, train_and_evaluate

    run = RunDir.of(cfg)
    if run.final_weights.is_file():
        evaluate_run(run, console=console)
    else:
        train_and_evaluate(cfg, resume=run.checkpoint.is_file(), console=console, command=command)


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
    for cfg in reproduce_configs(Path(data), seeds, steps, experiment, out_dir, results_dir, workers, device):
        result = SeedResult.of(cfg)
        if result.exists():
            console.print(f"{cfg.config_name()} seed {cfg.seed}: done ({result.csv}), skipped", highlight=False)
        else:
            todo.append(cfg)
    jobs = jobs if jobs is not None else max(1, min(len(todo), os.cpu_count() or 1))
    if todo:
        console.print(f"training {len(todo)} runs of {steps} steps, {jobs} at a time; logs in each run folder "
                      f"under {out_dir}/{experiment}", highlight=False)
    run_all(todo, jobs, console, command)
    ours = Path(results_dir) / experiment
    report(ours, console=console)  # prints the tables and the plot paths
    if reference is not None and not quick and Path(reference).is_dir() \
            and Path(reference).resolve() != ours.resolve():
        _print_comparison(compare_to_reference(ours, Path(reference)), Path(reference), console)
    elapsed = time.perf_counter() - started
    console.print(f"reproduce finished in {elapsed / 60:.1f} min", highlight=False)
    return elapsed
