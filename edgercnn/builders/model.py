"""The model of a run: torchvision's Mask R-CNN assembled from a :class:`~edgercnn.config.Config`, with the
weights it starts from.

The parts (backbone presets, heads, samplers, the edge loss, pretrained files) live in :mod:`edgercnn.model` and take
plain arguments; this is the one place that reads the config for them.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from edgercnn.builders.runweights import RunWeightFiles
from edgercnn.config import Config
from edgercnn.core.checkpoint import read_weights
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.model.architecture import BACKBONES, GN_GROUPS
from edgercnn.model.bmask import add_bmask
from edgercnn.model.losses import EdgeLoss
from edgercnn.model.mask_terms import MaskTerms
from edgercnn.model.pretrained import COCO_INITS, coco_file, load_coco, load_detector, resolve_backbone_weights
from edgercnn.model.matterport import MatterportRoIAlign, MatterportRPN, glorot_init_
from edgercnn.model.rcnn import (MASK_PREDICTORS, MASK_PREDICTORS_56, RESNETS, CanvasTransform,
                                 FrozenStatsBatchNorm2d, MatterportSampler, WideRPNHead, load_imagenet,
                                 to_edge_roi_heads, xavier_init_)


def build_model(cfg: Config, pretrained: bool = True) -> MaskRCNN:
    """torchvision ``MaskRCNN`` (FPN) for ``cfg``: backbone, mask size 28/56, edge loss, Xavier init, then the
    weights ``cfg`` starts from (``model.pretrained``: the backbone's ImageNet file, or the whole detector's with
    ``cfg.init``); ``pretrained=False``: none of them (the caller loads a run's own weights).

    ``cfg.num_classes`` counts object classes (background excluded); ``cfg.head_classes`` widens the box and mask
    predictors beyond them (the authors' Cityscapes head). The authors' (matterport) alternatives of
    ``edgercnn.model.matterport`` swap in its seam classes only where a key leaves its torchvision default.
    ``cfg.norm``: frozen batch norms
    (``FrozenBatchNorm2d``, as in torchvision's detection models), batch norms with frozen statistics but trainable
    scale/shift (the authors' matterport setup) or GroupNorm in the ResNet and FPN (see
    ``edgercnn.model.architecture.NORMS``).
    """
    if cfg.num_classes is None or cfg.num_classes < 1:
        raise EdgeRCNNError("num_classes is not set: pass --data with a prepared dataset (its manifest names them)")
    if cfg.head_classes is not None and cfg.head_classes < cfg.num_classes:
        raise EdgeRCNNError(f"head_classes: {cfg.head_classes} is fewer than the dataset's {cfg.num_classes} classes; "
                            "raise head_classes or leave it unset")
    if cfg.world_size > 1 and "matterport" in (cfg.box_loss, cfg.class_loss):
        raise EdgeRCNNError("box_loss/class_loss matterport: not supported on several processes yet (the per-process "
                            "loss weights of training.distributed assume torchvision's reductions); train on one")
    num_classes = (cfg.head_classes or cfg.num_classes) + 1  # + background
    preset = BACKBONES[cfg.backbone]
    gn = cfg.norm == "gn"
    norm_layer = (lambda c: nn.GroupNorm(GN_GROUPS, c)) if gn else \
        FrozenStatsBatchNorm2d if cfg.norm == "frozen_stats_bn" else FrozenBatchNorm2d
    body = RESNETS[preset["resnet"]](weights=None, norm_layer=norm_layer)
    out_channels = preset["fpn_channels"]
    uncovered = set(body.state_dict())  # the names no weights file sets
    backbone_weights = resolve_backbone_weights(cfg.backbone, cfg.norm, cfg.backbone_weights, cfg.init)
    if backbone_weights and pretrained:
        uncovered = load_imagenet(body, preset["resnet"], backbone_weights)
    if cfg.unloaded_init == "glorot":
        glorot_init_(body, uncovered)
    backbone = BackboneWithFPN(body, {f"layer{k}": str(k - 1) for k in range(1, 5)}, list(preset["in_channels"]),
                               out_channels, extra_blocks=LastLevelMaxPool(),
                               norm_layer=(lambda c: nn.GroupNorm(GN_GROUPS, c)) if gn else None)
    mask_layers, head_dim, anchor_sizes = preset["mask_layers"], preset["box_head_dim"], preset["anchor_sizes"]
    predictor_cls = MASK_PREDICTORS_56[cfg.mask_head_56] if cfg.mask_size == 56 else MASK_PREDICTORS[cfg.mask_size]
    detector = {**preset["detector"], "box_positive_fraction": cfg.roi_positive_fraction,
                "box_nms_thresh": cfg.eval_nms_threshold}
    if cfg.roi_per_image is not None:
        detector["box_batch_size_per_image"] = cfg.roi_per_image
    model = MaskRCNN(
        backbone,
        num_classes=None,
        rpn_anchor_generator=AnchorGenerator(tuple((a,) for a in anchor_sizes), ((0.5, 1.0, 2.0),) * len(anchor_sizes)),
        box_head=TwoMLPHead(out_channels * 7 * 7, head_dim),
        box_predictor=FastRCNNPredictor(head_dim, num_classes),
        mask_head=MaskRCNNHeads(out_channels, mask_layers, 1),
        mask_predictor=predictor_cls(mask_layers[-1], preset["mask_dim"], num_classes),
        rpn_head=WideRPNHead(out_channels, 3, cfg.rpn_channels) if cfg.rpn_channels else None,  # 3 aspect ratios
        box_score_thresh=cfg.eval_score_threshold,
        box_detections_per_img=cfg.detections_per_image,
        **detector,
    )
    model.transform = CanvasTransform(model.transform.image_mean, model.transform.image_std)
    if cfg.box_loss != "torchvision" or cfg.rpn_crowd_negatives != "keep" or cfg.proposal_selection != "per_level":
        model.rpn = MatterportRPN.like(model.rpn, box_loss=cfg.box_loss, crowd_negatives=cfg.rpn_crowd_negatives,
                                       proposal_selection=cfg.proposal_selection)
    rh = model.roi_heads
    if cfg.roi_level != "floor" or cfg.roi_align != "torchvision":
        rh.box_roi_pool, rh.mask_roi_pool = (MatterportRoIAlign(p.featmap_names, p.output_size[0], p.sampling_ratio,
                                                                level=cfg.roi_level, sampling=cfg.roi_align)
                                             for p in (rh.box_roi_pool, rh.mask_roi_pool))
    model.roi_heads = to_edge_roi_heads(
        rh,
        edge_loss=EdgeLoss.from_config(cfg) if cfg.filters else None, mask_terms=MaskTerms.from_config(cfg),
        add_gt_to_proposals=cfg.add_gt_to_proposals, mask_targets=cfg.mask_targets, postprocess=cfg.postprocess,
        crowd_negatives=cfg.crowd_negatives, box_loss=cfg.box_loss, class_loss=cfg.class_loss,
        max_gt_instances=cfg.max_gt_instances,
        num_trained_classes=cfg.num_classes if num_classes - 1 > cfg.num_classes else None,
    )
    if cfg.roi_sampling == "matterport":
        model.roi_heads.fg_bg_sampler = MatterportSampler(rh.fg_bg_sampler.batch_size_per_image,
                                                          rh.fg_bg_sampler.positive_fraction,
                                                          empty_negative=cfg.class_loss != "matterport")
    if "bmask" in cfg.mask_losses:  # BMask R-CNN's boundary branch: a head around the mask head
        add_bmask(model)
    # Everything but the ResNet feature extractor starts from Xavier (section 4), FPN included.
    for part in (model.backbone.fpn, model.rpn, model.roi_heads):
        xavier_init_(part)
    if cfg.init is not None and pretrained:
        load_detector(model, *detector_weights(cfg.init), new_predictors=cfg.init in COCO_INITS)
    return model


def detector_weights(init: str) -> tuple[dict[str, Tensor], str]:
    """(the state_dict, its description) of ``init``: torchvision's COCO file from the hub cache, a run folder's
    weights (``RunWeightFiles.load_weights``) or a state_dict file."""
    if init in COCO_INITS:
        path, hint = coco_file(init)
        return load_coco(path, hint), f"--init {init} ({path})"
    path = Path(init)
    fix = "pass --init coco, a Mask R-CNN state_dict file or a run folder"
    if path.is_dir():
        return RunWeightFiles(path).load_weights(fix).state, f"--init {path}"
    if not path.is_file():
        raise EdgeRCNNError(f"--init {init}: no such file or run folder; {fix}")
    return read_weights(path, fix), f"--init {path}"

