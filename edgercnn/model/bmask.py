"""BMask R-CNN's boundary-preserving mask head (Cheng et al., ECCV 2020) as a torchvision seam.

Reference: hustvl/BMaskR-CNN at c74b0bd, ``projects/BMaskR-CNN/bmaskrcnn/mask_head.py`` (cited as mask_head.py:L)
and ``roi_heads.py``. ``add_bmask`` puts a ``BMaskHead`` in place of torchvision's ``roi_heads.mask_head``: its
``forward(x)`` returns the fused mask features that the unchanged ``roi_heads.mask_predictor`` turns into mask
logits (so torchvision's ``mask_predictor(mask_head(x))`` and its inference path keep working); in training mode
it also keeps the boundary logits of its last call, which the RoI heads' training step takes with
``pop_boundary_logits`` and scores with ``bmask_loss``. At inference the boundary output is not computed.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgercnn.core.errors import EdgeRCNNError

#: mask_head.py:33-35: the 8-neighbour Laplacian that marks the boundary pixels of a mask target.
LAPLACIAN = ((-1.0, -1.0, -1.0), (-1.0, 8.0, -1.0), (-1.0, -1.0, -1.0))
#: mask_head.py:39-40: a pixel is boundary when the Laplacian of the target exceeds this.
BOUNDARY_THRESHOLD = 0.1
#: mask_head.py:17: the Dice smoothing term (added to numerator and denominator).
DICE_SMOOTH = 1.0
#: config.py:11 (MODEL.BOUNDARY_MASK_HEAD.NUM_CONV): 3×3 convs of the boundary branch.
NUM_BOUNDARY_CONVS = 2


def _conv_block(template: nn.Sequential, in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """A copy of ``template`` (one of torchvision's ``Conv2dNormActivation`` blocks: conv, [norm], ReLU) with a new
    ``kernel_size`` conv (stride 1, 'same' padding, no dilation) and fresh norm parameters, initialised as the
    reference's ``c2_msra_fill`` (mask_head.py:236-239: Kaiming normal, fan_out, bias 0)."""
    block = copy.deepcopy(template)
    old = block[0]
    block[0] = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=old.bias is not None)
    nn.init.kaiming_normal_(block[0].weight, mode="fan_out", nonlinearity="relu")
    if block[0].bias is not None:
        nn.init.zeros_(block[0].bias)
    for module in list(block)[1:]:
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return block


class BMaskHead(nn.Module):
    """torchvision's ``MaskRCNNHeads`` (kept as the submodule ``mask_fcns``, its keys unchanged beneath it) plus
    the reference's boundary branch and mask↔boundary fusion (``BoundaryPreservingHead``, mask_head.py:140-265):

    - ``mask_fcns``: the 4 mask convs (mask_head.py:154-169, 249-250);
    - ``downsample``: 3×3 conv on the boundary input (mask_head.py:180-188, 252);
    - ``mask_to_boundary``: 1×1 conv, added to the boundary features (mask_head.py:206-214, 254);
    - ``boundary_fcns``: 2 3×3 convs (mask_head.py:189-204, 255-256);
    - ``boundary_to_mask``: 1×1 conv, added to the mask features (mask_head.py:216-224, 258);
    - ``mask_final_fusion``: 3×3 conv on the fused mask features (mask_head.py:171-178, 259), the output;
    - ``boundary_deconv`` (2×2 stride-2 transposed conv + ReLU, once per upsampling of the mask predictor) and
      ``boundary_predictor`` (1×1 conv to the mask predictor's classes, normal std 0.001, bias 0): the boundary
      logits (mask_head.py:231-234, 241-246, 264-265). The mask deconv and predictor are torchvision's
      ``mask_predictor``, outside this module (mask_head.py:226-229, 261-262).

    All new convs use the wrapped head's block type (so its norm: none, GroupNorm, BatchNorm) and width.
    One deviation, forced by the seam: the reference pools the boundary input separately (P2 only, 28×28) and
    its ``downsample`` has stride 2 (roi_heads.py:53-58, 91); torchvision hands the mask head only the 14×14
    multi-level pooled RoI features, so the boundary branch starts from those and ``downsample`` has stride 1.
    """

    def __init__(self, mask_fcns: nn.Sequential, num_classes: int, upsample: int = 1,
                 deconv_channels: int | None = None, num_boundary_convs: int = NUM_BOUNDARY_CONVS):
        """``num_classes``: the mask predictor's outputs; ``upsample``: its 2× deconvs (1: 14 → 28, 2: → 56);
        ``deconv_channels``: the width of its deconvs (default: the mask head's)."""
        super().__init__()
        convs = [m for m in mask_fcns.modules() if isinstance(m, nn.Conv2d)]
        blocks = list(mask_fcns.children()) if isinstance(mask_fcns, nn.Sequential) else []
        template = blocks[-1] if blocks else None
        if not convs or not isinstance(template, nn.Sequential) or not isinstance(template[0], nn.Conv2d):
            raise EdgeRCNNError(f"BMask: the mask head is a {type(mask_fcns).__name__}, not torchvision's "
                                "MaskRCNNHeads (a Sequential of conv blocks); build the model with that mask head")
        in_channels, dim = convs[0].in_channels, convs[-1].out_channels
        deconv_channels = deconv_channels or dim
        self.mask_fcns = mask_fcns
        self.downsample = _conv_block(template, in_channels, dim, 3)
        self.mask_to_boundary = _conv_block(template, dim, dim, 1)
        self.boundary_fcns = nn.Sequential(*(_conv_block(template, dim, dim, 3) for _ in range(num_boundary_convs)))
        self.boundary_to_mask = _conv_block(template, dim, dim, 1)
        self.mask_final_fusion = _conv_block(template, dim, dim, 3)
        layers: list[nn.Module] = []
        for i in range(upsample):
            layers += [nn.ConvTranspose2d(dim if i == 0 else deconv_channels, deconv_channels, 2, 2, 0), nn.ReLU()]
        self.boundary_deconv = nn.Sequential(*layers)
        self.boundary_predictor = nn.Conv2d(deconv_channels, num_classes, 1)
        for m in self.boundary_deconv.modules():
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.boundary_predictor.weight, std=0.001)
        nn.init.zeros_(self.boundary_predictor.bias)
        #: [N, C, M, M] boundary logits of the last training-mode forward (None in eval mode or once popped).
        self.boundary_logits: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        """RoI features [N, C_in, S, S] → fused mask features [N, D, S, S] (mask_head.py:248-259)."""
        mask = self.mask_fcns(x)
        boundary = self.downsample(x) + self.mask_to_boundary(mask)
        boundary = self.boundary_fcns(boundary)
        mask = self.mask_final_fusion(self.boundary_to_mask(boundary) + mask)
        self.boundary_logits = self.boundary_predictor(self.boundary_deconv(boundary)) if self.training else None
        return mask

    def __getstate__(self):
        # copy.deepcopy (EMA, checkpoint copies) cannot copy a non-leaf tensor: the last logits are not state
        return {**self.__dict__, "boundary_logits": None}

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # a plain torchvision state_dict holds the mask convs at <prefix>0.0.weight...: move them under mask_fcns
        for key in [k for k in state_dict if k.startswith(prefix) and k[len(prefix):].split(".")[0].isdigit()]:
            state_dict[f"{prefix}mask_fcns.{key[len(prefix):]}"] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


def add_bmask(model: nn.Module) -> nn.Module:
    """Put a ``BMaskHead`` in place of ``model.roi_heads.mask_head`` (torchvision ``MaskRCNN``), in place; a second
    call changes nothing. The existing mask convs and their weights move to ``roi_heads.mask_head.mask_fcns.*``
    (a plain torchvision state_dict still loads: its ``roi_heads.mask_head.<i>.*`` keys are mapped there); the
    keys added under ``roi_heads.mask_head.`` are ``downsample``, ``mask_to_boundary``, ``boundary_fcns.{0,1}``,
    ``boundary_to_mask``, ``mask_final_fusion`` (each ``.0.weight`` [+ ``.0.bias`` without a norm, + the norm's
    parameters and buffers as ``.1.*``), ``boundary_deconv.{0,2,...}.{weight,bias}`` and
    ``boundary_predictor.{weight,bias}``. The boundary output has the mask predictor's classes and resolution
    (one 2× deconv per transposed conv in the predictor). A model without it keeps torchvision's keys."""
    heads = getattr(model, "roi_heads", None)
    if heads is None or getattr(heads, "mask_head", None) is None or getattr(heads, "mask_predictor", None) is None:
        raise EdgeRCNNError(f"add_bmask: {type(model).__name__} has no roi_heads.mask_head/mask_predictor; "
                            "pass a torchvision MaskRCNN")
    if isinstance(heads.mask_head, BMaskHead):
        return model
    predictor = heads.mask_predictor
    deconvs = [m for m in predictor.modules() if isinstance(m, nn.ConvTranspose2d)]
    logits = [m for m in predictor.modules() if isinstance(m, nn.Conv2d)]
    if not logits:
        raise EdgeRCNNError(f"add_bmask: the mask predictor {type(predictor).__name__} has no conv to read the "
                            "number of classes from; use torchvision's MaskRCNNPredictor")
    old = heads.mask_head
    head = BMaskHead(old, num_classes=logits[-1].out_channels, upsample=max(len(deconvs), 1),
                     deconv_channels=deconvs[-1].out_channels if deconvs else None)
    param = next(old.parameters(), None)
    if param is not None:
        head = head.to(device=param.device, dtype=param.dtype)
    heads.mask_head = head.train(old.training)
    return model


def bmask_head_of(model_or_head: nn.Module) -> BMaskHead | None:
    """The ``BMaskHead`` of a MaskRCNN, of its ``roi_heads`` or the head itself; None without one."""
    for obj in (model_or_head, getattr(model_or_head, "roi_heads", None)):
        head = obj if isinstance(obj, BMaskHead) else getattr(obj, "mask_head", None)
        if isinstance(head, BMaskHead):
            return head
    return None


def pop_boundary_logits(model_or_head: nn.Module) -> Tensor:
    """The boundary logits [N, C, M, M] of the BMask head's last training-mode forward, cleared so that a step
    never scores a stale output (``model_or_head``: a MaskRCNN, its ``roi_heads`` or the ``BMaskHead``)."""
    head = bmask_head_of(model_or_head)
    if head is None:
        raise EdgeRCNNError(f"pop_boundary_logits: {type(model_or_head).__name__} has no BMask head; "
                            "call add_bmask(model) first")
    logits, head.boundary_logits = head.boundary_logits, None
    if logits is None:
        raise EdgeRCNNError("pop_boundary_logits: the BMask head holds no boundary logits; run its forward in "
                            "training mode first (each output can be taken once)")
    return logits


def boundary_targets(mask_targets: Tensor) -> Tensor:
    """Boundary targets [N, M, M] (0/1, the targets' dtype) of mask targets [N, M, M]: the 8-neighbour Laplacian
    (zero padding 1) of the mask, clamped at 0, > 0.1 (mask_head.py:33-40), i.e. the mask's pixels with a
    background 8-neighbour or on the RoI border. Soft targets (torchvision projects masks with RoIAlign) are
    binarised at 0.5 first, as the reference's are (detectron2's ``crop_and_resize`` returns ``>= 0.5``), so the
    boundary stays one pixel wide."""
    masks = (mask_targets >= 0.5).to(torch.float32).unsqueeze(1)
    kernel = torch.tensor(LAPLACIAN, dtype=torch.float32, device=masks.device).reshape(1, 1, 3, 3)
    response = F.conv2d(masks, kernel, padding=1).clamp(min=0)
    return (response > BOUNDARY_THRESHOLD).to(mask_targets.dtype if mask_targets.is_floating_point()
                                              else torch.float32).squeeze(1)


def bmask_loss(boundary_logits: Tensor, mask_targets: Tensor) -> Tensor:
    """BMask R-CNN's boundary loss (mask_head.py:16-48): BCE (mean over all pixels) + Dice on sigmoid(logits),
    1 - (2Σpg + 1) / (Σp + Σg + 1) per RoI, mean over RoIs; weight 1 as the reference's ``loss_boundary``.
    ``boundary_logits`` [N, M, M] (the GT class's channel), ``mask_targets`` [N, M', M'] (their boundary, nearest-
    resized to M when M' != M, mask_head.py:42-44). Computed in float32; a graph-attached 0 for N = 0."""
    if boundary_logits.shape[0] == 0:
        return boundary_logits.sum() * 0
    logits = boundary_logits.float().unsqueeze(1)
    target = boundary_targets(mask_targets.float()).unsqueeze(1)
    if target.shape[-2:] != logits.shape[-2:]:
        target = F.interpolate(target, logits.shape[-2:], mode="nearest")
    with torch.autocast(logits.device.type, enabled=False):
        bce = F.binary_cross_entropy_with_logits(logits, target)
        prob, flat = logits.sigmoid().flatten(1), target.flatten(1)
        dice = 1 - (2 * (prob * flat).sum(1) + DICE_SMOOTH) / (prob.sum(1) + flat.sum(1) + DICE_SMOOTH)
    return bce + dice.mean()
