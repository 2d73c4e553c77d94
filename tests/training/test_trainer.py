"""The training loop end to end on a tiny shapes dataset: stages, CSVs, checkpoints, resume, eval, report."""

import csv
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from edgercnn.config import Config
from edgercnn.data.sampling import StepBatchSampler, batch_keys
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.evaluation.metrics import METRICS
from edgercnn.experiments.pipeline import evaluate_run, train_and_evaluate
from edgercnn.experiments.runs import run_state
from edgercnn.reporting.report import report
from edgercnn.training.rundir import LOSS_COLUMNS
from edgercnn.training.trainer import Trainer

from tests.clirunner import TINY, invoke, one_line_error
from tests.crafted import refuse_writes_in


def tiny_cfg(data, tmp_path, **kw):
    base = dict(data=str(data), backbone="small", canvas=[64, 64], steps=6, lr=0.01, workers=0,
                checkpoint_every=2, out_dir=str(tmp_path / "runs"), results_dir=str(tmp_path / "results"),
                experiment="tiny", device="cpu")
    base.update(kw)
    return Config(**base)


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_data_order_is_a_pure_function_of_seed_and_step():
    assert batch_keys(10, 2, 0, 3) == batch_keys(10, 2, 0, 3)
    assert batch_keys(10, 2, 0, 3) != batch_keys(10, 2, 1, 3)
    epoch = [k[0] for step in range(5) for k in batch_keys(10, 2, 7, step)]
    assert sorted(epoch) == list(range(10))  # one epoch = a permutation
    sampler = StepBatchSampler(10, 2, 7, 2, 5)
    assert list(sampler) == [batch_keys(10, 2, 7, s) for s in (2, 3, 4)] and len(sampler) == 3


@pytest.mark.slow
def test_end_to_end_train_eval_csv_report(tiny_shapes, tmp_path):
    cfg = tiny_cfg(tiny_shapes, tmp_path, steps=4)
    run, metrics, csv_path = train_and_evaluate(cfg, command="pytest e2e")
    run_dir = run.path
    rows = read_rows(run.losses)
    assert [int(r["step"]) for r in rows] == list(range(1, 5))
    assert list(rows[0]) == list(LOSS_COLUMNS)
    # 4 steps scale the 40k/80k/40k stages to 1/2/1 (heads, 4+, all) at lr 0.01, 0.01, 0.001
    assert [int(r["stage"]) for r in rows] == [1, 2, 2, 3]
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.01] * 3 + [0.001])
    for r in rows:
        parts = sum(float(r[k]) for k in ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness",
                                          "loss_rpn_box_reg"))
        assert float(r["loss_mrcnn"]) == pytest.approx(parts, rel=1e-4)
        assert float(r["loss_total"]) == pytest.approx(parts + float(r["loss_edge"]), rel=1e-4)
        assert float(r["loss_edge"]) > 0
    assert (run_dir / "config.yaml").is_file() and (run_dir / "model_final.pt").is_file()
    assert csv_path == tmp_path / "results" / "tiny" / "sobel-p2" / "seed-0.csv"
    df = pd.read_csv(csv_path)
    assert len(df) == 1 and set(METRICS) <= set(df.columns)
    assert df.loc[0, "filters"] == "sobel" and df.loc[0, "steps"] == 4 and df.loc[0, "command"] == "pytest e2e"
    assert df.loc[0, "val_loss_mask"] > 0 and df.loc[0, "val_images"] == 3
    assert (csv_path.parent / "seed-0-losses.csv").is_file() and (csv_path.parent / "seed-0.config.yaml").is_file()
    assert (run_dir / "detections.json").is_file()
    # model_final.pt alone (checkpoint.pt gone) is a trained run: run_state and evaluate_run agree on it
    run.checkpoint.unlink()
    csv_path.unlink()
    assert run_state(cfg) == "evaluate"
    assert evaluate_run(run)[1] == csv_path and pd.read_csv(csv_path).loc[0, "steps"] == 4
    # The baseline beside it, then the report over both.
    train_and_evaluate(tiny_cfg(tiny_shapes, tmp_path, filters=[], steps=4), command="pytest e2e")
    result = report(tmp_path / "results" / "tiny", fmt="csv")
    assert set(result.summary.index if result.summary.index.name == "config" else result.summary["config"]) == {
        "baseline", "sobel-p2"}
    assert result.plots and result.plots[0].stat().st_size > 0


def test_heads_stage_leaves_the_resnet_untouched(tiny_shapes, tmp_path):
    trainer = Trainer(tiny_cfg(tiny_shapes, tmp_path, steps=3, stages=[
        {"steps": 1, "layers": "heads", "lr": 0.01}, {"steps": 1, "layers": "4+", "lr": 0.01},
        {"steps": 1, "layers": "all", "lr": 0.001}]))
    body = trainer.model.backbone.body
    before = {k: v.clone() for k, v in body.state_dict().items()}
    trainer.run(stop_after=1)
    assert all(torch.equal(before[k], v) for k, v in body.state_dict().items())
    rpn_before = trainer.model.rpn.head.conv[0][0].weight.clone()
    trainer.run(stop_after=1)  # stage "4+": layer3/4 move, layer1/2 and the stem do not
    assert not torch.equal(before["layer4.0.conv1.weight"], body.layer4[0].conv1.weight)
    assert torch.equal(before["layer2.0.conv1.weight"], body.layer2[0].conv1.weight)
    assert torch.equal(before["conv1.weight"], body.conv1.weight)
    assert not torch.equal(rpn_before, trainer.model.rpn.head.conv[0][0].weight)
    trainer.run(stop_after=1)  # stage "all"
    assert not torch.equal(before["conv1.weight"], body.conv1.weight)


@pytest.mark.slow
def test_resume_matches_an_uninterrupted_run(tiny_shapes, tmp_path):
    full = Trainer(tiny_cfg(tiny_shapes, tmp_path / "a"))
    full.run()
    first = Trainer(tiny_cfg(tiny_shapes, tmp_path / "b"))
    first.run(stop_after=3)  # checkpoint at steps 2 and 3
    # a crash after the checkpoint leaves rows the checkpoint does not cover: they must go on resume
    with open(first.rundir.losses, "a") as handle:
        handle.write("4,2,0.01,9,9,9,9,9,9,9,9,0.1\n")
    with pytest.raises(EdgeRCNNError, match="--resume"):
        Trainer(tiny_cfg(tiny_shapes, tmp_path / "b"))
    resumed = Trainer(tiny_cfg(tiny_shapes, tmp_path / "b"), resume=True)
    assert resumed.step == 3
    resumed.run()
    a, b = read_rows(full.rundir.losses), read_rows(resumed.rundir.losses)
    assert [r["step"] for r in b] == [str(s) for s in range(1, 7)]
    for ra, rb in zip(a, b):
        for key in ("loss_total", "loss_mask", "loss_edge", "loss_classifier", "lr", "stage"):
            assert float(ra[key]) == pytest.approx(float(rb[key]), rel=1e-4, abs=1e-6), (ra["step"], key)
    sa, sb = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.allclose(sa[k].float(), sb[k].float(), atol=1e-5) for k in sa)


def test_resume_refuses_changed_settings(tiny_shapes, tmp_path):
    Trainer(tiny_cfg(tiny_shapes, tmp_path)).run(stop_after=2)
    with pytest.raises(EdgeRCNNError, match="p=2.0"):
        Trainer(tiny_cfg(tiny_shapes, tmp_path, p=4.0, name="sobel-p2"), resume=True)
    with pytest.raises(EdgeRCNNError, match="weight_decay"):
        Trainer(tiny_cfg(tiny_shapes, tmp_path, weight_decay=0.01), resume=True)
    # where it runs and writes may change
    assert Trainer(tiny_cfg(tiny_shapes, tmp_path, checkpoint_every=5), resume=True).step == 2


def test_eval_of_a_partial_run_and_missing_folder(tiny_shapes, tmp_path):
    Trainer(tiny_cfg(tiny_shapes, tmp_path, filters=[])).run(stop_after=2)
    run = tmp_path / "runs" / "tiny" / "baseline" / "seed-0"
    metrics, csv_path = evaluate_run(run)  # 2 of 6 steps: metrics in the run folder, but not a seed result
    assert csv_path is None and metrics["val_images"] == 3
    assert json.loads((run / "metrics.json").read_text())["steps"] == 2
    assert not (tmp_path / "results" / "tiny" / "baseline" / "seed-0.csv").exists()
    with pytest.raises(EdgeRCNNError, match="--max-images 0"):
        evaluate_run(run, max_images=0)
    with pytest.raises(EdgeRCNNError, match="config.yaml: not found"):
        evaluate_run(tmp_path / "nowhere")


def test_missing_dataset_is_a_one_line_error(tmp_path):
    with pytest.raises(EdgeRCNNError, match="nodata: is not a folder; run edgercnn prepare"):
        Trainer(tiny_cfg(tmp_path / "nodata", tmp_path))


# ---- errors in DataLoader workers -----------------------------------------------------------------------------------


def test_an_image_error_in_a_worker_is_the_same_one_line(tiny_shapes, tmp_path):
    data = tmp_path / "shapes"
    shutil.copytree(tiny_shapes, data)
    for image in (data / "images" / "train").iterdir():
        image.unlink()  # every image: whichever worker reads first fails
    base = ["train", "--data", data, *TINY, "--steps", "3", "--no-eval"]
    outputs = []
    for workers in ("0", "2"):
        args = [*base, "--out-dir", tmp_path / f"runs{workers}"]
        args[args.index("--workers") + 1] = workers
        outputs.append(one_line_error(invoke(*args), "image file not found"))
    assert "DataLoader worker" not in outputs[1]
    assert outputs[1].split(": ", 2)[2] == outputs[0].split(": ", 2)[2]  # error: <image>: <the same words>


# ---- unwritable outputs, refused before training --------------------------------------------------------------------


@pytest.mark.slow
def test_out_dir_under_a_file_is_one_line_before_training(tiny_shapes, tmp_path):
    (tmp_path / "afile").write_text("x")
    out = one_line_error(invoke("train", "--data", tiny_shapes, *TINY, "--steps", "3", "--no-eval", "--out-dir",
                                tmp_path / "afile" / "runs"), "not a folder")
    assert "--out-dir" in out


def test_read_only_results_dir_fails_before_training(tiny_shapes, tmp_path, monkeypatch):
    results = tmp_path / "results"
    results.mkdir()
    refuse_writes_in(monkeypatch, results)
    out = one_line_error(invoke("train", "--data", tiny_shapes, *TINY, "--steps", "3", "--out-dir",
                                tmp_path / "runs", "--results-dir", results), "--results-dir")
    assert "Read-only" in out
    assert not (tmp_path / "runs").exists()  # nothing trained


def test_read_only_out_dir_via_os_access(tiny_shapes, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    runs.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if Path(p) == runs and mode == os.W_OK
                        else real(p, mode, *a, **k))
    one_line_error(invoke("train", "--data", tiny_shapes, *TINY, "--steps", "3", "--no-eval", "--out-dir", runs),
                   "--out-dir")
    assert not any(runs.iterdir())
