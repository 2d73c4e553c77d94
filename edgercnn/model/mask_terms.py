"""The boundary-aware mask losses a run adds to Mask R-CNN's per-pixel BCE: which, with what weight.

``MASK_TERMS`` is the one vocabulary of their names (the config's ``mask_losses``, ``train --mask-loss``,
``add_mask_losses``): the pure losses of ``model.mask_losses`` and BMask R-CNN's boundary branch (``model.bmask``).
Each term enters the training loss dict as ``loss_<name>``, already multiplied by its weight; the RoI heads
(``model.rcnn.EdgeRoIHeads``) call a ``MaskTerms`` on the same GT-class logits and projected targets as the BCE.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import Tensor

from edgercnn.model.bmask import bmask_loss
from edgercnn.model.mask_losses import DEFAULT_WEIGHTS, MASK_LOSSES, Weight
from edgercnn.model.vocab import BOUNDARY_RAMP_STEPS, MASK_TERMS, check_terms

# MASK_TERMS (model.vocab): the pure losses, then BMask R-CNN's boundary-preserving branch (a head + its loss).
assert MASK_TERMS == (*MASK_LOSSES, "bmask"), "model.vocab.MASK_TERMS names the losses of model.mask_losses"
#: Each term's default weight (and schedule) with its source (``mask_losses.DEFAULT_WEIGHTS``); BMask's boundary
#: loss enters the total with weight 1, as the reference's ``loss_boundary`` (hustvl/BMaskR-CNN mask_head.py).
TERM_WEIGHTS = {**DEFAULT_WEIGHTS, "bmask": Weight(1.0)}


def loss_key(name: str) -> str:
    """The training loss dict's key of term ``name``: ``dice`` → ``loss_dice``."""
    return f"loss_{name}"


#: The loss-dict keys of all terms, in ``MASK_TERMS`` order.
TERM_KEYS = tuple(loss_key(n) for n in MASK_TERMS)


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
