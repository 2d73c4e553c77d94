"""The model of a run: torchvision's Mask R-CNN assembled from a :class:`~edgercnn.config.Config`.

The parts (backbone presets, heads, samplers, the edge loss) live in :mod:`edgercnn.model` and take plain
arguments; this is the one place that reads the config for them.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from edgercnn.config import Config
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.model.architecture import BACKBONES, GN_GROUPS
from edgercnn.model.losses import EdgeLoss
from edgercnn.model.rcnn import (MASK_PREDICTORS, MASK_PREDICTORS_56, RESNETS, CanvasTransform, EdgeRoIHeads,
                                 FrozenStatsBatchNorm2d, MatterportSampler, WideRPNHead, load_imagenet, xavier_init_)


def build_model(cfg: Config) -> MaskRCNN:
    """torchvision ``MaskRCNN`` (FPN) for ``cfg``: backbone, mask size 28/56, edge loss, Xavier init.

    ``cfg.num_classes`` counts object classes (background excluded). ``cfg.norm``: frozen batch norms
    (``FrozenBatchNorm2d``, as in torchvision's detection models), batch norms with frozen statistics but trainable
    scale/shift (the authors' matterport setup) or GroupNorm in the ResNet and FPN (see
    ``edgercnn.model.architecture.NORMS``).
    """
    if cfg.num_classes is None or cfg.num_classes < 1:
        raise EdgeRCNNError("num_classes is not set: pass --data with a prepared dataset (its manifest names them)")
    num_classes = cfg.num_classes + 1  # + background
    preset = BACKBONES[cfg.backbone]
    gn = cfg.norm == "gn"
    norm_layer = (lambda c: nn.GroupNorm(GN_GROUPS, c)) if gn else \
        FrozenStatsBatchNorm2d if cfg.norm == "frozen_stats_bn" else FrozenBatchNorm2d
    body = RESNETS[preset["resnet"]](weights=None, norm_layer=norm_layer)
    out_channels = preset["fpn_channels"]
    if cfg.backbone_weights:
        load_imagenet(body, preset["resnet"], cfg.backbone_weights)
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
    rh = model.roi_heads
    model.roi_heads = EdgeRoIHeads(
        rh.box_roi_pool, rh.box_head, rh.box_predictor,
        rh.proposal_matcher.high_threshold, rh.proposal_matcher.low_threshold,
        rh.fg_bg_sampler.batch_size_per_image, rh.fg_bg_sampler.positive_fraction,
        rh.box_coder.weights, rh.score_thresh, rh.nms_thresh, rh.detections_per_img,
        mask_roi_pool=rh.mask_roi_pool, mask_head=rh.mask_head, mask_predictor=rh.mask_predictor,
        edge_loss=EdgeLoss.from_config(cfg) if cfg.filters else None,
        add_gt_to_proposals=cfg.add_gt_to_proposals, mask_targets=cfg.mask_targets, postprocess=cfg.postprocess,
        crowd_negatives=cfg.crowd_negatives,
    )
    if cfg.roi_sampling == "matterport":
        model.roi_heads.fg_bg_sampler = MatterportSampler(rh.fg_bg_sampler.batch_size_per_image,
                                                          rh.fg_bg_sampler.positive_fraction)
    # Everything but the ResNet feature extractor starts from Xavier (section 4), FPN included.
    for part in (model.backbone.fpn, model.rpn, model.roi_heads):
        xavier_init_(part)
    return model
