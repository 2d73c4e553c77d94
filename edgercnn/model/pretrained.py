"""Where a model's weights start: the backbone's ImageNet file, torchvision's COCO-trained Mask R-CNN, or a file.

The vocabulary of the ``backbone_weights`` and ``init`` config keys lives here with the rules that tie them to the
architecture (checked by the config, applied by ``builders.model``):

- ``backbone_weights: auto`` (the default) is the ImageNet file for the paper's backbones with frozen batch norm
  (``IMAGENET_BACKBONES`` x ``PRETRAINED_NORMS``), random weights otherwise (the CPU presets: GroupNorm, ``small``);
  ``none`` (None) is random weights, asked for explicitly.
- ``init: coco`` starts the whole detector from torchvision's ``maskrcnn_resnet50_fpn`` COCO_V1 weights (the torch
  hub cache, as torchvision's Penn-Fudan tutorial), box and mask predictors left new for the dataset's classes;
  ``init: PATH`` from a Mask R-CNN state_dict file or a finished run folder (predictors kept when their shapes fit).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

from edgercnn.core.checkpoint import read_weights
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.model.vocab import (AUTO, COCO_BACKBONE, COCO_INIT_NAMES, IMAGENET_BACKBONES,  # noqa: F401 (owned there)
                                  PRETRAINED_NORMS, check_init, resolve_backbone_weights)

#: ``init`` names with a torchvision file in the torch hub cache. (``maskrcnn_resnet50_fpn_v2`` is another
#: architecture: BatchNorm in the FPN and heads, a 4-conv box head, a 2-conv RPN; not built here.)
COCO_INITS = {"coco": MaskRCNN_ResNet50_FPN_Weights.COCO_V1}
assert tuple(COCO_INITS) == COCO_INIT_NAMES, "model.vocab.COCO_INIT_NAMES names these files"
#: Left new for the dataset's classes under COCO init (torchvision's tutorial replaces these two).
PREDICTORS = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.")


def coco_file(init: str) -> tuple[Path, str]:
    """(the torch hub cache path of ``init``'s torchvision file, what to do when it is missing)."""
    url = COCO_INITS[init].url
    path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    return path, f"download {url} to {path} (or pass --init PATH of a Mask R-CNN state_dict)"


def load_coco(path: Path, hint: str) -> dict[str, Tensor]:
    """torchvision's COCO state_dict at ``path`` (``weights_only``); one-line error naming ``hint`` otherwise."""
    if not Path(path).is_file():
        raise EdgeRCNNError(f"COCO weights not found at {path}: {hint}")
    return read_weights(path, hint)


def load_detector(model: nn.Module, state: dict[str, Tensor], where: str, new_predictors: bool) -> list[str]:
    """Copy ``state`` (a whole Mask R-CNN's) into ``model``. The box and mask predictors stay new when
    ``new_predictors`` or when their shapes differ (other classes); every other key must be there with its shape,
    else a one-line error naming ``where``. Returns the names left new."""
    own = model.state_dict()
    predictor = tuple(PREDICTORS)
    kept = {k for k in own if k.startswith(predictor) and (new_predictors or k not in state
                                                           or state[k].shape != own[k].shape)}
    missing = sorted(k for k in own if k not in state and k not in kept and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in own and not k.startswith(predictor)
                        and not k.endswith("num_batches_tracked"))  # a BatchNorm2d file into frozen batch norm
    wrong = sorted(k for k in own if k in state and k not in kept and state[k].shape != own[k].shape)
    if missing or unexpected or wrong:
        raise EdgeRCNNError(f"{where}: does not fit this model (missing {missing[:2]}, unexpected {unexpected[:2]}, "
                            f"other shapes {wrong[:2]}); pass a Mask R-CNN of the same --backbone, --norm and "
                            "--mask-size")
    model.load_state_dict({k: v for k, v in state.items() if k in own and k not in kept}, strict=False)
    return sorted(kept)
