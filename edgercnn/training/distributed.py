"""One run on N processes (``torchrun --nproc-per-node N -m edgercnn train ...``), equal to one process with the
whole batch.

Each process takes its slice of the step's batch (``data.sampling.batch_keys``), so the effective batch and the
data order stay a function of (seed, step). Two things make N processes × batch b/N compute the same losses and
gradients as 1 process × batch b (tests/training/test_distributed.py checks it to 1e-5):

1. RoI/anchor sampling per image. torchvision's ``BalancedPositiveNegativeSampler`` draws from the global RNG
   image after image, so image 2 of a one-process batch sees another stream than image 2 alone on rank 1.
   ``model.sampling.PerImageSampling`` wraps the RPN's and the RoI heads' sampler (whichever it is) and samples each image
   with the RNG seeded from that sample's own seed: sampling is a function of (seed, sample index).
2. The losses' reductions. torchvision averages each loss over the whole batch's sampled anchors (objectness,
   RPN box), sampled RoIs (classifier, box) or positive RoIs (mask; and our edge loss), so images weigh by their
   counts, which differ between images. Averaging per-process means would weigh processes equally; instead each
   process scales every loss by its count × N / (the count summed over processes), so the mean over processes
   (of losses and, after the all-reduce, of gradients) is the one-process mean.

What remains is float rounding (a batch of 2 and two batches of 1 go through the convolutions differently): about
1e-7, which a discrete choice (proposals' top-k, NMS, IoU matching) can amplify when the weights move fast.

Gradients are all-reduced by hand after ``backward`` (one flat buffer) instead of with
``DistributedDataParallel``: the paper's staged unfreezing changes ``requires_grad`` between stages, which DDP
does not allow after wrapping. Only rank 0 writes files.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import timedelta

import torch
import torch.distributed as dist

from edgercnn.config import Config
from edgercnn.model.mask_terms import TERM_KEYS
from edgercnn.data.sampling import batch_keys
from edgercnn.core.errors import EdgeRCNNError

#: Which sampler count each torchvision loss is averaged over.
LOSS_COUNTS = {"loss_objectness": "rpn_sampled", "loss_rpn_box_reg": "rpn_sampled", "loss_classifier": "roi_sampled",
               "loss_box_reg": "roi_sampled", "loss_mask": "roi_positive", "loss_edge": "roi_positive",
               **{k: "roi_positive" for k in TERM_KEYS}}


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def setup(cfg: Config) -> Config:
    """Join the process group torchrun (or submitit) describes in the environment (RANK, WORLD_SIZE, ...), if
    any; returns ``cfg`` with ``world_size`` recorded and, on CUDA, this process's GPU (LOCAL_RANK)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return dataclasses.replace(cfg, world_size=1) if cfg.world_size != 1 else cfg
    if cfg.batch_size % world:
        raise EdgeRCNNError(f"batch_size {cfg.batch_size} is not divisible by the {world} processes; pass a "
                            f"--batch-size that is a multiple of --nproc-per-node (each process takes an equal part)")
    device = cfg.device
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda and ":" not in device:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(torch.device(device))
        # long timeout: the other ranks wait at the next all-reduce while rank 0 evaluates (--eval-every)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(hours=2))
    return dataclasses.replace(cfg, world_size=world, device=device)


def image_seeds(n: int, cfg: Config, step: int) -> list[int]:
    """The sampling seeds of this process's images of 0-based ``step`` (its slice of the step's batch)."""
    rank, world = rank_and_world()
    per = cfg.batch_size // world
    return [aug for _, aug in batch_keys(n, cfg.batch_size, cfg.seed, step)[rank * per:(rank + 1) * per]]


def reweight_losses(model, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scale each loss by this process's count × N / the count over all processes (see the module docstring), so
    that the mean over processes is the one-process batch mean. Unchanged on one process."""
    _, world = rank_and_world()
    if world == 1:
        return losses
    rpn, roi = model.rpn.fg_bg_sampler, model.roi_heads.fg_bg_sampler
    local = torch.stack([rpn.sampled, roi.sampled, roi.positive]).to(torch.float64)
    total = local.clone()
    dist.all_reduce(total)
    scale = torch.where(total > 0, local * world / total.clamp(min=1), torch.ones_like(total))
    index = {"rpn_sampled": 0, "roi_sampled": 1, "roi_positive": 2}
    return {k: v * scale[index[LOSS_COUNTS[k]]].to(v.dtype) if k in LOSS_COUNTS else v for k, v in losses.items()}


def average_gradients(model) -> None:
    """Mean of the gradients over processes, in one flat all-reduce (a trainable parameter without a gradient
    counts as zeros)."""
    _, world = rank_and_world()
    if world == 1:
        return
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p.grad))
        offset += p.numel()


def average(values: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over processes (the logged losses)."""
    _, world = rank_and_world()
    if world == 1:
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / world
