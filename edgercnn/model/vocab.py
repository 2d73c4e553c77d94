"""The model's option names and their rules, without torch: what the config validates and the CLI offers.

One owner per vocabulary: the edge filters (their kernels are plain numbers), smoothing modes and formulations of
``model.losses``; the mask-loss terms of ``model.mask_terms``; the optimizers of ``model.optim``; the authors'
(matterport) variants of ``model.matterport``; where weights start (``model.pretrained``). Those torch-backed
modules import their names from here (and assert their tables match), so ``edgercnn --help``, ``edgercnn recipes``
and building a ``Config`` never load torch. The backbone presets and norms are plain data already
(``model.architecture``).
"""

from __future__ import annotations

import math
import numbers

# ---------------------------------------------------------------------------- the edge agreement loss (losses)
# Section 3.1, eqs. 2-4, and the filters named after eq. 4. Lists of kernels, each a 3×3 (or 2×2) table.
KERNELS: dict[str, tuple[tuple[tuple[float, ...], ...], ...]] = {
    "sobel": (((1, 0, -1), (2, 0, -2), (1, 0, -1)), ((1, 2, 1), (0, 0, 0), (-1, -2, -1))),
    "prewitt": (((1, 0, -1), (1, 0, -1), (1, 0, -1)), ((1, 1, 1), (0, 0, 0), (-1, -1, -1))),
    "kayyali": (((6, 0, -6), (0, 0, 0), (-6, 0, 6)), ((-6, 0, 6), (0, 0, 0), (6, 0, -6))),
    "roberts": (((1, 0), (0, -1)), ((0, 1), (-1, 0))),
    "laplace": (((1, 1, 1), (1, -8, 1), (1, 1, 1)),),  # eq. 4: the paper's L
    "laplace4": (((0, 1, 0), (1, -4, 1), (0, 1, 0)),),  # eq. 3
}
SMOOTH_MODES = ("gt", "pred", "both")
FORMULATIONS = ("lp", "ce-product", "ce-exp")
#: The ce-exp formulation: ``paper`` = α · mean(L_mask-pw · exp(L_edge-pw / 4)) (section 5.6.3); ``authors`` = as the
#: authors coded it, mean(L_mask-pw · exp(α · L_edge-pw / 16)) (mrcnn/model.py mrcnn_mask_edge_loss_graph,
#: weight_entropy: α inside the exponent, ÷16).
CE_EXP = ("paper", "authors")

def _finite_at_least(value, low: float) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value >= low


def check_edge_args(filters, p: float, smooth: str | None, magnitude: bool, formulation: str) -> tuple[str, ...]:
    """Validate the loss options; return the filters as a tuple. Raises ValueError saying what is allowed."""
    if isinstance(filters, str):
        filters = (filters,)
    filters = tuple(filters)
    if not filters:
        raise ValueError("filters: give at least one of " + ", ".join(KERNELS))
    unknown = [f for f in filters if f not in KERNELS]
    if unknown:
        raise ValueError(f"filters: unknown {unknown}; allowed: {', '.join(KERNELS)}")
    if not _finite_at_least(p, 1):
        raise ValueError(f"p: must be >= 1 and finite (an L^p distance), got {p!r}")
    if smooth not in (None, *SMOOTH_MODES):
        raise ValueError(f"smooth: got {smooth!r}; allowed: None, {', '.join(SMOOTH_MODES)}")
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation: got {formulation!r}; allowed: {', '.join(FORMULATIONS)}")
    if magnitude and not any(len(KERNELS[f]) == 2 for f in filters):
        raise ValueError("magnitude: needs a two-kernel filter (sobel, prewitt, kayyali or roberts)")
    return filters


def check_weight(weight: float) -> float:
    """``weight`` (α, the config's and ``add_edge_loss``'s ``alpha``) if it is a finite number >= 0, else ValueError:
    one rule for the command line, a config file and ``EdgeLoss`` (NaN or inf would make every loss NaN or inf)."""
    if not _finite_at_least(weight, 0):
        raise ValueError(f"alpha: must be >= 0 and finite (the edge-loss weight), got {weight!r}")
    return weight


# ---------------------------------------------------------------------------- mask-loss terms (mask_terms)
#: Every term a run can add: the pure losses of ``model.mask_losses``, then BMask R-CNN's boundary branch.
MASK_TERMS = ("dice", "lovasz", "boundary", "hausdorff", "bmask")
#: Steps per +0.01 of the boundary loss's weight ramp (Kervadec et al.: per epoch; ``mask_losses.DEFAULT_WEIGHTS``
#: says why 60).
BOUNDARY_RAMP_STEPS = 60


def check_terms(names, weights: dict[str, float] | None = None, ramp_steps: int = BOUNDARY_RAMP_STEPS) \
        -> tuple[str, ...]:
    """Validate term names (unknown, repeated), their weight overrides (a known term among ``names``, a finite
    number >= 0) and the ramp length (>= 1); return the names as a tuple. ValueError saying what is allowed."""
    names = (names,) if isinstance(names, str) else tuple(names)
    unknown = [n for n in names if n not in MASK_TERMS]
    if unknown:
        raise ValueError(f"mask_losses: unknown {unknown}; allowed: {', '.join(MASK_TERMS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"mask_losses: {list(names)} names a loss twice; give each once")
    for name, w in (weights or {}).items():
        if name not in names:
            raise ValueError(f"mask_loss_weights: {name!r} is not among the mask losses {list(names)}; add it with "
                             "--mask-loss or drop its weight")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(f"mask_loss_weights: {name}={w!r}; a weight is a finite number >= 0")
    if isinstance(ramp_steps, bool) or not isinstance(ramp_steps, int) or ramp_steps < 1:
        raise ValueError(f"boundary_ramp_steps: must be an integer >= 1, got {ramp_steps!r}")
    return names


# ---------------------------------------------------------------------------- optimizer (optim)
#: sgd (momentum, the paper's) or adamw.
OPTIMIZERS = ("sgd", "adamw")
#: The optimizer across stages: ``keep`` one (its momentum carries over) or a ``fresh`` one at each stage start
#: (matterport: MaskRCNN.train compiles a new keras SGD per stage).
OPTIMIZER_PER_STAGE = ("keep", "fresh")
#: How weight decay applies: ``uniform`` (torch's: the same ``weight_decay`` for every tensor) or ``per_size``
#: (matterport's MaskRCNN.compile: an L2 loss weight_decay × sum(w²) / w.size() per tensor, norm scales/shifts left
#: out; as SGD weight decay that is 2 × weight_decay / w.numel()).
WEIGHT_DECAY_MODES = ("uniform", "per_size")
# ---------------------------------------------------------------------------- the authors' variants (matterport)
#: ResNet layers that no weights file covers (all of them without one; layer3.6-22 of a ResNet-101 loaded with the
#: ResNet-50 file): ``torchvision`` = torchvision's init (kaiming-normal fan_out convs); ``glorot`` = Keras's
#: defaults, as the authors' layers had: glorot-uniform convs, bias 0, norm scale 1 / shift 0 / statistics 0 and 1.
UNLOADED_INIT = ("torchvision", "glorot")
#: Box regression losses of the RPN and the RoI heads: ``torchvision`` = smooth-L1 (beta 1/9) summed and divided by
#: the sampled anchors/RoIs, raw RPN deltas; ``matterport`` = smooth-L1 (beta 1) averaged over positive
#: anchors/RoIs × 4 coordinates, RPN deltas divided by RPN_BBOX_STD_DEV (rpn_bbox_loss_graph,
#: mrcnn_bbox_loss_graph, build_rpn_targets).
BOX_LOSSES = ("torchvision", "matterport")
#: RoI classifier loss: ``torchvision`` = cross-entropy averaged over the sampled RoIs; ``matterport`` = the RoIs
#: zero-padded to roi_per_image slots per image, padding trained as background, averaged over slots × batch
#: (mrcnn_class_loss_graph on detection_targets_graph's output; no negatives when there are no positives).
CLASS_LOSSES = ("torchvision", "matterport")
#: RoI → FPN level: ``floor`` = torchvision's floor(4 + log2(√area / 224)); ``round`` = matterport's
#: 4 + round(log2(√area / 224)) (PyramidROIAlign), both clamped to P2-P5.
ROI_LEVELS = ("floor", "round")
#: RoI feature sampling: ``torchvision`` = RoIAlign (2×2 samples per bin, averaged); ``crop_and_resize`` = one
#: bilinear sample per output cell, corners included (tf.image.crop_and_resize in PyramidROIAlign).
ROI_ALIGNS = ("torchvision", "crop_and_resize")
#: RPN proposals kept for the heads: ``per_level`` = torchvision's top pre_nms_top_n anchors of each FPN level, NMS
#: per level; ``global`` = the authors' ProposalLayer (mrcnn/model.py:288-342): the top ``GLOBAL_PRE_NMS`` anchors
#: by score over all levels together, one NMS (RPN_NMS_THRESHOLD 0.7, torchvision's too), the best
#: post_nms_top_n (POST_NMS_ROIS_TRAINING 2000 / _INFERENCE 1000, torchvision's too).
PROPOSAL_SELECTION = ("per_level", "global")
# ---------------------------------------------------------------------------- where weights start (pretrained)
#: ``backbone_weights`` that resolves per backbone and norm (``resolve_backbone_weights``).
AUTO = "auto"
#: Backbones with an ImageNet file (``model.rcnn.IMAGENET_WEIGHTS``) that ``auto`` loads.
IMAGENET_BACKBONES = ("resnet50", "resnet101")
#: Norms meant for pretrained weights (``architecture.NORMS``; ``gn`` trains from random weights).
PRETRAINED_NORMS = ("frozen_bn", "frozen_stats_bn")
#: ``init`` names with a torchvision file in the torch hub cache (``pretrained.COCO_INITS``).
COCO_INIT_NAMES = ("coco",)
#: The torchvision Mask R-CNN that ``coco`` fits: its backbone, norms and widths (``architecture.BACKBONES``).
COCO_BACKBONE = "resnet50"

def resolve_backbone_weights(backbone: str, norm: str, backbone_weights: str | None, init: str | None) -> str | None:
    """The backbone file to load (``imagenet``, ``imagenet-resnet50``, a path) or None for random weights; None
    under ``init`` too (the detector's file covers the backbone)."""
    if init is not None:
        return None
    if backbone_weights == AUTO:
        return "imagenet" if backbone in IMAGENET_BACKBONES and norm in PRETRAINED_NORMS else None
    return backbone_weights


def check_init(backbone: str, norm: str, backbone_weights: str | None, init: str | None, rpn_channels: int | None,
               first_layers: str) -> str | None:
    """A one-line problem with how the weights start, or None. A random paper backbone (``IMAGENET_BACKBONES``)
    frozen by the first stage would train the heads on random features (and frozen batch norm from random weights
    does not normalise): refused; a first stage training ``all`` layers asks for random weights explicitly."""
    if init is not None:
        if backbone_weights not in (AUTO, None):
            return (f"init {init} and backbone_weights {backbone_weights}: the detector's weights cover the backbone; "
                    "leave --backbone-weights unset")
        if init in COCO_INIT_NAMES and (backbone != COCO_BACKBONE or norm not in PRETRAINED_NORMS or rpn_channels):
            return (f"init {init}: torchvision's COCO Mask R-CNN is a {COCO_BACKBONE} with frozen batch norm and a "
                    f"256-channel RPN; got backbone {backbone}, norm {norm}, rpn_channels {rpn_channels}: pass "
                    f"--backbone {COCO_BACKBONE} --norm frozen_bn (or leave --init unset)")
        return None
    weights = resolve_backbone_weights(backbone, norm, backbone_weights, init)
    if weights is None and backbone in IMAGENET_BACKBONES and first_layers != "all":
        return (f"backbone {backbone} from random weights (backbone_weights: none) with a first stage that trains "
                f"only '{first_layers}': the frozen random ResNet would feed the heads random features; pass "
                "--backbone-weights imagenet (the paper's) or --init coco, or start the stages with all layers "
                "(stages: all:STEPS@LR,...) to train from random weights")
    return None
