"""Architecture choices as plain data (built by ``edgercnn.builders.model.build_model``, validated by the config):
backbone presets, normalisation, mask head sizes.

A preset names the torchvision ResNet and the widths of everything built on it. ``resnet50``/``resnet101`` are
torchvision's Mask R-CNN R-FPN sizes (the authors used ResNet-101); ``small`` is the CPU preset: ResNet-18,
64-channel FPN and heads, fewer proposals and sampled RoIs, anchors one octave smaller.
"""

from __future__ import annotations

from types import MappingProxyType

BACKBONES = MappingProxyType({
    "resnet50": MappingProxyType({
        "resnet": "resnet50", "in_channels": (256, 512, 1024, 2048), "fpn_channels": 256, "box_head_dim": 1024,
        "mask_layers": (256, 256, 256, 256), "mask_dim": 256, "anchor_sizes": (32, 64, 128, 256, 512),
        "detector": MappingProxyType({}),
    }),
    "resnet101": MappingProxyType({
        "resnet": "resnet101", "in_channels": (256, 512, 1024, 2048), "fpn_channels": 256, "box_head_dim": 1024,
        "mask_layers": (256, 256, 256, 256), "mask_dim": 256, "anchor_sizes": (32, 64, 128, 256, 512),
        "detector": MappingProxyType({}),
    }),
    "small": MappingProxyType({
        "resnet": "resnet18", "in_channels": (64, 128, 256, 512), "fpn_channels": 64, "box_head_dim": 256,
        "mask_layers": (64, 64), "mask_dim": 64, "anchor_sizes": (16, 32, 64, 128, 256),
        "detector": MappingProxyType({"rpn_pre_nms_top_n_train": 600, "rpn_post_nms_top_n_train": 300,
                                      "rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 150,
                                      "box_batch_size_per_image": 64}),
    }),
})

#: ``frozen_bn``: FrozenBatchNorm2d in the ResNet (torchvision's and matterport's choice with ImageNet weights; from
#: random weights it is the identity, i.e. no normalisation). ``gn``: GroupNorm in the ResNet and the FPN, which
#: trains from scratch and has no running statistics (Wu & He 2018; what the CPU preset uses). ``frozen_stats_bn``:
#: batch norm with frozen statistics but a trainable scale and shift (model.FrozenStatsBatchNorm2d), trained with
#: their ResNet stage: matterport's BatchNorm under TRAIN_BN = False, which the authors' code ran.
NORMS = ("frozen_bn", "gn", "frozen_stats_bn")
#: Groups of the GroupNorm layers (``gn``); every preset width is a multiple of it.
GN_GROUPS = 16
#: Mask head output sizes: 28 (torchvision's) or 56 (one more 2x upsampling; sections 5.4, 5.7).
MASK_SIZES = (28, 56)
#: The 56×56 mask predictor (``model.MASK_PREDICTORS_56``): ``deconv`` = torchvision's predictor with one more
#: deconv; ``authors`` = the authors' build_fpn_mask_graph (mrcnn/model.py): per extra 2× step deconv(256) + ReLU
#: → 1×1 conv to num_classes + sigmoid → ReLU, then the usual deconv + ReLU → 1×1 logits.
MASK_HEADS_56 = ("deconv", "authors")
#: Inference post-processing (``model.EdgeRoIHeads``): ``torchvision`` = a score per class above the threshold,
#: NMS per class; ``matterport`` = the argmax class of each RoI only, background-argmax RoIs dropped
#: (mrcnn/model.py refine_detections_graph).
POSTPROCESS = ("torchvision", "matterport")
#: RoI sampling for the box/mask heads: ``torchvision`` = up to roi_per_image × fraction positives, negatives fill
#: the rest; ``matterport`` = the same positives, negatives only int(pos / fraction) − pos (mrcnn/model.py
#: detection_targets_graph).
ROI_SAMPLING = ("torchvision", "matterport")
#: Mask targets of the mask loss: ``soft`` = torchvision's RoIAligned ground truth; ``binary`` = rounded to 0/1
#: (matterport's tf.round in detection_targets_graph).
MASK_TARGETS = ("soft", "binary")
#: RoIs overlapping a crowd region (IoU >= 0.001): ``keep`` them as negatives (torchvision) or ``exclude`` them from
#: the negatives (matterport's detection_targets_graph, "Handle COCO crowds").
CROWD_NEGATIVES = ("keep", "exclude")

#: What a training stage trains (section 4): heads only; ResNet stage 4 and up plus heads; everything.
STAGE_LAYERS = ("heads", "4+", "all")
