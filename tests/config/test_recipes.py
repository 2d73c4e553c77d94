"""The authors' recipe (issue #9): every difference to torchvision as a config key, the recipes that set them, and
the official Cityscapes metric; a recipe name is a packaged name, never a path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from edgercnn.cli import app
from edgercnn.config import Config, load_config
from edgercnn.config.recipediff import recipe_diff
from edgercnn.config.recipes import check_recipe, load_recipe, recipe_names, recipe_values
from edgercnn.config.runconfig import _field_names
from edgercnn.core.errors import ConfigError, EdgeRCNNError
from edgercnn.data.coco_json import mask_annotation, write_coco_json
from edgercnn.data.dataset import CocoInstanceDataset
from edgercnn.data.manifest import write_manifest
from edgercnn.data.transforms import build_transforms, canvas_geometry, to_original
from edgercnn.model.rcnn import AuthorsMaskPredictor56, MatterportSampler
from edgercnn.builders.model import build_model

from tests.clirunner import invoke, one_line_error

runner = CliRunner()


def small(**kw) -> Config:
    return Config(**{"backbone": "small", "num_classes": 3, "norm": "gn", "filters": [], **kw})


# ---------------------------------------------------------------- model options

def test_authors_56_head_layer_sequence():
    head = build_model(small(mask_size=56, mask_head_56="authors")).roi_heads.mask_predictor
    assert isinstance(head, AuthorsMaskPredictor56)
    kinds = [(type(m).__name__, getattr(m, "in_channels", None), getattr(m, "out_channels", None)) for m in head]
    assert kinds == [("ConvTranspose2d", 64, 64), ("ReLU", None, None), ("Conv2d", 64, 4), ("Sigmoid", None, None),
                     ("ReLU", None, None), ("ConvTranspose2d", 4, 64), ("ReLU", None, None), ("Conv2d", 64, 4)]
    assert head(torch.randn(2, 64, 14, 14)).shape == (2, 4, 56, 56)
    ours = build_model(small(mask_size=56)).roi_heads.mask_predictor
    assert [type(m).__name__ for m in ours] == ["ConvTranspose2d", "ReLU", "ConvTranspose2d", "ReLU", "Conv2d"]


def _logits(rows):
    return torch.log(torch.tensor(rows, dtype=torch.float32))


def test_matterport_postprocess_one_class_per_roi_and_drops_background_argmax():
    model = build_model(small(postprocess="matterport", eval_score_threshold=0.0)).eval()
    heads = model.roi_heads
    proposals = [torch.tensor([[0., 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])]
    # RoI 0: class 2 wins; RoI 1: background wins; RoI 2: class 1 wins narrowly over class 3
    logits = _logits([[0.1, 0.2, 0.6, 0.1], [0.7, 0.1, 0.1, 0.1], [0.1, 0.35, 0.25, 0.3]])
    boxes, scores, labels = heads.postprocess_detections(logits, torch.zeros(3, 16), proposals, [(64, 64)])
    assert labels[0].tolist() == [2, 1] and scores[0].tolist() == pytest.approx([0.6, 0.35])
    assert boxes[0].tolist() == [[0, 0, 10, 10], [40, 40, 50, 50]]
    heads.postprocess = "torchvision"  # several classes per RoI above 0.05, background-argmax RoI 1 kept
    _, _, tv_labels = heads.postprocess_detections(logits, torch.zeros(3, 16), proposals, [(64, 64)])
    assert len(tv_labels[0]) > 3


def test_matterport_min_confidence_and_nms():
    heads = build_model(small(postprocess="matterport", eval_score_threshold=0.5, eval_nms_threshold=0.3)).roi_heads
    assert heads.nms_thresh == 0.3
    proposals = [torch.tensor([[0., 0, 10, 10], [0, 0, 10, 12], [30, 30, 40, 40]])]
    logits = _logits([[0.1, 0.8, 0.05, 0.05], [0.1, 0.7, 0.1, 0.1], [0.1, 0.4, 0.3, 0.2]])
    _, scores, labels = heads.postprocess_detections(logits, torch.zeros(3, 16), proposals, [(64, 64)])
    assert labels[0].tolist() == [1] and scores[0].tolist() == pytest.approx([0.8])  # NMS + 0.4 < 0.5


def test_binary_mask_targets_are_rounded():
    model = build_model(small(mask_targets="binary", filters=["sobel"]))
    heads = model.roi_heads
    gt = torch.zeros(1, 8, 8)
    gt[0, :, :3] = 1  # RoI [0, 0, 6, 8] on a 4-wide output: columns straddle the mask edge → soft targets
    logits = torch.zeros(1, 4, 28, 28)
    seen = {}
    heads.edge_loss = lambda pred, target: seen.setdefault("t", target).sum() * 0
    heads.mask_losses(logits, [torch.tensor([[0., 0, 6, 8]])], [{"masks": gt, "labels": torch.tensor([1])}],
                      [torch.tensor([0])])
    assert set(seen["t"].unique().tolist()) <= {0.0, 1.0}
    heads.mask_targets, seen = "soft", {}
    heads.mask_losses(logits, [torch.tensor([[0., 0, 6, 8]])], [{"masks": gt, "labels": torch.tensor([1])}],
                      [torch.tensor([0])])
    assert len(set(seen["t"].unique().tolist()) - {0.0, 1.0}) > 0


def test_binary_targets_used_by_the_baseline_too():
    model = build_model(small(mask_targets="binary")).train()
    images = [torch.rand(3, 64, 64)]
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[0, 10:40, 12:33] = 1
    losses = model(images, [{"boxes": torch.tensor([[12., 10, 33, 40]]), "labels": torch.tensor([1]), "masks": masks}])
    assert "loss_edge" not in losses and torch.isfinite(losses["loss_mask"])


def test_roi_sampling_numbers():
    matched = [torch.cat([torch.ones(100, dtype=torch.int64), torch.zeros(1000, dtype=torch.int64)])]
    pos, neg = MatterportSampler(200, 0.33)(matched)
    assert (int(pos[0].sum()), int(neg[0].sum())) == (66, 134)  # int(200 × 0.33); int(66 / 0.33) − 66
    few = [torch.cat([torch.ones(10, dtype=torch.int64), torch.zeros(1000, dtype=torch.int64)])]
    pos, neg = MatterportSampler(200, 0.33)(few)
    assert (int(pos[0].sum()), int(neg[0].sum())) == (10, 20)  # not filled up to 200
    pos, neg = MatterportSampler(200, 0.33)([torch.zeros(50, dtype=torch.int64)])
    assert (int(pos[0].sum()), int(neg[0].sum())) == (0, 1)
    heads = build_model(small(roi_per_image=200, roi_positive_fraction=0.33, roi_sampling="matterport")).roi_heads
    assert isinstance(heads.fg_bg_sampler, MatterportSampler)
    assert (heads.fg_bg_sampler.batch_size_per_image, heads.fg_bg_sampler.positive_fraction) == (200, 0.33)
    pos, neg = build_model(small(roi_per_image=200)).roi_heads.fg_bg_sampler(few)
    assert (int(pos[0].sum()), int(neg[0].sum())) == (10, 190)  # torchvision fills with negatives


def test_gt_boxes_added_to_proposals_or_not():
    on, off = build_model(small()).roi_heads, build_model(small(add_gt_to_proposals=False)).roi_heads
    props, gt = [torch.tensor([[0., 0, 5, 5]])], [torch.tensor([[1., 1, 9, 9]])]
    assert len(on.add_gt_proposals(props, gt)[0]) == 2 and len(off.add_gt_proposals(props, gt)[0]) == 1


# ---------------------------------------------------------------- square resize, centred padding

@pytest.mark.parametrize("size, scale, pad", [((40, 80), 1.6, (0, 32)), ((160, 80), 0.8, (32, 0)),
                                              ((200, 150), 0.64, (16, 0))])
def test_square_geometry_is_matterports(size, scale, pad):
    got_scale, got_pad = canvas_geometry(*size, (128, 128), "square", 64)
    assert got_scale == pytest.approx(scale) and got_pad == pad
    image = np.full((size[1], size[0], 3), 255, np.uint8)
    out = build_transforms((128, 128), resize="square", image_size=size, min_dim=64)(image=image)["image"]
    ys, xs = np.nonzero(out[..., 0])
    assert (ys.min(), xs.min()) == pad
    assert (ys.max() + 1 - ys.min(), xs.max() + 1 - xs.min()) == (round(size[1] * scale), round(size[0] * scale))


def _synthetic_coco(root: Path) -> Path:
    """Portrait and landscape images with rectangles (edges on multiples of 5), COCO JSON + manifest."""
    (root / "images").mkdir(parents=True)
    specs = {1: ((40, 80), [(5, 10, 35, 60), (10, 60, 30, 75)]), 2: ((160, 80), [(10, 5, 80, 70), (100, 20, 150, 60)])}
    images, anns = [], []
    for img_id, ((w, h), rects) in specs.items():
        Image.fromarray(np.random.default_rng(img_id).integers(0, 255, (h, w, 3), np.uint8)).save(
            root / "images" / f"{img_id}.png")
        images.append({"id": img_id, "file_name": f"{img_id}.png", "width": w, "height": h})
        for x0, y0, x1, y1 in rects:
            mask = np.zeros((h, w), np.uint8)
            mask[y0:y1, x0:x1] = 1
            anns.append({"id": len(anns) + 1, "image_id": img_id, **mask_annotation(mask, 1)})
    write_coco_json(root / "val.json", images, anns, [{"id": 1, "name": "box"}], {})
    write_manifest(root, name="synthetic", classes=["box"], category_ids=[1], command="test",
                   splits={"val": {"images": "images", "annotations": "val.json"}}, source="test")
    return root


def test_square_resize_round_trip_scores_ap_100(tmp_path):
    from edgercnn.evaluation.cocometrics import coco_metrics
    from edgercnn.evaluation.evaluate import coco_results

    root = _synthetic_coco(tmp_path / "syn")
    dataset = CocoInstanceDataset(root, "val", canvas=(128, 128), resize="square", min_dim=64)
    results = []
    for i in range(len(dataset)):
        image, target = dataset[i]
        assert tuple(target["pad"].tolist()) in {(0, 32), (32, 0)}  # centred, not top-left
        pred = {"boxes": target["boxes"], "masks": target["masks"][:, None].float(),
                "scores": torch.ones(len(target["labels"])), "labels": target["labels"]}
        orig = to_original(pred, float(target["scale"]), tuple(target["pad"].tolist()),
                           tuple(target["orig_size"].tolist()))
        results += coco_results(int(target["image_id"]), orig, dataset.label_to_cat_id)
    metrics = coco_metrics(dataset.coco.dataset, results, dataset.ids)
    assert metrics["segm_AP"] == pytest.approx(100) and metrics["bbox_AP"] == pytest.approx(100)
    fit = CocoInstanceDataset(root, "val", canvas=(128, 128))
    assert fit[0][1]["pad"].tolist() == [0, 0]


# ---------------------------------------------------------------- recipes

def test_recipes_ship_and_use_known_keys_with_sources():
    assert {"authors-coco", "authors-cityscapes", "torchvision"} <= set(recipe_names())
    for name in recipe_names():
        keys = load_recipe(name)["keys"]
        assert set(keys) <= _field_names() - {"recipe"}, name
        assert all(str(v["source"]).strip() for v in keys.values())
        load_config(None, {"recipe": name})  # valid values
    assert load_config(None, {"recipe": "torchvision"}).to_dict() == {
        **Config().to_dict(), "recipe": "torchvision", "roi_per_image": 512}


def test_authors_recipes_values():
    cs = load_config(None, {"recipe": "authors-cityscapes"})
    assert (cs.backbone, cs.batch_size, cs.resize, cs.canvas, cs.resize_min_dim) == ("resnet50", 4, "square",
                                                                                      [1024, 1024], 800)
    assert [(s["steps"], s["layers"], s["lr"]) for s in cs.stages] == [(18000, "all", 0.001), (6000, "all", 0.0001)]
    coco = load_config(None, {"recipe": "authors-coco"})
    assert (coco.backbone, coco.roi_per_image, coco.roi_positive_fraction, coco.roi_sampling, coco.mask_targets,
            coco.add_gt_to_proposals, coco.postprocess, coco.eval_nms_threshold, coco.eval_score_threshold,
            coco.mask_head_56) == ("resnet101", 200, 0.33, "matterport", "binary", False, "matterport", 0.3, 0.0,
                                   "authors")


def test_recipe_precedence_recipe_then_file_then_options(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"recipe": "authors-cityscapes", "batch_size": 8, "backbone": "resnet101"}))
    cfg = load_config(path, {"backbone": "resnet50"})
    assert (cfg.recipe, cfg.batch_size, cfg.backbone, cfg.resize) == ("authors-cityscapes", 8, "resnet50", "square")
    cfg = load_config(path, {"recipe": "torchvision"})  # an option's recipe replaces the file's
    assert (cfg.recipe, cfg.resize, cfg.batch_size) == ("torchvision", "fit", 8)
    assert recipe_values("authors-coco")["recipe"] == "authors-coco"


def test_unknown_recipe_is_a_one_line_error(tmp_path):
    with pytest.raises(ValueError, match="recipe 'nope'.*authors-coco"):
        load_config(None, {"recipe": "nope"})
    result = runner.invoke(app, ["train", "--recipe", "nope", "--data", str(tmp_path)])
    assert result.exit_code == 1 and "recipe 'nope'" in result.output and "Traceback" not in result.output


def test_recipes_command_lists_and_shows_sources():
    result = runner.invoke(app, ["recipes"])
    assert result.exit_code == 0 and all(n in result.output for n in ("authors-coco", "authors-cityscapes",
                                                                       "torchvision"))
    result = runner.invoke(app, ["recipes", "authors-coco"])
    assert result.exit_code == 0
    assert "roi_per_image" in result.output and "mrcnn/config.py:145" in result.output
    assert "get_imagenet_weights" in result.output


def test_resolved_config_saved_with_the_recipe_shows_every_value(tmp_path):
    cfg = load_config(None, {"recipe": "authors-coco"})
    cfg.save(tmp_path / "config.yaml")
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert set(saved) == _field_names() and saved["roi_per_image"] == 200 and saved["recipe"] == "authors-coco"


# ---------------------------------------------------------------- Cityscapes

def test_prepare_cityscapes_box_area_and_dropped_crowd(cs_root):
    from edgercnn.data.cityscapes import convert_cityscapes

    png = next((cs_root / "gtFine/val").rglob("*_instanceIds.png"))
    ids = np.array(Image.open(png))
    ids[:6, :10] = 26  # a car group region (label id < 1000) where the fixture has none
    Image.fromarray(ids).save(png)
    convert_cityscapes(cs_root, progress=False, workers=1, extra_classes=True)
    kept = json.loads((cs_root / "edgercnn/instances_val.json").read_text())["annotations"]
    convert_cityscapes(cs_root, progress=False, workers=1, extra_classes=True, crowd="drop", area="box")
    data = json.loads((cs_root / "edgercnn/instances_val.json").read_text())
    manifest = json.loads((cs_root / "manifest.json").read_text())
    assert len(manifest["classes"]) == 10 and manifest["splits"]["val"]["gtFine"] == "gtFine/val"
    anns = data["annotations"]
    assert anns and all(a["area"] == a["bbox"][2] * a["bbox"][3] for a in anns)
    assert any(a["iscrowd"] for a in kept) and not any(a["iscrowd"] for a in anns)
    assert len(anns) == sum(not a["iscrowd"] for a in kept)
    assert any(a["area"] != b["bbox"][2] * b["bbox"][3] for a, b in zip([k for k in kept if not k["iscrowd"]], anns))
    with pytest.raises(EdgeRCNNError, match="--crowd"):
        convert_cityscapes(cs_root, progress=False, crowd="maybe")


def test_official_cityscapes_metric_is_100_on_ground_truth(cs_root):
    from edgercnn.data.cityscapes import convert_cityscapes
    from edgercnn.data.manifest import load_manifest
    from edgercnn.evaluation.cityscapesmetrics import cityscapes_metrics, gt_folder

    convert_cityscapes(cs_root, progress=False, workers=1)
    manifest = load_manifest(cs_root)
    gt = json.loads((cs_root / "edgercnn/instances_val.json").read_text())
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0,
                "segmentation": a["segmentation"]} for a in gt["annotations"] if not a["iscrowd"]]
    before = sorted(p.name for p in Path.cwd().iterdir())
    assert cityscapes_metrics(gt, results, [1], gt_folder(manifest, "val")) == {"cityscapes_AP": 100.0,
                                                                                "cityscapes_AP50": 100.0}
    assert cityscapes_metrics(gt, [], [1], gt_folder(manifest, "val")) == {"cityscapes_AP": 0.0,
                                                                           "cityscapes_AP50": 0.0}
    assert sorted(p.name for p in Path.cwd().iterdir()) == before  # nothing written here
    assert gt_folder({**manifest, "name": "coco"}, "val") is None


def test_official_cityscapes_ap_depends_on_the_score_order(cs_root):
    """Two cars (the fixture's only ground truth of >= 100 pixels, the script's minimum region) predicted exactly,
    and one false positive car (the persons' pixels, not void). The script's AP per overlap (0.5:0.95, all alike
    here: the true masks have IoU 1, the false one 0) integrates precision stepwise over recall: with (precision,
    recall) per score threshold from the lowest, the artificial point (1, 0) last, and step widths
    (r[i-1] - r[i+1]) / 2 (r[-1] = r[0], r[n] = 0):
    - false positive ranked last:   P = (2/3, 1, 1, 1),   R = (1, 1, .5, 0),  widths (0, .25, .5, .25)  → AP 1
    - ranked between the two cars:  P = (2/3, .5, 1, 1),  R = (1, .5, .5, 0), widths (.25, .25, .25, .25)
      → AP = 2/3·.25 + .5·.25 + .25 + .25 = 19/24
    - ranked first:                 P = (2/3, .5, 0, 1),  R = (1, .5, 0, 0),  widths (.25, .5, .25, 0)
      → AP = 2/3·.25 + .5·.5 = 5/12
    Only car has ground truth the script counts (the persons are under 100 pixels), so the mean over classes is
    the car's AP."""
    import pycocotools.mask as mask_util

    from edgercnn.data.cityscapes import convert_cityscapes
    from edgercnn.data.manifest import load_manifest
    from edgercnn.evaluation.cityscapesmetrics import cityscapes_metrics, gt_folder

    convert_cityscapes(cs_root, progress=False, workers=1)
    gt_dir = gt_folder(load_manifest(cs_root), "val")
    gt = json.loads((cs_root / "edgercnn/instances_val.json").read_text())
    names = {c["name"]: c["id"] for c in gt["categories"]}
    anns = [a for a in gt["annotations"] if not a["iscrowd"]]
    cars = sorted((a for a in anns if a["category_id"] == names["car"] and a["area"] >= 100), key=lambda a: a["area"])
    persons = [a for a in anns if a["category_id"] == names["person"]]
    assert len(cars) == 2 and persons and all(a["area"] < 100 for a in persons)

    def rle(seg):
        return {"size": seg["size"], "counts": seg["counts"].encode() if isinstance(seg["counts"], str) else
                seg["counts"]}

    false_car = mask_util.merge([rle(a["segmentation"]) for a in persons], intersect=False)
    false_car["counts"] = false_car["counts"].decode("ascii")

    def ap(car_scores, false_score):
        results = [{"image_id": a["image_id"], "category_id": names["car"], "score": s,
                    "segmentation": a["segmentation"]} for a, s in zip(cars, car_scores)]
        results.append({"image_id": cars[0]["image_id"], "category_id": names["car"], "score": false_score,
                        "segmentation": false_car})
        metrics = cityscapes_metrics(gt, results, [cars[0]["image_id"]], gt_dir)
        assert metrics["cityscapes_AP"] == pytest.approx(metrics["cityscapes_AP50"])  # IoU 1 or 0: every overlap alike
        return metrics["cityscapes_AP"]

    assert ap((0.9, 0.8), 0.3) == pytest.approx(100.0)
    assert ap((0.9, 0.3), 0.5) == pytest.approx(100 * 19 / 24)
    assert ap((0.8, 0.3), 0.9) == pytest.approx(100 * 5 / 12)


def test_eval_detections_on_cityscapes_reports_the_official_metric(cs_root, tmp_path):
    from edgercnn.data.cityscapes import convert_cityscapes
    from edgercnn.evaluation.metrics import METRICS, metric_names

    convert_cityscapes(cs_root, progress=False, workers=1)
    gt = json.loads((cs_root / "edgercnn/instances_val.json").read_text())
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0,
                                 "segmentation": a["segmentation"]} for a in gt["annotations"] if not a["iscrowd"]]))
    result = runner.invoke(app, ["eval", "--detections", str(dets), "--data", str(cs_root)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "dets-metrics.json").read_text())
    assert metrics["cityscapes_AP"] == 100.0 and metrics["cityscapes_AP50"] == 100.0
    assert metric_names(metrics) == (*METRICS, "cityscapes_AP", "cityscapes_AP50")
    assert metric_names({"segm_AP": 1.0}) == METRICS


# ---------------------------------------------------------------- smaller differences (item 6)

def test_rpn_conv_width():
    head = build_model(small(rpn_channels=96)).rpn.head
    assert (head.conv[0][0].in_channels, head.conv[0][0].out_channels, head.cls_logits.in_channels) == (64, 96, 96)
    assert build_model(small()).rpn.head.conv[0][0].out_channels == 64  # torchvision: the FPN width


def test_crowd_overlapping_rois_are_not_negatives():
    heads = build_model(small(crowd_negatives="exclude")).roi_heads
    props = [torch.tensor([[0., 0, 10, 10], [50, 50, 60, 60], [55, 55, 70, 70], [30, 30, 40, 40]])]
    gt, labels = [torch.tensor([[0., 0, 10, 10]])], [torch.tensor([1])]
    heads._crowd_boxes = [torch.tensor([[52., 52, 64, 64]])]
    _, lab = heads.assign_targets_to_proposals(props, gt, labels)
    assert lab[0].tolist() == [1, -1, -1, 0]
    heads.crowd_negatives = "keep"
    assert heads.assign_targets_to_proposals(props, gt, labels)[1][0].tolist() == [1, 0, 0, 0]


def test_dataset_puts_crowd_boxes_on_the_canvas(tmp_path):
    root = _synthetic_coco(tmp_path / "syn")
    data = json.loads((root / "val.json").read_text())
    data["annotations"].append({**data["annotations"][0], "id": 99, "iscrowd": 1, "bbox": [5.0, 10.0, 10.0, 20.0]})
    (root / "val.json").write_text(json.dumps(data))
    dataset = CocoInstanceDataset(root, "val", canvas=(128, 128), resize="square", min_dim=64)
    _, target = dataset[0]  # 40x80 portrait: scale 1.6, pad left 32
    assert target["crowd_boxes"].tolist() == [[40.0, 16.0, 56.0, 48.0]] and len(target["labels"]) == 2
    train = CocoInstanceDataset(root, "val", canvas=(128, 128), resize="square", min_dim=64, train=True, hflip=1.0)
    assert train[(0, 1)][1]["crowd_boxes"].tolist() == [[72.0, 16.0, 88.0, 48.0]]  # flipped: x → 40 - x


def test_weight_decay_per_tensor_size():
    from edgercnn.model.optim import make_optimizer

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4))
    opt = make_optimizer("sgd", model, 0.1, 0.9, 1e-4, "per_size")
    decays = [(g["params"][0].numel(), g["weight_decay"]) for g in opt.param_groups]
    assert decays == [(108, pytest.approx(2e-4 / 108)), (4, pytest.approx(2e-4 / 4)), (4, 0.0), (4, 0.0)]
    assert [g["weight_decay"] for g in make_optimizer("sgd", model, 0.1, 0.9, 1e-4).param_groups] == [1e-4]


def test_frozen_stats_batch_norm_trains_scale_not_statistics():
    from edgercnn.model.rcnn import FrozenStatsBatchNorm2d, set_trainable

    model = build_model(small(norm="frozen_stats_bn"))
    set_trainable(model, "4+")
    model.train()
    bn3, bn1 = model.backbone.body.layer3[0].bn1, model.backbone.body.layer1[0].bn1
    assert isinstance(bn3, FrozenStatsBatchNorm2d) and not bn3.training
    assert bn3.weight.requires_grad and not bn1.weight.requires_grad
    stats = bn3.running_mean.clone()
    bn3(torch.randn(2, bn3.num_features, 4, 4))
    assert torch.equal(stats, bn3.running_mean)


def test_eval_images_annotated_leaves_out_images_without_annotations(tmp_path):
    root = _synthetic_coco(tmp_path / "syn")
    data = json.loads((root / "val.json").read_text())
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] == 1]
    (root / "val.json").write_text(json.dumps(data))
    assert CocoInstanceDataset(root, "val").ids == [1, 2]
    assert CocoInstanceDataset(root, "val", annotated_only=True).ids == [1]


def test_fresh_optimizer_at_each_stage_start(tiny_shapes, tmp_path):
    from edgercnn.training.trainer import Trainer

    cfg = small(data=str(tiny_shapes), num_classes=None, canvas=[64, 64], workers=0, device="cpu",
                stages=[{"steps": 1, "layers": "heads", "lr": 0.01}, {"steps": 2, "layers": "all", "lr": 0.01}],
                out_dir=str(tmp_path / "runs"), results_dir=str(tmp_path / "results"), optimizer_per_stage="fresh",
                eval_at_end=False)
    trainer = Trainer(cfg)
    first = trainer.optimizer
    trainer.run(stop_after=1)
    assert trainer.optimizer is first
    trainer.run(stop_after=1)  # step 2 starts stage 2: a new optimizer
    second = trainer.optimizer
    assert second is not first
    trainer.run(stop_after=1)
    assert trainer.optimizer is second


def test_authors_options_train_and_evaluate_end_to_end(tiny_shapes, tmp_path):
    """Every authors' value at once (the authors-coco recipe's keys on the CPU preset) trains and evaluates."""
    from edgercnn.experiments.pipeline import train_and_evaluate

    keys = {k: v for k, v in recipe_values("authors-coco").items()
            if k not in {"recipe", "backbone", "backbone_weights", "canvas", "stages", "batch_size"}}
    cfg = Config(**{**keys, "data": str(tiny_shapes), "backbone": "small", "canvas": [96, 96], "resize_min_dim": 80,
                    "mask_size": 56, "filters": ["sobel"], "roi_per_image": 32, "workers": 0, "device": "cpu",
                    "stages": [{"steps": 1, "layers": "heads", "lr": 0.01}, {"steps": 1, "layers": "4+", "lr": 0.01},
                               {"steps": 1, "layers": "all", "lr": 0.001}],
                    "out_dir": str(tmp_path / "runs"), "results_dir": str(tmp_path / "results"), "eval_max_images": 2})
    assert (cfg.resize, cfg.mask_head_56, cfg.postprocess, cfg.norm) == ("square", "authors", "matterport",
                                                                         "frozen_stats_bn")
    run, metrics, _ = train_and_evaluate(cfg)
    assert metrics is not None and 0 <= metrics["segm_AP"] <= 100 and np.isfinite(metrics["val_loss_mask"])
    saved = yaml.safe_load(run.config_file.read_text())
    assert saved["roi_sampling"] == "matterport" and set(saved) == _field_names()


def test_cityscapes_run_reports_official_metric_in_metrics_and_seed_csv(cs_root, tmp_path):
    import pandas as pd

    from edgercnn.data.cityscapes import convert_cityscapes
    from edgercnn.experiments.pipeline import train_and_evaluate

    for kind in ("gtFine", "leftImg8bit"):  # the fixture frame as the train split too
        shutil.copytree(cs_root / kind / "val", cs_root / kind / "train")
    convert_cityscapes(cs_root, progress=False, workers=1, extra_classes=True, crowd="drop", area="box")
    cfg = load_config(None, {"recipe": "authors-cityscapes", "data": str(cs_root), "backbone": "small",
                             "backbone_weights": "", "canvas": [128, 128], "resize_min_dim": 64, "batch_size": 1,
                             "steps": 2, "workers": 0, "device": "cpu", "out_dir": str(tmp_path / "runs"),
                             "results_dir": str(tmp_path / "results")})
    run, metrics, csv_path = train_and_evaluate(cfg)
    assert {"cityscapes_AP", "cityscapes_AP50"} <= set(metrics)
    assert {"cityscapes_AP", "cityscapes_AP50"} <= set(json.loads(run.metrics.read_text()))
    assert {"cityscapes_AP", "cityscapes_AP50", "segm_AP"} <= set(pd.read_csv(csv_path).columns)


def test_imagenet_resnet50_by_layer_name_into_resnet101(tmp_path, monkeypatch):
    from torchvision.models import ResNet50_Weights, resnet50

    ref = resnet50(weights=None)
    hub = tmp_path / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(ref.state_dict(), hub / ResNet50_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1])
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    body = build_model(Config(backbone="resnet101", num_classes=1, backbone_weights="imagenet-resnet50",
                              norm="frozen_stats_bn")).backbone.body
    assert torch.equal(body.layer3[5].conv2.weight, ref.layer3[5].conv2.weight)  # matterport's res4f
    assert torch.equal(body.layer4[2].bn3.running_var, ref.layer4[2].bn3.running_var)
    assert len(body.layer3) == 23  # layer3.6-22 (res4g-res4w) keep their initialisation
    with pytest.raises(ValueError, match="fits only the bottleneck ResNets.*not backbone small"):
        build_model(small(backbone_weights="imagenet-resnet50"))  # refused by the config, before any download


def test_torchvision_roi_heads_seams_used_by_the_authors_options():
    """The RoIHeads methods the authors' options override or replace are still called where we expect
    (torchvision 0.29.1); fails loudly when that moves."""
    import inspect

    from torchvision.models.detection.roi_heads import RoIHeads

    select = inspect.getsource(RoIHeads.select_training_samples)
    assert "self.add_gt_proposals(proposals, gt_boxes)" in select
    assert "self.assign_targets_to_proposals(proposals, gt_boxes, gt_labels)" in select
    assert "self.subsample(labels)" in select and "self.fg_bg_sampler(" in inspect.getsource(RoIHeads.subsample)
    assert "self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)" in \
        inspect.getsource(RoIHeads.forward)


def test_prepare_cityscapes_cli_crowd_and_area_options(cs_root):
    result = runner.invoke(app, ["prepare", "cityscapes", "--root", str(cs_root), "--workers", "1", "--extra-classes",
                                 "--crowd", "drop", "--area", "box"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((cs_root / "manifest.json").read_text())
    assert (manifest["source"]["crowd"], manifest["source"]["area"]) == ("drop", "box")
    result = runner.invoke(app, ["prepare", "cityscapes", "--root", str(cs_root), "--area", "polygon"])
    assert result.exit_code == 1 and "--area polygon" in result.output


# ---- recipes: one rule for a name -----------------------------------------------------------------------------------


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
