"""The mask losses (model/mask_losses.py) against vetted implementations, on random RoIs (optional extra
``reference``: ``pip install -e .[reference]``; each test is skipped when its library is missing).

Tested with MONAI 1.6.1 and kornia 0.9.0. Our distances are in units of the RoI side M; the references' in pixels,
so the boundary loss is compared ×M and the Hausdorff loss ×M^α.
"""

import pytest
import torch
import torch.nn.functional as F

from edgercnn.model.mask_losses import (DICE_EPS, boundary_loss, dice_loss, hausdorff_dt_loss, lovasz_hinge_loss)

TOL = 1e-5


def close(ours: torch.Tensor, ref: torch.Tensor) -> bool:
    """Equal to 1e-5, relative for values above 1 (the Hausdorff loss ×M² in pixels reaches tens: float32 sums)."""
    return abs(ours.item() - ref.item()) <= TOL * max(1.0, abs(ref.item()))


def random_rois(n: int, m: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits and soft targets like torchvision's RoIAlign-projected masks: random discs, box-blurred so
    their rims hold values in (0, 1); one RoI all background and one all foreground (degenerate)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(m).float(), torch.arange(m).float(), indexing="ij")
    centre = torch.rand(n, 2, 1, 1, generator=g) * m
    radius = (0.1 + 0.4 * torch.rand(n, 1, 1, generator=g)) * m
    masks = (((yy - centre[:, 0]) ** 2 + (xx - centre[:, 1]) ** 2) < radius ** 2).float()
    masks[0], masks[1] = 0, 1
    target = F.avg_pool2d(masks[:, None], 3, stride=1, padding=1, count_include_pad=False)[:, 0]
    logits = 3 * torch.randn(n, m, m, generator=g) + 4 * (masks * 2 - 1)
    logits[2] = -5 - torch.rand(m, m, generator=g)  # a prediction that is all background (Hausdorff's d_P = 0)
    return logits, target


CASES = [(16, 28, 0), (16, 56, 1), (32, 28, 2)]


def solo_dice_loss(input, target):
    """WXinlong/SOLO mmdet/models/anchor_heads/solo_head.py ``dice_loss`` (input: probabilities), copied; mean."""
    input = input.contiguous().view(input.size()[0], -1)
    target = target.contiguous().view(target.size()[0], -1).float()
    a = torch.sum(input * target, 1)
    b = torch.sum(input * input, 1) + 0.001
    c = torch.sum(target * target, 1) + 0.001
    d = (2 * a) / (b + c)
    return (1 - d).mean()


@pytest.mark.parametrize("n,m,seed", CASES)
def test_dice_equals_monai_and_solo(n, m, seed):
    monai_losses = pytest.importorskip("monai.losses")
    logits, target = random_rois(n, m, seed)
    ours = dice_loss(logits, target)
    # MONAI: 1 − (2·Σpg + smooth_nr) / (Σg² + Σp² + smooth_dr): SOLO's ε twice in the denominator.
    ref = monai_losses.DiceLoss(sigmoid=True, squared_pred=True, smooth_nr=0.0, smooth_dr=2 * DICE_EPS)(
        logits[:, None], target[:, None])
    assert close(ours, ref)
    assert close(ours, solo_dice_loss(torch.sigmoid(logits), target))


@pytest.mark.parametrize("n,m,seed", CASES)
def test_lovasz_equals_kornia(n, m, seed):
    kornia_losses = pytest.importorskip("kornia.losses")
    logits, target = random_rois(n, m, seed)
    ours = lovasz_hinge_loss(logits, target)
    ref = kornia_losses.lovasz_hinge_loss(logits[:, None], (target > 0.5).long())
    assert close(ours, ref)


def livia_boundary_loss(logits, target):
    """LIVIAETS/boundary-loss: one_hot2dist (utils.py: edt(neg)·neg − (edt(pos) − 1)·pos, left 0 unless pos.any())
    and SurfaceLoss (losses.py: mean of probs · dist); all-foreground RoIs set to 0 as ours and MONAI's."""
    from scipy.ndimage import distance_transform_edt as distance
    pos = (target > 0.5).numpy()
    dist = torch.zeros_like(target)
    for i, posmask in enumerate(pos):
        if posmask.any() and not posmask.all():
            negmask = ~posmask
            dist[i] = torch.from_numpy(distance(negmask) * negmask - (distance(posmask) - 1) * posmask).float()
    return (torch.sigmoid(logits) * dist).mean()


@pytest.mark.parametrize("n,m,seed", CASES)
def test_boundary_equals_monai(n, m, seed):
    monai_losses = pytest.importorskip("monai.losses")
    logits, target = random_rois(n, m, seed)
    ours = boundary_loss(logits, target) * m
    if hasattr(monai_losses, "BoundaryLoss"):
        ref = monai_losses.BoundaryLoss(sigmoid=True)(logits[:, None], target[:, None])
        assert close(ours, ref)
    assert close(ours, livia_boundary_loss(logits, target))


@pytest.mark.parametrize("n,m,seed", CASES)
def test_hausdorff_equals_monai(n, m, seed):
    monai_losses = pytest.importorskip("monai.losses")
    logits, target = random_rois(n, m, seed)
    ref_loss = monai_losses.HausdorffDTLoss(alpha=2.0, include_background=True, sigmoid=True, reduction="none")
    ours = hausdorff_dt_loss(logits, target) * m ** 2
    per_roi = ref_loss(logits[:, None], target[:, None]).flatten()
    # Ours sets RoIs whose target is all fg or all bg (RoIs 0 and 1) to 0; MONAI keeps their d_P term.
    ref = torch.cat([torch.zeros(2), per_roi[2:]]).mean()
    assert close(ours, ref)
    # On non-degenerate targets (RoI 2's prediction all background: d_P = 0 in both) the mean is MONAI's.
    ours_rest = hausdorff_dt_loss(logits[2:], target[2:]) * m ** 2
    ref_rest = monai_losses.HausdorffDTLoss(alpha=2.0, include_background=True, sigmoid=True)(logits[2:, None], target[2:, None])
    assert close(ours_rest, ref_rest)
