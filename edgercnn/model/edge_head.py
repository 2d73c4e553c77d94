"""The edge loss and the other boundary-aware mask losses in anyone's torchvision Mask R-CNN, one call each:
``add_edge_loss(model)`` and ``add_mask_losses(model, "dice")``.

The terms sit at the mask head (the paper's Edge Agreement Head): ``model.roi_heads`` becomes an ``EdgeRoIHeads``
(``edgercnn.model.rcnn``) that shares the model's modules and settings and adds ``loss_edge`` / ``loss_<name>`` to
the training loss dict. The pure losses add no parameters, so the state_dict stays torchvision's and loads into a
plain ``MaskRCNN``; inference is torchvision's. BMask R-CNN's boundary branch (``"bmask"``) is a head: it adds its
own parameters (``edgercnn.model.bmask``) and is dropped at inference.
"""

from __future__ import annotations

from collections.abc import Sequence

from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.roi_heads import RoIHeads

from edgercnn.core.errors import ConfigError, EdgeRCNNError
from edgercnn.model.bmask import add_bmask
from edgercnn.model.losses import EdgeLoss
from edgercnn.model.mask_terms import BOUNDARY_RAMP_STEPS, MASK_TERMS, MaskTerms
from edgercnn.model.rcnn import EdgeRoIHeads, to_edge_roi_heads


def _edge_heads(model: MaskRCNN, caller: str) -> EdgeRoIHeads:
    """``model.roi_heads`` as an ``EdgeRoIHeads`` (converted in place the first time)."""
    if not isinstance(model, MaskRCNN):
        raise EdgeRCNNError(f"{caller}: needs a torchvision MaskRCNN, got {type(model).__name__}; build one "
                            "with torchvision.models.detection (e.g. maskrcnn_resnet50_fpn_v2) or MaskRCNN(...)")
    heads = model.roi_heads
    if not isinstance(heads, EdgeRoIHeads) and type(heads) is not RoIHeads:
        raise EdgeRCNNError(f"{caller}: model.roi_heads is a {type(heads).__name__}, a subclass of "
                            "torchvision's RoIHeads whose overrides would be lost; use torchvision's RoIHeads")
    if not isinstance(heads, EdgeRoIHeads):
        model.roi_heads = heads = to_edge_roi_heads(heads)
    return heads


def add_edge_loss(model: MaskRCNN, filters: str | Sequence[str] = ("sobel",), p: float = 2.0, alpha: float = 1.0,
                  smooth: str | None = None, magnitude: bool = False, formulation: str = "lp") -> MaskRCNN:
    """Make ``model`` (any torchvision ``MaskRCNN``) train with the Edge Agreement Loss; returns it, changed in place.

    The training loss dict gains ``loss_edge`` (already multiplied by ``alpha``; sum it with the others). Weights,
    heads and settings (thresholds, matcher, sampler, box coder, transform) are kept; the state_dict keys do not
    change. Options are ``edgercnn.model.losses.EdgeLoss``'s (``alpha`` is its ``weight``): ``filters`` from
    ``losses.KERNELS``, ``p`` the L^p exponent, ``smooth`` None/"gt"/"pred"/"both", ``magnitude``, ``formulation``
    "lp"/"ce-product"/"ce-exp". Calling it again replaces the edge-loss settings (the same call twice is a no-op);
    ``add_mask_losses`` adds other terms beside it.
    """
    try:
        edge_loss = EdgeLoss(filters=filters, p=p, weight=alpha, smooth=smooth, magnitude=magnitude,
                             formulation=formulation)
    except ValueError as err:
        raise ConfigError(f"add_edge_loss: {err}") from None
    _edge_heads(model, "add_edge_loss").edge_loss = edge_loss
    return model


def add_mask_losses(model: MaskRCNN, *names: str, weights: dict[str, float] | None = None,
                    boundary_ramp_steps: int = BOUNDARY_RAMP_STEPS) -> MaskRCNN:
    """Make ``model`` (any torchvision ``MaskRCNN``) train with boundary-aware mask losses beside its BCE; returns
    it, changed in place: ``add_mask_losses(model, "dice")``.

    ``names`` from ``mask_terms.MASK_TERMS``: ``dice`` (soft Dice), ``lovasz`` (Lovász hinge), ``boundary``
    (Kervadec's boundary loss, its weight ramped by 0.01 every ``boundary_ramp_steps`` training forwards), ``hausdorff`` (Karimi's distance-transform loss), ``bmask`` (BMask R-CNN's boundary branch: a head with
    its own parameters, swapped into ``model.roi_heads.mask_head``). The training loss dict gains ``loss_<name>``
    per term, already weighted (``weights``: constant weights over ``mask_terms.TERM_WEIGHTS``); sum it with the others. The
    schedule's step is ``model.roi_heads.loss_step`` (counted per training forward; set it when you resume).
    Calling it again replaces the set of terms (no names: none; a BMask head once added stays, without its
    loss); the edge loss (``add_edge_loss``) is kept.
    """
    try:
        terms = MaskTerms(tuple(names), tuple((weights or {}).items()), boundary_ramp_steps) if names else None
    except ValueError as err:
        raise ConfigError(f"add_mask_losses: {err}") from None
    heads = _edge_heads(model, "add_mask_losses")
    if terms is not None and terms.bmask:
        add_bmask(model)
    heads.mask_terms = terms
    return model


__all__ = ["add_edge_loss", "add_mask_losses", "MASK_TERMS"]
