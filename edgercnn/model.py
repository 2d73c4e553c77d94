"""torchvision's Mask R-CNN with the Edge Agreement Head, and the paper's staged unfreezing.

Relies on torchvision 0.17–0.29 (checked against 0.29.1): ``RoIHeads.forward`` computes the mask loss with
``maskrcnn_loss(mask_logits, proposals, gt_masks, gt_labels, mask_matched_idxs)``, which projects the
ground-truth masks with ``project_masks_on_boxes``. ``EdgeRoIHeads`` overrides only the training branch of
``forward`` so that these targets are projected once and shared by the cross-entropy and the edge term;
inference, the baseline and the state_dict are torchvision's. ``tests/test_model.py`` fails loudly if that seam
moves.
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
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss, project_masks_on_boxes
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from edgercnn.architecture import BACKBONES, GN_GROUPS, MASK_SIZES
from edgercnn.config import Config
from edgercnn.errors import EdgeRCNNError
from edgercnn.losses import EdgeLoss
from edgercnn.schedule import STAGE_LAYERS

IMAGENET_WEIGHTS = {"resnet50": ResNet50_Weights.IMAGENET1K_V1, "resnet101": ResNet101_Weights.IMAGENET1K_V1}
RESNETS = {"resnet18": resnet18, "resnet50": resnet50, "resnet101": resnet101}
#: ResNet stage k (conv{k}_x, the paper's and matterport's numbering) is torchvision's layer{k-1}.
STAGE_4_AND_UP = ("layer3", "layer4")


class EdgeRoIHeads(RoIHeads):
    """``RoIHeads`` that adds ``loss_edge`` during training when ``edge_loss`` is set.

    Adds no parameters, so its state_dict is torchvision's.
    """

    def __init__(self, *args, edge_loss: EdgeLoss | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.edge_loss = edge_loss

    def forward(self, features, proposals, image_shapes, targets=None):
        if not self.training or self.edge_loss is None:
            return super().forward(features, proposals, image_shapes, targets)
        if targets is None or not self.has_mask() or self.keypoint_predictor is not None:
            raise ValueError("EdgeRoIHeads trains masks only and needs targets")
        # Same steps as torchvision 0.29.1 RoIHeads.forward (training branch, boxes then masks).
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)

        pos = [torch.where(lab > 0)[0] for lab in labels]
        mask_proposals = [prop[i] for prop, i in zip(proposals, pos)]
        pos_matched_idxs = [m[i] for m, i in zip(matched_idxs, pos)]
        mask_logits = self.mask_predictor(self.mask_head(self.mask_roi_pool(features, mask_proposals, image_shapes)))
        loss_mask, loss_edge = self.mask_losses(mask_logits, mask_proposals, targets, pos_matched_idxs)
        losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg,
                  "loss_mask": loss_mask, "loss_edge": loss_edge}
        return [], losses

    def mask_losses(self, mask_logits: Tensor, proposals, targets, matched_idxs) -> tuple[Tensor, Tensor]:
        """torchvision's ``maskrcnn_loss`` and the edge loss over one set of projected mask targets."""
        size = mask_logits.shape[-1]
        gt_labels = torch.cat([t["labels"][i] for t, i in zip(targets, matched_idxs)])
        mask_targets = torch.cat([
            project_masks_on_boxes(t["masks"], p, i, size) for t, p, i in zip(targets, proposals, matched_idxs)
        ])
        if mask_targets.numel() == 0:
            zero = mask_logits.sum() * 0
            return zero, zero
        logits = mask_logits[torch.arange(gt_labels.shape[0], device=gt_labels.device), gt_labels]
        loss_mask = F.binary_cross_entropy_with_logits(logits, mask_targets)
        # float32 outside autocast: the ce-* formulations use binary_cross_entropy, which autocast refuses
        with torch.autocast(logits.device.type, enabled=False):
            loss_edge = self.edge_loss(logits.float().sigmoid(), mask_targets.float())
        return loss_mask, loss_edge


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


#: The mask predictor of each ``architecture.MASK_SIZES`` value.
MASK_PREDICTORS = dict(zip(MASK_SIZES, (MaskRCNNPredictor, MaskPredictor56)))


def _load_imagenet(body: nn.Module, name: str, weights: str) -> None:
    if weights == "imagenet":
        if name not in IMAGENET_WEIGHTS:
            raise EdgeRCNNError(f"--backbone-weights imagenet: no ImageNet file for backbone {name}; "
                                "pass a state_dict file or leave it unset")
        url = IMAGENET_WEIGHTS[name].url
        path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        hint = f"download {url} to {path} (or pass --backbone-weights PATH)"
    else:
        path, hint = Path(weights), "pass the path of a torchvision ResNet ImageNet state_dict"
    if not path.is_file():
        raise EdgeRCNNError(f"backbone weights not found at {path}: {hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise EdgeRCNNError(f"{path}: not a readable torch state_dict ({err.__class__.__name__}); {hint}") from err
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = body.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise EdgeRCNNError(f"{path}: does not match {name} (missing {missing[:3]}, unexpected {unexpected[:3]}); "
                            f"{hint}")


def xavier_init_(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every conv/linear layer in ``module`` (section 4)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_model(cfg: Config) -> MaskRCNN:
    """torchvision ``MaskRCNN`` (FPN) for ``cfg``: backbone, mask size 28/56, edge loss, Xavier init.

    ``cfg.num_classes`` counts object classes (background excluded). ``cfg.norm``: frozen batch norms
    (``FrozenBatchNorm2d``, as in torchvision's detection models and the authors' matterport setup) or GroupNorm
    in the ResNet and FPN (see ``edgercnn.backbones.NORMS``).
    """
    if cfg.num_classes is None or cfg.num_classes < 1:
        raise EdgeRCNNError("num_classes is not set: pass --data with a prepared dataset (its manifest names them)")
    num_classes = cfg.num_classes + 1  # + background
    preset = BACKBONES[cfg.backbone]
    gn = cfg.norm == "gn"
    norm_layer = (lambda c: nn.GroupNorm(GN_GROUPS, c)) if gn else FrozenBatchNorm2d
    body = RESNETS[preset["resnet"]](weights=None, norm_layer=norm_layer)
    out_channels = preset["fpn_channels"]
    if cfg.backbone_weights:
        _load_imagenet(body, preset["resnet"], cfg.backbone_weights)
    backbone = BackboneWithFPN(body, {f"layer{k}": str(k - 1) for k in range(1, 5)}, list(preset["in_channels"]),
                               out_channels, extra_blocks=LastLevelMaxPool(),
                               norm_layer=(lambda c: nn.GroupNorm(GN_GROUPS, c)) if gn else None)
    mask_layers, head_dim, anchor_sizes = preset["mask_layers"], preset["box_head_dim"], preset["anchor_sizes"]
    predictor_cls = MASK_PREDICTORS[cfg.mask_size]
    model = MaskRCNN(
        backbone,
        num_classes=None,
        rpn_anchor_generator=AnchorGenerator(tuple((a,) for a in anchor_sizes), ((0.5, 1.0, 2.0),) * len(anchor_sizes)),
        box_head=TwoMLPHead(out_channels * 7 * 7, head_dim),
        box_predictor=FastRCNNPredictor(head_dim, num_classes),
        mask_head=MaskRCNNHeads(out_channels, mask_layers, 1),
        mask_predictor=predictor_cls(mask_layers[-1], preset["mask_dim"], num_classes),
        box_score_thresh=cfg.eval_score_threshold,
        box_detections_per_img=cfg.detections_per_image,
        **preset["detector"],
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
    )
    # Everything but the ResNet feature extractor starts from Xavier (section 4), FPN included.
    for part in (model.backbone.fpn, model.rpn, model.roi_heads):
        xavier_init_(part)
    return model


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
