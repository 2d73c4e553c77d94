"""The boundary-aware mask losses a run adds to Mask R-CNN's per-pixel BCE: which, with what weight.

``MASK_TERMS`` is the one vocabulary of their names (the config's ``mask_losses``, ``train --mask-loss``,
``add_mask_losses``): the pure losses of ``model.mask_losses`` and BMask R-CNN's boundary branch (``model.bmask``).
Each term enters the training loss dict as ``loss_<name>``, already multiplied by its weight; the RoI heads
(``model.rcnn.EdgeRoIHeads``) call a ``MaskTerms`` on the same GT-class logits and projected targets as the BCE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from torch import Tensor

from edgercnn.model.bmask import bmask_loss
from edgercnn.model.mask_losses import DEFAULT_WEIGHTS, MASK_LOSSES, Weight

#: Every term a run can add: the pure losses, then BMask R-CNN's boundary-preserving branch (a head + its loss).
MASK_TERMS = (*MASK_LOSSES, "bmask")
#: Each term's default weight (and schedule) with its source (``mask_losses.DEFAULT_WEIGHTS``); BMask's boundary
#: loss enters the total with weight 1, as the reference's ``loss_boundary`` (hustvl/BMaskR-CNN mask_head.py).
TERM_WEIGHTS = {**DEFAULT_WEIGHTS, "bmask": Weight(1.0)}
#: Steps per +0.01 of the boundary loss's weight ramp (Kervadec et al.: per epoch; see DEFAULT_WEIGHTS).
BOUNDARY_RAMP_STEPS = DEFAULT_WEIGHTS["boundary"].every


def loss_key(name: str) -> str:
    """The training loss dict's key of term ``name``: ``dice`` → ``loss_dice``."""
    return f"loss_{name}"


#: The loss-dict keys of all terms, in ``MASK_TERMS`` order.
TERM_KEYS = tuple(loss_key(n) for n in MASK_TERMS)


def check_terms(names, weights: dict[str, float] | None = None, ramp_steps: int = BOUNDARY_RAMP_STEPS) \
        -> tuple[str, ...]:
    """Validate term names (unknown, repeated), their weight overrides (a known term among ``names``, a finite
    number >= 0) and the ramp length (>= 1); return the names as a tuple. ValueError saying what is allowed."""
    names = (names,) if isinstance(names, str) else tuple(names)
    unknown = [n for n in names if n not in MASK_TERMS]
    if unknown:
        raise ValueError(f"mask_losses: unknown {unknown}; allowed: {', '.join(MASK_TERMS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"mask_losses: {list(names)} names a loss twice; give each once")
    for name, w in (weights or {}).items():
        if name not in names:
            raise ValueError(f"mask_loss_weights: {name!r} is not among the mask losses {list(names)}; add it with "
                             "--mask-loss or drop its weight")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(f"mask_loss_weights: {name}={w!r}; a weight is a finite number >= 0")
    if isinstance(ramp_steps, bool) or not isinstance(ramp_steps, int) or ramp_steps < 1:
        raise ValueError(f"boundary_ramp_steps: must be an integer >= 1, got {ramp_steps!r}")
    return names


@dataclass(frozen=True)
class MaskTerms:
    """The extra mask-loss terms of one run, callable on the positive RoIs' GT-class logits and targets.

    ``weights`` set a constant weight per name over ``TERM_WEIGHTS``; without one, the ``boundary`` term follows
    Kervadec's ramp (0.01, +0.01 every ``ramp_steps`` steps, ``mask_losses.boundary_weight``)."""

    names: tuple[str, ...] = ()
    weights: tuple[tuple[str, float], ...] = ()
    ramp_steps: int = BOUNDARY_RAMP_STEPS

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", check_terms(self.names, dict(self.weights), self.ramp_steps))
        object.__setattr__(self, "weights", tuple(sorted((k, float(v)) for k, v in dict(self.weights).items())))

    @classmethod
    def from_config(cls, cfg) -> "MaskTerms | None":
        """The terms of a run config (``mask_losses``, ``mask_loss_weights``, ``boundary_ramp_steps``); None for
        none, so a run without them keeps torchvision's training path."""
        if not cfg.mask_losses:
            return None
        return cls(tuple(cfg.mask_losses), tuple(cfg.mask_loss_weights.items()), cfg.boundary_ramp_steps)

    @property
    def bmask(self) -> bool:
        """Whether the run has BMask R-CNN's boundary branch (a head: ``bmask.add_bmask``)."""
        return "bmask" in self.names

    def weight(self, name: str, step: int) -> float:
        """The factor of term ``name`` at training step ``step`` (0-based count of steps done)."""
        weights = dict(self.weights)
        if name in weights:
            return weights[name]
        default = TERM_WEIGHTS[name]
        if name == "boundary":
            default = replace(default, every=self.ramp_steps)
        return default.at(step)

    def __call__(self, logits: Tensor, targets: Tensor, step: int,
                 boundary_logits: Tensor | None = None) -> dict[str, Tensor]:
        """``{loss_<name>: weight × loss}`` for the pure terms over ``logits``/``targets`` [N, M, M], and BMask's over
        ``boundary_logits`` [N, M, M] (GT class selected) when it is a term. Each loss computes in float32 with
        autocast off itself (``mask_losses``, ``bmask.bmask_loss``)."""
        out = {}
        for name in self.names:
            if name == "bmask":
                if boundary_logits is None:
                    raise ValueError("mask_losses: bmask needs the BMask head's boundary logits "
                                     "(edgercnn.model.bmask.add_bmask)")
                loss = bmask_loss(boundary_logits, targets)
            else:
                loss = MASK_LOSSES[name](logits, targets)
            out[loss_key(name)] = self.weight(name, step) * loss
        return out
