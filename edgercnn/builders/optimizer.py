"""The optimizer of a run: :mod:`edgercnn.model.optim` (plain arguments) with the config's keys read for it."""

from __future__ import annotations

import torch
from torch import nn

from edgercnn.config import Config
from edgercnn.model import optim


def build_optimizer(cfg: Config, model: nn.Module, lr: float | None = None,
                    implementation: str = "auto") -> torch.optim.Optimizer:
    """``cfg.optimizer`` over ``model``'s parameters at ``lr`` (default: the first stage's), fused where torch
    has it (see ``edgercnn.model.optim.IMPLEMENTATIONS``). The trainer and anyone timing its step build it here."""
    lr = float(cfg.resolved_stages()[0]["lr"]) if lr is None else lr
    return optim.make_optimizer(cfg.optimizer, model, lr, cfg.momentum, cfg.weight_decay, cfg.weight_decay_mode,
                                 implementation)
