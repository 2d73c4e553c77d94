"""Per-image RoI and anchor sampling: each image of a batch sampled with the RNG seeded from its own seed, so that
sampling is a function of (seed, sample index) however a batch is split over processes (``training.distributed``
explains why) and the trainer can set the seeds of a step. A model part: the trainer installs it, the RPN and the
RoI heads call it."""

from __future__ import annotations

import numpy as np
import torch


class PerImageSampling:
    """Wraps a positive/negative sampler (torchvision's ``BalancedPositiveNegativeSampler`` interface): each image
    is sampled with the RNG seeded from its ``seeds`` entry (unset: the wrapped sampler as is, e.g. in evaluation),
    and the counts of the last call are kept (``positive``, ``sampled``: 0-d tensors)."""

    def __init__(self, inner, salt: int):
        self.inner, self.salt = inner, salt
        self.seeds: list[int] | None = None
        self.positive = self.sampled = None

    def __getattr__(self, name):  # batch_size_per_image, positive_fraction, ... of the wrapped sampler
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __call__(self, matched_idxs):
        if self.seeds is None:
            pos, neg = self.inner(matched_idxs)
        else:
            if len(self.seeds) != len(matched_idxs):
                raise RuntimeError(f"{len(self.seeds)} sampling seeds for {len(matched_idxs)} images")
            pos, neg = [], []
            for seed, matched in zip(self.seeds, matched_idxs):
                image_seed = int(np.random.SeedSequence([seed, self.salt]).generate_state(1)[0])
                devices = [matched.device] if matched.is_cuda else []
                with torch.random.fork_rng(devices=devices):
                    torch.random.default_generator.manual_seed(image_seed)
                    if matched.is_cuda:  # randperm on the masks' device draws from that device's generator
                        index = matched.device.index if matched.device.index is not None else torch.cuda.current_device()
                        torch.cuda.default_generators[index].manual_seed(image_seed)
                    p, q = self.inner([matched])
                pos += p
                neg += q
        self.positive = sum(p.sum() for p in pos)
        self.sampled = self.positive + sum(q.sum() for q in neg)
        return pos, neg


def install_per_image_sampling(model) -> None:
    """Wrap the RPN's and the RoI heads' samplers of a torchvision Mask R-CNN in ``PerImageSampling``."""
    for salt, part in enumerate((model.rpn, model.roi_heads)):
        if not isinstance(part.fg_bg_sampler, PerImageSampling):
            part.fg_bg_sampler = PerImageSampling(part.fg_bg_sampler, salt)


def set_image_seeds(model, seeds: list[int] | None) -> None:
    """The seeds of the images of the next forward (None: the wrapped samplers as they are, e.g. in evaluation)."""
    for part in (model.rpn, model.roi_heads):
        part.fg_bg_sampler.seeds = seeds
