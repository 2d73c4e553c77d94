"""Experiments as data: the packaged grids mirror the paper's tables; sweep plans, reuses, resumes and skips; the
Slurm path runs a tiny grid with submitit's local executor; hostile experiment files and --set values are one line."""

import os
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from edgercnn.cli import app
from edgercnn.config import Config
from edgercnn.config.recipes import recipe_values
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.experiments.runner import Executor, RunJob
from edgercnn.experiments.sweep import EXPERIMENTS_DIR, Experiment, experiment_names, parse_sets, plan, sweep
from edgercnn.reporting.results import SeedResult
from edgercnn.training.rundir import RunDir
from edgercnn.training.trainer import Trainer

from tests.clirunner import invoke, one_line_error

ANSI = re.compile(r"\x1b\[[0-9;]*m")
PAPER = {  # experiment → its configurations (the paper's tables and sections)
    "table1_filters": ["baseline", "sobel-p2", "prewitt-p2", "kayyali-p2", "roberts-p2", "laplace-p2",
                       "sobel+laplace-p2"],
    "table2_p": ["baseline", "sobel-p1", "sobel-p2", "sobel-p3", "sobel-p4"],
    "alpha": ["baseline", "sobel-p2-a0.5", "sobel-p2", "sobel-p2-a8", "sobel-p2-a16", "sobel-p4", "sobel-p4-a0.0625"],
    "table3_mask_size_coco": ["baseline", "sobel-p2", "baseline-m56", "sobel-p2-m56"],
    "table4_long_training": ["baseline", "sobel-p2", "baseline-320k", "sobel-p2-320k", "baseline-640k",
                             "sobel-p2-640k"],
    "table5_mask_size_cityscapes": ["baseline", "sobel-p2", "baseline-m56", "sobel-p2-m56"],
    "smoothing_magnitude_ce": ["baseline", "sobel-p2", "sobel-p2-smooth_gt", "sobel-p2-smooth_pred",
                               "sobel-p2-smooth_both", "sobel-p2-mag", "sobel-p2-ce-product", "sobel-p2-ce-exp"],
}


def test_packaged_experiments_mirror_the_paper_tables():
    assert experiment_names() == sorted(PAPER)
    for name, configs in PAPER.items():
        exp = Experiment.load(name)
        assert list(exp.configs) == configs and exp.seeds == (0, 1, 2)
        runs = plan(exp, out_dir=EXPERIMENTS_DIR / "none", results_dir=EXPERIMENTS_DIR / "none")
        assert len(runs) == 3 * len(configs) and {r.state for r in runs} == {"new"}
        for r in runs:
            cfg = r.cfg
            # the derived name agrees with the file's, so the key diff is what the name says
            assert cfg.config_name() == Config(**{**cfg.to_dict(), "name": None}).config_name() \
                or cfg.config_name().endswith(("320k", "640k"))
            recipe = "authors-cityscapes" if exp.dataset == "cityscapes" else "authors-coco"
            assert cfg.recipe == recipe and cfg.backbone == recipe_values(recipe)["backbone"]
            assert cfg.backbone_weights == recipe_values(recipe)["backbone_weights"]
        steps = {r.cfg.config_name(): r.cfg.total_steps() for r in runs}
        if name == "alpha":
            assert set(steps.values()) == {120_000}
        elif name == "table4_long_training":
            assert steps == {"baseline": 160_000, "sobel-p2": 160_000, "baseline-320k": 320_000,
                             "sobel-p2-320k": 320_000, "baseline-640k": 640_000, "sobel-p2-640k": 640_000}
        elif name == "table5_mask_size_cityscapes":
            assert set(steps.values()) == {24_000} and {r.cfg.batch_size for r in runs} == {4}
            assert str(runs[0].cfg.data) == "data/cityscapes"
        else:
            assert set(steps.values()) == {160_000}
        if exp.compare:
            assert (EXPERIMENTS_DIR.parents[1] / exp.compare).is_file()
    assert Experiment.load("table2_p").reuse == {"baseline": "table1_filters", "sobel-p2": "table1_filters"}


def test_dry_run_and_list_cli(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["sweep", "table4_long_training", "--dry-run", "--seeds", "0", "--results-dir",
                                 str(tmp_path)], terminal_width=400)
    out = ANSI.sub("", result.output)
    assert result.exit_code == 0, out
    lines = [line for line in out.splitlines() if "edgercnn train" in line]
    assert len(lines) == 6 and all(line.startswith("new") and "--resume" in line for line in lines)
    assert "--config" in lines[2] and "long_320k.yaml" in lines[2] and "--filter none" in lines[2]
    assert "--seed 0" in lines[0] and "--experiment table4_long_training" in lines[0]
    listed = ANSI.sub("", runner.invoke(app, ["sweep", "--list"], terminal_width=300).output)
    assert all(name in listed for name in PAPER)
    bad = runner.invoke(app, ["sweep", "table9"])
    assert bad.exit_code == 1 and "no such experiment" in ANSI.sub("", bad.output)


def test_set_overrides_and_errors():
    assert parse_sets(["steps=10", "filters=[sobel]", "amp=true"]) == {"steps": 10, "filters": ["sobel"],
                                                                         "amp": True}
    with pytest.raises(EdgeRCNNError, match="--set seed"):
        parse_sets(["seed=3"])
    with pytest.raises(EdgeRCNNError, match="KEY=VALUE"):
        parse_sets(["steps"])
    with pytest.raises(EdgeRCNNError, match="--partition"):
        Executor(kind="slurm")


def test_checkpoint_requeues_the_same_run():
    cfg = Config(experiment="x", name="a", num_classes=3)
    delayed = RunJob(cfg, "cmd").checkpoint()
    assert isinstance(delayed.function, RunJob) and delayed.function.cfg == cfg


def _grid(tmp_path, data, reuse=None, name="tiny_grid"):
    """2 configs × 2 seeds of a few steps on the tiny shapes data."""
    exp = {"description": "tiny", "dataset": "shapes", "seeds": [0, 1],
           "base": {"backbone": "small", "canvas": [64, 64], "steps": 4, "lr": 0.01, "workers": 0,
                    "checkpoint_every": 2},
           "configs": {"baseline": {"filters": []}, "sobel-p2": {"filters": ["sobel"], "p": 2}}}
    if reuse:
        exp["reuse"] = reuse
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(exp))
    return str(path)


@pytest.mark.slow
def test_sweep_on_submitit_local_resumes_skips_and_reuses(tiny_shapes, tmp_path):
    grid = _grid(tmp_path, tiny_shapes)
    where = dict(data=tiny_shapes, device="cpu", out_dir=tmp_path / "runs", results_dir=tmp_path / "results")
    runs = {(r.cfg.config_name(), r.cfg.seed): r for r in plan(Experiment.load(grid), **where)}
    # a finished seed (skipped) and a run killed after 2 of its 4 steps (resumed)
    from edgercnn.experiments.pipeline import train_and_evaluate

    train_and_evaluate(runs["baseline", 0].cfg, command="test")
    finished = SeedResult.of(runs["baseline", 0].cfg).csv.read_text()
    Trainer(runs["sobel-p2", 1].cfg).run(stop_after=2)
    states = {(r.cfg.config_name(), r.cfg.seed): r.state for r in plan(Experiment.load(grid), **where)}
    assert states == {("baseline", 0): "done", ("baseline", 1): "new", ("sobel-p2", 0): "new",
                      ("sobel-p2", 1): "resume"}

    sweep(grid, executor=Executor(kind="submitit-local", cpus_per_run=1, folder=str(tmp_path / "submitit")),
          **where)
    for r in runs.values():
        assert SeedResult.of(r.cfg).exists(), r.cfg.config_name()
    assert SeedResult.of(runs["baseline", 0].cfg).csv.read_text() == finished  # skipped, not retrained
    resumed = pd.read_csv(RunDir.of(runs["sobel-p2", 1].cfg).losses)
    assert resumed["step"].tolist() == [1, 2, 3, 4]
    assert all(r.state == "done" for r in plan(Experiment.load(grid), **where))

    # another experiment reuses the finished seeds of identical configurations instead of training them
    other = _grid(tmp_path, tiny_shapes, reuse={"baseline": "tiny_grid", "sobel-p2": "tiny_grid"}, name="other")
    assert {r.state for r in plan(Experiment.load(other), **where)} == {"reuse"}
    sweep(other, **where)
    for cfg in (r.cfg for r in runs.values()):
        copy = SeedResult(where["results_dir"], "other", cfg.config_name(), cfg.seed)
        assert copy.csv.read_bytes() == SeedResult.of(cfg).csv.read_bytes() and copy.losses.is_file()


def test_every_sweep_option_has_help():
    import typer.main

    command = typer.main.get_command(app).commands["sweep"]
    for param in command.params:
        if param.param_type_name == "option":
            assert param.help and len(param.help) > 10, param.opts


@pytest.mark.slow
def test_preempted_slurm_job_is_requeued_and_resumes(tiny_shapes, tmp_path):
    """submitit's preemption signal → RunJob.checkpoint → requeued → the run continues from its checkpoint."""
    import time

    import submitit

    cfg = Config(data=str(tiny_shapes), backbone="small", canvas=[64, 64], steps=40, lr=0.01, workers=0,
                 checkpoint_every=4, device="cpu", experiment="preempt", name="sobel-p2", eval_at_end=False,
                 out_dir=str(tmp_path / "runs"), results_dir=str(tmp_path / "results"))
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="local")
    executor.update_parameters(timeout_min=10)
    job = executor.submit(RunJob(cfg, "test", threads=2))
    run = RunDir.of(cfg)
    deadline = time.time() + 120
    while (not run.checkpoint.is_file() or len(run.losses.read_text().splitlines()) < 7) and time.time() < deadline:
        time.sleep(0.2)
    assert not job.done(), "the run finished before it could be preempted; make it longer"
    # what Slurm sends on preemption / before the time limit, to the task (the local controller's child)
    from submitit.local.local import LocalJobEnvironment

    pid = job._process.pid
    task = int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])
    os.kill(task, LocalJobEnvironment._usr_sig())
    job.result()
    steps = pd.read_csv(run.losses)["step"].tolist()
    assert steps == list(range(1, 41)) and run.final_weights.is_file()
    log = "".join(p.read_text() for p in (tmp_path / "submitit").glob("*_log.*"))
    assert "Requeued" in log or "requeue" in log.lower()


def test_gpus_give_each_run_its_gpu(tiny_shapes, tmp_path):
    """--gpus: each run goes to a fresh process that sees only its GPU (here: a CPU machine, so CUDA is missing)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the plumbing on a machine without CUDA")
    grid = _grid(tmp_path, tiny_shapes)
    with pytest.raises(EdgeRCNNError, match="CUDA is not available"):
        sweep(grid, executor=Executor(gpus=(0,)), data=tiny_shapes, seeds=(0,), out_dir=tmp_path / "runs",
              results_dir=tmp_path / "results")


def test_a_unique_prefix_names_an_experiment():
    from edgercnn.experiments.sweep import Experiment

    assert Experiment.load("table1").name == Experiment.load("table1_filters").name
    with pytest.raises(EdgeRCNNError, match=r"matches several experiments \(table1_filters, table2_p"):
        Experiment.load("table")  # ambiguous: the candidates are named


def test_reuse_is_a_run_state(tmp_path):
    """Sweep's reuse is a state of the one vocabulary: a result of an identical run elsewhere, unless done."""
    from edgercnn.experiments.runs import RUN_STATES, run_state

    cfg = Config(experiment="b", name="baseline", seed=0, out_dir=str(tmp_path / "runs"),
                 results_dir=str(tmp_path / "results"))
    source = SeedResult(tmp_path / "results", "a", "baseline", 0)
    assert run_state(cfg, source) == "new"
    source.csv.parent.mkdir(parents=True)
    source.csv.write_text("segm_AP\n1.0\n")
    assert run_state(cfg, source) == "reuse" and "reuse" in RUN_STATES
    SeedResult.of(cfg).csv.parent.mkdir(parents=True)
    SeedResult.of(cfg).csv.write_text("segm_AP\n1.0\n")
    assert run_state(cfg, source) == "done"


# ---- hostile experiment files, names and --set values ---------------------------------------------------------------


def _experiment(tmp_path, text, name="mine.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text,needle", [
    ("configs: {'../../x': {filters: [sobel]}}\n", "configs.../../x"),
    ("configs: {'/abs': {}}\n", "configs./abs"),
    ("configs: {a: {}}\nreuse: {a: ../other}\n", "reuse.a"),
    ("configs: {a: {}}\ndataset: ../../etc\n", "dataset"),
    ("seeds: abc\nconfigs: {a: {}}\n", "seeds"),
    ("seeds: [0, x]\nconfigs: {a: {}}\n", "seeds"),
    ("seeds: [-1]\nconfigs: {a: {}}\n", "seeds"),
    ("configs: {a: [1, 2]}\n", "configs.a"),
    ("configs: {a: {}}\nbase: [1]\n", "base"),
])
def test_hostile_experiment_yaml_is_one_line(tmp_path, text, needle):
    path = _experiment(tmp_path, text)
    with pytest.raises(EdgeRCNNError) as err:
        Experiment.load(str(path))
    assert needle in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)
    line = one_line_error(invoke("sweep", path, "--dry-run", "--out-dir", tmp_path / "runs", "--results-dir",
                                 tmp_path / "results"))
    assert needle in line
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_an_escaping_experiment_file_name_is_refused(tmp_path):
    path = _experiment(tmp_path, "configs: {a: {}}\n", name="bad name\x01.yaml")
    one_line_error(invoke("sweep", path, "--dry-run"), "experiment name")


def test_an_ambiguous_experiment_prefix_names_the_candidates():
    line = one_line_error(invoke("sweep", "table", "--dry-run"))
    assert "table1_filters" in line and "table2_p" in line and "no such experiment" not in line


@pytest.mark.parametrize("value", ["steps=[", "steps=!!python/object/apply:os.system ['echo pwned']",
                                   "steps={a: [1"])
def test_hostile_set_values_are_one_line(tmp_path, value, capfd):
    one_line_error(invoke("sweep", "table1_filters", "--dry-run", "--set", value, "--out-dir", tmp_path / "r"),
                   "--set steps")
    assert "pwned" not in capfd.readouterr().out
