"""The optimizer of a run: SGD with momentum (the paper's, section 4) or AdamW (a modern alternative)."""

from __future__ import annotations

import torch
from torch import nn

from edgercnn.model.vocab import OPTIMIZER_PER_STAGE, OPTIMIZERS, WEIGHT_DECAY_MODES  # noqa: F401 (owned there)

#: How the update runs: ``fused`` (one kernel per parameter group), ``foreach`` (one op per step of the update,
#: over all tensors of a group), ``plain`` (a chain of small ops per tensor); ``auto`` is the first that torch
#: supports for the optimizer and the parameters' devices. On the cpu-pennfudan step, fused AdamW took 0.93x the
#: plain step time (median of 24 alternating rounds, 1 thread; 0.87-0.96 over five runs of bench_train.py
#: --profile). Fused SGD is left out: torch's ``_fused_sgd`` (2.14) fails on a step where some tensors have a
#: momentum buffer and others not yet, which is what staged unfreezing makes.
IMPLEMENTATIONS = ("auto", "fused", "foreach", "plain")


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


def make_optimizer(name: str, model: nn.Module, lr: float, momentum: float, weight_decay: float,
                    weight_decay_mode: str = "uniform", implementation: str = "auto") -> torch.optim.Optimizer:
    """All parameters in one group, or one per tensor with ``weight_decay_mode="per_size"`` (staged unfreezing only
    toggles ``requires_grad``, so the optimizer and its state are kept across stages: tensors without a gradient
    are skipped by every implementation). ``momentum`` is SGD's momentum, or AdamW's beta1. ``implementation``: see
    IMPLEMENTATIONS; a resumed state dict brings its own (``load_state_dict`` restores the groups' ``fused`` and
    ``foreach`` flags), so a run resumes on the path it started on."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: got {name!r}; choose {', '.join(OPTIMIZERS)}")
    groups = _param_groups(model, weight_decay, weight_decay_mode)
    cls, kwargs = ((torch.optim.SGD, {"lr": lr, "momentum": momentum}) if name == "sgd" else
                   (torch.optim.AdamW, {"lr": lr, "betas": (momentum, 0.999)}))
    for flags in _implementation_flags(name, implementation):
        try:
            return cls(groups, **kwargs, **flags)
        except (RuntimeError, ValueError, TypeError):  # this torch lacks it for these devices/dtypes
            if implementation != "auto":
                raise
    raise AssertionError("unreachable: the plain implementation always constructs")


def _implementation_flags(name: str, implementation: str) -> list[dict]:
    """The constructor flags to try, in order, for ``implementation`` of optimizer ``name``."""
    flags = {"fused": {"fused": True}, "foreach": {"foreach": True}, "plain": {"foreach": False}}
    if name == "sgd":
        del flags["fused"]  # see IMPLEMENTATIONS
    if implementation == "auto":
        return list(flags.values())
    if implementation not in flags:
        choices = ", ".join(i for i in IMPLEMENTATIONS if i == "auto" or i in flags)
        raise ValueError(f"implementation: got {implementation!r} for {name}; choose {choices}")
    return [flags[implementation]]


def implementation_of(optimizer: torch.optim.Optimizer) -> str:
    """Which of IMPLEMENTATIONS (not ``auto``) ``optimizer`` runs, as its first group says."""
    group = optimizer.param_groups[0]
    return "fused" if group.get("fused") else "foreach" if group.get("foreach") else "plain"
