"""Evaluation: it changes nothing in the model, evaluations during training, scoring any detections file."""

import json

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from edgercnn.cli import app
from edgercnn.config import Config
from edgercnn.data.shapes import make_shapes
from edgercnn.evaluation.evaluate import evaluate_model
from edgercnn.experiments.pipeline import train_and_evaluate
from edgercnn.training.rundir import EVAL_COLUMNS, RunDir
from edgercnn.training.trainer import Trainer

from tests.clirunner import TINY, invoke, one_line_error

runner = CliRunner()


def tiny_cfg(data, tmp_path, **kw):
    base = dict(data=str(data), backbone="small", canvas=[64, 64], steps=4, lr=0.01, workers=0, checkpoint_every=2,
                out_dir=str(tmp_path / "runs"), results_dir=str(tmp_path / "results"), experiment="tiny",
                device="cpu")
    return Config(**{**base, **kw})


@pytest.mark.parametrize("norm", ["gn", "frozen_bn"])
def test_evaluating_twice_gives_the_same_metrics_and_changes_no_parameter_or_buffer(tiny_shapes, tmp_path, norm):
    trainer = Trainer(tiny_cfg(tiny_shapes, tmp_path, norm=norm, optimizer="adamw", warmup_steps=2))
    trainer.run(stop_after=2)
    model = trainer.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    first, _ = evaluate_model(model, trainer.cfg, torch.device("cpu"))
    second, _ = evaluate_model(model, trainer.cfg, torch.device("cpu"))
    assert first == pytest.approx(second, nan_ok=True)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(rng, torch.get_rng_state()) and model.training


def test_loss_pass_puts_norm_layers_in_eval_mode():
    from edgercnn.evaluation.evaluate import loss_mode

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4), torch.nn.GroupNorm(2, 4))
    loss_mode(model)
    assert model.training and not model[1].training and not model[2].training
    stats = model[1].running_mean.clone()
    model(torch.randn(2, 3, 5, 5))
    assert torch.equal(stats, model[1].running_mean)


def test_one_backbone_forward_gives_the_losses_and_detections_of_two_whole_forwards(tiny_shapes, tmp_path):
    from edgercnn.evaluation.evaluate import loss_mode, losses_and_predictions

    trainer = Trainer(tiny_cfg(tiny_shapes, tmp_path, norm="gn", optimizer="adamw", warmup_steps=2))
    trainer.run(stop_after=2)
    model = trainer.model
    images, targets = next(iter(torch.utils.data.DataLoader(trainer.dataset, batch_size=2,
                                                            collate_fn=lambda batch: tuple(zip(*batch)))))
    images = list(images)
    with torch.no_grad():
        torch.manual_seed(3)
        loss_mode(model)
        whole_losses = model(images, list(targets))
        model.eval()
        whole = model(images)
        torch.manual_seed(3)
        losses, predictions = losses_and_predictions(model, images, list(targets))
    assert not model.training and losses.keys() == whole_losses.keys()
    torch.testing.assert_close(losses, whole_losses)
    assert sum(len(p["scores"]) for p in whole) > 0  # the check compares real detections
    torch.testing.assert_close(predictions, whole)


def test_the_last_steps_evaluation_is_the_result_and_is_not_made_twice(tiny_shapes, tmp_path, monkeypatch):
    import edgercnn.experiments.pipeline as pipeline
    import edgercnn.training.trainer as trainer_module

    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return evaluate_model(*args, **kwargs)

    monkeypatch.setattr(pipeline, "evaluate_model", counted)
    monkeypatch.setattr(trainer_module, "evaluate_model", counted)
    run, metrics, csv_path = train_and_evaluate(tiny_cfg(tiny_shapes, tmp_path, steps=3, eval_every=3))
    assert len(calls) == 1  # at step 3 by the trainer; the final evaluation takes it
    last = pd.read_csv(run.evals).iloc[-1]
    assert last["step"] == 3 and last["segm_AP"] == pytest.approx(metrics["segm_AP"], abs=1e-4)
    assert csv_path is not None and json.loads(run.metrics.read_text())["steps"] == 3
    assert run.detections.is_file()
    calls.clear()
    train_and_evaluate(tiny_cfg(tiny_shapes, tmp_path, steps=3, eval_every=2, seed=1))
    assert len(calls) == 2  # at step 2, and at 3 (the last step) once


@pytest.mark.slow
def test_eval_every_writes_evals_csv_copied_to_results_and_resume_redoes_later_ones(tiny_shapes, tmp_path):
    cfg = tiny_cfg(tiny_shapes, tmp_path, steps=5, eval_every=2, norm="gn", optimizer="adamw")
    trainer = Trainer(cfg)
    trainer.run(stop_after=3)  # evaluations at 2; checkpoint at 2 and 3
    rows = pd.read_csv(trainer.rundir.evals)
    assert list(rows.columns) == list(EVAL_COLUMNS) and rows["step"].tolist() == [2]
    with open(trainer.rundir.evals, "a") as handle:  # an evaluation the checkpoint does not cover
        handle.write("4,1,1,1,1,1,1\n")
    run, metrics, csv_path = train_and_evaluate(cfg, resume=True, command="pytest")
    rows = pd.read_csv(run.evals)
    assert rows["step"].tolist() == [2, 4, 5]  # every 2 steps and the last one
    assert rows.iloc[-1]["segm_AP"] == pytest.approx(metrics["segm_AP"], abs=0.05)
    assert rows.iloc[-1]["val_loss_mask"] == pytest.approx(metrics["val_loss_mask"], rel=1e-4)
    copied = pd.read_csv(csv_path.parent / "seed-0-evals.csv")
    assert copied["step"].tolist() == [2, 4, 5]
    result = pd.read_csv(csv_path)
    assert {"boundary_AP", "boundary_AP50", "boundary_AP75"} <= set(result.columns)
    saved = json.loads(run.metrics.read_text())  # strict JSON: NaN (no large objects) is null
    assert saved["segm_APl"] is None and "boundary_AP" in saved


def test_partial_evaluation_is_never_a_seed_result(tiny_shapes, tmp_path):
    run, metrics, csv_path = train_and_evaluate(tiny_cfg(tiny_shapes, tmp_path, steps=3, eval_max_images=2))
    assert csv_path is None and metrics["val_images"] == 2 and run.metrics.is_file()


def _gt(data):
    return json.loads((data / "annotations" / "instances_val.json").read_text())


def test_eval_detections_scores_any_results_file(tiny_shapes, tmp_path):
    gt = _gt(tiny_shapes)
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9,
             "segmentation": a["segmentation"]} for a in gt["annotations"]]
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(dets))
    result = runner.invoke(app, ["eval", "--detections", str(path), "--data", str(tiny_shapes)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "dets-metrics.json").read_text())
    assert metrics["segm_AP"] == 100 and metrics["boundary_AP"] == 100 and metrics["bbox_AP"] == 100
    boxes = tmp_path / "boxes.json"  # boxes only: bbox AP, the mask metrics stay out
    boxes.write_text(json.dumps([{k: v for k, v in d.items() if k != "segmentation"} for d in dets]))
    out = tmp_path / "m.json"
    assert runner.invoke(app, ["eval", "--detections", str(boxes), "--data", str(tiny_shapes), "--out",
                               str(out)]).exit_code == 0
    assert json.loads(out.read_text())["bbox_AP"] == 100 and "segm_AP" not in json.loads(out.read_text())


@pytest.mark.parametrize("content, message", [
    ("not json", "not JSON"),
    ('{"annotations": []}', "not a list"),
    ('[{"image_id": 999, "category_id": 1, "bbox": [0, 0, 2, 2], "score": 1}]', "entry 0: image_id 999"),
    ('[{"image_id": 1, "category_id": 77, "bbox": [0, 0, 2, 2], "score": 1}]', "entry 0"),
    ('[{"image_id": 1, "category_id": 1, "score": 1, "segmentation": {"size": [5, 5], "counts": "25"}}]',
     "entry 0"),
])
def test_eval_detections_bad_files_are_one_line_errors(tiny_shapes, tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = runner.invoke(app, ["eval", "--detections", str(path), "--data", str(tiny_shapes)])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 or "bad.json" in result.output


def test_eval_needs_a_run_or_detections_with_data(tmp_path):
    assert "pass a RUN_DIR" in runner.invoke(app, ["eval"]).output
    assert "pass --data" in runner.invoke(app, ["eval", "--detections", str(tmp_path / "x.json")]).output


# ---- empty val split ------------------------------------------------------------------------------------------------


def test_an_empty_val_split_is_one_line_and_no_result(tmp_path):
    data = tmp_path / "shapes"
    make_shapes(data, train=2, val=0, size=64, seed=0)
    result = invoke("train", "--data", data, *TINY, "--steps", "3", "--out-dir", tmp_path / "runs",
                    "--results-dir", tmp_path / "results", "--experiment", "e")
    assert result.exit_code == 1 and "Traceback" not in result.output  # trained, then one line instead of NaNs
    errors = [line for line in " ".join(result.output.split()).split("error: ")[1:]]
    assert len(errors) == 1 and "the val split has no images" in errors[0]
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").rglob("seed-*.csv"))
    run = RunDir(tmp_path / "runs" / "e" / "sobel-p2" / "seed-0")
    assert run.final_weights.is_file() and not run.metrics.exists()  # the training is kept
    assert not run.lock_owner.exists()  # and the lock released
    one_line_error(invoke("eval", run.path), "the val split has no images")
    assert not run.metrics.exists() and not list((tmp_path / "results").rglob("seed-*.csv"))
