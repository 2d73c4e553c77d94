"""`edgercnn visualize` / `visualize-edges`: the arrays each panel shows, checked against the loss, the model and
the evaluation path; PNG/PDF output; one-line errors; the Cityscapes fixture."""

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torchvision.models.detection.roi_heads import project_masks_on_boxes
from typer.testing import CliRunner

from edgercnn.cli import app
from edgercnn.config import Config
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.data.cityscapes import convert_cityscapes
from edgercnn.data.dataset import CocoInstanceDataset
from edgercnn.data.transforms import to_original
from edgercnn.experiments.pipeline import train_and_evaluate
from edgercnn.model.losses import EdgeLoss, channel_names, edge_maps, gaussian_smooth
from edgercnn.reporting.figures import comparison_figure, edges_figure
from edgercnn.reporting.visualize import (
    check_same_data,
    choose_rows,
    comparison_panels,
    crop_window,
    edge_arrays,
    load_run,
    mask_iou,
    open_dataset,
    roi_probability,
    roi_target,
    spread,
    visualize_edges,
)

from tests.crafted import bomb
from tests.paths import CITYSCAPES_FIXTURE

ANSI = re.compile(r"\x1b\[[0-9;]*m")
runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args], terminal_width=200)
    result.plain = ANSI.sub("", result.output)
    return result


def one_line_error(result, *needles):
    lines = [line for line in result.plain.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error:"), result.plain
    for needle in needles:
        assert needle in lines[0], result.plain


@pytest.fixture(scope="module")
def runs(tiny_shapes, tmp_path_factory):
    """A 3-step sobel-p2 run and a 3-step baseline on the tiny shapes data: {config name: run folder}."""
    out = tmp_path_factory.mktemp("vis-runs")
    folders = {}
    for filters in (["sobel"], []):
        cfg = Config(data=str(tiny_shapes), backbone="small", canvas=[64, 64], steps=3, workers=0, device="cpu",
                     eval_at_end=False, filters=filters, out_dir=str(out / "runs"),
                     results_dir=str(out / "results"), experiment="vis", seed=0)
        run, _, _ = train_and_evaluate(cfg)
        folders[cfg.config_name()] = run.path
    return folders


def is_png(path):
    return Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------------ pure helpers
def test_spread_crop_window_and_iou():
    assert spread(list(range(10)), 3) == [0, 4, 9] and spread([1, 2], 5) == [1, 2]
    mask = np.zeros((50, 60), np.uint8)
    mask[10:20, 30:40] = 1
    x0, y0, x1, y1 = crop_window(mask, margin=0.5, min_size=4)
    assert (x1 - x0, y1 - y0) == (20, 20) and (x0, y0) == (25, 5)
    other = np.zeros_like(mask)
    other[10:20, 35:45] = 1
    assert mask_iou(mask[None], np.stack([mask, other])) == pytest.approx(np.array([[1.0, 50 / 150]]))
    assert channel_names(("sobel", "laplace", "roberts"), True) == [
        "sobel x", "sobel y", "laplace", "roberts d1", "roberts d2", "sobel magnitude", "roberts magnitude"]


# ------------------------------------------------------------------------------------------------ Figures 3 and 7
def test_edges_without_a_run_show_edge_maps_of_the_projected_target(tiny_shapes, tmp_path):
    path, arrays = visualize_edges(tiny_shapes, 1, tmp_path / "edges.png", instance=0, canvas=(64, 64),
                                   filters=["sobel", "laplace"])
    assert is_png(path)
    _, target = open_dataset(tiny_shapes, "val", Config(canvas=[64, 64]))[0]
    expected = project_masks_on_boxes(target["masks"], target["boxes"][:1].float(), torch.tensor([0]), 28)[0]
    assert torch.equal(arrays.target, expected) and arrays.target.shape == (28, 28)
    assert 0 < arrays.target.mean() < 1  # a shape inside its box
    assert torch.equal(arrays.target_edges, edge_maps(expected[None], ("sobel", "laplace"), True)[0])
    assert arrays.channels == ["sobel x", "sobel y", "laplace", "sobel magnitude"]
    assert arrays.pred is None and arrays.loss_map is None


def test_edges_with_a_run_match_the_model_and_the_loss(runs, tiny_shapes, tmp_path):
    run = load_run(runs["sobel-p2"])
    path, arrays = visualize_edges(None, 2, tmp_path / "edges.pdf", instance=1, run_dir=runs["sobel-p2"])
    assert path.read_bytes()[:5] == b"%PDF-"
    image, target = open_dataset(tiny_shapes, "val", run.cfg)[1]
    box, label = target["boxes"][1].float(), int(target["labels"][1])
    # the prediction panel is the sigmoid of the mask branch on the GT box, class = the GT class
    heads, model = run.model.roi_heads, run.model
    with torch.no_grad():
        images, _ = model.transform([image])
        logits = heads.mask_predictor(heads.mask_head(heads.mask_roi_pool(
            model.backbone(images.tensors), [box[None]], images.image_sizes)))
        # the model's own loss code on the same logits, RoI and GT instance
        loss_mask, loss_edge = heads.mask_losses(logits, [box[None]], [target], [torch.tensor([1])])
    assert torch.equal(arrays.pred, logits[0, label].sigmoid())
    assert torch.equal(arrays.pred, roi_probability(model, image, box, label))
    # the |ΔE|^p panel averages to the edge loss of this single RoI (lp: mean over channels and pixels)
    loss = EdgeLoss.from_config(run.cfg)
    assert float(arrays.loss_map.mean()) == pytest.approx(float(loss(arrays.pred[None], arrays.target[None])),
                                                          rel=1e-5)
    assert float(arrays.loss_map.mean()) == pytest.approx(float(loss_edge), rel=1e-5)
    assert float(torch.nn.functional.binary_cross_entropy(arrays.pred, arrays.target)) == pytest.approx(
        float(loss_mask), rel=1e-4)
    assert torch.equal(arrays.pred_edges, edge_maps(arrays.pred[None], ("sobel",), True)[0])
    assert arrays.diff_p.shape == (2, 28, 28)  # magnitude shown, but not in this run's loss
    assert torch.allclose(arrays.diff_p, (arrays.pred_edges[:2] - arrays.target_edges[:2]).abs() ** 2)


def test_edges_smoothing_p_and_magnitude_options_follow_the_loss(runs, tmp_path):
    _, arrays = visualize_edges(None, 1, tmp_path / "fig7.png", run_dir=runs["sobel-p2"], smooth="gt", p=4,
                                magnitude=True)
    assert torch.equal(arrays.target_in, gaussian_smooth(arrays.target[None])[0])
    assert torch.equal(arrays.pred_in, arrays.pred)
    assert arrays.diff_p.shape[0] == 3 and arrays.loss.p == 4
    expected = EdgeLoss(p=4, smooth="gt", magnitude=True)(arrays.pred[None], arrays.target[None])
    assert float(arrays.loss_map.mean()) == pytest.approx(float(expected), rel=1e-5)
    # a baseline run shows sobel/p=2 unless told otherwise
    _, base = visualize_edges(None, 1, tmp_path / "base.png", run_dir=runs["baseline"], filters=["laplace"])
    assert base.loss.filters == ("laplace",) and base.loss.p == 2 and base.channels == ["laplace"]


def test_rendered_edge_panels_hold_the_arrays(runs, tiny_shapes):
    run = load_run(runs["sobel-p2"])
    roi = roi_target(open_dataset(tiny_shapes, "val", run.cfg), 2, 1, 28)
    loss = EdgeLoss.from_config(run.cfg)
    arrays = edge_arrays(roi.target, loss, roi_probability(run.model, roi.image, roi.box, roi.label))
    fig = edges_figure(arrays, roi)
    shown = {ax.get_title(): ax.images[0] for ax in fig.axes if ax.images and ax.get_title()}
    data = {title: np.asarray(im.get_array()) for title, im in shown.items()}
    assert np.array_equal(data["target mask"], arrays.target.numpy())
    assert np.array_equal(data["predicted probability"], arrays.pred.numpy())
    assert np.array_equal(data["sobel x: E(target)"], arrays.target_edges[0].numpy())
    assert np.array_equal(data["sobel y: E(pred)"], arrays.pred_edges[1].numpy())
    assert np.array_equal(data["sobel magnitude: E(pred)"], arrays.pred_edges[2].numpy())
    assert np.array_equal(data["sobel x: |ΔE|$^{2}$"], arrays.diff_p[0].numpy())
    per_pixel = next(t for t in data if t.startswith("α·mean"))
    assert data[per_pixel].mean() == pytest.approx(float(loss(arrays.pred[None], arrays.target[None])), rel=1e-5)
    for title, im in shown.items():
        if "E(" in title:  # responses: a diverging colour map centred at 0, the same scale for target and pred
            vmin, vmax = im.get_clim()
            assert vmin == -vmax and im.get_cmap().name == "RdBu_r"
            assert im.get_clim() == shown[title.replace("E(target)", "E(pred)")].get_clim()


def test_edges_on_the_cityscapes_fixture(tmp_path):
    data = tmp_path / "cityscapes"
    convert_cityscapes(CITYSCAPES_FIXTURE, out=data, progress=False)
    path, arrays = visualize_edges(data, 1, tmp_path / "cs.png", instance=2, canvas=(256, 128), mask_size=56)
    assert is_png(path) and arrays.target.shape == (56, 56)
    _, target = open_dataset(data, "val", Config(canvas=[256, 128]))[0]
    expected = project_masks_on_boxes(target["masks"], target["boxes"][2:3].float(), torch.tensor([2]), 56)[0]
    assert torch.equal(arrays.target, expected)
    assert torch.equal(arrays.target_edges, edge_maps(expected[None], ("sobel",), True)[0])
    result = invoke("visualize-edges", "--data", data, "--image-id", 1, "--canvas", "256x128", "--filter",
                    "sobel+laplace", "--out", tmp_path / "cs-cli.png")
    assert result.exit_code == 0, result.plain
    assert is_png(tmp_path / "cs-cli.png")


# ------------------------------------------------------------------------------------------------ Figure 5
def test_comparison_panels_are_the_evaluation_predictions(runs, tiny_shapes):
    loaded = [load_run(runs["baseline"]), load_run(runs["sobel-p2"])]
    dataset = open_dataset(tiny_shapes, "val", loaded[0].cfg)
    rows = choose_rows(dataset, 2, None, crop=False)
    assert rows == [(dataset.ids[0], None), (dataset.ids[-1], None)]
    panels = comparison_panels(loaded, tiny_shapes, rows, score_threshold=0.0)
    assert len(panels) == 2 and all(len(row) == 2 for row in panels)
    image_id = rows[1][0]
    image, target = dataset[dataset.ids.index(image_id)]
    for panel, run in zip(panels[1], loaded):
        with torch.no_grad():
            pred = run.model([image])[0]
        orig = to_original(pred, float(target["scale"]), tuple(int(x) for x in target["pad"]),
                           tuple(int(x) for x in target["orig_size"]))
        assert np.array_equal(panel.masks, orig["masks"].numpy())
        assert panel.scores == pytest.approx(orig["scores"].tolist())
        assert panel.image.shape == (64, 64, 3) and panel.gt.shape[1:] == (64, 64)
        anns = [a for a in dataset.coco.imgToAnns[image_id] if not a.get("iscrowd", 0)]
        assert np.array_equal(panel.gt, np.stack([dataset.coco.annToMask(a) for a in anns]))
    fig = comparison_figure(panels, ["a", "b"], ["baseline", "sobel-p2"])
    for ax, panel in zip(fig.axes, [p for row in panels for p in row]):
        assert np.array_equal(np.asarray(ax.images[0].get_array()), panel.image)
        if len(panel.masks):  # the overlay covers exactly the predicted pixels
            assert np.array_equal(np.asarray(ax.images[1].get_array())[..., 3] > 0, panel.masks.any(0))
    assert [ax.get_title() for ax in fig.axes[:2]] == ["baseline", "sobel-p2"]
    strict = comparison_panels(loaded, tiny_shapes, rows, score_threshold=0.9)
    assert all(min(p.scores, default=1) >= 0.9 for row in strict for p in row)


def test_crop_panels_show_the_best_match_per_instance(runs, tiny_shapes):
    loaded = [load_run(runs["sobel-p2"])]
    dataset = open_dataset(tiny_shapes, "val", loaded[0].cfg)
    rows = choose_rows(dataset, None, [dataset.ids[0]], crop=True)
    full = comparison_panels(loaded, tiny_shapes, [(dataset.ids[0], None)], score_threshold=0.0)[0][0]
    assert rows == [(dataset.ids[0], g) for g in range(len(full.gt))]
    for (_, g), row in zip(rows, comparison_panels(loaded, tiny_shapes, rows, score_threshold=0.0)):
        panel = row[0]
        assert np.array_equal(panel.gt, full.gt[g:g + 1]) and len(panel.masks) <= 1
        ious = mask_iou(full.masks, full.gt[g:g + 1])[:, 0] if len(full.masks) else np.zeros(1)
        assert panel.iou == pytest.approx(float(ious.max()))
        assert panel.window == crop_window(full.gt[g])


@pytest.mark.slow
def test_visualize_cli_png_pdf_and_crop(runs, tmp_path):
    result = invoke("visualize", runs["baseline"], runs["sobel-p2"], "--images", 2, "--score-threshold", 0.1,
                    "--out", tmp_path / "cmp.png")
    assert result.exit_code == 0, result.plain
    assert is_png(tmp_path / "cmp.png")
    result = invoke("visualize", runs["baseline"], runs["sobel-p2"], "--image-ids", "1,3", "--crop",
                    "--out", tmp_path / "crop.pdf")
    assert result.exit_code == 0, result.plain
    assert (tmp_path / "crop.pdf").read_bytes()[:5] == b"%PDF-"


def test_one_line_errors(runs, tiny_shapes, tmp_path):
    sobel = runs["sobel-p2"]
    one_line_error(invoke("visualize", tmp_path / "nope", "--out", tmp_path / "x.png"), "run folder not found")
    one_line_error(invoke("visualize", sobel, "--image-ids", "999", "--out", tmp_path / "x.png"), "image id 999")
    one_line_error(invoke("visualize", sobel, "--image-ids", "a,b", "--out", tmp_path / "x.png"), "--image-ids")
    one_line_error(invoke("visualize", sobel, "--out", tmp_path / "x.jpg"), ".png or .pdf")
    one_line_error(invoke("visualize-edges", "--data", tiny_shapes, "--image-id", 42, "--out", tmp_path / "x.png"),
                   "image id 42")
    one_line_error(invoke("visualize-edges", "--run", sobel, "--image-id", 1, "--instance", 9,
                          "--out", tmp_path / "x.png"), "--instance 9")
    one_line_error(invoke("visualize-edges", "--run", sobel, "--image-id", 1, "--mask-size", 56,
                          "--out", tmp_path / "x.png"), "--mask-size 56")
    one_line_error(invoke("visualize-edges", "--image-id", 1, "--out", tmp_path / "x.png"), "--data")
    # a run trained on another dataset: other classes (here: Cityscapes' 8) or other class names
    cs = tmp_path / "cityscapes"
    convert_cityscapes(CITYSCAPES_FIXTURE, out=cs, progress=False)
    one_line_error(invoke("visualize-edges", "--run", sobel, "--data", cs, "--image-id", 1,
                          "--out", tmp_path / "x.png"), "trained on 4 classes")
    renamed = tmp_path / "renamed"
    shutil.copytree(tiny_shapes, renamed)
    manifest = json.loads((renamed / "manifest.json").read_text())
    manifest["classes"] = ["a", "b", "c", "d"]
    (renamed / "manifest.json").write_text(json.dumps(manifest))
    other = tmp_path / "other-run"
    shutil.copytree(runs["baseline"], other)
    cfg = yaml.safe_load((other / "config.yaml").read_text())
    (other / "config.yaml").write_text(yaml.safe_dump({**cfg, "data": str(renamed)}))
    one_line_error(invoke("visualize", sobel, other, "--out", tmp_path / "x.png"), "trained on shapes (a, b, c, d)")
    with pytest.raises(EdgeRCNNError, match="no model_final.pt or checkpoint.pt"):
        empty = tmp_path / "empty-run"
        empty.mkdir()
        shutil.copy(Path(sobel) / "config.yaml", empty / "config.yaml")
        load_run(empty)
    with pytest.raises(EdgeRCNNError, match="trained on 3 classes"):
        run = load_run(sobel)
        check_same_data([dataclasses.replace(run, cfg=dataclasses.replace(run.cfg, num_classes=3))], tiny_shapes)


@pytest.mark.parametrize("command", ["visualize", "visualize-edges"])
def test_every_option_has_help(command):
    import typer.main

    click_cmd = typer.main.get_command(app).commands[command]
    for param in click_cmd.params:
        if param.param_type_name == "option":
            assert param.help and len(param.help) > 10, f"{command} {param.opts} lacks help"


# ---- the pixel limit ------------------------------------------------------------------------------------------------


def test_visualize_refuses_an_image_over_the_limit(shapes, tmp_path):
    from edgercnn.reporting.visualize import read_image

    bomb(shapes)
    ds = CocoInstanceDataset(shapes, "val", canvas=(64, 64))
    with pytest.raises(EdgeRCNNError, match="over the limit"):
        read_image(ds, ds.ids[0])
