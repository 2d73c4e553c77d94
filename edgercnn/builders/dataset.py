"""The Dataset of a config: the one place that opens ``cfg.data`` and reads the config's data keys for it."""

from __future__ import annotations

from edgercnn.config import Config
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.data.dataset import CocoInstanceDataset

#: What a Dataset is opened for. ``train``: flips, images without annotations skipped when ``skip_empty_images``;
#: ``eval``: no flips, ``eval_max_images`` and ``eval_images`` (all/annotated) as the evaluation scores them;
#: ``view``: no flips, every image (figures, visualize).
PURPOSES = ("train", "eval", "view")


def build_dataset(cfg: Config, split: str, purpose: str, *, max_images: int | None = None) -> CocoInstanceDataset:
    """``split`` of ``cfg.data`` on ``cfg``'s canvas (size, resize mode, minimum side) for ``purpose``
    (``PURPOSES``). ``max_images`` (eval only) overrides ``cfg.eval_max_images``."""
    if purpose not in PURPOSES:
        raise EdgeRCNNError(f"build_dataset: purpose {purpose!r} is unknown; choose from {', '.join(PURPOSES)}")
    common = dict(canvas=tuple(cfg.canvas), resize=cfg.resize, min_dim=cfg.resize_min_dim)
    if purpose == "train":
        return CocoInstanceDataset(cfg.data, split, train=True, hflip=cfg.hflip, strict=cfg.strict,
                                   skip_empty=cfg.skip_empty_images, **common)
    if purpose == "eval":
        return CocoInstanceDataset(cfg.data, split, train=False, strict=cfg.strict,
                                   max_images=max_images if max_images is not None else cfg.eval_max_images,
                                   annotated_only=cfg.eval_images == "annotated", **common)
    return CocoInstanceDataset(cfg.data, split, train=False, **common)
