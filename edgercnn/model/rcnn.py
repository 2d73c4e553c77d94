"""torchvision's Mask R-CNN with the Edge Agreement Head, and the paper's staged unfreezing.

Relies on torchvision 0.17–0.29 (checked against 0.29.1): ``RoIHeads.forward`` computes the mask loss with
``maskrcnn_loss(mask_logits, proposals, gt_masks, gt_labels, mask_matched_idxs)``, which projects the
ground-truth masks with ``project_masks_on_boxes``. ``EdgeRoIHeads`` overrides only the training branch of
``forward`` so that these targets are projected once and shared by the cross-entropy and the edge term;
inference, the baseline and the state_dict are torchvision's. ``tests/model/test_rcnn.py`` fails loudly if that seam
moves. The authors' (matterport) alternatives of ``architecture.POSTPROCESS``, ``ROI_SAMPLING`` and
``MASK_TARGETS`` and ``add_gt_to_proposals`` use further RoIHeads seams of torchvision 0.29.1: the
``fg_bg_sampler`` attribute, ``add_gt_proposals``, ``assign_targets_to_proposals`` and ``postprocess_detections``
(same signatures).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet18, resnet50, resnet101
from torchvision.models import ResNet50_Weights, ResNet101_Weights
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss, project_masks_on_boxes
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import boxes as box_ops
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops.misc import Conv2dNormActivation

from edgercnn.model.architecture import MASK_HEADS_56, MASK_SIZES, STAGE_LAYERS
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.model.bmask import bmask_head_of, pop_boundary_logits
from edgercnn.model.losses import EdgeLoss
from edgercnn.model.mask_terms import MaskTerms
from edgercnn.model.matterport import pad_rois, roi_box_loss, subsample_instances

IMAGENET_WEIGHTS = {"resnet50": ResNet50_Weights.IMAGENET1K_V1, "resnet101": ResNet101_Weights.IMAGENET1K_V1}
RESNETS = {"resnet18": resnet18, "resnet50": resnet50, "resnet101": resnet101}
#: ResNet stage k (conv{k}_x, the paper's and matterport's numbering) is torchvision's layer{k-1}.
STAGE_4_AND_UP = ("layer3", "layer4")


class MatterportSampler(BalancedPositiveNegativeSampler):
    """matterport's RoI sampling (mrcnn/model.py detection_targets_graph): up to int(N × fraction) positives like
    torchvision, but negatives only int(positives / fraction) − positives (float32, as TensorFlow computes it),
    never filled up to N; one negative when there are no positives, or none with ``empty_negative=False`` (as
    matterport, whose zero-padded RoI slots then train the background: ``class_loss="matterport"``)."""

    def __init__(self, batch_size_per_image: int, positive_fraction: float, empty_negative: bool = True):
        super().__init__(batch_size_per_image, positive_fraction)
        self.empty_negative = empty_negative

    def __call__(self, matched_idxs: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        pos_idx, neg_idx = [], []
        for matched in matched_idxs:
            positive = torch.where(matched >= 1)[0]
            negative = torch.where(matched == 0)[0]
            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            ratio = torch.tensor(1.0 / self.positive_fraction, dtype=torch.float32)
            # matterport pads the RoIs with zero boxes trained as background; one negative stands in for them
            # when there are no positives (an empty sample would make torchvision's fastrcnn_loss NaN)
            num_neg = min(negative.numel(), max(int(ratio * torch.tensor(float(num_pos))) - num_pos,
                                                   int(num_pos == 0 and self.empty_negative)))
            pos_mask = torch.zeros_like(matched, dtype=torch.uint8)
            neg_mask = torch.zeros_like(matched, dtype=torch.uint8)
            pos_mask[positive[torch.randperm(positive.numel(), device=matched.device)[:num_pos]]] = 1
            neg_mask[negative[torch.randperm(negative.numel(), device=matched.device)[:num_neg]]] = 1
            pos_idx.append(pos_mask)
            neg_idx.append(neg_mask)
        return pos_idx, neg_idx


class EdgeRoIHeads(RoIHeads):
    """``RoIHeads`` that adds ``loss_edge`` during training when ``edge_loss`` is set, ``loss_<name>`` per term of
    ``mask_terms`` (the other boundary-aware mask losses, ``model.mask_terms``; ``loss_step`` counts the training
    forwards for their schedules, and a trainer sets it to its step), and the authors'
    alternatives: ``add_gt_to_proposals=False``, ``mask_targets="binary"``, ``postprocess="matterport"``,
    ``crowd_negatives="exclude"`` (reads the targets' ``crowd_boxes``), ``box_loss="matterport"``,
    ``class_loss="matterport"``, ``max_gt_instances`` (see ``model.matterport``), and ``num_trained_classes``: with a
    classifier wider than the dataset (the authors' 35-way Cityscapes head), detections of the other classes are
    dropped at inference.

    Adds no parameters, so its state_dict is torchvision's.
    """

    def __init__(self, *args, edge_loss: EdgeLoss | None = None, mask_terms: MaskTerms | None = None,
                 add_gt_to_proposals: bool = True,
                 mask_targets: str = "soft", postprocess: str = "torchvision", crowd_negatives: str = "keep",
                 box_loss: str = "torchvision", class_loss: str = "torchvision", max_gt_instances: int | None = None,
                 num_trained_classes: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.edge_loss = edge_loss
        self.mask_terms = mask_terms
        self.loss_step = 0  # training forwards so far: the step of the mask terms' schedules
        self.add_gt_to_proposals, self.mask_targets, self.postprocess = add_gt_to_proposals, mask_targets, postprocess
        self.crowd_negatives = crowd_negatives
        self.box_loss, self.class_loss, self.max_gt_instances = box_loss, class_loss, max_gt_instances
        self.num_trained_classes = num_trained_classes  # labels 1..N are trained; None: every output
        self.roi_slots = self.fg_bg_sampler.batch_size_per_image  # matterport's TRAIN_ROIS_PER_IMAGE slots
        self._crowd_boxes: list[Tensor] | None = None  # the targets' crowd_boxes during one training forward

    def assign_targets_to_proposals(self, proposals, gt_boxes, gt_labels):
        """torchvision's, then with ``crowd_negatives="exclude"`` negatives that overlap a crowd region
        (IoU >= 0.001) become ignored (-1), as matterport's detection_targets_graph does."""
        matched_idxs, labels = super().assign_targets_to_proposals(proposals, gt_boxes, gt_labels)
        if self.crowd_negatives == "exclude" and self._crowd_boxes is not None:
            for props, lab, crowd in zip(proposals, labels, self._crowd_boxes):
                if len(crowd) and len(props):
                    near_crowd = box_ops.box_iou(props, crowd.to(props)).amax(dim=1) >= 0.001
                    lab[(lab == 0) & near_crowd] = -1
        return matched_idxs, labels

    def add_gt_proposals(self, proposals, gt_boxes):
        """torchvision appends the ground-truth boxes to the proposals; matterport trains on RPN proposals only."""
        return super().add_gt_proposals(proposals, gt_boxes) if self.add_gt_to_proposals else proposals

    def postprocess_detections(self, class_logits, box_regression, proposals, image_shapes):
        """torchvision's, or matterport's refine_detections_graph: the argmax class of each RoI (background-argmax
        RoIs dropped) with its probability as score, kept when >= score_thresh (when > 0), NMS per class."""
        if self.postprocess == "torchvision":
            boxes, scores, labels = super().postprocess_detections(class_logits, box_regression, proposals,
                                                                   image_shapes)
            if self.num_trained_classes is None:
                return boxes, scores, labels
            keep = [lab <= self.num_trained_classes for lab in labels]
            return [b[k] for b, k in zip(boxes, keep)], [s[k] for s, k in zip(scores, keep)], \
                [lab[k] for lab, k in zip(labels, keep)]
        boxes_per_image = [len(p) for p in proposals]
        pred_boxes = self.box_coder.decode(box_regression, proposals).split(boxes_per_image, 0)
        pred_scores = F.softmax(class_logits, -1).split(boxes_per_image, 0)
        all_boxes, all_scores, all_labels = [], [], []
        for boxes, scores, image_shape in zip(pred_boxes, pred_scores, image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
            score, label = scores.max(dim=1)
            keep = label > 0
            if self.num_trained_classes is not None:  # an untrained class: no category to report it as
                keep &= label <= self.num_trained_classes
            if self.score_thresh > 0:  # matterport: `if config.DETECTION_MIN_CONFIDENCE:`
                keep &= score >= self.score_thresh
            idx = torch.where(keep)[0]
            boxes, score, label = boxes[idx, label[idx]], score[idx], label[idx]
            keep = box_ops.batched_nms(boxes, score, label, self.nms_thresh)[: self.detections_per_img]
            all_boxes.append(boxes[keep])
            all_scores.append(score[keep])
            all_labels.append(label[keep])
        return all_boxes, all_scores, all_labels

    def forward(self, features, proposals, image_shapes, targets=None):
        if self.training and targets is not None:
            self._crowd_boxes = [t.get("crowd_boxes", torch.zeros(0, 4)) for t in targets]
        try:
            return self._forward(features, proposals, image_shapes, targets)
        finally:
            self._crowd_boxes = None
            if self.training and targets is not None:
                self.loss_step += 1

    def _forward(self, features, proposals, image_shapes, targets=None):
        if not self.training or (self.edge_loss is None and self.mask_terms is None and self.mask_targets == "soft" and self.box_loss ==
                                 "torchvision" and self.class_loss == "torchvision" and self.max_gt_instances is None):
            return super().forward(features, proposals, image_shapes, targets)
        if targets is None or not self.has_mask() or self.keypoint_predictor is not None:
            raise ValueError("EdgeRoIHeads trains masks only and needs targets")
        if self.max_gt_instances is not None:  # after the RPN's targets, as matterport's data_generator
            targets = [subsample_instances(t, self.max_gt_instances) for t in targets]
        # Same steps as torchvision 0.29.1 RoIHeads.forward (training branch, boxes then masks).
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        if self.class_loss == "matterport":
            proposals, matched_idxs, labels, regression_targets = pad_rois(proposals, matched_idxs, labels,
                                                                           regression_targets, self.roi_slots)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        # with class_loss="matterport" the mean over the padded RoIs is mrcnn_class_loss_graph's sum / (slots × batch)
        loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        if self.box_loss == "matterport":
            loss_box_reg = roi_box_loss(box_regression, labels, regression_targets)

        pos = [torch.where(lab > 0)[0] for lab in labels]
        mask_proposals = [prop[i] for prop, i in zip(proposals, pos)]
        pos_matched_idxs = [m[i] for m, i in zip(matched_idxs, pos)]
        mask_logits = self.mask_predictor(self.mask_head(self.mask_roi_pool(features, mask_proposals, image_shapes)))
        losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
        return [], losses | self.mask_loss_dict(mask_logits, mask_proposals, targets, pos_matched_idxs,
                                                self._boundary_logits())

    def _boundary_logits(self) -> Tensor | None:
        """The BMask head's boundary logits of this forward (``model.bmask``), or None without that head."""
        head = bmask_head_of(self.mask_head)
        return pop_boundary_logits(head) if head is not None and head.boundary_logits is not None else None

    def mask_loss_dict(self, mask_logits: Tensor, proposals, targets, matched_idxs,
                       boundary_logits: Tensor | None = None) -> dict[str, Tensor]:
        """``loss_mask``, ``loss_edge`` (with an edge loss) and ``loss_<name>`` per term of ``mask_terms``
        (``boundary_logits`` [N, C, M, M]: BMask's branch, when the head has one) over one set of targets."""
        rows, labels, mask_targets = self._projected(mask_logits, proposals, targets, matched_idxs)
        logits = mask_logits[rows, labels]
        loss_mask, loss_edge = self._mask_losses(logits, mask_targets)
        losses = {"loss_mask": loss_mask}
        if self.edge_loss is not None:
            losses["loss_edge"] = loss_edge
        if self.mask_terms is not None:
            # every key on every step (a graph-attached zero without positive RoIs)
            losses |= self.mask_terms(logits, mask_targets, self.loss_step,
                                      None if boundary_logits is None else boundary_logits[rows, labels])
        return losses

    def _projected(self, mask_logits: Tensor, proposals, targets, matched_idxs) -> tuple[Tensor, Tensor, Tensor]:
        """(RoI rows, their ground-truth labels, their projected mask targets [N, M, M]: torchvision's
        ``project_masks_on_boxes``, rounded to 0/1 with ``mask_targets="binary"``, matterport's tf.round: 0.5 → 0)."""
        size = mask_logits.shape[-1]
        gt_labels = torch.cat([t["labels"][i] for t, i in zip(targets, matched_idxs)])
        mask_targets = torch.cat([
            project_masks_on_boxes(t["masks"], p, i, size) for t, p, i in zip(targets, proposals, matched_idxs)
        ])
        if self.mask_targets == "binary":
            mask_targets = (mask_targets > 0.5).to(mask_targets.dtype)
        return torch.arange(gt_labels.shape[0], device=gt_labels.device), gt_labels, mask_targets

    def mask_losses(self, mask_logits: Tensor, proposals, targets, matched_idxs) -> tuple[Tensor, Tensor]:
        """torchvision's ``maskrcnn_loss`` and the edge loss (0 without one) over one set of projected mask
        targets (``_projected``)."""
        rows, labels, mask_targets = self._projected(mask_logits, proposals, targets, matched_idxs)
        return self._mask_losses(mask_logits[rows, labels], mask_targets)

    def _mask_losses(self, logits: Tensor, mask_targets: Tensor) -> tuple[Tensor, Tensor]:
        if mask_targets.numel() == 0:
            zero = logits.sum() * 0
            return zero, zero
        loss_mask = F.binary_cross_entropy_with_logits(logits, mask_targets)
        if self.edge_loss is None:
            return loss_mask, loss_mask.detach() * 0
        # float32 outside autocast: the ce-* formulations use binary_cross_entropy, which autocast refuses
        with torch.autocast(logits.device.type, enabled=False):
            loss_edge = self.edge_loss(logits.float().sigmoid(), mask_targets.float())
        return loss_mask, loss_edge


def to_edge_roi_heads(heads: RoIHeads, **options) -> EdgeRoIHeads:
    """An ``EdgeRoIHeads`` in place of torchvision's ``heads``, keeping its settings (``options``: EdgeRoIHeads'
    keyword arguments). It shares ``heads``' modules (so weights and state_dict keys stay) and its very matcher,
    sampler and box coder objects (so e.g. ``allow_low_quality_matches`` or a custom sampler carry over), its
    inference thresholds and its train/eval mode; attributes are those of torchvision 0.29.1 ``RoIHeads.__init__``."""
    new = EdgeRoIHeads(
        heads.box_roi_pool, heads.box_head, heads.box_predictor,
        heads.proposal_matcher.high_threshold, heads.proposal_matcher.low_threshold,
        heads.fg_bg_sampler.batch_size_per_image, heads.fg_bg_sampler.positive_fraction,
        heads.box_coder.weights, heads.score_thresh, heads.nms_thresh, heads.detections_per_img,
        mask_roi_pool=heads.mask_roi_pool, mask_head=heads.mask_head, mask_predictor=heads.mask_predictor,
        keypoint_roi_pool=heads.keypoint_roi_pool, keypoint_head=heads.keypoint_head,
        keypoint_predictor=heads.keypoint_predictor, **options,
    )
    new.box_similarity, new.proposal_matcher = heads.box_similarity, heads.proposal_matcher
    new.fg_bg_sampler, new.box_coder = heads.fg_bg_sampler, heads.box_coder
    return new.train(heads.training)


class CanvasTransform(GeneralizedRCNNTransform):
    """Normalise and batch only: images arrive already resized and padded to the canvas (section 4) by the data
    pipeline (``edgercnn.data.transforms``, which also maps predictions back), so torchvision's own min/max-size
    rescale (``resize``) would be a second, different resize; it is the identity here and no sizes are needed."""

    def __init__(self, image_mean: list[float], image_std: list[float]):
        super().__init__(min_size=0, max_size=0, image_mean=image_mean, image_std=image_std)

    def resize(self, image, target=None):
        return image, target


class MaskPredictor56(nn.Sequential):
    """torchvision's ``MaskRCNNPredictor`` with one more 2× transposed-conv upsampling: 14 → 28 → 56."""

    def __init__(self, in_channels: int, dim_reduced: int, num_classes: int):
        super().__init__(OrderedDict([
            ("conv5_mask", nn.ConvTranspose2d(in_channels, dim_reduced, 2, 2, 0)),
            ("relu5", nn.ReLU(inplace=True)),
            ("conv6_mask", nn.ConvTranspose2d(dim_reduced, dim_reduced, 2, 2, 0)),
            ("relu6", nn.ReLU(inplace=True)),
            ("mask_fcn_logits", nn.Conv2d(dim_reduced, num_classes, 1, 1, 0)),
        ]))


class AuthorsMaskPredictor56(nn.Sequential):
    """The authors' 56×56 mask predictor (mrcnn/model.py build_fpn_mask_graph, mask_shape 56): deconv(256) + ReLU
    → 1×1 conv to num_classes + sigmoid → ReLU (a no-op after the sigmoid, kept as written), then the usual
    deconv + ReLU → 1×1 conv to num_classes (logits; matterport's sigmoid is in torchvision's loss/inference)."""

    def __init__(self, in_channels: int, dim_reduced: int, num_classes: int):
        super().__init__(OrderedDict([
            ("deconv_0", nn.ConvTranspose2d(in_channels, dim_reduced, 2, 2, 0)),
            ("relu_deconv_0", nn.ReLU(inplace=True)),
            ("deconv_conv_0", nn.Conv2d(dim_reduced, num_classes, 1, 1, 0)),
            ("sigmoid_0", nn.Sigmoid()),
            ("relu_0", nn.ReLU()),  # not in place: the sigmoid's backward needs its output
            ("conv5_mask", nn.ConvTranspose2d(num_classes, dim_reduced, 2, 2, 0)),
            ("relu5", nn.ReLU(inplace=True)),
            ("mask_fcn_logits", nn.Conv2d(dim_reduced, num_classes, 1, 1, 0)),
        ]))


#: The mask predictor of each ``architecture.MASK_SIZES`` value (56: per ``architecture.MASK_HEADS_56``).
MASK_PREDICTORS = dict(zip(MASK_SIZES, (MaskRCNNPredictor, MaskPredictor56)))
MASK_PREDICTORS_56 = dict(zip(MASK_HEADS_56, (MaskPredictor56, AuthorsMaskPredictor56)))


class FrozenStatsBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` that always normalises with its running statistics and never updates them (it stays in eval
    mode), while its scale and shift (weight, bias) train: Keras BatchNorm called with training=False, as matterport
    does under TRAIN_BN = False (mrcnn/model.py BatchNorm)."""

    def train(self, mode: bool = True) -> "FrozenStatsBatchNorm2d":
        return super().train(False)


class WideRPNHead(RPNHead):
    """torchvision's ``RPNHead`` with ``channels`` in its shared 3×3 conv instead of the FPN width (matterport's
    rpn_graph: Conv2D(512, 3×3, relu), mrcnn/model.py)."""

    def __init__(self, in_channels: int, num_anchors: int, channels: int):
        super().__init__(channels, num_anchors)
        self.conv = nn.Sequential(Conv2dNormActivation(in_channels, channels, kernel_size=3, norm_layer=None))


def load_imagenet(body: nn.Module, name: str, weights: str) -> set[str]:
    """Load ``weights`` into the ResNet ``body``: "imagenet" (torchvision's file for ``name``), "imagenet-resnet50"
    (torchvision's ResNet-50 file by layer name into any ResNet, as the authors' code loaded its Keras ResNet-50
    file: a ResNet-101 keeps random init in layer3.6-22, matterport's res4g-res4w) or a state_dict path. Returns
    the state_dict names the file did not cover (``fc`` and ``num_batches_tracked`` left out)."""
    by_name, arch = weights == "imagenet-resnet50", name
    if by_name:
        weights, name = "imagenet", "resnet50"
    if weights == "imagenet":
        if name not in IMAGENET_WEIGHTS:
            raise EdgeRCNNError(f"--backbone-weights imagenet: no ImageNet file for backbone {name}; "
                                "pass a state_dict file or none (random weights)")
        url = IMAGENET_WEIGHTS[name].url
        path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        hint = (f"download {url} to {path} (or pass --backbone-weights PATH; --backbone-weights none trains from "
                "random weights, with stages that start with all layers)")
    else:
        path, hint = Path(weights), "pass the path of a torchvision ResNet ImageNet state_dict"
    if not path.is_file():
        raise EdgeRCNNError(f"backbone weights not found at {path}: {hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise EdgeRCNNError(f"{path}: not a readable torch state_dict ({err.__class__.__name__}); {hint}") from err
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = body.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes differ: another architecture's file
        raise EdgeRCNNError(f"{path}: does not match {arch} ({str(err).splitlines()[-1].strip()[:120]}); "
                            f"{hint}") from None
    uncovered = {k for k in missing if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    missing = [] if by_name else sorted(uncovered)
    if missing or unexpected:
        raise EdgeRCNNError(f"{path}: does not match {arch} (missing {missing[:3]}, unexpected {unexpected[:3]}); "
                            f"{hint}")
    return uncovered


def xavier_init_(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every conv/linear layer in ``module`` (section 4)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def set_trainable(model: MaskRCNN, layers: str) -> None:
    """Staged unfreezing (section 4): "heads" = all but the ResNet; "4+" = heads + ResNet stages 4 and 5
    (torchvision layer3, layer4; matterport's "4+"); "all" = everything."""
    body = model.backbone.body
    for p in model.parameters():
        p.requires_grad_(True)
    if layers not in STAGE_LAYERS:
        raise ValueError(f"layers: got {layers!r}; choose {', '.join(STAGE_LAYERS)}")
    if layers == "all":
        return
    for name, p in body.named_parameters():
        p.requires_grad_(layers == "4+" and name.split(".")[0] in STAGE_4_AND_UP)
