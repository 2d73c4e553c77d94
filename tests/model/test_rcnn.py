"""Mask R-CNN with the Edge Agreement Head: the torchvision seam, shapes, init, staged unfreezing."""

import inspect

import pytest
import torch
from torchvision.models import resnet18
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.resnet import resnet50
from torchvision.ops.misc import FrozenBatchNorm2d

from edgercnn.config import Config
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.model.rcnn import set_trainable
from edgercnn.builders.model import build_model

SIZE = 96


def small_cfg(**kw):
    base = dict(backbone="small", num_classes=2, canvas=[SIZE, SIZE])
    base.update(kw)
    return Config(**base)


def batch():
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, SIZE, SIZE, generator=g) for _ in range(2)]
    targets = []
    for shift in (0, 20):
        masks = torch.zeros(2, SIZE, SIZE, dtype=torch.uint8)
        masks[0, 10 + shift:50 + shift, 12:40] = 1
        masks[1, 30:70, 45 + shift // 2:85] = 1
        boxes = torch.tensor([[12.0, 10 + shift, 40, 50 + shift], [45 + shift // 2, 30, 85, 70]])
        targets.append({"boxes": boxes, "labels": torch.tensor([1, 2]), "masks": masks})
    return images, targets


def test_torchvision_seam_is_where_we_expect():
    """Fails loudly when a torchvision upgrade changes the RoIHeads.forward structure EdgeRoIHeads mirrors."""
    src = inspect.getsource(RoIHeads.forward)
    for needle in (
        "self.select_training_samples(proposals, targets)",
        "fastrcnn_loss(class_logits, box_regression, labels, regression_targets)",
        "torch.where(labels[img_id] > 0)[0]",
        "maskrcnn_loss(mask_logits, mask_proposals, gt_masks, gt_labels, pos_matched_idxs)",
    ):
        assert needle in src, f"torchvision RoIHeads.forward changed: {needle!r} not found; revisit EdgeRoIHeads"
    from torchvision.models.detection import roi_heads

    src = inspect.getsource(roi_heads.maskrcnn_loss)
    assert "project_masks_on_boxes(m, p, i, discretization_size)" in src
    assert "binary_cross_entropy_with_logits" in src


@pytest.mark.parametrize("mask_size", [28, 56])
def test_training_losses_match_torchvision_and_add_edge(mask_size):
    torch.manual_seed(0)
    model = build_model(small_cfg(mask_size=mask_size)).train()
    images, targets = batch()
    torch.manual_seed(1)
    ours = model(images, targets)
    model.roi_heads.edge_loss, edge = None, model.roi_heads.edge_loss
    torch.manual_seed(1)
    plain = model(images, targets)  # torchvision's own RoIHeads.forward
    assert set(ours) == set(plain) | {"loss_edge"}
    for key, value in plain.items():
        assert torch.allclose(ours[key], value, rtol=1e-5, atol=1e-6), key
    assert ours["loss_edge"].item() > 0
    assert edge.filters == ("sobel",)


def test_mask_logits_are_56_and_edge_gradient_reaches_mask_predictor():
    torch.manual_seed(0)
    model = build_model(small_cfg(mask_size=56)).train()
    seen = {}

    def record(module, inputs, output):
        seen["shape"] = output.shape

    model.roi_heads.mask_predictor.register_forward_hook(record)
    images, targets = batch()
    losses = model(images, targets)
    assert seen["shape"][-2:] == (56, 56)
    losses["loss_edge"].backward()
    assert model.roi_heads.mask_predictor.mask_fcn_logits.weight.grad.abs().sum() > 0
    assert model.roi_heads.box_predictor.cls_score.weight.grad is None  # the edge term only feeds the mask branch


def test_baseline_has_no_edge_term():
    model = build_model(small_cfg(filters=[])).train()
    images, targets = batch()
    assert "loss_edge" not in model(images, targets)
    assert model.roi_heads.edge_loss is None


def test_zero_positive_rois():
    torch.manual_seed(0)
    model = build_model(small_cfg()).train()
    images, _ = batch()
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
              "masks": torch.zeros(0, SIZE, SIZE, dtype=torch.uint8)} for _ in images]
    losses = model(images, empty)
    assert losses["loss_edge"].item() == 0.0 and losses["loss_mask"].item() == 0.0
    sum(losses.values()).backward()


def test_edge_settings_from_config():
    cfg = small_cfg(filters=["sobel", "laplace"], p=4, alpha=0.0625, smooth="gt", magnitude=True,
                    formulation="ce-exp")
    edge = build_model(cfg).roi_heads.edge_loss
    assert (edge.filters, edge.p, edge.weight, edge.smooth, edge.magnitude, edge.formulation) == (
        ("sobel", "laplace"), 4, 0.0625, "gt", True, "ce-exp")


def test_xavier_outside_the_resnet():
    torch.manual_seed(0)
    model = build_model(Config(backbone="resnet50", num_classes=3, canvas=[128, 128], backbone_weights=None,
                                stages=[{"steps": 1, "layers": "all", "lr": 0.01}]))
    for name, module in [("rpn", model.rpn.head.conv[0][0]), ("fpn", model.backbone.fpn.layer_blocks[0][0]),
                         ("mask", model.roi_heads.mask_head[0][0]), ("box", model.roi_heads.box_head.fc6)]:
        w = module.weight
        fan_in = w.shape[1] * w[0, 0].numel()
        fan_out = w.shape[0] * w[0, 0].numel()
        expected = 2.0 / (fan_in + fan_out)  # Var of xavier_uniform
        assert w.var().item() == pytest.approx(expected, rel=0.1), name
        assert torch.all(module.bias == 0), name


def test_backbone_weights_from_file_and_missing(tmp_path, monkeypatch):
    ref = resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), path)
    model = build_model(small_cfg(backbone_weights=str(path)))
    assert torch.equal(model.backbone.body.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)
    with pytest.raises(EdgeRCNNError, match="not found at"):
        build_model(small_cfg(backbone_weights=str(tmp_path / "missing.pth")))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # an empty hub cache
    with pytest.raises(EdgeRCNNError, match="download https://download.pytorch.org/models/resnet50"):
        build_model(Config(backbone="resnet50", num_classes=1, backbone_weights="imagenet"))


def test_state_dict_loads_into_plain_torchvision_maskrcnn():
    torch.manual_seed(0)
    cfg = Config(backbone="resnet50", num_classes=4, canvas=[128, 128], backbone_weights=None,
                 stages=[{"steps": 1, "layers": "all", "lr": 0.01}])
    ours = build_model(cfg).eval()
    backbone = _resnet_fpn_extractor(resnet50(weights=None, norm_layer=FrozenBatchNorm2d), 5)
    plain = MaskRCNN(backbone, num_classes=5, min_size=128, max_size=128).eval()
    assert type(plain.roi_heads) is RoIHeads
    plain.load_state_dict(ours.state_dict(), strict=True)
    image = [torch.rand(3, 128, 128)]
    with torch.no_grad():
        a, b = ours(image)[0], plain(image)[0]
    assert torch.allclose(a["boxes"], b["boxes"], atol=1e-4) and torch.equal(a["labels"], b["labels"])


def test_model_transform_does_not_rescale():
    model = build_model(small_cfg(canvas=[160, 96])).eval()
    image = torch.rand(3, 96, 160)
    batched, _ = model.transform([image])
    assert batched.image_sizes == [(96, 160)] and batched.tensors.shape[-2:] == (96, 160)
    mean = torch.tensor(model.transform.image_mean)[:, None, None]
    std = torch.tensor(model.transform.image_std)[:, None, None]
    assert torch.allclose(batched.tensors[0], (image - mean) / std)


def test_staged_unfreezing():
    model = build_model(small_cfg())
    body = model.backbone.body

    def trainable(module):
        return {p.requires_grad for p in module.parameters()}

    set_trainable(model, "heads")
    assert trainable(body) == {False}
    assert trainable(model.rpn) == trainable(model.roi_heads) == trainable(model.backbone.fpn) == {True}
    set_trainable(model, "4+")
    assert trainable(body.layer3) == trainable(body.layer4) == {True}
    assert trainable(body.layer2) == trainable(body.layer1) == trainable(body.conv1) == {False}
    set_trainable(model, "all")
    assert trainable(model) == {True}
    with pytest.raises(ValueError):
        set_trainable(model, "5+")


def test_num_classes_required():
    with pytest.raises(EdgeRCNNError, match="num_classes"):
        build_model(Config(backbone="small"))


def test_edge_loss_runs_in_float32_under_autocast():
    """The ce-* formulations use binary_cross_entropy, which autocast refuses; the head computes them in fp32."""
    torch.manual_seed(0)
    model = build_model(small_cfg(formulation="ce-exp")).train()
    images, targets = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(images, targets)
    assert losses["loss_edge"].dtype == torch.float32 and torch.isfinite(losses["loss_edge"])
