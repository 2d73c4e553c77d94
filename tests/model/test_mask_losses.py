"""The boundary-aware mask losses (model/mask_losses.py) against values worked out by hand.

The 4×4 target used below (M = 4) is the 2×2 square in the top-left corner:
    1 1 0 0
    1 1 0 0
    0 0 0 0
    0 0 0 0
Distances to the nearest pixel of the other class (scipy's EDT of the mask and of its complement):
    2 1 1 2          inside: (0,0) is 2 from (0,2) and (2,0); the other three touch the background.
    1 1 1 2          outside: (2,2) is √2 from (1,1); (2,3) and (3,2) are √5; (3,3) is √8.
    1 1 √2 √5
    2 2 √5 √8
"""

import math

import pytest
import torch
import torch.nn.functional as F

from edgercnn.model.mask_losses import (DEFAULT_WEIGHTS, DICE_EPS, MASK_LOSSES, boundary_loss, boundary_weight,
                                        dice_loss, hausdorff_dt_loss, lovasz_hinge_loss, signed_distance)

S2, S5, S8 = math.sqrt(2), math.sqrt(5), math.sqrt(8)


def corner_target():
    target = torch.zeros(1, 4, 4)
    target[0, :2, :2] = 1
    return target


def test_dice_by_hand():
    # p = sigmoid(0) = 0.5 on a 2×2 RoI, g = [[1, 0], [0, 0]]: Σpg = 0.5, Σp² = 1, Σg² = 1,
    # loss = 1 − 2·0.5 / (1 + 0.001 + 1 + 0.001) = 1 − 1/2.002.
    target = torch.tensor([[[1.0, 0], [0, 0]]])
    assert dice_loss(torch.zeros(1, 2, 2), target).item() == pytest.approx(1 - 1 / (2 + 2 * DICE_EPS), abs=1e-6)
    # A perfect, saturated prediction: Σpg = Σp² = Σg² = 1 → 1 − 2/2.002.
    assert dice_loss(torch.tensor([[[50.0, -50], [-50, -50]]]), target).item() == pytest.approx(
        1 - 2 / (2 + 2 * DICE_EPS), abs=1e-6)


def test_lovasz_by_hand():
    # z = [2, −1, 0.5, −3] (row-major), g = [1, 0, 0, 0]; errors 1 − z·(2g − 1) = [−1, 0, 1.5, −2].
    # Sorted descending: 1.5 (g 0), 0 (g 0), −1 (g 1), −2 (g 0). Σg = 1; intersection = 1 − cumsum g = [1, 1, 0, 0];
    # union = 1 + cumsum(1 − g) = [2, 3, 3, 4]; Jaccard = [1/2, 2/3, 1, 1]; its differences [1/2, 1/6, 1/3, 0].
    # Loss = relu([1.5, 0, −1, −2]) · [1/2, 1/6, 1/3, 0] = 0.75.
    logits = torch.tensor([[[2.0, -1], [0.5, -3]]])
    assert lovasz_hinge_loss(logits, torch.tensor([[[1.0, 0], [0, 0]]])).item() == pytest.approx(0.75, abs=1e-6)
    # Soft targets are binarised at 0.5: 0.6 counts as 1, 0.4 as 0.
    assert lovasz_hinge_loss(logits, torch.tensor([[[0.6, 0.4], [0, 0.2]]])).item() == pytest.approx(0.75, abs=1e-6)
    # Per RoI, not pooled: a second RoI with loss 0 (correct logits of magnitude ≥ 1) halves the mean.
    both = lovasz_hinge_loss(torch.cat([logits, torch.tensor([[[3.0, -1], [-1, -1]]])]),
                             torch.tensor([[[1.0, 0], [0, 0]], [[1.0, 0], [0, 0]]]))
    assert both.item() == pytest.approx(0.375, abs=1e-6)


def test_signed_distance_by_hand():
    # φ = edt(neg)·neg − (edt(pos) − 1)·pos: inside 1 − [2, 1, 1, 1], outside the distances of the docstring.
    expected = torch.tensor([[-1, 0, 1, 2], [0, 0, 1, 2], [1, 1, S2, S5], [2, 2, S5, S8]])
    assert torch.allclose(signed_distance(corner_target())[0], expected, atol=1e-6)


def test_boundary_by_hand():
    # s = 0.5 everywhere: loss = 0.5 · Σφ / 16 pixels / M(4); Σφ = 11 + √2 + 2√5 + √8.
    expected = 0.5 * (11 + S2 + 2 * S5 + S8) / 16 / 4
    assert boundary_loss(torch.zeros(1, 4, 4), corner_target()).item() == pytest.approx(expected, abs=1e-6)
    # A saturated correct prediction only sums φ inside: (−1 + 0 + 0 + 0) / 16 / 4.
    logits = (corner_target() * 2 - 1) * 50
    assert boundary_loss(logits, corner_target()).item() == pytest.approx(-1 / 64, abs=1e-6)


def test_hausdorff_by_hand():
    # logits 0 → p = 0.5, so the thresholded prediction (p > 0.5) is all background: d_P = 0 (as MONAI).
    # (p − g)² = 0.25 everywhere; Σ d_G² = (4 + 1 + 1 + 1) + (1 + 4 + 1 + 4 + 1 + 1 + 2 + 5 + 4 + 4 + 5 + 8) = 47;
    # loss = 0.25 · 47 / 16 pixels / M² (16).
    assert hausdorff_dt_loss(torch.zeros(1, 4, 4), corner_target()).item() == pytest.approx(0.25 * 47 / 256, abs=1e-6)
    # α = 1: Σ d_G = (2 + 3) + (1 + 2 + 1 + 2 + 1 + 1 + √2 + √5 + 2 + 2 + √5 + √8) = 17 + √2 + 2√5 + √8; ÷ M (4).
    expected = 0.25 * (17 + S2 + 2 * S5 + S8) / 16 / 4
    assert hausdorff_dt_loss(torch.zeros(1, 4, 4), corner_target(), alpha=1.0).item() == pytest.approx(expected,
                                                                                                         abs=1e-6)


def test_hausdorff_prediction_field_by_hand():
    # 2×2 RoI, target g = [[1, 0], [0, 0]], prediction p = [[0.75, 0.75], [0.25, 0.25]] (logits ±ln 3): the
    # thresholded prediction is the top row. d_G = [[1, 1], [1, √2]]; d_P = [[1, 1], [1, 1]].
    # (p − g)² = [[1/16, 9/16], [1/16, 1/16]]; d_P² + d_G² = [[2, 2], [2, 3]];
    # loss = (2/16 + 18/16 + 2/16 + 3/16) / 4 pixels / M² (4) = (25/16) / 16.
    ln3 = math.log(3)
    logits = torch.tensor([[[ln3, ln3], [-ln3, -ln3]]])
    target = torch.tensor([[[1.0, 0], [0, 0]]])
    assert hausdorff_dt_loss(logits, target).item() == pytest.approx(25 / 256, abs=1e-6)


@pytest.mark.parametrize("name", ["boundary", "hausdorff"])
def test_degenerate_rois_give_zero(name):
    loss = MASK_LOSSES[name]
    logits = torch.randn(2, 6, 6)
    degenerate = torch.stack([torch.zeros(6, 6), torch.ones(6, 6)])
    assert loss(logits, degenerate).item() == 0.0
    # Soft values that all binarise the same way are degenerate too; and a degenerate RoI still counts in the mean.
    assert loss(logits, degenerate * 0.4 + 0.55).item() == 0.0
    target = torch.zeros(3, 6, 6)
    target[0, 1:4, 1:4] = 1
    target[2] = 1
    logits = torch.randn(3, 6, 6)
    assert loss(logits, target).item() == pytest.approx(loss(logits[:1], target[:1]).item() / 3, abs=1e-7)


@pytest.mark.parametrize("name", sorted(MASK_LOSSES))
def test_no_rois_give_a_graph_attached_zero(name):
    logits = torch.zeros(0, 28, 28, requires_grad=True)
    loss = MASK_LOSSES[name](logits, torch.zeros(0, 28, 28))
    assert loss.item() == 0.0 and loss.dim() == 0 and loss.requires_grad
    loss.backward()
    assert logits.grad is not None and logits.grad.shape == logits.shape


def disc(m: int, cy: float, cx: float, r: float) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(m) + 0.5, torch.arange(m) + 0.5, indexing="ij")
    return (((yy - cy * m) ** 2 + (xx - cx * m) ** 2) < (r * m) ** 2).float()


@pytest.mark.parametrize("name", sorted(MASK_LOSSES))
def test_gradients_finite_and_float32(name):
    torch.manual_seed(0)
    target = torch.stack([disc(28, 0.5, 0.5, 0.3), disc(28, 0.3, 0.6, 0.2), torch.zeros(28, 28), torch.ones(28, 28)])
    logits = torch.randn(4, 28, 28, dtype=torch.float16, requires_grad=True)
    loss = MASK_LOSSES[name](logits, target.half())
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(MASK_LOSSES))
def test_28_and_56_compare(name):
    # The same shapes and the same (shifted, saturated) predictions at M = 28 and, upsampled ×2, at M = 56.
    target = torch.stack([disc(28, 0.5, 0.5, 0.3), disc(28, 0.4, 0.55, 0.2)])
    pred = torch.stack([disc(28, 0.55, 0.45, 0.3), disc(28, 0.45, 0.5, 0.25)])
    logits = (pred * 2 - 1) * 4
    up = lambda x: F.interpolate(x[:, None], scale_factor=2, mode="nearest")[:, 0]  # noqa: E731
    small, large = MASK_LOSSES[name](logits, target).item(), MASK_LOSSES[name](up(logits), up(target)).item()
    assert small != 0 and 0.5 <= large / small <= 2, (small, large)


def test_boundary_weight_ramp():
    # Kervadec et al.: 0.01, +0.01 per epoch (here per `every` steps).
    assert boundary_weight(0) == pytest.approx(0.01)
    assert boundary_weight(59, every=60) == pytest.approx(0.01)
    assert boundary_weight(60, every=60) == pytest.approx(0.02)
    assert boundary_weight(1000, start=0.0, increment=0.1, every=100) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="every"):
        boundary_weight(10, every=0)


def test_registry_and_default_weights():
    assert set(MASK_LOSSES) == set(DEFAULT_WEIGHTS) == {"dice", "lovasz", "boundary", "hausdorff"}
    assert DEFAULT_WEIGHTS["dice"].at(10_000) == 1.0
    ramp = DEFAULT_WEIGHTS["boundary"]
    assert ramp.at(0) == pytest.approx(0.01) and ramp.at(ramp.every) == pytest.approx(0.02)


@pytest.mark.parametrize("name", sorted(MASK_LOSSES))
def test_shapes_are_checked(name):
    with pytest.raises(ValueError, match=r"\[N, M, M\]"):
        MASK_LOSSES[name](torch.zeros(2, 28, 28), torch.zeros(2, 28, 27))
