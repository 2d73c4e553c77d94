"""The authors' (matterport Mask_RCNN) formulas that torchvision computes otherwise, as tensor functions and small
seam classes; the config keys that select them (``Config.unloaded_init``, ``box_loss``, ``class_loss``,
``roi_level``, ``roi_align``, ``rpn_crowd_negatives``) default to torchvision's behaviour.

Source: github.com/zimmerrol/mask-rcnn-edge-agreement-loss (commit 2a6ccb7) ``mrcnn/model.py``, named by function
below. Seams of torchvision 0.29.1: ``MultiScaleRoIAlign.forward`` (its ``scales``/``map_levels`` attributes and
``torchvision.ops.poolers._setup_scales``), ``RegionProposalNetwork.assign_targets_to_anchors`` and
``compute_loss`` (same signatures); ``tests/model/test_authors_recipe.py`` fails loudly if they move.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import MultiScaleRoIAlign, box_area
from torchvision.ops import boxes as box_ops
from torchvision.ops.poolers import LevelMapper, _setup_scales

from edgercnn.model.vocab import (BOX_LOSSES, CLASS_LOSSES, PROPOSAL_SELECTION, ROI_ALIGNS,  # noqa: F401 (owned there)
                                  ROI_LEVELS, UNLOADED_INIT)

#: ProposalLayer's pre_nms_limit (mrcnn/model.py:299 ``tf.minimum(6000, tf.shape(anchors)[1])``, not a config value).
GLOBAL_PRE_NMS = 6000

#: mrcnn/config.py BBOX_STD_DEV and RPN_BBOX_STD_DEV: box deltas are divided by these (torchvision's RoI box coder
#: weights (10, 10, 5, 5) are their inverses; its RPN box coder uses (1, 1, 1, 1)).
BBOX_STD_DEV = (0.1, 0.1, 0.2, 0.2)
RPN_BBOX_STD_DEV = (0.1, 0.1, 0.2, 0.2)


# ---------------------------------------------------------------------------------------------------- init

def glorot_init_(module: nn.Module, names: set[str] | None = None) -> int:
    """Keras's default initialisation of the layers of ``module`` (all, or those owning a parameter/buffer in
    ``names``, state_dict names relative to ``module``): glorot-uniform conv/linear weights and zero biases; norm
    layers scale 1, shift 0, running mean 0, variance 1. Returns the number of layers set."""
    count = 0
    for prefix, m in module.named_modules():
        owned = {f"{prefix}.{k}" if prefix else k for k in (*dict(m.named_parameters(recurse=False)),
                                                            *dict(m.named_buffers(recurse=False)))}
        if not owned or (names is not None and not owned & names):
            continue
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
            count += 1
        elif hasattr(m, "running_var") or isinstance(m, nn.GroupNorm):  # BatchNorm, FrozenBatchNorm2d, GroupNorm
            with torch.no_grad():
                for attr, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
                    if getattr(m, attr, None) is not None:
                        getattr(m, attr).fill_(value)
            count += 1
    return count


# ---------------------------------------------------------------------------------------------------- losses

def box_loss(pred: Tensor, target: Tensor) -> Tensor:
    """matterport's box loss (smooth_l1_loss / rpn_bbox_loss_graph + K.mean): smooth-L1 with beta 1 averaged over
    rows × 4 coordinates of the positives' predicted and target deltas [P, 4] (both already divided by the std
    devs); 0 (attached to ``pred``) when P = 0."""
    if pred.numel() == 0:
        return pred.sum() * 0.0
    return F.smooth_l1_loss(pred, target, beta=1.0, reduction="mean")


def roi_box_loss(box_regression: Tensor, labels: list[Tensor], regression_targets: list[Tensor]) -> Tensor:
    """mrcnn_bbox_loss_graph: ``box_loss`` over the RoIs with a label > 0, each with its class's deltas.
    box_regression [N, classes × 4]; labels / regression_targets per image ([n], [n, 4])."""
    labels_all, targets = torch.cat(labels), torch.cat(regression_targets)
    pos = torch.where(labels_all > 0)[0]
    pred = box_regression.reshape(box_regression.shape[0], -1, 4)[pos, labels_all[pos]]
    return box_loss(pred, targets[pos])


def pad_rois(proposals: list[Tensor], matched_idxs: list[Tensor], labels: list[Tensor],
             regression_targets: list[Tensor], slots: int) -> tuple[list[Tensor], ...]:
    """detection_targets_graph's padding: each image's sampled RoIs followed by zero boxes (label 0, zero deltas) up
    to ``slots``, so that the classifier trains them as background (mrcnn_class_loss_graph averages over all
    slots). A zero box pools from P2 near the canvas origin in both torchvision and matterport."""
    out: tuple[list[Tensor], ...] = ([], [], [], [])
    for p, m, lab, reg in zip(proposals, matched_idxs, labels, regression_targets):
        n = max(slots - len(p), 0)
        out[0].append(torch.cat([p, p.new_zeros(n, 4)]))
        out[1].append(torch.cat([m, m.new_zeros(n)]))
        out[2].append(torch.cat([lab, lab.new_zeros(n)]))
        out[3].append(torch.cat([reg, reg.new_zeros(n, 4)]))
    return out


def subsample_instances(target: dict[str, Tensor], limit: int) -> dict[str, Tensor]:
    """data_generator's MAX_GT_INSTANCES: at most ``limit`` ground-truth instances (a random subset, as
    np.random.choice without replacement) for the RoI heads; the RPN targets were built from all of them."""
    n = len(target["boxes"])
    if n <= limit:
        return target
    keep = torch.randperm(n, device=target["boxes"].device)[:limit]
    return {k: (v[keep] if k in ("boxes", "labels", "masks") else v) for k, v in target.items()}


# ---------------------------------------------------------------------------------------------------- RoI pooling

class RoundLevelMapper(LevelMapper):
    """PyramidROIAlign's level: 4 + round(log2(√area / 224)), clamped to [k_min, k_max] (torch.round and tf.round
    both round half to even). matterport computes the area from boxes normalised by (size − 1) with the far
    corner shifted by −1 pixel; the pixel area is used here (it moves log2 by < 0.05 for boxes of 32 pixels and up)."""

    def __call__(self, boxlists: list[Tensor]) -> Tensor:
        s = torch.sqrt(torch.cat([box_area(b) for b in boxlists]))
        levels = torch.clamp(self.lvl0 + torch.round(torch.log2(s / self.s0)), min=self.k_min, max=self.k_max)
        return levels.to(torch.int64) - self.k_min


def norm_boxes(boxes: Tensor, height: int, width: int) -> Tensor:
    """mrcnn/utils.py norm_boxes for torchvision's (x1, y1, x2, y2) pixel boxes → matterport's normalised
    (y1, x1, y2, x2): divided by (size − 1), the far corner shifted by −1 first."""
    x1, y1, x2, y2 = boxes.unbind(1)
    return torch.stack([y1 / (height - 1), x1 / (width - 1), (y2 - 1) / (height - 1), (x2 - 1) / (width - 1)], 1)


def crop_and_resize(features: Tensor, boxes: Tensor, size: int) -> Tensor:
    """tf.image.crop_and_resize (bilinear) of one image's feature map [C, H, W] at normalised boxes [K, 4]
    (y1, x1, y2, x2) → [K, C, size, size]: output cell i samples y1·(H−1) + i·(y2−y1)·(H−1)/(size−1) (the box
    centre when size = 1), bilinearly; samples outside the map are 0 (TF: the whole sample; here its outside
    taps, which differs only for boxes leaving the image)."""
    k = boxes.shape[0]
    if k == 0:
        return features.new_zeros(0, features.shape[0], size, size)
    t = (torch.arange(size, device=boxes.device, dtype=boxes.dtype) / (size - 1) if size > 1
         else torch.full((1,), 0.5, device=boxes.device, dtype=boxes.dtype))
    y1, x1, y2, x2 = boxes.unbind(1)
    ys = y1[:, None] + (y2 - y1)[:, None] * t  # [K, size], fraction of (H − 1)
    xs = x1[:, None] + (x2 - x1)[:, None] * t
    # grid_sample(align_corners=True) maps -1 → pixel 0 and 1 → pixel H−1: the grid value is 2·fraction − 1
    grid = torch.stack([xs[:, None, :].expand(k, size, size), ys[:, :, None].expand(k, size, size)], -1) * 2 - 1
    out = F.grid_sample(features[None], grid.reshape(1, k * size, size, 2).to(features.dtype), mode="bilinear",
                        padding_mode="zeros", align_corners=True)  # [1, C, K·size, size]
    return out[0].reshape(features.shape[0], k, size, size).transpose(0, 1)


class MatterportRoIAlign(MultiScaleRoIAlign):
    """torchvision's ``MultiScaleRoIAlign`` with matterport's level rounding (``level="round"``) and/or its
    crop_and_resize sampling (``sampling="crop_and_resize"``). Overrides ``forward`` only (torchvision 0.29.1): the
    level mapper is set where torchvision sets its own; RoIAlign sampling stays torchvision's."""

    def __init__(self, featmap_names: list[str], output_size: int, sampling_ratio: int, *, level: str = "floor",
                 sampling: str = "torchvision"):
        super().__init__(featmap_names, output_size, sampling_ratio)
        self.level, self.sampling = level, sampling

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        features = [x[name] for name in self.featmap_names]
        if self.scales is None or self.map_levels is None:
            self.scales, mapper = _setup_scales(features, image_shapes, self.canonical_scale, self.canonical_level)
            self.map_levels = (RoundLevelMapper(mapper.k_min, mapper.k_max, mapper.s0, mapper.lvl0)
                               if self.level == "round" else mapper)
        if self.sampling == "torchvision":
            return super().forward(x, boxes, image_shapes)
        size = self.output_size[0]
        levels = self.map_levels(boxes)
        result = features[0].new_zeros(len(levels), features[0].shape[1], size, size)
        start = 0
        for image, (b, (h, w)) in enumerate(zip(boxes, image_shapes)):
            lv, norm = levels[start:start + len(b)], norm_boxes(b, h, w)
            for level, feat in enumerate(features):
                idx = torch.where(lv == level)[0]
                if len(idx):
                    result[start + idx] = crop_and_resize(feat[image], norm[idx], size).to(result.dtype)
            start += len(b)
        return result


# ---------------------------------------------------------------------------------------------------- RPN

class MatterportRPN(RegionProposalNetwork):
    """torchvision's ``RegionProposalNetwork`` with the authors' alternatives: ``box_loss="matterport"`` (deltas
    divided by RPN_BBOX_STD_DEV, here via the box coder's weights, so proposals decode them back as ProposalLayer
    does; smooth-L1 beta 1 averaged over positive anchors × 4) and ``crowd_negatives="exclude"`` (anchors
    overlapping a crowd region, IoU >= 0.001, are not negatives: build_rpn_targets) and ``proposal_selection=
    "global"`` (ProposalLayer, ``PROPOSAL_SELECTION``). Adds no parameters."""

    def __init__(self, *args, box_loss: str = "torchvision", crowd_negatives: str = "keep",
                 proposal_selection: str = "per_level", **kwargs):
        super().__init__(*args, **kwargs)
        self.box_loss, self.crowd_negatives, self.proposal_selection = box_loss, crowd_negatives, proposal_selection
        if box_loss == "matterport":
            self.box_coder = BoxCoder(weights=tuple(1.0 / s for s in RPN_BBOX_STD_DEV))

    @classmethod
    def like(cls, rpn: RegionProposalNetwork, **options) -> "MatterportRPN":
        """A ``MatterportRPN`` with ``rpn``'s head, anchors and settings."""
        return cls(rpn.anchor_generator, rpn.head, rpn.proposal_matcher.high_threshold,
                   rpn.proposal_matcher.low_threshold, rpn.fg_bg_sampler.batch_size_per_image,
                   rpn.fg_bg_sampler.positive_fraction, dict(rpn._pre_nms_top_n), dict(rpn._post_nms_top_n),
                   rpn.nms_thresh, rpn.score_thresh, **options)

    def assign_targets_to_anchors(self, anchors, targets):
        labels, matched_gt_boxes = super().assign_targets_to_anchors(anchors, targets)
        if self.crowd_negatives == "exclude":
            for anchors_i, lab, target in zip(anchors, labels, targets):
                crowd = target.get("crowd_boxes")
                if crowd is not None and len(crowd) and len(anchors_i):
                    near_crowd = box_ops.box_iou(anchors_i, crowd.to(anchors_i)).amax(dim=1) >= 0.001
                    lab[(lab == 0) & near_crowd] = -1.0
        return labels, matched_gt_boxes

    def filter_proposals(self, proposals, objectness, image_shapes, num_anchors_per_level):
        """torchvision's, or with ``proposal_selection="global"`` matterport's ProposalLayer (mrcnn/model.py:288-342):
        the top ``GLOBAL_PRE_NMS`` anchors of an image by objectness over all levels, clipped to the image, one
        NMS, the best ``post_nms_top_n``. torchvision's small-box (min_size 1e-3) and score (0) filters stay: no-ops
        but for degenerate boxes. Scores are sigmoid probabilities as torchvision's (the authors' 2-way softmax
        foreground probability ranks the same way: README)."""
        if self.proposal_selection == "per_level":
            return super().filter_proposals(proposals, objectness, image_shapes, num_anchors_per_level)
        return select_proposals_globally(proposals, objectness.detach().reshape(proposals.shape[0], -1),
                                         image_shapes, GLOBAL_PRE_NMS,
                                         self.nms_thresh, self.post_nms_top_n(), self.min_size, self.score_thresh)

    def compute_loss(self, objectness, pred_bbox_deltas, labels, regression_targets):
        if self.box_loss == "torchvision":
            return super().compute_loss(objectness, pred_bbox_deltas, labels, regression_targets)
        # torchvision 0.29.1's objectness loss (= rpn_class_loss_graph: mean over sampled anchors), matterport's box
        sampled_pos, sampled_neg = self.fg_bg_sampler(labels)
        pos = torch.where(torch.cat(sampled_pos))[0]
        sampled = torch.cat([pos, torch.where(torch.cat(sampled_neg))[0]])
        objectness_loss = F.binary_cross_entropy_with_logits(objectness.flatten()[sampled],
                                                             torch.cat(labels)[sampled])
        return objectness_loss, box_loss(pred_bbox_deltas[pos], torch.cat(regression_targets)[pos])


def select_proposals_globally(proposals: Tensor, logits: Tensor, image_shapes, pre_nms: int, nms_thresh: float,
                              post_nms: int, min_size: float = 1e-3, score_thresh: float = 0.0
                              ) -> tuple[list[Tensor], list[Tensor]]:
    """Per image: the ``pre_nms`` best of all anchors' decoded ``proposals`` [N, A, 4] by ``logits`` [N, A] (every
    FPN level together), clipped, then one NMS at ``nms_thresh`` and the ``post_nms`` best (boxes, sigmoid scores)."""
    scores, idx = logits.topk(min(pre_nms, logits.shape[1]), dim=1)
    boxes_all = proposals[torch.arange(proposals.shape[0], device=proposals.device)[:, None], idx]
    final_boxes, final_scores = [], []
    for boxes, probs, shape in zip(boxes_all, torch.sigmoid(scores), image_shapes):
        boxes = box_ops.clip_boxes_to_image(boxes, shape)
        keep = box_ops.remove_small_boxes(boxes, min_size)
        keep = keep[probs[keep] >= score_thresh]
        boxes, probs = boxes[keep], probs[keep]
        keep = box_ops.nms(boxes, probs, nms_thresh)[:post_nms]
        final_boxes.append(boxes[keep])
        final_scores.append(probs[keep])
    return final_boxes, final_scores
