"""The `edgercnn` command line: options in, one library call out; no logic here."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from edgercnn import __version__
from edgercnn.model.architecture import BACKBONES, NORMS
from edgercnn.cli.prepare import app as prepare_app
from edgercnn.config.values import NONE, TRAIN_KEYS, bool_flags, flag, parse_canvas, parse_filters, parse_weights
from edgercnn.cli.recording import RecordedCommand
from edgercnn.cli.errors import user_errors
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.model.vocab import (BOUNDARY_RAMP_STEPS, FORMULATIONS, KERNELS, MASK_TERMS, OPTIMIZERS,
                                  SMOOTH_MODES)
from edgercnn.experiments.vocab import COMPARISONS, DATASETS

app = typer.Typer(
    help="Edge Agreement Loss for Mask R-CNN (Zimmermann & Siems): prepare data, train, evaluate, report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.add_typer(prepare_app, name="prepare", short_help="Download or convert a dataset into the edgercnn layout.")


def _choices(name: str, values) -> type[Enum]:
    """A str Enum for Typer from a vocabulary declared beside its implementation (values are the CLI spelling)."""
    return Enum(name, {v.replace("-", "_").replace("+", "_"): v for v in values}, type=str)


Smooth = _choices("Smooth", (NONE, *SMOOTH_MODES))
Formulation = _choices("Formulation", FORMULATIONS)
Backbone = _choices("Backbone", BACKBONES)
Norm = _choices("Norm", NORMS)
Optimizer = _choices("Optimizer", OPTIMIZERS)
Dataset = _choices("Dataset", DATASETS)
Comparison = _choices("Comparison", COMPARISONS)


class Format(str, Enum):
    table = "table"
    markdown = "markdown"
    latex = "latex"
    csv = "csv"


from edgercnn.cli.prepare import Debug  # noqa: E402  (one definition for all commands)


def _console() -> Console:
    """stdout Console; wide enough for the report tables when writing to a file or pipe (rich's default is 80)."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgercnn {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Edge Agreement Loss for Mask R-CNN."""


def train_overrides(ctx: typer.Context) -> dict:
    """The config keys of ``edgercnn train``'s options (``values.TRAIN_KEYS``, each read from its option
    ``values.flag(key)``), None where not given; text forms (canvas, filters) parsed by the config layer."""
    param_of = {opt: param.name for param in ctx.command.params for opt in param.opts}
    overrides = {}
    for key in TRAIN_KEYS:
        value = ctx.params[param_of[flag(key)]]
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, Path):
            value = str(value)
        overrides[key] = value
    overrides["filters"] = _parse_filters(overrides["filters"])
    overrides["mask_losses"] = _parse_filters(overrides["mask_losses"])
    overrides["mask_loss_weights"] = parse_weights(overrides["mask_loss_weights"], flag("mask_loss_weights")) \
        if overrides["mask_loss_weights"] else None
    overrides["canvas"] = _parse_canvas(overrides["canvas"])
    return overrides


def _parse_canvas(value: Optional[str]) -> Optional[list[int]]:
    return None if value is None else parse_canvas(value, flag("canvas"))


def _parse_filters(values: Optional[list[str]]) -> Optional[list[str]]:
    return parse_filters(values) if values else None


@app.command(cls=RecordedCommand, short_help="Train Mask R-CNN with the edge loss (or the baseline).")
def train(
    ctx: typer.Context,
    data: Annotated[Optional[Path], typer.Option(help="Dataset folder made by `edgercnn prepare` (holds "
                                                      "manifest.json). Default: data/shapes.")] = None,
    recipe: Annotated[Optional[str], typer.Option(help="A packaged preset (edgercnn recipes lists them): "
                      "authors-coco / authors-cityscapes (the authors' matterport code), torchvision (the defaults); "
                      "the --config file and these options override it key by key.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML file with config keys (snake_case); options given "
                                                        "here override it; an unknown key is an error.")] = None,
    filter: Annotated[Optional[list[str]], typer.Option(
        flag("filters"), help=f"Edge filter(s): {', '.join(KERNELS)} (laplace = 8-neighbour, the paper's L; laplace4 = "
                         "eq. 3); repeat or join with commas/+ to combine (sobel+laplace = the paper's S & L); "
                         "`none` trains the plain Mask R-CNN baseline. Default: sobel.")] = None,
    p: Annotated[Optional[float], typer.Option(help="Exponent of the L^p edge loss (section 5.2), >= 1. "
                                                    "Default 2.")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="Weight of the edge loss (section 5.3). Default 1.")] = None,
    smooth: Annotated[Optional[Smooth], typer.Option(help="Gaussian-smooth ground truth, prediction or both "
                                                          "before the filters (section 5.6.1). Default none.")] = None,
    magnitude: Annotated[Optional[bool], typer.Option(bool_flags("magnitude"), help="Add the gradient-"
                         "magnitude channel of two-kernel filters (section 5.6.3).")] = None,
    formulation: Annotated[Optional[Formulation], typer.Option(help="lp, or the weighted cross-entropy variants "
                           "ce-product / ce-exp (section 5.6.3). Default lp.")] = None,
    mask_loss: Annotated[Optional[list[str]], typer.Option(
        flag("mask_losses"), help=f"Another boundary-aware mask loss beside the BCE: {', '.join(MASK_TERMS)} (soft "
        "Dice; Lovász hinge; Kervadec's boundary loss, weight ramped; Karimi's Hausdorff distance-transform loss; "
        "BMask R-CNN's boundary branch, a head); repeat or join with + to combine; alone (with --filter none) or "
        "beside the edge loss. Default none.")] = None,
    mask_loss_weight: Annotated[Optional[list[str]], typer.Option(
        flag("mask_loss_weights"), help="NAME=WEIGHT of a --mask-loss (repeatable), e.g. dice=2. Default: each "
        "loss's paper weight (edgercnn.model.mask_terms.TERM_WEIGHTS); a weight given here is constant (no ramp).")]
        = None,
    boundary_ramp_steps: Annotated[Optional[int], typer.Option(help="The boundary loss's weight starts at 0.01 and "
                                   "grows by 0.01 every N steps (Kervadec et al.: per epoch). Default "
                                   f"{BOUNDARY_RAMP_STEPS}.")] = None,
    mask_size: Annotated[Optional[int], typer.Option(help="Mask head output 28 (torchvision) or 56 (one more "
                                                          "2x upsampling; sections 5.4, 5.7). Default 28.")] = None,
    backbone: Annotated[Optional[Backbone], typer.Option(help="resnet50, resnet101 (the authors') or small "
                        "(resnet18-FPN with narrow heads, for CPU runs). Default resnet50.")] = None,
    backbone_weights: Annotated[Optional[str], typer.Option(help="`imagenet` (torch hub cache), "
                                "`imagenet-resnet50` (the ResNet-50 file by layer name, as the authors loaded "
                                "theirs), a ResNet state_dict file, or `none` for random initialisation. Default "
                                "`auto`: imagenet for resnet50/101 with frozen batch norm, random otherwise.")] = None,
    init: Annotated[Optional[str], typer.Option(help="Start the whole detector from `coco` (torchvision's COCO-"
                    "trained maskrcnn_resnet50_fpn in the torch hub cache; box and mask predictors new for the "
                    "dataset's classes), a Mask R-CNN state_dict file or a run folder. Default: the backbone "
                    "weights only.")] = None,
    norm: Annotated[Optional[Norm], typer.Option(help="Normalisation in the ResNet (and FPN): frozen_bn (frozen "
                    "batch norm, meant for ImageNet weights), frozen_stats_bn (frozen statistics, trainable scale/"
                    "shift: the authors' code) or gn (GroupNorm in ResNet + FPN, trains from random weights). "
                    "Default frozen_bn.")] = None,
    optimizer: Annotated[Optional[Optimizer], typer.Option(help="sgd (momentum 0.9, the paper's) or adamw "
                         "(beta1 = momentum). Default sgd.")] = None,
    warmup_steps: Annotated[Optional[int], typer.Option(help="Linear learning-rate warm-up from 0.001x over the "
                            "first N steps; 0 = none. Default 0.")] = None,
    canvas: Annotated[Optional[str], typer.Option(help="WIDTHxHEIGHT the images are resized into (aspect kept) "
                                                       "and zero-padded to. Default 1024x800.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Total steps; the paper's 40k/80k/40k stages are scaled "
                                                      "proportionally. Default: the full 160k schedule.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate of the first stages; the last stage keeps "
                                                     "its 1/10 ratio. Default 0.001.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Images per step. Default 2.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="DataLoader worker processes. Default 2.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:N. Default auto.")] = None,
    amp: Annotated[Optional[bool], typer.Option(bool_flags("amp"), help="CUDA mixed precision.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Fixes initialisation, data order and flips. Default 0.")] = None,
    experiment: Annotated[Optional[str], typer.Option(help="Experiment name: results/<experiment>/...")] = None,
    name: Annotated[Optional[str], typer.Option(help="Config name (results/<experiment>/<name>/); derived from "
                                                     "the edge settings when unset, e.g. sobel-p2.")] = None,
    out_dir: Annotated[Optional[Path], typer.Option(help="Run folders go to <out-dir>/<experiment>/<name>/"
                                                         "seed-<n>/. Default runs.")] = None,
    results_dir: Annotated[Optional[Path], typer.Option(help="Per-seed result CSVs root. Default results.")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option(help="Checkpoint every K steps (and at the end). "
                                                                 "Default 1000.")] = None,
    eval_at_end: Annotated[Optional[bool], typer.Option(bool_flags("eval_at_end"), help="Evaluate on the val split "
                           "when training ends. Default on.")] = None,
    eval_max_images: Annotated[Optional[int], typer.Option(help="Evaluate on the first N val images only "
                               "(then no per-seed result CSV is written).")] = None,
    eval_every: Annotated[Optional[int], typer.Option(help="Also evaluate every N steps during training (and at "
                          "the last step): segm/boundary/bbox AP and val mask loss per evaluation in the run's "
                          "evals.csv, for convergence curves and speed-up in `report`. Default 0 = never.")] = None,
    strict: Annotated[Optional[bool], typer.Option(bool_flags("strict"), help="Stop on a malformed annotation "
                      "(bad polygon, zero-area box, unknown category) instead of skipping it with a count.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in its folder from its last checkpoint "
                                              "(starts fresh when there is none).")] = False,
    debug: Debug = False,
) -> None:
    """Train Mask R-CNN with the Edge Agreement Loss (or the baseline), then evaluate it."""
    from edgercnn.config import load_config
    from edgercnn.evaluation.metrics import metric_summary
    from edgercnn.experiments.pipeline import train_and_evaluate

    with user_errors(debug):
        cfg = load_config(config, train_overrides(ctx))
        run_dir, metrics, csv_path = train_and_evaluate(cfg, resume=resume)
        if metrics is not None:
            typer.echo(f"{metric_summary(metrics, digits=2, sep='  ')}  → {csv_path}")


@app.command(cls=RecordedCommand, short_help="List the recipes (config presets); show or diff them.")
def recipes(
    name: Annotated[Optional[str], typer.Argument(help="A recipe to show key by key with the source of each value; "
                                                       "leave out to list them.")] = None,
    diff: Annotated[Optional[str], typer.Option(help="Another recipe: show only the keys whose values differ "
                                                     "between NAME and it, one line each, with both sources.")] = None,
    debug: Debug = False,
) -> None:
    """List the packaged recipes (presets of config keys for `train --recipe`), show one, or diff two."""
    from edgercnn.config.recipediff import print_recipe_diff
    from edgercnn.config.recipes import print_recipe, print_recipes

    with user_errors(debug):
        if diff is not None and name is None:
            raise EdgeRCNNError("--diff: name a recipe to compare first, e.g. edgercnn recipes authors-coco "
                                "--diff torchvision")
        if name is None:
            print_recipes(_console())
        elif diff is not None:
            print_recipe_diff(name, diff, _console())
        else:
            print_recipe(name, _console())


@app.command("eval", cls=RecordedCommand, short_help="Evaluate a run, or score any COCO detections file.")
def evaluate(
    run_dir: Annotated[Optional[Path], typer.Argument(help="A run folder: <out-dir>/<experiment>/<config>/seed-<n>. "
                                                           "Leave out with --detections.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda; default: the run's.")] = None,
    max_images: Annotated[Optional[int], typer.Option(help="Evaluate on the first N val images only (then no "
                                                           "per-seed result CSV is written).")] = None,
    detections: Annotated[Optional[Path], typer.Option(help="Score this COCO results JSON (from any detector: "
                          "detectron2, mmdetection, ours) instead of a run; needs --data.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="With --detections: the dataset folder (made by edgercnn "
                                                      "prepare) whose ground truth scores them.")] = None,
    split: Annotated[str, typer.Option(help="With --detections: the split of --data.")] = "val",
    out: Annotated[Optional[Path], typer.Option(help="With --detections: where to write the metrics JSON. "
                                                     "Default: <detections stem>-metrics.json beside it.")] = None,
    debug: Debug = False,
) -> None:
    """COCO segm/boundary/bbox AP and the mean validation mask loss of a run (writes metrics.json, detections.json
    and, for a finished run on the whole val split, the per-seed results CSV), or the AP of any detections file."""
    from edgercnn.evaluation.scoring import score_detections
    from edgercnn.experiments.pipeline import evaluate_run

    with user_errors(debug):
        if detections is not None:
            if run_dir is not None or data is None:
                raise EdgeRCNNError("--detections: pass --data DIR (the dataset the detections are for) and no "
                                    "RUN_DIR")
            metrics, path = score_detections(detections, data, split, out)
            csv_path = None
        elif run_dir is None:
            raise EdgeRCNNError("eval: pass a RUN_DIR, or --detections FILE --data DIR")
        else:
            metrics, csv_path = evaluate_run(run_dir, device=device, max_images=max_images)
            path = None
        typer.echo(" ".join(f"{k}={v:.3f}" for k, v in metrics.items() if isinstance(v, float)))
        for written in (path, csv_path):
            if written is not None:
                typer.echo(f"→ {written}")


@app.command(cls=RecordedCommand, short_help="Tables, significance and plots of an experiment's seeds.")
def report(
    exp_dir: Annotated[Path, typer.Argument(help="An experiment folder: results/<experiment>.")],
    format: Annotated[Format, typer.Option("--format", help="table (rich), markdown, latex or csv.")] = Format.table,
    compare: Annotated[Optional[Path], typer.Option(help="A reference CSV (e.g. results/paper/table1_filters.csv) "
                                                         "to print beside ours.")] = None,
    baseline: Annotated[Optional[str], typer.Option(help="Config name to compare against. Default: `baseline`.")]
    = None,
    plots: Annotated[Optional[Path], typer.Option(help="Folder for the loss-curve PNG. Default: EXP_DIR.")] = None,
    split_mixed: Annotated[bool, typer.Option(help="Report seeds of one config that differ in experiment, dataset, "
                                                   "steps or config keys as separate configs (default: an error "
                                                   "naming them).")] = False,
    debug: Debug = False,
) -> None:
    """Mean ± std over seeds per config, change vs. the baseline, and Figure-4-style loss plots."""
    from edgercnn.reporting.report import report as build_report

    with user_errors(debug):
        build_report(exp_dir, fmt=format.value, compare=compare, baseline=baseline, plot_dir=plots,
                     console=_console(), split_mixed=split_mixed)


@app.command(cls=RecordedCommand, short_help="Baseline vs. Sobel/L2 over seeds, a verdict per metric.")
def reproduce(
    dataset: Annotated[Optional[Dataset], typer.Option(help="A dataset with a measured CPU recipe and a committed "
                                                            "reference: shapes (made on the fly, the default) or "
                                                            "pennfudan (edgercnn prepare pennfudan first).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Prepared dataset folder. Default data/<dataset>. Any other "
                                                      "prepared dataset (e.g. from prepare coco-json or masks) gets "
                                                      "the real-photo recipe, a canvas shaped like its images and "
                                                      "the steps that fit --minutes.")] = None,
    seeds: Annotated[Optional[int], typer.Option(help="Seeds per config (0..N-1). Default 3, or 1 with --quick.")]
    = None,
    quick: Annotated[bool, typer.Option(help="One paired seed trained far enough for the curves to part (shapes "
                                             "2000 steps, pennfudan 600; about 10 min on 2 cores): shows the "
                                             "direction, gives no verdict; results go to <results-dir>/"
                                             "<dataset>-quick and are not compared with the reference.")] = False,
    steps: Annotated[Optional[int], typer.Option(help="Training steps per run. Default: the recipe's (edgercnn "
                                                      "recipes cpu-shapes / cpu-pennfudan), the quick steps with "
                                                      "--quick, or what fits --minutes on your own data.")] = None,
    minutes: Annotated[Optional[float], typer.Option(help="Time budget of the whole run: the step time is measured "
                                                          "on the data first and the steps chosen to fit. Default "
                                                          "60 (10 with --quick) on your own data; unused on shapes "
                                                          "and pennfudan unless given.")] = None,
    experiment: Annotated[Optional[str], typer.Option(help="<results-dir>/<experiment>/ gets the per-seed CSVs. "
                                                           "Default the dataset's name (+ -quick).")] = None,
    out_dir: Annotated[Path, typer.Option(help="Run folders root.")] = Path("runs/reproduce"),
    results_dir: Annotated[Path, typer.Option(help="Results root for your runs (the committed reference under "
                                                   "results/ is not touched).")] = Path("runs/reproduce/results"),
    reference: Annotated[Optional[Path], typer.Option(help="Committed results to compare yours with (Welch test "
                                                           "per metric). Default results/<dataset> for shapes and "
                                                           "pennfudan; none for your own data.")] = None,
    jobs: Annotated[Optional[int], typer.Option(help="Runs trained at once, each in its own process with the "
                                                     "cores split between them (on 2 cores, 2 jobs of 1 thread "
                                                     "train about 2x faster than 1 job of 2). Default: the number "
                                                     "of cores.")] = None,
    workers: Annotated[int, typer.Option(help="DataLoader workers per run.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "cpu",
    compare: Annotated[Comparison, typer.Option("--compare", help="Which configs: edge (baseline vs. Sobel/L2, the "
                       "paper's) or boundary-losses (baseline, Sobel/L2, Dice, Lovász, boundary, Hausdorff and BMask, "
                       "each at its paper's weight: a ranking per metric against the baseline and Sobel/L2 with CIs, "
                       "speed-ups and step times; results in <results-dir>/boundary-losses-<dataset>).")]
    = Comparison("edge"),
    debug: Debug = False,
) -> None:
    """The README's main command: baseline vs. Sobel/L2 on shapes, Penn-Fudan or your data, with a verdict per metric.

    Trains both configs for N seeds with evaluations during training, then prints the report (convergence curves,
    speed-up, significance), a plain verdict per metric (helps / no detectable difference / hurts, with the CI and
    p) and a comparison against the committed results. Finished seeds are skipped and unfinished runs resumed, so
    it can be re-run after an interruption.
    """
    from edgercnn.experiments.reproduce import reproduce as run_reproduce

    with user_errors(debug):
        run_reproduce(dataset=dataset.value if dataset else None, data=data, seeds=seeds, steps=steps,
                      minutes=minutes, quick=quick, experiment=experiment, out_dir=out_dir, results_dir=results_dir,
                      reference=reference, jobs=jobs, workers=workers, device=device, console=_console(),
                      comparison=compare.value)


@app.command(cls=RecordedCommand, short_help="Run a paper experiment (configs x seeds), then report.")
def sweep(
    name: Annotated[Optional[str], typer.Argument(help="An experiment (edgercnn sweep --list), e.g. table1_filters, "
                                                       "or an experiment YAML file.")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the packaged experiments and exit.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Print the plan (done/reuse/evaluate/resume/new and the equivalent "
                                               "edgercnn train command per run) and exit.")] = False,
    data: Annotated[Optional[Path], typer.Option(help="Dataset folder. Default data/<the experiment's dataset>.")]
    = None,
    seeds: Annotated[Optional[str], typer.Option(help="Seeds, comma-separated (e.g. 0 for the paper's single "
                                                      "runs). Default: the experiment's (0,1,2).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N for every run (--gpus assigns one GPU "
                                             "per run instead).")] = "auto",
    gpus: Annotated[Optional[str], typer.Option(help="Local GPUs, comma-separated: one run per GPU at a time "
                                                     "(each run sees only its GPU: CUDA_VISIBLE_DEVICES).")] = None,
    jobs: Annotated[int, typer.Option(help="Without --gpus: runs at a time on this machine, each in its own "
                                           "process (1: one after the other in this process).")] = 1,
    executor: Annotated[str, typer.Option(help="local (this machine), slurm (submitit: one job per run, requeued "
                                               "on preemption) or submitit-local (the Slurm path on this "
                                               "machine).")] = "local",
    partition: Annotated[Optional[str], typer.Option(help="Slurm partition (with --executor slurm).")] = None,
    time: Annotated[int, typer.Option("--time", help="Slurm time limit per job in minutes; a run that hits it "
                                                     "is requeued and resumes.")] = 4320,
    gpus_per_run: Annotated[int, typer.Option(help="Slurm: GPUs per run (more than 1: DDP, one process per "
                                                   "GPU).")] = 1,
    cpus_per_run: Annotated[int, typer.Option(help="Slurm: CPUs per process (data-loader workers).")] = 8,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Config override KEY=VALUE for every run "
                                                                    "(repeatable), e.g. --set steps=1000.")] = None,
    out_dir: Annotated[Path, typer.Option(help="Run folders root.")] = Path("runs"),
    results_dir: Annotated[Path, typer.Option(help="Per-seed result CSVs root.")] = Path("results"),
    debug: Debug = False,
) -> None:
    """Run a paper experiment (a grid of configs x seeds from edgercnn/experiments/): skips finished seeds, reuses
    identical configs of other experiments, resumes unfinished runs, and ends with the report against the paper."""
    from edgercnn.experiments.runner import Executor
    from edgercnn.experiments.sweep import list_experiments, parse_sets, sweep as run_sweep

    with user_errors(debug):
        if list_:
            list_experiments(_console())
            return
        if name is None:
            raise EdgeRCNNError("sweep: pass an experiment name (see edgercnn sweep --list) or a YAML file")
        try:
            seed_list = tuple(int(s) for s in seeds.split(",")) if seeds else None
            gpu_list = tuple(int(g) for g in gpus.split(",")) if gpus else ()
        except ValueError:
            raise EdgeRCNNError("--seeds/--gpus: expected comma-separated integers, e.g. 0,1,2") from None
        ex = Executor(kind=executor, jobs=jobs, gpus=gpu_list, partition=partition, time_min=time,
                      gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run)
        run_sweep(name, executor=ex, dry_run=dry_run, data=data, seeds=seed_list, device=device, out_dir=out_dir,
                  results_dir=results_dir, overrides=parse_sets(set_), console=_console())


def _parse_ids(value: Optional[str]) -> Optional[list[int]]:
    if not value:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise EdgeRCNNError(f"--image-ids {value!r}: expected comma-separated image ids, e.g. 3,7") from None


@app.command(cls=RecordedCommand, short_help="Predicted masks of runs side by side (Figure 5).")
def visualize(
    run_dirs: Annotated[list[Path], typer.Argument(metavar="RUN_DIR", help="Run folders to compare, one column "
                                                   "each (e.g. a baseline and an edge-loss run of the same dataset).")],
    images: Annotated[int, typer.Option(help="Rows: N images with at least one instance, spread evenly over the "
                                             "split by id (with --crop: N ground-truth instances).")] = 4,
    image_ids: Annotated[Optional[str], typer.Option(help="Comma-separated image ids instead of --images, e.g. 3,7 "
                                                          "(with --crop: all their instances).")] = None,
    split: Annotated[str, typer.Option(help="Split of the dataset to show.")] = "val",
    data: Annotated[Optional[Path], typer.Option(help="Dataset folder; default: the first run's (every run is "
                                                      "checked against it).")] = None,
    crop: Annotated[bool, typer.Option(help="One row per ground-truth instance, cropped and enlarged, with each "
                                            "run's best-IoU prediction: the differences live at the boundary.")]
    = False,
    score_threshold: Annotated[float, typer.Option(help="Show predictions with at least this score (the run's "
                                                        "eval_score_threshold, 0.05 by default, applies first).")]
    = 0.5,
    out: Annotated[Path, typer.Option(help="Figure file: .png or .pdf.")] = Path("visualize.png"),
    device: Annotated[str, typer.Option(help="cpu (enough for a handful of images) or cuda.")] = "cpu",
    debug: Debug = False,
) -> None:
    """Predicted masks of runs side by side on the same images, ground truth outlined (the paper's Figure 5)."""
    from edgercnn.reporting.visualize import visualize_runs

    with user_errors(debug):
        path = visualize_runs(run_dirs, out, images=images, image_ids=_parse_ids(image_ids), split=split, data=data,
                              crop=crop, score_threshold=score_threshold, device=device)
        typer.echo(f"→ {path}")


@app.command("visualize-edges", cls=RecordedCommand, short_help="One instance as the edge loss sees it (Figures 3, 7).")
def visualize_edges(
    image_id: Annotated[int, typer.Option(help="Image id (as in the dataset's COCO JSON).")],
    data: Annotated[Optional[Path], typer.Option(help="Dataset folder made by `edgercnn prepare`; default: the "
                                                      "--run's.")] = None,
    instance: Annotated[int, typer.Option(help="Ground-truth instance of the image (0, 1, ... in annotation "
                                               "order).")] = 0,
    filter: Annotated[Optional[list[str]], typer.Option(
        flag("filters"), help=f"Edge filter(s): {', '.join(KERNELS)}; repeat or join with +. Default: the run's, "
                         "else sobel.")] = None,
    mask_size: Annotated[Optional[int], typer.Option(help="RoI mask size 28 or 56. Default: the run's, else 28.")]
    = None,
    run: Annotated[Optional[Path], typer.Option(help="A run folder: adds its predicted probabilities for the RoI, "
                                                     "their responses and the per-pixel |ΔE|^p.")] = None,
    p: Annotated[Optional[float], typer.Option(help="Exponent of |ΔE|^p. Default: the run's, else 2.")] = None,
    smooth: Annotated[Optional[Smooth], typer.Option(help="Gaussian-smooth gt/pred/both before the filters (the "
                                                          "paper's Figure 7). Default: the run's.")] = None,
    magnitude: Annotated[Optional[bool], typer.Option(bool_flags("magnitude"), help="Count the gradient "
                         "magnitude in |ΔE|^p. Default: the run's.")] = None,
    split: Annotated[str, typer.Option(help="Split of the dataset.")] = "val",
    canvas: Annotated[Optional[str], typer.Option(help="WIDTHxHEIGHT canvas. Default: the run's, else "
                                                       "1024x800.")] = None,
    out: Annotated[Path, typer.Option(help="Figure file: .png or .pdf.")] = Path("edges.png"),
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    debug: Debug = False,
) -> None:
    """One ground-truth instance as the edge loss sees it (the paper's Figures 3 and 7): RoI-aligned target, filter
    responses and, with --run, the predicted mask, its responses and the per-pixel |ΔE|^p."""
    from edgercnn.reporting.visualize import visualize_edges as run_visualize_edges

    with user_errors(debug):
        path, _ = run_visualize_edges(data, image_id, out, instance=instance, filters=_parse_filters(filter),
                                      mask_size=mask_size, run_dir=run, p=p, smooth=smooth.value if smooth else None,
                                      magnitude=magnitude, split=split, canvas=_parse_canvas(canvas), device=device)
        typer.echo(f"→ {path}")
