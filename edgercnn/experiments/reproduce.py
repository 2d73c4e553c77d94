"""`edgercnn reproduce`: the paired experiment (baseline vs. Sobel/L2) on shapes, Penn-Fudan or any prepared dataset,
and, with ``--compare boundary-losses``, the edge loss ranked against the other boundary-aware mask losses.

It trains both configurations for N seeds with evaluations during training (convergence curves, speed-up),
runs several trainings at once (one process per job, the cores split between them), shows a live table of the
runs, and ends with the report, a plain verdict per metric (``reporting.verdict``) and a comparison against the
committed reference (``results/<dataset>``). The config keys of each dataset's CPU recipe are packaged recipes
(``edgercnn recipes cpu-shapes``); this module holds only how the experiment is run on them (``PROTOCOLS``).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from edgercnn.config import Config, config_from_dict
from edgercnn.core.commands import recorded_command
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.builders.dataset import build_dataset
from edgercnn.data.manifest import MANIFEST, manifest_name
from edgercnn.data.shapes import make_shapes
from edgercnn.evaluation.metrics import HEADLINE_METRICS, higher_is_better, metric_label, presentation, with_direction
from edgercnn.experiments import budget
from edgercnn.core.io import atomic_write_text
from edgercnn.experiments.runner import Executor, run_all
from edgercnn.experiments.runs import run_state
from edgercnn.experiments.vocab import COMPARISONS, CONFIGS, DATASETS  # noqa: F401 (owned there)
from edgercnn.reporting import ranking, verdict
from edgercnn.reporting.report import report
from edgercnn.reporting.results import SeedResult, has_runs, load_curves, load_runs
from edgercnn.reporting.stats import welch

#: What each comparison's configs are judged against (the first: the baseline of speed-ups and step times).
REFERENCES = {"edge": ("baseline",), "boundary-losses": ("baseline", "sobel-p2")}


@dataclass(frozen=True)
class Protocol:
    """How the experiment runs on one dataset. The config keys are the packaged ``recipe``; ``evals`` is the
    convergence curves' resolution. ``--quick`` runs one paired seed of ``quick_steps`` (long enough for the
    curves to part, measured per dataset) with ``quick_evals`` evaluations: it shows the direction the full run
    tests, never a verdict."""

    recipe: str
    evals: int
    quick_steps: int
    quick_evals: int
    reference: str | None = None  # committed results of the full run (results/<dataset>)
    jobs: int | None = None  # runs at a time when --jobs is not given; None: one per CPU core


#: Measured per dataset (results/<dataset>/README.md). Any other prepared dataset gets ``CUSTOM``: the real-photo
#: recipe with a canvas shaped like its images and steps from ``--minutes``.
PROTOCOLS = {
    "shapes": Protocol("cpu-shapes", evals=10, quick_steps=2000, quick_evals=4, reference="results/shapes"),
    "pennfudan": Protocol("cpu-pennfudan", evals=4, quick_steps=600, quick_evals=3, reference="results/pennfudan"),
}
CUSTOM = Protocol("cpu-pennfudan", evals=4, quick_steps=0, quick_evals=3)
#: A user's dataset on CUDA: torchvision's COCO Mask R-CNN fine-tuned at ~800 px (the gpu-coco-finetune recipe), one
#: run at a time on the GPU, the steps from --minutes timed on the GPU.
CUSTOM_GPU = Protocol("gpu-coco-finetune", evals=4, quick_steps=0, quick_evals=3, jobs=1)
assert tuple(PROTOCOLS) == DATASETS, "experiments.vocab.DATASETS names the measured protocols"
#: Minutes of a custom dataset's full run (and of its --quick run) when --minutes is not given.
CUSTOM_MINUTES, CUSTOM_QUICK_MINUTES = 60.0, 10.0
#: Compared with the committed reference and judged by the verdict: the headline metrics.
COMPARE_METRICS = HEADLINE_METRICS


def reproduce_configs(data: Path, seeds: int, steps: int | None, experiment: str, out_dir: Path, results_dir: Path,
                      workers: int, device: str, evals: int, recipe: str,
                      canvas: list[int] | None = None, configs: dict[str, dict] = CONFIGS) -> list[Config]:
    """Every (config, seed) of the experiment (``configs``: name → its keys): the recipe's keys, then the run's own
    (``steps=None``: the recipe's), evaluated ``evals`` times and checkpointed 10 times per run."""
    out = []
    for name, edge in configs.items():
        for seed in range(seeds):
            keys = {"recipe": recipe, "experiment": experiment, "name": name, "data": str(data),
                    "out_dir": str(out_dir), "results_dir": str(results_dir), "seed": seed, "workers": workers,
                    "device": device, **({"steps": steps} if steps else {}), **({"canvas": canvas} if canvas else {}),
                    **edge}
            cfg = config_from_dict(keys, "edgercnn reproduce")
            total = cfg.total_steps()
            out.append(replace(cfg, eval_every=max(1, total // evals), checkpoint_every=max(1, total // 10)))
    return out


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
        d = presentation(r.metric).digits
        t.add_row(r.config, r.metric, f"{r.ours:.{d}f} ± {r.ours_std:.{d}f}", f"{r.reference:.{d}f} ± "
                  f"{r.reference_std:.{d}f}", f"{r.reference_min:.{d}f}–{r.reference_max:.{d}f}", f"{r.p:.2f}",
                  "within the seed spread" if r.consistent else "differs (p < 0.05)")
    console.print(t)


def resolve_dataset(dataset: str | None, data: Path | None) -> tuple[str | None, Path]:
    """(known dataset name or None for a user's dataset, its folder), from ``--dataset`` and/or ``--data``."""
    if dataset is not None and dataset not in PROTOCOLS:
        raise EdgeRCNNError(f"--dataset {dataset}: unknown; choose {', '.join(DATASETS)}, or pass --data DIR with "
                            "any prepared dataset")
    if data is None:
        dataset = dataset or "shapes"
        data = Path("data") / dataset
    found = manifest_name(data)
    if found is None:
        if dataset == "shapes" or dataset is None and Path(data).name == "shapes":
            return "shapes", Path(data)  # made on the fly
        hint = {"pennfudan": "edgercnn prepare pennfudan --root DIR (or --download)"}.get(
            dataset or "", "edgercnn prepare shapes|pennfudan|coco-json|masks|cityscapes|coco")
        raise EdgeRCNNError(f"{data}: no prepared dataset ({MANIFEST} missing); run {hint} --out {data} first")
    if dataset is not None and found != dataset:
        raise EdgeRCNNError(f"{data} holds a {found!r} dataset, not {dataset}; pass the folder of a prepared "
                            f"{dataset} dataset with --data, or drop --dataset")
    return (found if found in PROTOCOLS else None), Path(data)


def check_options(seeds: int | None, minutes: float | None) -> None:
    """One line for options no run can use, before anything is measured or trained."""
    if seeds is not None and seeds < 1:
        raise EdgeRCNNError(f"--seeds {seeds}: must be >= 1 (seeds 0..N-1 per config); e.g. --seeds 3")
    if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
        raise EdgeRCNNError(f"--minutes {minutes}: must be a finite number of minutes > 0, e.g. --minutes 30")


def check_splits(cfg: Config) -> None:
    """Before any training (the step-time measurement included): the train split has an instance to learn from and
    the val split one to score, read as ``cfg`` reads them; else one line (training on none would end in all-n/a
    metrics)."""
    for split, role in (("train", "learn from"), ("val", "score")):
        data = build_dataset(cfg, split, "train" if split == "train" else "eval")
        if not len(data) or not data.instance_count:
            skipped = sum(data.skipped.values())
            why = f", {skipped} annotations skipped as unusable" if skipped else \
                ", only crowd regions" if len(data) else ""
            raise EdgeRCNNError(f"{cfg.data}: the {split} split has {len(data)} images and no instance to {role}"
                                f"{why}; reproduce compares metrics on both splits: fix the annotations or re-run "
                                "edgercnn prepare")


def pick_protocol(dataset: str | None, device: str) -> Protocol:
    """The protocol of ``dataset`` (None: a user's prepared data) on ``device``: a user's data on CUDA (``cuda``,
    ``cuda:N``, or ``auto`` with a GPU present) gets the GPU recipe, on CPU the CPU one; shapes and Penn-Fudan keep
    their measured CPU protocols (their committed references were made with them)."""
    if dataset is not None:
        return PROTOCOLS[dataset]
    on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return CUSTOM_GPU if on_gpu else CUSTOM


def reproduce(*, dataset: str | None = None, data: Path | None = None, seeds: int | None = None,
              steps: int | None = None, minutes: float | None = None, quick: bool = False,
              experiment: str | None = None, out_dir: Path = Path("runs/reproduce"),
              results_dir: Path = Path("runs/reproduce/results"), reference: Path | None = None,
              compare: bool = True, jobs: int | None = None, workers: int = 0, device: str = "cpu",
              console: Console | None = None, command: str | None = None,
              comparison: str = "edge") -> float:
    """Prepare shapes if missing, train + evaluate every config × seed (skipping finished ones, resuming
    unfinished ones), print the report, the verdicts and the comparison with ``reference`` (default: the
    dataset's committed results); returns the wall time in seconds.

    ``quick``: one paired seed of the protocol's quick steps (the direction, never a verdict). On a user's
    dataset (``data`` not shapes or pennfudan): the real-photo recipe with a canvas shaped like its images and
    the steps that fit ``minutes`` (measured on the data first). ``comparison``: the configs (``COMPARISONS``);
    beyond the paper's pair, their ranking per metric against ``REFERENCES`` (written to ranking.md/.csv)."""
    console = console or Console()
    command = command if command is not None else recorded_command()  # the workers get it as text
    started = time.perf_counter()
    if comparison not in COMPARISONS:
        raise EdgeRCNNError(f"--compare {comparison}: unknown; choose {', '.join(COMPARISONS)}")
    configs_of = COMPARISONS[comparison]
    check_options(seeds, minutes)
    dataset, data = resolve_dataset(dataset, data)
    protocol = pick_protocol(dataset, device)
    if dataset == "shapes" and not (data / MANIFEST).is_file():
        console.print(f"preparing the shapes dataset in {data}")
        make_shapes(data)
    check_splits(config_from_dict({"recipe": protocol.recipe, "data": str(data)}, "edgercnn reproduce"))
    seeds = seeds if seeds is not None else (1 if quick else 3)
    evals = protocol.quick_evals if quick else protocol.evals
    prefix = "" if comparison == "edge" else f"{comparison}-"
    experiment = experiment or prefix + (dataset or data.name) + ("-quick" if quick else "")
    canvas = None
    if dataset is None:
        recipe_canvas = config_from_dict({"recipe": protocol.recipe, "data": str(data)}, "edgercnn reproduce").canvas
        canvas = budget.canvas_for_sizes(budget.train_image_sizes(data), recipe_canvas[0] * recipe_canvas[1])
        console.print(f"{data}: canvas {canvas[0]}x{canvas[1]} (the {protocol.recipe} recipe's "
                      f"{recipe_canvas[0] * recipe_canvas[1]} pixels, shaped like the median train image)",
                      highlight=False)
    if steps is None and quick and protocol.quick_steps:
        steps = protocol.quick_steps
    runs = len(configs_of) * seeds
    jobs = jobs if jobs is not None else protocol.jobs or max(1, min(runs, os.cpu_count() or 1))
    if steps is None and (minutes is not None or dataset is None):
        minutes = minutes if minutes is not None else (CUSTOM_QUICK_MINUTES if quick else CUSTOM_MINUTES)
        probe = reproduce_configs(data, 1, None, experiment, out_dir, results_dir, workers, device, evals,
                                  protocol.recipe, canvas, configs_of)[0]
        threads = max(1, (os.cpu_count() or 1) // min(jobs, runs))
        console.print(f"measuring the step time on {data} ({threads} thread(s) per run) ...", highlight=False)
        timing = budget.calibrate(probe, threads)
        steps = budget.steps_for_budget(minutes, runs, jobs, evals, timing)
        console.print(f"{timing.describe()}: {steps} steps per run fit {minutes:g} min ({runs} runs, {jobs} at a "
                      "time)", highlight=False)
    configs = reproduce_configs(data, seeds, steps, experiment, out_dir, results_dir, workers, device, evals,
                                protocol.recipe, canvas, configs_of)
    todo = []
    for cfg in configs:
        if run_state(cfg) == "done":
            console.print(f"{cfg.config_name()} seed {cfg.seed}: done ({SeedResult.of(cfg).csv}), skipped",
                          highlight=False)
        else:
            todo.append(cfg)
    todo.sort(key=lambda c: c.seed)  # seed by seed: a comparison stopped part-way holds every config's first seeds
    jobs = max(1, min(jobs, len(todo) or 1))
    if todo:
        console.print(f"training {len(todo)} runs of {configs[0].total_steps()} steps ({protocol.recipe} recipe), "
                      f"{jobs} at a time; logs in each run folder under {out_dir}/{experiment}", highlight=False)
    run_all(todo, console, command, Executor(jobs=jobs), title="reproduce")
    ours = Path(results_dir) / experiment
    report(ours, console=console)  # prints the tables and the plot paths
    print_verdicts(ours, console, quick=quick, configs=configs_of)
    if comparison != "edge":
        print_ranking(ours, console, REFERENCES[comparison], quick=quick)
    committed = protocol.reference if comparison == "edge" else \
        f"results/{prefix}{dataset}" if dataset else None
    reference = Path(reference) if reference is not None else Path(committed) if committed else None
    if compare and reference is not None and not quick and reference.resolve() != ours.resolve():
        if has_runs(reference):
            _print_comparison(compare_to_reference(ours, reference), reference, console)
        else:
            console.print(f"no committed results in {reference} to compare with (run from the repository root, "
                          "or pass --reference)", highlight=False)
    elapsed = time.perf_counter() - started
    console.print(f"reproduce finished in {elapsed / 60:.1f} min", highlight=False)
    return elapsed


def print_verdicts(ours: Path, console: Console, quick: bool = False,
                   configs: dict[str, dict] = CONFIGS) -> pd.DataFrame:
    """The verdict per metric of each config against the baseline (``reporting.verdict``), as plain lines."""
    runs, evals = load_runs(ours, COMPARE_METRICS), load_curves(ours, "evals", COMPARE_METRICS)
    table = verdict.verdicts(runs, evals, {c: "baseline" for c in configs if c != "baseline"},
                             {m: higher_is_better(m) for m in COMPARE_METRICS})
    title = ("Quick check, one paired seed: the direction the full run tests, not a verdict (run without --quick "
             "for one)" if quick else "Verdict (Welch's test over seeds, 95 % CI, helps/hurts at p < 0.05)")
    console.print(title, style="bold", highlight=False)
    labels = {m: with_direction(metric_label(m), m) for m in COMPARE_METRICS}
    if quick:  # short runs: the direction only, however many seeds
        judged = table["verdict"] != "no verdict"
        table.loc[judged, "reason"] = "--quick: shows the direction only - run without --quick for a verdict"
        table.loc[judged, "verdict"] = "no verdict"
    for line in verdict.verdict_lines(table, labels):
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    return table


def print_ranking(ours: Path, console: Console, references: tuple[str, ...], quick: bool = False) -> pd.DataFrame:
    """The configs ranked per headline metric, each against ``references`` (``reporting.ranking``), printed and
    written beside the results as ranking.md (the tables) and ranking.csv (every number)."""
    runs, evals = load_runs(ours, COMPARE_METRICS), load_curves(ours, "evals", COMPARE_METRICS)
    losses = load_curves(ours, "losses", ("step_time_s",))
    metrics = {m: higher_is_better(m) for m in COMPARE_METRICS}
    table, verdicts = ranking.ranking(runs, evals, losses, metrics, references)
    title = "Ranking per metric (mean ± std over seeds; vs: difference [95 % CI], Welch p; step time: mean " \
            f"seconds per training step, × {references[0]}'s, measured in these runs)"
    if quick:
        title += " - one seed: directions only, no verdict"
    console.print(title, style="bold", highlight=False)
    parts = [f"# Ranking of {ours.name}\n\n{title}.\n"]
    for m in metrics:
        digits = 4 if not higher_is_better(m) else 1
        head, rows = ranking.ranking_rows(table, verdicts, m, references, digits)
        if not rows:
            continue
        label = metric_label(m) + ("" if higher_is_better(m) else " (lower is better)")
        t = Table(title=label, title_justify="left")
        for col in head:
            t.add_column(col, overflow="fold")
        for row in rows:
            t.add_row(*row)
        console.print(t)
        parts.append(f"## {label}\n\n{ranking.markdown_table(head, rows)}\n")
    atomic_write_text(ours / "ranking.md", "\n".join(parts))
    atomic_write_text(ours / "ranking.csv", table.to_csv(index=False))
    return table
