"""The Edge Agreement Loss in anyone's torchvision Mask R-CNN: ``add_edge_loss(model)``.

The edge term sits at the mask head (the paper's Edge Agreement Head): ``model.roi_heads`` becomes an
``EdgeRoIHeads`` (``edgercnn.model.rcnn``) that shares the model's modules and settings and adds ``loss_edge`` to the
training loss dict. It adds no parameters, so the state_dict stays torchvision's and loads into a plain
``MaskRCNN``; inference is torchvision's.
"""

from __future__ import annotations

from collections.abc import Sequence

from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.roi_heads import RoIHeads

from edgercnn.core.errors import EdgeRCNNError
from edgercnn.model.losses import EdgeLoss
from edgercnn.model.rcnn import EdgeRoIHeads, to_edge_roi_heads


def add_edge_loss(model: MaskRCNN, filters: str | Sequence[str] = ("sobel",), p: float = 2.0, alpha: float = 1.0,
                  smooth: str | None = None, magnitude: bool = False, formulation: str = "lp") -> MaskRCNN:
    """Make ``model`` (any torchvision ``MaskRCNN``) train with the Edge Agreement Loss; returns it, changed in place.

    The training loss dict gains ``loss_edge`` (already multiplied by ``alpha``; sum it with the others). Weights,
    heads and settings (thresholds, matcher, sampler, box coder, transform) are kept; the state_dict keys do not
    change. Options are ``edgercnn.model.losses.EdgeLoss``'s (``alpha`` is its ``weight``): ``filters`` from
    ``losses.KERNELS``, ``p`` the L^p exponent, ``smooth`` None/"gt"/"pred"/"both", ``magnitude``, ``formulation``
    "lp"/"ce-product"/"ce-exp". Calling it again replaces the edge-loss settings (the same call twice is a no-op).
    """
    if not isinstance(model, MaskRCNN):
        raise EdgeRCNNError(f"add_edge_loss: needs a torchvision MaskRCNN, got {type(model).__name__}; build one "
                            "with torchvision.models.detection (e.g. maskrcnn_resnet50_fpn_v2) or MaskRCNN(...)")
    heads = model.roi_heads
    if not isinstance(heads, EdgeRoIHeads) and type(heads) is not RoIHeads:
        raise EdgeRCNNError(f"add_edge_loss: model.roi_heads is a {type(heads).__name__}, a subclass of "
                            "torchvision's RoIHeads whose overrides would be lost; use torchvision's RoIHeads")
    edge_loss = EdgeLoss(filters=filters, p=p, weight=alpha, smooth=smooth, magnitude=magnitude,
                         formulation=formulation)
    if isinstance(heads, EdgeRoIHeads):  # ours, or converted before: only the loss changes
        heads.edge_loss = edge_loss
    else:
        model.roi_heads = to_edge_roi_heads(heads, edge_loss=edge_loss)
    return model
