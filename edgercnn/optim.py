"""The optimizer of a run: SGD with momentum (the paper's, section 4) or AdamW (a modern alternative)."""

from __future__ import annotations

import torch
from torch import nn

OPTIMIZERS = ("sgd", "adamw")


def build_optimizer(name: str, model: nn.Module, lr: float, momentum: float, weight_decay: float
                    ) -> torch.optim.Optimizer:
    """All parameters in one group (staged unfreezing only toggles ``requires_grad``, so the optimizer and its
    state are kept across stages). ``momentum`` is SGD's momentum, or AdamW's beta1."""
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)
    raise ValueError(f"optimizer: got {name!r}; choose {', '.join(OPTIMIZERS)}")
