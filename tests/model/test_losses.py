"""The Edge Agreement Loss against values worked out by hand; its weight and p refused by one rule everywhere.

Hand-derivation setup (used by most tests): M = 8, the target is the 4×4 square rows 2..5, cols 2..5; the
prediction is the same square shifted one pixel right (cols 3..6). Filters are linear, so
E(pred) − E(target) = E(pred − target), and pred − target is a +1 column segment (col 6, rows 2..5) and a
−1 segment (col 2). Their 3×3 responses do not overlap, so each |·|^p sum is twice that of one segment.
For one vertical segment of four ones (rows 2..5), away from the border:
  Sobel x: columns c±1 hold ±(x[i-1] + 2x[i] + x[i+1]) = ±[1, 3, 4, 4, 3, 1] for rows 1..6;
  Sobel y: columns c-1, c, c+1 hold (1, 2, 1) · (x[i-1] − x[i+1]) = ±1 at rows 1, 2, 5, 6.
"""

import math

import pytest
import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn
from torchvision.models.detection.roi_heads import RoIHeads

from edgercnn import add_edge_loss
from edgercnn.config import Config
from edgercnn.core.errors import ConfigError
from edgercnn.model.losses import GAUSSIAN_3X3, KERNELS, EdgeLoss, edge_agreement_loss, gaussian_smooth

from tests.clirunner import invoke, one_line_error


def shifted_square():
    target = torch.zeros(1, 8, 8)
    target[0, 2:6, 2:6] = 1
    pred = torch.zeros(1, 8, 8)
    pred[0, 2:6, 3:7] = 1
    return pred, target


# Sum of squared responses of ONE segment, per filter (derivations in the comments), ×2 segments,
# divided by channels × 64 pixels.
HAND_P2 = {
    # Sobel x: 2·(1+9+16+16+9+1) = 104; Sobel y: 4 rows · (1+4+1) = 24 → 128 per segment.
    "sobel": 2 * 128 / (2 * 64),
    # Prewitt x: columns c±1 hold ±[1,2,3,3,2,1] → 2·28 = 56; Prewitt y: 4 rows · 3 columns · 1 = 12 → 68.
    "prewitt": 2 * 68 / (2 * 64),
    # Kayyali: kernel 1 puts ±6(x[i-1] − x[i+1]) in columns c±1 → ±6 at rows 1, 2, 5, 6 → 2 · 4 · 36 = 288;
    # its mirror the same → 576.
    "kayyali": 2 * 576 / (2 * 64),
    # Roberts (2×2, padded bottom/right): each kernel has four +1 and four −1 → 8; two kernels → 16.
    "roberts": 2 * 16 / (2 * 64),
    # Laplace (8-neighbour): out = window sum − 9·x. Columns c±1: n(i) = [1,2,3,3,2,1] → 2·28 = 56;
    # column c: [1, −7, −6, −6, −7, 1] → 172; total 228.
    "laplace": 2 * 228 / 64,
    # Laplace (4-neighbour): columns c±1 hold x[i] → 2·4 = 8; column c: [1,−3,−2,−2,−3,1] → 28; total 36.
    "laplace4": 2 * 36 / 64,
}


def test_kernels_are_the_papers():
    assert KERNELS["sobel"][0] == ((1, 0, -1), (2, 0, -2), (1, 0, -1))  # eq. 2
    assert KERNELS["sobel"][1] == ((1, 2, 1), (0, 0, 0), (-1, -2, -1))
    assert KERNELS["laplace"][0] == ((1, 1, 1), (1, -8, 1), (1, 1, 1))  # eq. 4
    assert KERNELS["laplace4"][0] == ((0, 1, 0), (1, -4, 1), (0, 1, 0))  # eq. 3
    assert KERNELS["kayyali"][0] == ((6, 0, -6), (0, 0, 0), (-6, 0, 6))


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_perfect_prediction_is_zero(name):
    _, target = shifted_square()
    assert edge_agreement_loss(target.clone(), target, filters=(name,)).item() == 0.0


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_one_pixel_shift_matches_hand_value(name):
    pred, target = shifted_square()
    value = edge_agreement_loss(pred, target, filters=(name,), p=2)
    assert value.item() == pytest.approx(HAND_P2[name], rel=1e-6)


def test_combined_filters_stack_channels():
    pred, target = shifted_square()
    # S & L: 3 channels; sums 256 (Sobel) + 456 (Laplace) over 3 × 64 entries.
    value = edge_agreement_loss(pred, target, filters=("sobel", "laplace"))
    assert value.item() == pytest.approx((256 + 456) / (3 * 64))
    # Roberts mixes with 3×3 kernels: 4 channels, 32 + 256.
    value = edge_agreement_loss(pred, target, filters=("roberts", "sobel"))
    assert value.item() == pytest.approx((32 + 256) / (4 * 64))


def test_p_and_weight_scaling():
    pred, target = shifted_square()
    # p = 1: Sobel x |·| sums 2·16 = 32, Sobel y 4·4 = 16 → 48 per segment, 96 / 128.
    assert edge_agreement_loss(pred, target, p=1).item() == pytest.approx(96 / 128)
    # p = 4: Sobel x 2·(1+81+256+256+81+1) = 1352, Sobel y 4·(1+16+1) = 72 → 1424 per segment.
    assert edge_agreement_loss(pred, target, p=4).item() == pytest.approx(2 * 1424 / 128)
    # p = 3 is allowed (any p >= 1): Sobel x 2·(1+27+64+64+27+1)=368, y 4·(1+8+1)=40 → 408.
    assert edge_agreement_loss(pred, target, p=3).item() == pytest.approx(2 * 408 / 128)
    assert edge_agreement_loss(pred, target, weight=0.5).item() == pytest.approx(0.5 * HAND_P2["sobel"])
    assert edge_agreement_loss(pred, target, weight=16).item() == pytest.approx(16 * HAND_P2["sobel"])


def test_magnitude_channel():
    # A single pixel in a 5×5 prediction against an empty target: the Sobel responses are the kernels
    # rotated by 180°: squares sum 12 each; magnitude: 4 corners √2 and 4 edges 2 → squares 8 + 16 = 24.
    pred = torch.zeros(1, 5, 5)
    pred[0, 2, 2] = 1
    target = torch.zeros(1, 5, 5)
    value = edge_agreement_loss(pred, target, magnitude=True)
    assert value.item() == pytest.approx((12 + 12 + 24) / (3 * 25), abs=1e-5)
    with pytest.raises(ValueError, match="two-kernel"):
        edge_agreement_loss(pred, target, filters=("laplace",), magnitude=True)


def test_smoothing_modes():
    delta = torch.zeros(1, 5, 5)
    delta[0, 2, 2] = 1
    gauss = torch.zeros(1, 5, 5)
    gauss[0, 1:4, 1:4] = torch.tensor(GAUSSIAN_3X3)
    assert torch.allclose(gaussian_smooth(delta), gauss)
    assert gaussian_smooth(delta)[0, 2, 2].item() == pytest.approx(0.195346)
    # Smoothing the ground truth of a delta gives exactly the Gaussian patch: a prediction equal to it is perfect.
    assert edge_agreement_loss(gauss, delta, smooth="gt").item() == pytest.approx(0.0, abs=1e-12)
    assert edge_agreement_loss(delta, gauss, smooth="pred").item() == pytest.approx(0.0, abs=1e-12)
    assert edge_agreement_loss(delta, delta, smooth="both").item() == 0.0
    zero = torch.zeros(1, 5, 5)
    # "both" smooths the prediction too: against an empty target it is the unsmoothed loss of the Gaussian patch.
    both = edge_agreement_loss(delta, zero, smooth="both")
    assert both.item() == pytest.approx(edge_agreement_loss(gauss, zero).item())
    assert both.item() < edge_agreement_loss(delta, zero).item()  # smoothing spreads and weakens the edges


def test_weighted_cross_entropy_formulations():
    # pred = 0.5 on a 3×3 mask, target empty: pixel-wise BCE = ln 2. Laplace-4 of the constant 0.5 with zero
    # padding: 0.5·(in-bound neighbours − 4) = −1 at corners, −0.5 at edges, 0 at the centre; squared: 1, 0.25, 0.
    pred = torch.full((1, 3, 3), 0.5)
    target = torch.zeros(1, 3, 3)
    prod = edge_agreement_loss(pred, target, filters=("laplace4",), formulation="ce-product")
    assert prod.item() == pytest.approx(math.log(2) * (4 * 1 + 4 * 0.25) / 9, rel=1e-6)
    exp = edge_agreement_loss(pred, target, filters=("laplace4",), formulation="ce-exp")
    assert exp.item() == pytest.approx(math.log(2) * (4 * math.exp(0.25) + 4 * math.exp(0.0625) + 1) / 9, rel=1e-6)
    # With several channels the pixel-wise edge loss is their mean at each pixel.
    two = edge_agreement_loss(pred, target, filters=("laplace4", "laplace4"), formulation="ce-product")
    assert two.item() == pytest.approx(prod.item(), rel=1e-6)
    for form in ("ce-product", "ce-exp"):
        _, sq = shifted_square()
        assert edge_agreement_loss(sq.clone(), sq, formulation=form).item() == pytest.approx(0.0, abs=1e-7)


def test_gradient_and_empty_batch():
    pred, target = shifted_square()
    pred = pred.clamp(0.1, 0.9).requires_grad_(True)
    edge_agreement_loss(pred, target).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    empty = torch.zeros(0, 28, 28, requires_grad=True)
    loss = edge_agreement_loss(empty, torch.zeros(0, 28, 28))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()


def test_56x56_masks():
    target = torch.zeros(3, 56, 56)
    target[:, 10:40, 12:30] = 1
    pred = torch.roll(target, 1, dims=2)
    # Vertical edges of length 30 at cols 12 and 29 move: the Sobel x response per segment is
    # [1, 3, 4 × 28, 3, 1] on both sides → 2·(1+9+16·28+9+1) = 936; Sobel y: 4 rows · 6 = 24 → 960.
    # pred − target has two opposite segments at cols 12 and 30 (far apart); 3 RoIs.
    value = edge_agreement_loss(pred, target)
    assert value.item() == pytest.approx(2 * 960 / (2 * 56 * 56), rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"filters": ("canny",)}, "allowed"),
        ({"filters": ()}, "at least one"),
        ({"p": 0.5}, "p: must be >= 1"),
        ({"smooth": "pre"}, "smooth"),
        ({"formulation": "l2"}, "formulation"),
    ],
)
def test_invalid_arguments(kwargs, match):
    pred, target = shifted_square()
    with pytest.raises(ValueError, match=match):
        edge_agreement_loss(pred, target, **kwargs)


def test_shape_mismatch():
    with pytest.raises(ValueError, match=r"\[N, M, M\]"):
        edge_agreement_loss(torch.zeros(1, 8, 8), torch.zeros(1, 7, 7))
    with pytest.raises(ValueError, match=r"\[N, M, M\]"):
        edge_agreement_loss(torch.zeros(8, 8), torch.zeros(8, 8))


def test_edge_loss_object_matches_function():
    pred, target = shifted_square()
    loss = EdgeLoss(filters=("prewitt",), p=1, weight=2.0)
    assert loss(pred, target).item() == pytest.approx(2 * edge_agreement_loss(pred, target, filters=("prewitt",), p=1).item())
    with pytest.raises(ValueError):
        EdgeLoss(filters=("nope",))


# ---- edge-loss weight and p: one rule -------------------------------------------------------------------------------


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
