"""edgercnn.model.bmask: BMask R-CNN's boundary-preserving head, its targets and loss (hustvl/BMaskR-CNN)."""

import copy
import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

from edgercnn.core.errors import EdgeRCNNError
from edgercnn.model.edge_head import add_edge_loss
from edgercnn.model.bmask import BMaskHead, add_bmask, bmask_head_of, bmask_loss, boundary_targets, pop_boundary_logits
from edgercnn.model.rcnn import MaskPredictor56

ADDED = {"downsample", "mask_to_boundary", "boundary_fcns", "boundary_to_mask", "mask_final_fusion",
         "boundary_deconv", "boundary_predictor"}


def reference_boundary_loss(boundary_logits, gtmasks):
    """hustvl/BMaskR-CNN c74b0bd projects/BMaskR-CNN/bmaskrcnn/mask_head.py:16-48 (dice_loss_func +
    boundary_loss_func), written out as there."""
    def dice_loss_func(input, target):
        smooth = 1.
        n = input.size(0)
        iflat = input.view(n, -1)
        tflat = target.view(n, -1)
        intersection = (iflat * tflat).sum(1)
        loss = 1 - ((2. * intersection + smooth) / (iflat.sum(1) + tflat.sum(1) + smooth))
        return loss.mean()

    laplacian_kernel = torch.tensor([-1, -1, -1, -1, 8, -1, -1, -1, -1], dtype=torch.float32).reshape(1, 1, 3, 3)
    boundary_logits = boundary_logits.unsqueeze(1)
    boundary_targets = F.conv2d(gtmasks.unsqueeze(1), laplacian_kernel, padding=1)
    boundary_targets = boundary_targets.clamp(min=0)
    boundary_targets[boundary_targets > 0.1] = 1
    boundary_targets[boundary_targets <= 0.1] = 0
    if boundary_logits.shape[-1] != boundary_targets.shape[-1]:
        boundary_targets = F.interpolate(boundary_targets, boundary_logits.shape[2:], mode='nearest')
    bce_loss = F.binary_cross_entropy_with_logits(boundary_logits, boundary_targets)
    dice_loss = dice_loss_func(torch.sigmoid(boundary_logits), boundary_targets)
    return bce_loss + dice_loss


def small_head(norm_layer=None, classes=3):
    torch.manual_seed(0)
    return BMaskHead(MaskRCNNHeads(8, [8, 8, 8, 8], 1, norm_layer=norm_layer), num_classes=classes)


@pytest.mark.parametrize("norm_layer", [None, partial(nn.GroupNorm, 2), nn.BatchNorm2d], ids=["plain", "gn", "bn"])
def test_head_shapes_in_train_and_eval(norm_layer):
    head, predictor, x = small_head(norm_layer), MaskRCNNPredictor(8, 8, 3), torch.randn(5, 8, 7, 7)
    out = head(x)
    assert out.shape == (5, 8, 7, 7) and predictor(out).shape == (5, 3, 14, 14)
    assert head.boundary_logits.shape == (5, 3, 14, 14)
    head.eval()
    with torch.no_grad():
        assert head(x).shape == (5, 8, 7, 7)
    assert head.boundary_logits is None
    # the new blocks follow the wrapped head's block type: with a norm, no conv bias and the same norm
    block = head.mask_to_boundary
    assert (block[0].bias is None) == (norm_layer is not None) and block[0].kernel_size == (1, 1)
    assert type(block[1]) is (type(norm_layer(8)) if norm_layer else nn.ReLU)


def test_boundary_targets_of_a_square():
    mask = torch.zeros(1, 6, 6)
    mask[0, 1:5, 1:5] = 1
    ring = mask.clone()
    ring[0, 2:4, 2:4] = 0  # the square's 12 edge pixels; the 4 inside and the background are not boundary
    assert torch.equal(boundary_targets(mask), ring)
    # zero padding: a mask filling the RoI has its border pixels as boundary
    full = torch.ones(1, 4, 4)
    border = torch.ones(1, 4, 4)
    border[0, 1:3, 1:3] = 0
    assert torch.equal(boundary_targets(full), border)
    # soft targets are binarised at 0.5 first (detectron2's crop_and_resize >= 0.5)
    soft = mask * 0.7 + (mask == 0) * 0.3
    assert torch.equal(boundary_targets(soft), ring)
    assert torch.equal(boundary_targets(torch.zeros(2, 5, 5)), torch.zeros(2, 5, 5))


def test_bmask_loss_hand_worked():
    # all-ones 3×3 target: 8 boundary pixels (all but the centre); logits 0 → p = 0.5, BCE = ln 2 per pixel,
    # Dice = 1 - (2·0.5·8 + 1) / (0.5·9 + 8 + 1) = 1 - 9/13.5 = 1/3
    loss = bmask_loss(torch.zeros(1, 3, 3), torch.ones(1, 3, 3))
    assert loss.item() == pytest.approx(math.log(2) + 1 / 3, abs=1e-6)


@pytest.mark.parametrize("target_size", [12, 24], ids=["same-size", "nearest-resized"])
def test_bmask_loss_equals_the_reference(target_size):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 12, 12, generator=g) * 3
    targets = (torch.rand(4, target_size, target_size, generator=g) > 0.5).float()
    targets[0] = 0  # a RoI with no boundary
    assert bmask_loss(logits, targets).item() == pytest.approx(reference_boundary_loss(logits, targets).item(),
                                                               abs=1e-5)


def test_bmask_loss_without_rois_is_a_graph_attached_zero():
    logits = torch.zeros(0, 14, 14, requires_grad=True)
    loss = bmask_loss(logits, torch.zeros(0, 28, 28))
    assert loss.item() == 0 and loss.requires_grad
    loss.backward()
    assert logits.grad.shape == (0, 14, 14)


def test_gradients_reach_both_branches():
    head, predictor = small_head(), MaskRCNNPredictor(8, 8, 3)
    mask_logits = predictor(head(torch.randn(3, 8, 7, 7)))
    targets = torch.zeros(3, 14, 14)
    targets[:, 3:11, 4:12] = 1
    boundary = pop_boundary_logits(head)[torch.arange(3), torch.tensor([1, 2, 1])]
    # the mask loss alone reaches the boundary convs through the boundary-to-mask fusion
    F.binary_cross_entropy_with_logits(mask_logits[:, 1], targets).backward(retain_graph=True)
    assert head.boundary_fcns[0][0].weight.grad.abs().sum() > 0 and head.boundary_predictor.weight.grad is None
    head.zero_grad()
    # the boundary loss alone reaches the mask convs through the mask-to-boundary fusion
    bmask_loss(boundary, targets).backward()
    for name in ("mask_fcns.0.0.weight", "downsample.0.weight", "boundary_predictor.weight",
                 "boundary_deconv.0.weight", "mask_to_boundary.0.weight"):
        assert head.get_parameter(name).grad.abs().sum() > 0, name


def test_pop_boundary_logits_takes_each_output_once():
    head = small_head()
    head(torch.randn(2, 8, 7, 7))
    assert pop_boundary_logits(head).shape == (2, 3, 14, 14)
    with pytest.raises(EdgeRCNNError, match="holds no boundary logits"):
        pop_boundary_logits(head)
    with pytest.raises(EdgeRCNNError, match="add_bmask"):
        pop_boundary_logits(nn.Linear(1, 1))


def test_a_model_copies_after_a_training_forward():
    head = small_head()
    head(torch.randn(2, 8, 7, 7))
    copied = copy.deepcopy(head)
    assert copied.boundary_logits is None and head.boundary_logits is not None


def fake_model(predictor):
    """The two attributes add_bmask reads, without building a backbone."""
    model, heads = nn.Module(), nn.Module()
    heads.mask_head, heads.mask_predictor = MaskRCNNHeads(8, [8, 8, 8, 8], 1), predictor
    model.roi_heads = heads
    return model


def test_boundary_output_matches_a_56_mask_predictor():
    model = add_bmask(fake_model(MaskPredictor56(8, 6, 4)))
    x = torch.randn(2, 8, 14, 14)
    assert model.roi_heads.mask_predictor(model.roi_heads.mask_head(x)).shape == (2, 4, 56, 56)
    assert pop_boundary_logits(model).shape == (2, 4, 56, 56)


def test_add_bmask_rejects_a_model_without_a_mask_head():
    with pytest.raises(EdgeRCNNError, match="add_bmask: .*torchvision MaskRCNN"):
        add_bmask(nn.Linear(1, 1))


def test_add_bmask_state_dict_keys_and_loading():
    plain = fake_model(MaskRCNNPredictor(8, 8, 3))
    plain_state = copy.deepcopy(plain.state_dict())
    model = add_bmask(copy.deepcopy(plain))
    head = model.roi_heads.mask_head
    assert bmask_head_of(model) is head and add_bmask(model).roi_heads.mask_head is head  # idempotent
    keys = set(model.state_dict())
    moved = {k.replace("roi_heads.mask_head.", "roi_heads.mask_head.mask_fcns.") for k in plain_state
             if k.startswith("roi_heads.mask_head.")}
    added = keys - moved - set(plain_state)
    assert moved <= keys and {k.split(".")[2] for k in added} == ADDED
    assert torch.equal(model.state_dict()["roi_heads.mask_head.mask_fcns.0.0.weight"],
                       plain_state["roi_heads.mask_head.0.0.weight"])  # the existing weights are kept
    # a model without BMask keeps torchvision's keys; one with it loads strictly into another with it
    assert set(plain.state_dict()) == set(fake_model(MaskRCNNPredictor(8, 8, 3)).state_dict())
    other = add_bmask(fake_model(MaskRCNNPredictor(8, 8, 3)))
    other.load_state_dict(model.state_dict(), strict=True)
    # a plain torchvision state_dict loads into a BMask model: only the added keys are missing
    fresh = add_bmask(fake_model(MaskRCNNPredictor(8, 8, 3)))
    result = fresh.load_state_dict(plain_state, strict=False)
    assert set(result.missing_keys) == added and not result.unexpected_keys
    assert torch.equal(fresh.roi_heads.mask_head.mask_fcns[0][0].weight, plain_state["roi_heads.mask_head.0.0.weight"])


def tiny_maskrcnn():
    """A torchvision MaskRCNN small enough for a CPU test: one stride-4 feature map with 8 channels, a 16-wide
    GroupNorm mask head (torchvision's v2 head has a norm too) and 2 classes."""
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                             nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
    backbone.out_channels = 8
    return MaskRCNN(backbone, box_predictor=FastRCNNPredictor(1024, 2), min_size=64, max_size=64,
                    rpn_anchor_generator=AnchorGenerator(((16, 32),), ((0.5, 1.0, 2.0),)),
                    mask_head=MaskRCNNHeads(8, [16] * 4, 1, norm_layer=partial(nn.GroupNorm, 4)),
                    mask_predictor=MaskRCNNPredictor(16, 16, 2), rpn_pre_nms_top_n_train=50,
                    rpn_post_nms_top_n_train=20, box_batch_size_per_image=16, rpn_pre_nms_top_n_test=20,
                    rpn_post_nms_top_n_test=10, box_score_thresh=0.0, box_detections_per_img=5)


def test_a_tiny_maskrcnn_trains_with_bmask_and_infers_masks():
    model = tiny_maskrcnn()
    plain_keys = set(model.state_dict())
    add_bmask(model)
    image = torch.rand(3, 64, 64)
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[0, 10:40, 12:44] = 1
    target = {"boxes": torch.tensor([[12.0, 10, 44, 40]]), "labels": torch.tensor([1]), "masks": masks}
    model.train()
    losses = model([image], [target])
    boundary = pop_boundary_logits(model)
    n = boundary.shape[0]
    assert n > 0 and boundary.shape[1:] == (2, 28, 28)
    mask_targets = torch.zeros(n, 28, 28)
    mask_targets[:, 6:22, 6:22] = 1  # stand-in targets: the lead's RoI heads pass the projected ones
    loss = sum(losses.values()) + bmask_loss(boundary[:, 1], mask_targets)
    loss.backward()
    head = model.roi_heads.mask_head
    assert head.boundary_predictor.weight.grad.abs().sum() > 0 and head.mask_fcns[0][0].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model([image])[0]
    assert out["masks"].shape[1:] == (1, 64, 64) and head.boundary_logits is None
    moved = {k.replace("mask_head.", "mask_head.mask_fcns.") if ".mask_head." in k else k for k in plain_keys}
    assert moved < set(model.state_dict())  # other keys unchanged, the mask convs moved under mask_fcns


@pytest.mark.slow
def test_maskrcnn_resnet50_fpn_trains_with_bmask():
    model = add_bmask(maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2, min_size=64,
                                            max_size=64, rpn_post_nms_top_n_train=20, box_batch_size_per_image=16))
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[0, 10:40, 12:44] = 1
    target = {"boxes": torch.tensor([[12.0, 10, 44, 40]]), "labels": torch.tensor([1]), "masks": masks}
    losses = model.train()([torch.rand(3, 64, 64)], [target])
    boundary = pop_boundary_logits(model)
    assert boundary.shape[1:] == (2, 28, 28)
    (sum(losses.values()) + bmask_loss(boundary[:, 1], torch.ones(boundary.shape[0], 28, 28))).backward()
    assert model.roi_heads.mask_head.boundary_fcns[0][0].weight.grad.abs().sum() > 0


def test_bmask_head_rejects_a_mask_head_it_cannot_read():
    with pytest.raises(EdgeRCNNError, match="not torchvision's MaskRCNNHeads"):
        BMaskHead(nn.Sequential(nn.ReLU()), num_classes=2)


@pytest.mark.parametrize("bmask_first", [True, False], ids=["bmask-then-edge", "edge-then-bmask"])
def test_bmask_composes_with_add_edge_loss(bmask_first):
    model = tiny_maskrcnn()
    for add in ((add_bmask, add_edge_loss) if bmask_first else (add_edge_loss, add_bmask)):
        add(model)
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[0, 10:40, 12:44] = 1
    target = {"boxes": torch.tensor([[12.0, 10, 44, 40]]), "labels": torch.tensor([1]), "masks": masks}
    head = model.roi_heads.mask_head
    seen = []
    head.register_forward_hook(lambda m, i, o: seen.append(m.boundary_logits.shape))
    losses = model.train()([torch.rand(3, 64, 64)], [target])
    # EdgeRoIHeads takes (pops) the boundary logits of each training forward, so none is left stale
    assert "loss_edge" in losses and len(seen) == 1 and tuple(seen[0][1:]) == (2, 28, 28)
    assert head.boundary_logits is None
