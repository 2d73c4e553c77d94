"""The optimizer of a run: SGD with momentum (the paper's, section 4) or AdamW (a modern alternative)."""

from __future__ import annotations

import torch
from torch import nn

OPTIMIZERS = ("sgd", "adamw")
#: The optimizer across stages: ``keep`` one (its momentum carries over) or a ``fresh`` one at each stage start
#: (matterport: MaskRCNN.train compiles a new keras SGD per stage).
OPTIMIZER_PER_STAGE = ("keep", "fresh")
#: How weight decay applies: ``uniform`` (torch's: the same ``weight_decay`` for every tensor) or ``per_size``
#: (matterport's MaskRCNN.compile: an L2 loss weight_decay × sum(w²) / w.size() per tensor, norm scales/shifts left
#: out; as SGD weight decay that is 2 × weight_decay / w.numel()).
WEIGHT_DECAY_MODES = ("uniform", "per_size")


def _param_groups(model: nn.Module, weight_decay: float, mode: str) -> list[dict]:
    """One group (``uniform``), or one per tensor with its own decay (``per_size``, see WEIGHT_DECAY_MODES)."""
    if mode == "uniform":
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    if mode != "per_size":
        raise ValueError(f"weight_decay_mode: got {mode!r}; choose {', '.join(WEIGHT_DECAY_MODES)}")
    norms = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)
    norm_params = {id(p) for m in model.modules() if isinstance(m, norms) for p in m.parameters(recurse=False)}
    return [{"params": [p], "weight_decay": 0.0 if id(p) in norm_params else 2 * weight_decay / p.numel()}
            for p in model.parameters()]


def build_optimizer(name: str, model: nn.Module, lr: float, momentum: float, weight_decay: float,
                    weight_decay_mode: str = "uniform") -> torch.optim.Optimizer:
    """All parameters in one group, or one per tensor with ``weight_decay_mode="per_size"`` (staged unfreezing only
    toggles ``requires_grad``, so the optimizer and its state are kept across stages). ``momentum`` is SGD's
    momentum, or AdamW's beta1."""
    groups = _param_groups(model, weight_decay, weight_decay_mode)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999))
    raise ValueError(f"optimizer: got {name!r}; choose {', '.join(OPTIMIZERS)}")
