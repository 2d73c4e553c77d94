"""The Edge Agreement Loss (paper section 3) as pure tensor functions.

Every kernel is applied as a cross-correlation (``F.conv2d``) with zero 'same' padding; all kernel
responses are stacked as channels and computed with one convolution. The 2×2 Roberts kernels are embedded
in the bottom-right of a 3×3 kernel, which is exactly "pad the extra row/column at the bottom/right", so
Roberts mixes freely with the 3×3 filters.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from edgercnn.model.vocab import (CE_EXP, FORMULATIONS, KERNELS, SMOOTH_MODES,  # noqa: F401 (owned there)
                                  check_edge_args, check_weight)

#: Axis names of the two kernels of a two-kernel filter: x, y, except the diagonal ones (Roberts, Kayyali).
KERNEL_AXES = {"roberts": ("d1", "d2"), "kayyali": ("d1", "d2")}
#: The 3×3 Gaussian the authors used for section 5.6.1.
GAUSSIAN_3X3 = ((0.077847, 0.123317, 0.077847), (0.123317, 0.195346, 0.123317), (0.077847, 0.123317, 0.077847))
#: Added under the square root of the gradient magnitude so its gradient is finite at flat regions.
MAGNITUDE_EPS = 1e-12


def _as_3x3(kernel: tuple[tuple[float, ...], ...]) -> list[list[float]]:
    if len(kernel) == 3:
        return [list(row) for row in kernel]
    # 2×2: place at rows/cols 1..2 so out[i, j] = sum k[a, b] * x[i + a, j + b] (extra pad bottom/right).
    out = [[0.0] * 3 for _ in range(3)]
    for a in range(2):
        for b in range(2):
            out[1 + a][1 + b] = float(kernel[a][b])
    return out


@lru_cache(maxsize=64)
def _filter_bank(filters: tuple[str, ...], device: torch.device, dtype: torch.dtype) -> Tensor:
    kernels = [_as_3x3(k) for name in filters for k in KERNELS[name]]
    return torch.tensor(kernels, device=device, dtype=dtype)[:, None]  # [C, 1, 3, 3]


@lru_cache(maxsize=16)
def _gaussian(device: torch.device, dtype: torch.dtype) -> Tensor:
    return torch.tensor(GAUSSIAN_3X3, device=device, dtype=dtype)[None, None]


def edge_maps(masks: Tensor, filters: tuple[str, ...], magnitude: bool = False) -> Tensor:
    """Edge responses of masks [N, M, M] → [N, C, M, M], one channel per kernel (+ magnitudes, section 5.6.3)."""
    bank = _filter_bank(filters, masks.device, masks.dtype)
    edges = F.conv2d(masks[:, None], bank, padding=1)
    if not magnitude:
        return edges
    extra, c = [], 0
    for name in filters:
        n = len(KERNELS[name])
        if n == 2:
            extra.append(torch.sqrt(edges[:, c] ** 2 + edges[:, c + 1] ** 2 + MAGNITUDE_EPS))
        c += n
    return torch.cat([edges, torch.stack(extra, dim=1)], dim=1)


def gaussian_smooth(masks: Tensor) -> Tensor:
    """3×3 Gaussian (section 5.6.1) with zero 'same' padding over masks [N, M, M]."""
    return F.conv2d(masks[:, None], _gaussian(masks.device, masks.dtype), padding=1)[:, 0]


def filter_input(masks: Tensor, smooth: str | None, role: str) -> Tensor:
    """What the filters see of masks [N, M, M] in ``role`` ("gt" or "pred"): Gaussian-smoothed when ``smooth``
    is that role or "both" (section 5.6.1), else the masks themselves."""
    return gaussian_smooth(masks) if smooth in (role, "both") else masks


def channel_names(filters: tuple[str, ...], magnitude: bool) -> list[str]:
    """Names of ``edge_maps``' channels in its order: each kernel, then a magnitude per two-kernel filter."""
    names = []
    for f in filters:
        names += [f"{f} {a}" for a in KERNEL_AXES.get(f, ("x", "y"))] if len(KERNELS[f]) == 2 else [f]
    if magnitude:
        names += [f"{f} magnitude" for f in filters if len(KERNELS[f]) == 2]
    return names


def edge_distance(pred_edges: Tensor, target_edges: Tensor, p: float) -> Tensor:
    """The per-pixel, per-channel |E(pred) − E(target)|^p of eq. 5 (no p-th root), before any mean."""
    diff = (pred_edges - target_edges).abs()
    return diff.square() if p == 2 else diff.pow(p)


def edge_agreement_loss(
    pred: Tensor,
    target: Tensor,
    *,
    filters=("sobel",),
    p: float = 2.0,
    weight: float = 1.0,
    smooth: str | None = None,
    magnitude: bool = False,
    formulation: str = "lp",
    ce_exp: str = "paper",
) -> Tensor:
    """Edge Agreement Loss between predicted mask probabilities and matched ground-truth masks.

    Args:
        pred: [N, M, M] sigmoid probabilities of each positive RoI's ground-truth class.
        target: [N, M, M] ground-truth masks in [0, 1] (torchvision's RoIAlign-projected targets).
        filters: kernel names (``KERNELS``), alone or combined; responses stacked as channels.
        p: exponent of the L^p distance (eq. 5), without the p-th root, as the authors' code computes it.
        weight: the factor α the loss is multiplied by (section 5.3).
        smooth: None, "gt", "pred" or "both": Gaussian-smooth those masks before the filters (section 5.6.1).
        magnitude: add sqrt(Ex² + Ey²) per two-kernel filter as an extra channel (section 5.6.3).
        formulation: "lp" = weight · mean |E(pred) − E(target)|^p over RoIs, pixels and channels;
            "ce-product" = weight · mean(L_mask-pw · L_edge-pw); "ce-exp" = weight · mean(L_mask-pw ·
            exp(L_edge-pw / 4)) (section 5.6.3), with L_edge-pw the channel mean of |ΔE|^p at each pixel and
            L_mask-pw the pixel-wise binary cross-entropy of pred against target.
        ce_exp: "paper" as above, or "authors": mean(L_mask-pw · exp(weight · L_edge-pw / 16)) (``CE_EXP``).

    Returns a scalar; N = 0 gives a zero still attached to ``pred``'s graph.
    """
    filters = check_edge_args(filters, p, smooth, magnitude, formulation)
    check_weight(weight)
    return _edge_loss(pred, target, filters, p, weight, smooth, magnitude, formulation, ce_exp)


def _edge_loss(pred: Tensor, target: Tensor, filters: tuple[str, ...], p: float, weight: float, smooth: str | None,
               magnitude: bool, formulation: str, ce_exp: str = "paper") -> Tensor:
    """``edge_agreement_loss`` after its options were checked (the per-step path of ``EdgeLoss``)."""
    if pred.shape != target.shape or pred.dim() != 3 or pred.shape[-1] != pred.shape[-2]:
        raise ValueError(f"pred and target must both be [N, M, M]; got {tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.shape[0] == 0:
        return pred.sum() * 0.0
    target = target.to(pred.dtype)
    gt = filter_input(target, smooth, "gt")
    pr = filter_input(pred, smooth, "pred")
    # One convolution over pred and target together.
    edges = edge_maps(torch.cat([pr, gt]), filters, magnitude)
    dist = edge_distance(edges[: pred.shape[0]], edges[pred.shape[0]:], p)
    if formulation == "lp":
        return weight * dist.mean()
    edge_pw = dist.mean(dim=1)  # [N, M, M]
    mask_pw = F.binary_cross_entropy(pred, target, reduction="none")  # log clamped at -100 by torch
    if formulation == "ce-product":
        return weight * (mask_pw * edge_pw).mean()
    if ce_exp == "authors":
        return (mask_pw * torch.exp(weight * edge_pw / 16)).mean()
    return weight * (mask_pw * torch.exp(edge_pw / 4)).mean()


@dataclass(frozen=True)
class EdgeLoss:
    """The edge-loss settings of one run, callable on (pred, target); None of it is learnable."""

    filters: tuple[str, ...] = ("sobel",)
    p: float = 2.0
    weight: float = 1.0
    smooth: str | None = None
    magnitude: bool = False
    formulation: str = "lp"
    ce_exp: str = "paper"  # CE_EXP

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "filters", check_edge_args(self.filters, self.p, self.smooth, self.magnitude, self.formulation)
        )
        check_weight(self.weight)
        if self.ce_exp not in CE_EXP:
            raise ValueError(f"ce_exp: got {self.ce_exp!r}; allowed: {', '.join(CE_EXP)}")

    @classmethod
    def from_config(cls, cfg) -> "EdgeLoss":
        """The edge loss of a run config (``edgercnn.config.Config``: filters, p, alpha, smooth, magnitude,
        formulation); read here, beside the constructor, so no one else picks these keys."""
        return cls(filters=tuple(cfg.filters), p=cfg.p, weight=cfg.alpha, smooth=cfg.smooth, magnitude=cfg.magnitude,
                   formulation=cfg.formulation, ce_exp=cfg.ce_exp)

    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        return _edge_loss(pred, target, self.filters, self.p, self.weight, self.smooth, self.magnitude,
                          self.formulation, self.ce_exp)
