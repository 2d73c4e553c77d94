"""edgercnn reproduce beyond shapes: verdicts on hand-made numbers, the budgeted recipe for a user's dataset,
dataset resolution, options and splits refused before training, no worker outliving a killed reproduce, and a
tiny end-to-end run on a "user" dataset."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from edgercnn.cli import app
from edgercnn.config import config_from_dict
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.experiments import budget
from edgercnn.experiments.reproduce import CONFIGS, PROTOCOLS, resolve_dataset
from edgercnn.reporting import verdict

from tests.clirunner import invoke, one_line_error

runner = CliRunner()


def _runs(base, edge):
    rows = [{"config": "baseline", "seed": i, "segm_AP": v} for i, v in enumerate(base)]
    rows += [{"config": "sobel-p2", "seed": i, "segm_AP": v} for i, v in enumerate(edge)]
    return pd.DataFrame(rows)


def _evals(curves):
    """curves: {config: {seed: [(step, AP), ...]}}"""
    return pd.DataFrame([{"config": c, "seed": s, "step": st, "segm_AP": v}
                         for c, seeds in curves.items() for s, pts in seeds.items() for st, v in pts])


FLAT = {"baseline": {0: [(500, 50.0), (800, 58.0), (1000, 60.0)], 1: [(500, 50.0), (800, 58.0), (1000, 60.0)]},
        "sobel-p2": {0: [(500, 52.0), (800, 60.0), (1000, 66.0)], 1: [(500, 49.0), (800, 61.0), (1000, 65.0)]}}


def test_judge_follows_the_direction_and_the_level():
    assert verdict.judge(+3.0, 0.01, higher_is_better=True) == "helps"
    assert verdict.judge(-3.0, 0.01, higher_is_better=True) == "hurts"
    assert verdict.judge(-0.02, 0.01, higher_is_better=False) == "helps"  # a lower loss
    assert verdict.judge(+3.0, 0.2, higher_is_better=True) == "no detectable difference"
    assert verdict.judge(+3.0, math.nan, higher_is_better=True) == "no detectable difference"


def test_verdict_from_welch_over_seeds():
    runs = _runs([60.0, 61.0, 59.0], [66.0, 65.0, 67.0])  # diff +6, sd 1 each: t = 6 / sqrt(2/3) = 7.35, df = 4: p = 0.0018 (t tables: 7.17 at p = 0.002)
    table = verdict.verdicts(runs, _evals(FLAT), {"sobel-p2": "baseline"}, {"segm_AP": True})
    row = table.iloc[0]
    assert row["verdict"] == "helps" and row["diff"] == pytest.approx(6.0)
    assert row["p"] == pytest.approx(0.00183, rel=0.02)
    assert row["led"] == "5/6"  # paired by seed and step: behind only at seed 1, step 500
    line = next(verdict.verdict_lines(table, {"segm_AP": "segm AP"}))
    assert line.startswith("sobel-p2 vs baseline, segm AP: helps; +6.0 [") and "ahead at 5/6" in line


def test_no_verdict_from_one_seed_or_a_run_stopped_while_the_baseline_climbs():
    one = verdict.verdicts(_runs([60.0], [66.0]), _evals(FLAT), {"sobel-p2": "baseline"}, {"segm_AP": True})
    assert one.iloc[0]["verdict"] == "no verdict" and "1 seed" in one.iloc[0]["reason"]
    assert one.iloc[0]["diff"] == pytest.approx(6.0)  # the direction is still shown
    steep = {"baseline": {0: [(250, 4.6), (400, 12.0), (500, 19.7)], 1: [(250, 2.4), (400, 11.0), (500, 20.0)]},
             "sobel-p2": {0: [(250, 6.0), (400, 12.0), (500, 20.5)], 1: [(250, 6.6), (400, 12.5), (500, 19.6)]}}
    # 80 % of 500 = step 400: the mean rose 11.5 → 19.85, i.e. 42 % of the final value > 25 %
    assert "too short" in verdict.too_short(_evals(steep), "baseline")
    table = verdict.verdicts(_runs([19.7, 20.0], [20.5, 19.6]), _evals(steep), {"sobel-p2": "baseline"},
                             {"segm_AP": True})
    assert table.iloc[0]["verdict"] == "no verdict" and "too short" in table.iloc[0]["reason"]
    # 58 → 60 over the last 20 % of the flat curves: 3 % < 25 %
    assert verdict.too_short(_evals(FLAT), "baseline") is None


def test_canvas_keeps_the_pixel_budget_in_the_images_shape():
    assert budget.canvas_for_sizes([(640, 480), (800, 600), (400, 300)], 256 * 256) == [288, 224]
    assert budget.canvas_for_sizes([(100, 100)], 256 * 256) == [256, 256]
    w, h = budget.canvas_for_sizes([(300, 900)] * 3, 256 * 256)
    assert w % 32 == 0 and h % 32 == 0 and h > w


def test_steps_fit_the_budget():
    timing = budget.Timing(step_s=0.5, eval_s=10.0)
    # 6 runs, 2 at a time: 3 rounds of 20 min = 1200 s per run; 5 evals take 50 s: (1200 - 50) / 0.5 = 2300
    assert budget.steps_for_budget(60, runs=6, jobs=2, evals=5, timing=timing) == 2300
    with pytest.raises(EdgeRCNNError, match=r"--minutes 1: only .* give at least \d+ minutes"):
        budget.steps_for_budget(1, runs=6, jobs=2, evals=5, timing=timing)


def test_calibrate_measures_real_steps(tiny_shapes):
    cfg = config_from_dict({"recipe": "cpu-shapes", "data": str(tiny_shapes), "canvas": [64, 64], "workers": 0},
                           "test")
    timing = budget.calibrate(cfg, threads=1, steps=1, eval_images=1)
    assert timing.step_s > 0 and timing.eval_s > 0


def test_dataset_resolution(tiny_shapes, tmp_path):
    assert resolve_dataset(None, tiny_shapes) == ("shapes", tiny_shapes)
    with pytest.raises(EdgeRCNNError, match="holds a 'shapes' dataset, not pennfudan"):
        resolve_dataset("pennfudan", tiny_shapes)
    with pytest.raises(EdgeRCNNError, match="edgercnn prepare pennfudan"):
        resolve_dataset("pennfudan", tmp_path / "nothing")
    with pytest.raises(EdgeRCNNError, match="--dataset nope: unknown"):
        resolve_dataset("nope", None)
    assert set(PROTOCOLS) >= {"shapes", "pennfudan"}


@pytest.fixture
def user_data(tiny_shapes, tmp_path):
    """The tiny shapes set under another name: what reproduce sees of a user's own prepared dataset."""
    out = tmp_path / "mydata"
    shutil.copytree(tiny_shapes, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["name"] = "mydata"
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.mark.slow
def test_reproduce_on_a_users_dataset(user_data, tmp_path):
    result = runner.invoke(app, ["reproduce", "--data", str(user_data), "--steps", "2", "--seeds", "2", "--jobs",
                                 "1", "--out-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "res")])
    assert result.exit_code == 0, result.output
    assert "canvas 224x224" in result.output and "cpu-pennfudan recipe" in result.output  # 256x192 pixels, square
    for config in CONFIGS:
        assert (tmp_path / "res" / "mydata" / config / "seed-1.csv").is_file()
    assert "Verdict" in result.output and "sobel-p2 vs baseline, segm AP:" in result.output
    assert "committed reference" not in result.output  # nothing to compare a user's data with


@pytest.mark.slow
def test_quick_is_one_paired_seed_with_no_verdict(tiny_shapes, tmp_path):
    result = runner.invoke(app, ["reproduce", "--data", str(tiny_shapes), "--quick", "--steps", "2", "--jobs", "1",
                                 "--out-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "res")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "res" / "shapes-quick" / "baseline").glob("seed-*.csv")) == [
        "seed-0-evals.csv", "seed-0-losses.csv", "seed-0.csv"]
    assert "not a verdict" in result.output and "1 seed: shows the direction only" in result.output
    line = next(line for line in result.output.splitlines() if "segm AP:" in line)
    assert np.isfinite(float(line.rsplit("); ", 1)[1].split()[0].split(";")[0]))  # the difference, signed


@pytest.mark.slow
def test_compare_boundary_losses_ranks_every_config(user_data, tmp_path):
    result = runner.invoke(app, ["reproduce", "--data", str(user_data), "--compare", "boundary-losses", "--steps", "2",
                                 "--seeds", "2", "--jobs", "2", "--out-dir", str(tmp_path / "runs"),
                                 "--results-dir", str(tmp_path / "res")])
    assert result.exit_code == 0, result.output
    ours = tmp_path / "res" / "boundary-losses-mydata"
    for config in ("baseline", "sobel-p2", "dice", "lovasz", "boundary", "hausdorff", "bmask"):
        assert (ours / config / "seed-1.csv").is_file()
    ranking = pd.read_csv(ours / "ranking.csv")
    assert set(ranking["config"]) == {"baseline", "sobel-p2", "dice", "lovasz", "boundary", "hausdorff", "bmask"}
    assert "vs sobel-p2" in (ours / "ranking.md").read_text() and "Ranking per metric" in result.output


# ---- reproduce: options and splits, before training -----------------------------------------------------------------


@pytest.fixture
def shapes_copy(tiny_shapes, tmp_path):
    out = tmp_path / "shapes"
    shutil.copytree(tiny_shapes, out)
    return out


@pytest.mark.parametrize("args,needle", [(["--seeds", "0"], "--seeds 0: must be >= 1"),
                                         (["--seeds", "-1"], "--seeds -1: must be >= 1"),
                                         (["--minutes", "nan"], "--minutes nan: must be a finite"),
                                         (["--minutes", "inf"], "--minutes inf: must be a finite"),
                                         (["--minutes", "0"], "--minutes 0.0: must be a finite")])
def test_reproduce_refuses_options_no_run_can_use(tiny_shapes, tmp_path, args, needle):
    result = invoke("reproduce", "--data", tiny_shapes, "--out-dir", tmp_path / "runs", "--results-dir",
                    tmp_path / "res", *args)
    one_line_error(result, needle)
    assert not (tmp_path / "runs").exists()  # refused before measuring or training


@pytest.mark.parametrize("split,change,needle", [
    ("train", "crowd", "the train split has 8 images and no instance to learn from, only crowd regions"),
    ("val", "crowd", "the val split has 3 images and no instance to score, only crowd regions"),
    ("val", "no images", "the val split has 0 images and no instance to score")])
def test_reproduce_refuses_a_split_without_instances_before_training(shapes_copy, tmp_path, split, change, needle):
    path = shapes_copy / "annotations" / f"instances_{split}.json"
    coco = json.loads(path.read_text())
    if change == "crowd":
        for ann in coco["annotations"]:
            ann["iscrowd"] = 1
    else:
        coco["images"], coco["annotations"] = [], []
    path.write_text(json.dumps(coco))
    result = invoke("reproduce", "--data", shapes_copy, "--quick", "--steps", "2", "--jobs", "1", "--out-dir",
                    tmp_path / "runs", "--results-dir", tmp_path / "res")
    one_line_error(result, needle)
    assert not (tmp_path / "runs").exists()  # nothing trained


def test_quick_gives_no_verdict_whatever_the_seeds(tmp_path, monkeypatch):
    from rich.console import Console

    from edgercnn.experiments import reproduce as module

    runs = pd.DataFrame([{"config": c, "seed": s, "segm_AP": v} for c, vals in
                         (("baseline", (60.0, 61.0, 59.0)), ("sobel-p2", (66.0, 65.0, 67.0))) for s, v in
                         enumerate(vals)])
    monkeypatch.setattr(module, "load_runs", lambda *a: runs)
    monkeypatch.setattr(module, "load_curves", lambda *a: pd.DataFrame())
    monkeypatch.setattr(module, "COMPARE_METRICS", ("segm_AP",))
    console = Console(record=True, width=200)
    full = module.print_verdicts(tmp_path, console)
    assert (full["verdict"] == "helps").all()  # three seeds, +6: a verdict in a full run
    quick = module.print_verdicts(tmp_path, console, quick=True)
    assert (quick["verdict"] == "no verdict").all() and quick["reason"].str.contains("--quick").all()
    text = console.export_text()
    assert "not a verdict" in text and text.count(": helps") == 1  # the full run's line only


# ---- killing reproduce leaves no worker behind ----------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    """ppid → pids, from /proc (Linux)."""
    out: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_killing_reproduce_ends_its_workers(tiny_shapes, tmp_path, sig):
    runs = tmp_path / "runs"
    main = subprocess.Popen([sys.executable, "-m", "edgercnn", "reproduce", "--data", str(tiny_shapes), "--quick",
                             "--steps", "100000", "--jobs", "2", "--out-dir", str(runs), "--results-dir",
                             str(tmp_path / "res")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while len(list(runs.rglob("train.log"))) < 2:  # both workers are in their runs
            assert main.poll() is None and time.monotonic() < deadline, "reproduce ended or never started its runs"
            time.sleep(0.5)
        workers = _children().get(main.pid, [])
        assert len(workers) >= 2
        os.kill(main.pid, sig)
        main.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not [p for p in workers if _alive(p)]
    finally:
        for pid in [main.pid, *workers]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        main.wait()
