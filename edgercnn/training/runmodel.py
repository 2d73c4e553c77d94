"""The model of a run folder: its config (with its own weights in place of any pretrained ones), the model built
from it, and its final (or latest checkpointed) weights loaded. The one place evaluation and visualization get it."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from edgercnn.config import Config
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.builders.model import build_model
from edgercnn.builders.runweights import RunWeights
from edgercnn.training.rundir import RunDir


@dataclass(frozen=True)
class RunModel:
    cfg: Config  # the run's config.yaml
    model: nn.Module  # on the CPU, in training mode as built
    weights: RunWeights  # what was loaded: step, wall time, final or checkpoint


def load_run_model(run: RunDir, fix: str) -> RunModel:
    """``run``'s config, model and weights (``RunDir.load_weights``; ``fix``: what to do when model_final.pt is
    damaged). One-line errors for a folder without a config or weights, and for weights that do not fit the
    config."""
    cfg = run.load_config()
    weights = run.load_weights(fix)
    model = build_model(cfg, pretrained=False)  # the run's own weights replace any pretrained ones
    try:
        model.load_state_dict(weights.state)
    except RuntimeError as err:
        raise EdgeRCNNError(f"{run}: its weights do not match its config.yaml ({str(err).splitlines()[0]}); "
                            "was the folder edited by hand?") from None
    return RunModel(cfg, model, weights)
