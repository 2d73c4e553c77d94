"""The authors' recipe, complete (issue #17): each matterport behaviour against the formula of the authors' code
(zimmerrol/mask-rcnn-edge-agreement-loss 2a6ccb7, mrcnn/model.py), on small hand-made tensors whose expected values
are worked out from the TF code and written here; the torchvision seams they use; ``recipes --diff``."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import ResNet50_Weights, resnet50, resnet101
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import MultiScaleRoIAlign
from typer.testing import CliRunner

from edgercnn.cli import app
from edgercnn.config import Config, load_config
from edgercnn.config.recipediff import recipe_diff
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.data.coco_json import mask_annotation, write_coco_json
from edgercnn.data.dataset import CocoInstanceDataset
from edgercnn.data.manifest import write_manifest
from edgercnn.model.losses import EdgeLoss, edge_agreement_loss
from edgercnn.model.matterport import (MatterportRoIAlign, MatterportRPN, RoundLevelMapper, box_loss,
                                       crop_and_resize, glorot_init_, norm_boxes, pad_rois, roi_box_loss,
                                       subsample_instances)
from edgercnn.model.rcnn import FrozenStatsBatchNorm2d, MatterportSampler, load_imagenet
from edgercnn.builders.model import build_model

from tests.paths import REPO

runner = CliRunner()
README = REPO / "README.md"


def small(**kw) -> Config:
    return Config(**{"backbone": "small", "num_classes": 3, "norm": "gn", "filters": [], **kw})


def _smooth_l1_tf(diff: float) -> float:
    """mrcnn/model.py smooth_l1_loss, one element: 0.5 d² if |d| < 1 else |d| − 0.5."""
    d = abs(diff)
    return 0.5 * d * d if d < 1 else d - 0.5


# ---------------------------------------------------------------- unloaded_init: glorot

def test_authors_coco_resnet101_c4_scale_with_glorot_for_the_blocks_the_resnet50_file_misses(tmp_path, monkeypatch):
    """layer3.6-22 (res4g-res4w): std(out) / std(in) on a post-ReLU random input with BN at its initial statistics
    is ≈ 2.2 with the authors' Keras (glorot) init and ≈ 1e3 with torchvision's; the authors-coco recipe picks
    glorot and the ImageNet-ResNet-50 load leaves exactly these blocks uncovered (a local stand-in file, no
    download)."""
    cfg = load_config(None, {"recipe": "authors-coco"})
    assert (cfg.backbone, cfg.backbone_weights, cfg.norm, cfg.unloaded_init) == (
        "resnet101", "imagenet-resnet50", "frozen_stats_bn", "glorot")
    hub = tmp_path / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.manual_seed(0)
    ref = resnet50(weights=None)
    torch.save(ref.state_dict(), hub / ResNet50_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1])
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    body = resnet101(weights=None, norm_layer=FrozenStatsBatchNorm2d).eval()
    uncovered = load_imagenet(body, "resnet101", cfg.backbone_weights)
    assert {k.split(".")[0] + "." + k.split(".")[1] for k in uncovered} == {f"layer3.{i}" for i in range(6, 23)}
    x = torch.relu(torch.randn(1, 1024, 16, 16))  # what layer3.5 hands on: a ReLU output
    with torch.no_grad():
        torchvision_ratio = (body.layer3[6:](x).std() / x.std()).item()
        assert glorot_init_(body, uncovered) == 17 * 6  # 3 convs + 3 norms per bottleneck
        glorot_ratio = (body.layer3[6:](x).std() / x.std()).item()
    assert torchvision_ratio > 100
    assert 2.2 / 2 <= glorot_ratio <= 2.2 * 2
    assert torch.equal(body.layer3[5].conv2.weight, ref.layer3[5].conv2.weight)  # loaded blocks untouched
    conv, bn = body.layer3[6].conv2, body.layer3[6].bn2
    bound = math.sqrt(6 / (256 * 9 + 256 * 9))  # Keras glorot_uniform: U(±sqrt(6 / (fan_in + fan_out)))
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
    assert (bn.weight == 1).all() and (bn.bias == 0).all() and (bn.running_mean == 0).all()
    assert (bn.running_var == 1).all()


def test_unloaded_init_default_keeps_torchvision_init():
    """Without a weights file every ResNet layer is unloaded: kaiming-normal fan_out (torchvision) by default,
    glorot-uniform with unloaded_init=glorot. layer2.0.conv1 of the ResNet-18: 3×3, 64 → 128."""
    torch.manual_seed(0)
    ours = build_model(small(norm="frozen_bn")).backbone.body.layer2[0].conv1.weight
    assert ours.std().item() == pytest.approx(math.sqrt(2 / (128 * 9)), rel=0.05)
    glorot = build_model(small(norm="frozen_bn", unloaded_init="glorot")).backbone.body.layer2[0].conv1.weight
    assert glorot.std().item() == pytest.approx(math.sqrt(2 / (64 * 9 + 128 * 9)), rel=0.05)


# ---------------------------------------------------------------- box_loss: matterport

def test_box_loss_is_smooth_l1_beta_1_mean_over_positives_times_4():
    pred = torch.tensor([[0.5, 0.0, 2.0, -0.2], [0.0, 0.0, 0.0, 0.0]])
    target = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.5, 0.0, -0.5, 0.0]])
    # TF: 0.125, 0, 1.5, 0.02 | 1.0, 0, 0.125, 0 → mean of 8
    expected = (0.125 + 0 + 1.5 + 0.02 + 1.0 + 0 + 0.125 + 0) / 8
    assert box_loss(pred, target).item() == pytest.approx(expected)
    assert expected == pytest.approx(sum(_smooth_l1_tf(d) for d in (pred - target).flatten().tolist()) / 8)
    empty = torch.zeros(0, 4, requires_grad=True)
    assert box_loss(empty, empty).item() == 0 and box_loss(empty, empty).requires_grad


def test_roi_box_loss_takes_each_positive_roi_class_deltas_only():
    """mrcnn_bbox_loss_graph: positives (label > 0) with their class's 4 deltas; negatives and padding ignored."""
    reg = torch.zeros(3, 3 * 4)
    reg[0, 2 * 4:3 * 4] = torch.tensor([0.5, 0.0, 0.0, 3.0])  # RoI 0, class 2
    reg[0, 1 * 4:2 * 4] = 100.0  # another class: not used
    reg[2] = 50.0  # background RoI: not used
    labels = [torch.tensor([2, 0]), torch.tensor([0])]
    targets = [torch.tensor([[0.0, 0.0, 0.0, 1.0], [9.0, 9.0, 9.0, 9.0]]), torch.tensor([[7.0, 7.0, 7.0, 7.0]])]
    assert roi_box_loss(reg, labels, targets).item() == pytest.approx((0.125 + 0 + 0 + 1.5) / 4)


def test_rpn_box_loss_and_deltas_divided_by_rpn_bbox_std_dev():
    rpn = build_model(small(box_loss="matterport")).rpn
    assert isinstance(rpn, MatterportRPN)
    # build_rpn_targets: ((gt_cx − a_cx) / a_w, ..., log(gt_w / a_w)) / RPN_BBOX_STD_DEV (0.1, 0.1, 0.2, 0.2)
    anchor, gt = torch.tensor([[0.0, 0.0, 10.0, 20.0]]), torch.tensor([[1.0, 4.0, 11.0, 24.0]])
    expected = [(6 - 5) / 10 / 0.1, (14 - 10) / 20 / 0.1, math.log(1) / 0.2, math.log(1) / 0.2]  # dx, dy, dw, dh
    assert rpn.box_coder.encode_single(gt, anchor)[0].tolist() == pytest.approx(expected)
    labels = [torch.tensor([1.0, 0.0, 0.0, -1.0])]  # one positive, two negatives, one ignored
    objectness = torch.tensor([2.0, -1.0, 0.5, 9.0])
    pred = torch.tensor([[1.0, 0.0, 0.0, 0.0], [5.0] * 4, [5.0] * 4, [5.0] * 4])
    reg_targets = [torch.tensor([[0.0, 0.0, 0.0, -2.0], [0.0] * 4, [0.0] * 4, [0.0] * 4])]
    obj_loss, rpn_box = rpn.compute_loss(objectness, pred, labels, reg_targets)
    assert rpn_box.item() == pytest.approx((0.5 + 0 + 0 + 1.5) / 4)  # the positive anchor's 4 coordinates
    bce = [math.log1p(math.exp(-2.0)), math.log1p(math.exp(-1.0)), math.log1p(math.exp(0.5))]
    assert obj_loss.item() == pytest.approx(sum(bce) / 3)  # rpn_class_loss_graph: mean over pos + neg anchors


def test_box_loss_default_is_torchvision():
    model = build_model(small())
    assert type(model.rpn) is RegionProposalNetwork
    assert model.rpn.box_coder.weights == (1.0, 1.0, 1.0, 1.0)
    assert model.roi_heads.box_coder.weights == (10.0, 10.0, 5.0, 5.0)  # = 1 / BBOX_STD_DEV in both


# ---------------------------------------------------------------- class_loss: matterport

def test_pad_rois_fills_slots_with_zero_boxes_labelled_background():
    props = [torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.zeros(0, 4)]
    matched = [torch.tensor([0]), torch.zeros(0, dtype=torch.int64)]
    labels = [torch.tensor([2]), torch.zeros(0, dtype=torch.int64)]
    regs = [torch.ones(1, 4), torch.zeros(0, 4)]
    p, m, lab, reg = pad_rois(props, matched, labels, regs, slots=3)
    assert [x.shape[0] for x in p] == [3, 3] and p[0][1:].abs().sum() == 0 and p[1].abs().sum() == 0
    assert lab[0].tolist() == [2, 0, 0] and lab[1].tolist() == [0, 0, 0] and reg[0][1:].abs().sum() == 0
    # mrcnn_class_loss_graph: sum of CE over all slots / (slots × batch); logits 0 over 3 classes → ln 3 each
    logits = torch.zeros(6, 3)
    loss = torch.nn.functional.cross_entropy(logits, torch.cat(lab))
    assert loss.item() == pytest.approx(6 * math.log(3) / (3 * 2))


def test_no_negatives_without_positives_under_class_loss_matterport():
    matched = [torch.zeros(10, dtype=torch.int64)]  # all background
    pos, neg = MatterportSampler(200, 0.33, empty_negative=False)(matched)
    assert pos[0].sum() == 0 and neg[0].sum() == 0  # negative_count = int(r · 0) − 0 = 0
    pos, neg = MatterportSampler(200, 0.33)(matched)
    assert neg[0].sum() == 1  # today's default: one stand-in negative
    model = build_model(small(roi_sampling="matterport", class_loss="matterport"))
    assert model.roi_heads.fg_bg_sampler.empty_negative is False


def test_class_loss_matterport_trains_roi_per_image_slots_per_image():
    torch.manual_seed(0)
    model = build_model(small(class_loss="matterport", box_loss="matterport", roi_per_image=16,
                              roi_sampling="matterport")).train()
    seen = []
    model.roi_heads.box_head.register_forward_hook(lambda m, i, o: seen.append(o.shape[0]))
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[0, 10:30, 12:40] = 1
    targets = [{"boxes": torch.tensor([[12.0, 10.0, 40.0, 30.0]]), "labels": torch.tensor([1]), "masks": masks}] * 2
    losses = model([torch.rand(3, 64, 64), torch.rand(3, 64, 64)], targets)
    assert seen == [16 * 2]  # every slot classified, padding included
    assert all(torch.isfinite(v) for v in losses.values())


# ---------------------------------------------------------------- roi_level: round

def _squares(sides):
    return [torch.tensor([[0.0, 0.0, s, s] for s in sides])]


def test_round_level_mapper_is_pyramid_roi_align_rounding():
    sides = [224 * 2 ** 0.6, 224 * 2 ** -0.4, 224 * 2 ** -1.5, 224 * 2 ** 0.5, 2.0, 5000.0]
    # TF: 4 + tf.round(log2(side / 224)) (half to even), clamped to 2..5 → P5, P4, P2 (round(−1.5) = −2), P4, P2, P5
    assert (RoundLevelMapper(2, 5)(_squares(sides)) + 2).tolist() == [5, 4, 2, 4, 2, 5]
    floor = MultiScaleRoIAlign(["0"], 7, 2)  # torchvision's floor, for contrast
    from torchvision.ops.poolers import LevelMapper

    assert (LevelMapper(2, 5)(_squares(sides)) + 2).tolist() == [4, 3, 2, 4, 2, 5]
    assert floor.map_levels is None


def _level_features(size=64):
    """P2-P5 of a size×size canvas, each constant at its level number."""
    return {str(k): torch.full((1, 1, size // 2 ** (k + 2), size // 2 ** (k + 2)), float(k + 2)) for k in range(4)}


def test_matterport_roi_align_pools_from_the_rounded_level():
    """Fails loudly if torchvision's MultiScaleRoIAlign seam (scales/map_levels set in forward) moves."""
    pool = MatterportRoIAlign(["0", "1", "2", "3"], 2, 2, level="round")
    boxes = [torch.tensor([[0.0, 0.0, 40.0, 40.0]])]  # log2(40/224) = −2.49 → round −2 → P2; floor → P2 (clamped)
    out = pool(_level_features(256), [torch.tensor([[0.0, 0.0, 170.0, 170.0]])], [(256, 256)])
    assert out.flatten().unique().tolist() == [4.0]  # log2(170/224) = −0.40 → P4 (torchvision floor: P3)
    assert isinstance(pool.map_levels, RoundLevelMapper) and pool.scales == [0.25, 0.125, 0.0625, 0.03125]
    plain = MultiScaleRoIAlign(["0", "1", "2", "3"], 2, 2)
    assert plain(_level_features(256), [torch.tensor([[0.0, 0.0, 170.0, 170.0]])], [(256, 256)]).unique().tolist() \
        == [3.0]
    assert pool(_level_features(256), boxes, [(256, 256)]).unique().tolist() == [2.0]


# ---------------------------------------------------------------- roi_align: crop_and_resize

def test_crop_and_resize_samples_like_tf():
    feat = (torch.arange(5.0)[:, None] * 10 + torch.arange(5.0)[None, :])[None]  # value = 10 y + x, [1, 5, 5]
    # tf.image.crop_and_resize: in_y = y1 (H−1) + i (y2−y1)(H−1)/(size−1); box (0, 0, 0.5, 1) → y 0,1,2; x 0,2,4
    out = crop_and_resize(feat, torch.tensor([[0.0, 0.0, 0.5, 1.0]]), 3)
    assert out[0, 0].tolist() == [[0, 2, 4], [10, 12, 14], [20, 22, 24]]
    # size 1: the box centre, (0.125 · 4, 0.25 · 4) = (0.5, 1) → bilinear 10 · 0.5 + 1
    assert crop_and_resize(feat, torch.tensor([[0.0, 0.0, 0.25, 0.5]]), 1)[0, 0, 0, 0].item() == pytest.approx(6.0)
    # mrcnn/utils.py norm_boxes: (y1, x1, y2 − 1, x2 − 1) / (size − 1)
    assert norm_boxes(torch.tensor([[0.0, 0.0, 5.0, 9.0]]), 9, 5).tolist() == [[0.0, 0.0, 1.0, 1.0]]


def test_matterport_roi_align_crop_and_resize_through_the_pooler():
    y, x = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    feats = {"0": (10 * y + x)[None, None], **{str(k): torch.zeros(1, 1, 16 // 2 ** k, 16 // 2 ** k)
                                              for k in (1, 2, 3)}}
    pool = MatterportRoIAlign(["0", "1", "2", "3"], 3, 2, sampling="crop_and_resize")
    # a 64×64 canvas, P2 = stride 4; box x 0..33, y 0..17 → normalised (0, 0, 16/63, 32/63) → P2 rows 0..15·16/63
    out = pool(feats, [torch.tensor([[0.0, 0.0, 33.0, 17.0]])], [(64, 64)])
    ys, xs = [i * (16 / 63) * 15 / 2 for i in range(3)], [i * (32 / 63) * 15 / 2 for i in range(3)]
    assert torch.allclose(out[0, 0], torch.tensor([[10 * a + b for b in xs] for a in ys]), atol=1e-4)


# ---------------------------------------------------------------- rpn_crowd_negatives: exclude

def test_rpn_anchors_overlapping_a_crowd_are_not_negatives():
    rpn = build_model(small(rpn_crowd_negatives="exclude")).rpn
    anchors = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0], [100.0, 100.0, 120.0, 120.0]])]
    targets = [{"boxes": torch.tensor([[100.0, 100.0, 120.0, 120.0]]), "crowd_boxes": torch.tensor([[5.0, 5, 30, 30]])}]
    labels, _ = rpn.assign_targets_to_anchors(anchors, targets)
    # build_rpn_targets: negative = IoU < 0.3 and crowd IoU < 0.001; the positive stays positive
    assert labels[0].tolist() == [-1.0, 0.0, 1.0]
    assert type(build_model(small()).rpn).assign_targets_to_anchors(
        build_model(small()).rpn, anchors, targets)[0][0].tolist() == [0.0, 0.0, 1.0]


# ---------------------------------------------------------------- max_gt_instances, skip_empty_images

def test_subsample_instances_keeps_aligned_rows():
    torch.manual_seed(0)
    t = {"boxes": torch.arange(20.0).reshape(5, 4), "labels": torch.arange(5), "masks": torch.arange(5)[:, None, None],
         "image_id": torch.tensor(7)}
    s = subsample_instances(t, 3)
    assert len(s["boxes"]) == 3 and len(set(s["labels"].tolist())) == 3
    assert (s["boxes"][:, 0] / 4 == s["labels"]).all() and (s["masks"][:, 0, 0] == s["labels"]).all()
    assert s["image_id"] == 7 and subsample_instances(t, 5) is t


def test_max_gt_instances_limits_the_roi_heads_targets_only(monkeypatch):
    model = build_model(small(max_gt_instances=1)).train()
    seen = {}
    rpn_assign, select = model.rpn.assign_targets_to_anchors, model.roi_heads.select_training_samples
    monkeypatch.setattr(model.rpn, "assign_targets_to_anchors",
                        lambda a, t: (seen.setdefault("rpn", len(t[0]["boxes"])), rpn_assign(a, t))[1])
    monkeypatch.setattr(model.roi_heads, "select_training_samples",
                        lambda p, t: (seen.setdefault("roi", len(t[0]["boxes"])), select(p, t))[1])
    masks = torch.zeros(3, 64, 64, dtype=torch.uint8)
    for i in range(3):
        masks[i, 5 + 15 * i:15 + 15 * i, 5:40] = 1
    boxes = torch.tensor([[5.0, 5 + 15 * i, 40, 15 + 15 * i] for i in range(3)])
    model([torch.rand(3, 64, 64)], [{"boxes": boxes, "labels": torch.tensor([1, 2, 3]), "masks": masks}])
    assert seen == {"rpn": 3, "roi": 1}


def test_skip_empty_images_leaves_out_images_without_a_non_crowd_instance(tmp_path):
    root = tmp_path / "syn"
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for img_id, kind in ((1, "object"), (2, "crowd"), (3, "nothing")):
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "images" / f"{img_id}.png")
        images.append({"id": img_id, "file_name": f"{img_id}.png", "width": 32, "height": 32})
        if kind != "nothing":
            mask = np.zeros((32, 32), np.uint8)
            mask[4:20, 4:20] = 1
            anns.append({"id": len(anns) + 1, "image_id": img_id, **mask_annotation(mask, 1, int(kind == "crowd"))})
    write_coco_json(root / "train.json", images, anns, [{"id": 1, "name": "box"}], {})
    write_manifest(root, name="synthetic", classes=["box"], category_ids=[1], command="test",
                   splits={"train": {"images": "images", "annotations": "train.json"}}, source="test")
    assert CocoInstanceDataset(root, "train", canvas=(32, 32)).ids == [1, 2, 3]
    assert CocoInstanceDataset(root, "train", canvas=(32, 32), skip_empty=True).ids == [1]


# ---------------------------------------------------------------- head_classes (Cityscapes 35-way)

def test_head_classes_widen_the_predictors_and_the_authors_56_bottleneck():
    model = build_model(small(head_classes=5, mask_size=56, mask_head_56="authors"))
    assert model.roi_heads.box_predictor.cls_score.out_features == 6
    assert model.roi_heads.box_predictor.bbox_pred.out_features == 6 * 4
    head = model.roi_heads.mask_predictor
    assert head.deconv_conv_0.out_channels == 6 and head.mask_fcn_logits.out_channels == 6  # num_classes wide
    cs = load_config(None, {"recipe": "authors-cityscapes"})
    assert cs.head_classes == 34  # NUM_CLASSES = 1 + 34
    with pytest.raises(EdgeRCNNError, match="head_classes"):
        build_model(small(head_classes=2))
    assert build_model(small()).roi_heads.box_predictor.cls_score.out_features == 4


@pytest.mark.parametrize("postprocess", ["matterport", "torchvision"])
def test_untrained_classes_of_a_wider_head_are_not_reported(postprocess):
    heads = build_model(small(head_classes=5, postprocess=postprocess, eval_score_threshold=0.0)).eval().roi_heads
    proposals = [torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])]
    logits = torch.log(torch.tensor([[0.1, 0.1, 0.1, 0.1, 0.1, 0.5], [0.1, 0.6, 0.1, 0.1, 0.05, 0.05]]))
    boxes, scores, labels = heads.postprocess_detections(logits, torch.zeros(2, 24), proposals, [(64, 64)])
    assert labels[0].numel() > 0 and labels[0].max() <= 3 and 1 in labels[0].tolist()


# ---------------------------------------------------------------- ce_exp: authors

def test_ce_exp_authors_puts_alpha_inside_the_exponent_over_16():
    """One 1×1 RoI, laplace4 (centre −4): pred 0.5, target 0 → L_edge-pw = (4 · 0.5)² = 4, L_mask-pw = ln 2.
    Paper: α · ln2 · exp(4 / 4); mrcnn_mask_edge_loss_graph: ln2 · exp(α · 4 / 16)."""
    pred, target = torch.full((1, 1, 1), 0.5), torch.zeros(1, 1, 1)
    kw = dict(filters=("laplace4",), p=2, weight=2.0, formulation="ce-exp")
    assert edge_agreement_loss(pred, target, **kw).item() == pytest.approx(2 * math.log(2) * math.e, rel=1e-5)
    assert edge_agreement_loss(pred, target, **kw, ce_exp="authors").item() == pytest.approx(
        math.log(2) * math.exp(0.5), rel=1e-5)
    assert EdgeLoss.from_config(load_config(None, {"recipe": "authors-coco"})).ce_exp == "authors"
    assert EdgeLoss.from_config(Config()).ce_exp == "paper"
    with pytest.raises(ValueError, match="ce_exp"):
        Config(ce_exp="tf")


# ---------------------------------------------------------------- defaults, recipes, --diff, README

def test_defaults_keep_torchvision_seams():
    model = build_model(small())
    assert type(model.roi_heads.box_roi_pool) is MultiScaleRoIAlign
    assert type(model.roi_heads.mask_roi_pool) is MultiScaleRoIAlign
    heads = model.roi_heads
    assert (heads.box_loss, heads.class_loss, heads.max_gt_instances, heads.num_trained_classes) == (
        "torchvision", "torchvision", None, None)
    cfg = Config()
    assert (cfg.unloaded_init, cfg.roi_level, cfg.roi_align, cfg.rpn_crowd_negatives, cfg.skip_empty_images,
            cfg.head_classes, cfg.ce_exp) == ("torchvision", "floor", "torchvision", "keep", False, None, "paper")


def test_authors_recipes_set_every_new_key():
    keys = {"unloaded_init": "glorot", "box_loss": "matterport", "class_loss": "matterport", "roi_level": "round",
            "roi_align": "crop_and_resize", "rpn_crowd_negatives": "exclude", "skip_empty_images": True,
            "max_gt_instances": 100, "ce_exp": "authors"}
    for name in ("authors-coco", "authors-cityscapes"):
        cfg = load_config(None, {"recipe": name})
        assert {k: getattr(cfg, k) for k in keys} == keys, name


def test_recipes_diff_lists_every_differing_key_with_sources_on_one_screen():
    rows = recipe_diff("authors-coco", "torchvision")
    coco, tv = load_config(None, {"recipe": "authors-coco"}), load_config(None, {"recipe": "torchvision"})
    differing = {k for k in coco.to_dict() if k != "recipe" and coco.to_dict()[k] != tv.to_dict()[k]}
    assert {r["key"] for r in rows} == differing
    assert {"unloaded_init", "box_loss", "class_loss", "roi_level", "roi_align", "backbone"} <= differing
    result = runner.invoke(app, ["recipes", "authors-coco", "--diff", "torchvision"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"{len(rows)} keys differ" in lines[0] and len(lines) <= len(rows) + 6  # one line per key
    for row in rows:
        line = next(line for line in lines if re.search(rf"│ {row['key']} +│", line))
        assert row["sources"][0][:10] in line and row["sources"][1][:10] in line
    bad = runner.invoke(app, ["recipes", "--diff", "torchvision"])
    assert bad.exit_code == 1 and "Traceback" not in bad.output and "--diff" in bad.output


def test_readme_table_names_every_difference():
    text = README.read_text()
    section = text.split("### What the authors' code does that torchvision does not", 1)[1].split("\n#", 1)[0]
    first_cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("| ")]
    named = {key for cell in first_cells for key in re.findall(r"`([a-z_0-9]+)`", cell)}
    assert {r["key"] for r in recipe_diff("authors-coco", "torchvision")} <= named
    assert {r["key"] for r in recipe_diff("authors-cityscapes", "torchvision")} - {"stages", "batch_size"} <= named
