"""Regressions from the fourth fault campaign (issue #25), the non-data half: recipe names that are paths, edge-loss
weights that are not finite, reproduce's options and empty splits, reproduce's workers outliving it, and rich markup
in report tables. The annotation-file half: tests/test_faults_data.py."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn
from torchvision.models.detection.roi_heads import RoIHeads

from edgercnn import add_edge_loss
from edgercnn.config import Config, load_config
from edgercnn.config.recipediff import recipe_diff
from edgercnn.config.recipes import check_recipe, load_recipe
from edgercnn.core.errors import ConfigError
from edgercnn.model.losses import EdgeLoss, edge_agreement_loss

from test_faults_round3 import invoke, one_line_error  # the suite's one-line-error checks


# ---------------------------------------------------------------- recipes: one rule for a name

@pytest.mark.parametrize("name", ["../recipes/torchvision", "../../config/recipes/torchvision",
                                  "torchvision/../torchvision", "/tmp/x", ""])
def test_a_recipe_name_is_a_packaged_name_never_a_path(name):
    for call in (lambda: check_recipe(name), lambda: load_recipe(name), lambda: recipe_diff("torchvision", name),
                 lambda: load_config(None, {"recipe": name})):
        with pytest.raises(ConfigError, match="no such recipe; choose .*torchvision"):
            call()
    one_line_error(invoke("recipes", name), "no such recipe")
    one_line_error(invoke("recipes", "torchvision", "--diff", name), "--diff")
    one_line_error(invoke("recipes", name, "--diff", "torchvision"), "no such recipe")
    one_line_error(invoke("train", "--recipe", name, "--data", "."), "no such recipe")


def test_packaged_recipes_still_load():
    assert load_recipe("torchvision")["keys"] and check_recipe("authors-coco") == "authors-coco"
    assert invoke("recipes", "authors-coco", "--diff", "torchvision").exit_code == 0


# ---------------------------------------------------------------- edge-loss weight and p: one rule

BAD_EDGE = [({"alpha": -1.0}, "alpha: must be >= 0"), ({"alpha": math.nan}, "alpha: must be >= 0"),
            ({"alpha": math.inf}, "alpha: must be >= 0"), ({"p": math.inf}, "p: must be >= 1"),
            ({"p": math.nan}, "p: must be >= 1"), ({"p": 0.5}, "p: must be >= 1")]


@pytest.mark.parametrize("kw,message", BAD_EDGE)
def test_add_edge_loss_refuses_what_the_command_line_refuses(kw, message):
    with pytest.raises(ConfigError, match=message):
        Config(filters=["sobel"], **kw).validate()
    weight = {"weight": kw["alpha"]} if "alpha" in kw else kw
    with pytest.raises(ValueError, match=message):
        EdgeLoss(**weight)
    with pytest.raises(ValueError, match=message):
        edge_agreement_loss(torch.rand(1, 4, 4), torch.ones(1, 4, 4), **weight)
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2)
    with pytest.raises(ValueError, match=message):
        add_edge_loss(model, **kw)
    assert type(model.roi_heads) is RoIHeads  # refused before the model was touched
    flag = "--alpha" if "alpha" in kw else "--p"
    one_line_error(invoke("train", flag, next(iter(kw.values())), "--data", "."), message)


def test_edge_loss_weights_that_are_allowed():
    assert EdgeLoss(weight=0).weight == 0 and EdgeLoss(p=1, weight=2.5).p == 1
    Config(filters=["sobel"], alpha=0.0, p=3.0).validate()
    with pytest.raises(ConfigError, match="alpha"):  # checked with or without filters, as before
        Config(filters=[], alpha=-1.0).validate()


# ---------------------------------------------------------------- reproduce: options and splits, before training

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


# ---------------------------------------------------------------- killing reproduce leaves no worker behind

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


# ---------------------------------------------------------------- report: names are text, not markup

def test_split_mixed_table_keeps_the_bracketed_group_names(tmp_path):
    exp = tmp_path / "results" / "demo"
    for seed, experiment in ((0, "demo"), (1, "demo"), (2, "other")):
        folder = exp / "baseline"
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame([{"experiment": experiment, "config": "baseline", "seed": seed, "filters": "", "p": 2.0,
                       "steps": 50, "data": "data/shapes", "data_fingerprint": "abc", "segm_AP": 20.0 + seed,
                       "bbox_AP": 30.0}]).to_csv(folder / f"seed-{seed}.csv", index=False)
    result = invoke("report", exp, "--split-mixed")
    assert result.exit_code == 0, result.output
    assert "baseline [experiment=demo]" in result.output and "baseline [experiment=other]" in result.output
