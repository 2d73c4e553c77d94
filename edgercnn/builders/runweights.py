"""A run folder's model weights: its two weight files and their one reader.

``RunDir`` (``edgercnn.training.rundir``) extends :class:`RunWeightFiles` with the rest of the folder; the weights
part sits here, below training, so that ``build_model`` can start from a run's weights (``--init RUN``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgercnn.core.checkpoint import read_checkpoint, read_weights
from edgercnn.core.errors import EdgeRCNNError


class RunWeightFiles:
    """The weight files of the run folder at ``path``: ``checkpoint.pt`` (model, optimizer, step, RNG states,
    dataset fingerprint; checksummed: ``edgercnn.core.checkpoint``) and ``model_final.pt`` (a plain torchvision
    ``MaskRCNN`` state_dict)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def final_weights(self) -> Path:
        return self.path / "model_final.pt"

    def load_weights(self, fix: str) -> "RunWeights":
        """The run's model weights: ``model_final.pt`` when training finished (``fix``: what to do when that file is
        damaged), else the last checkpoint's; with the checkpoint's step and wall time. The one reader of a run's
        weights (checksummed, ``weights_only``: ``edgercnn.core.checkpoint``); one-line error without any."""
        info = read_checkpoint(self.checkpoint) if self.checkpoint.is_file() else None
        step = int(info["step"]) if info is not None else None
        wall = float(info["wall_time_s"]) if info is not None else None
        data = info.get("data_fingerprint") if info is not None else None
        if self.final_weights.is_file():
            return RunWeights(read_weights(self.final_weights, fix), step, wall, True, data)
        if info is None:
            raise EdgeRCNNError(f"{self}: no {self.final_weights.name} or {self.checkpoint.name}; train the run "
                                "first (edgercnn train)")
        return RunWeights(info["model"], step, wall, False, data)


@dataclass(frozen=True)
class RunWeights:
    """A run's model weights as ``RunWeightFiles.load_weights`` read them."""

    state: dict[str, Any]  # the model's state_dict
    step: int | None  # steps trained, from the checkpoint (None: model_final.pt without a checkpoint)
    wall_time_s: float | None
    final: bool  # from model_final.pt (training finished); else the last checkpoint's model
    data_fingerprint: str | None = None  # the checkpoint's dataset fingerprint (what the run trained on)
