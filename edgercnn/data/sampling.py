"""Seeded data order: which samples (and which flip seeds) make up training step k, as a pure function.

Sample k of a run (k = step · batch_size + j) comes from epoch k // n at position k % n of that epoch's
permutation, and carries its own augmentation seed. Nothing depends on iterator state, so a resumed run
sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from torch.utils.data import Sampler


@lru_cache(maxsize=4)
def _permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def sample_key(n: int, seed: int, k: int) -> tuple[int, int]:
    """(dataset index, augmentation seed) of the k-th sample drawn in a run."""
    index = int(_permutation(n, seed, k // n)[k % n])
    aug_seed = int(np.random.SeedSequence([seed, k]).generate_state(1)[0])
    return index, aug_seed


def batch_keys(n: int, batch_size: int, seed: int, step: int) -> list[tuple[int, int]]:
    """The keys of 0-based training step ``step``."""
    return [sample_key(n, seed, step * batch_size + j) for j in range(batch_size)]


class StepBatchSampler(Sampler):
    """Yields the key batches of steps ``start_step`` … ``end_step - 1`` (0-based); with ``world_size`` > 1 the
    ``rank``-th of ``world_size`` equal slices of each (one process of a distributed run)."""

    def __init__(self, n: int, batch_size: int, seed: int, start_step: int, end_step: int, rank: int = 0,
                 world_size: int = 1):
        if n < 1:
            raise ValueError("the training split is empty")
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} is not divisible by world_size {world_size}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start_step, self.end_step = start_step, end_step
        self.per_rank = batch_size // world_size
        self.first = rank * self.per_rank

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step)

    def __iter__(self):
        for step in range(self.start_step, self.end_step):
            yield batch_keys(self.n, self.batch_size, self.seed, step)[self.first:self.first + self.per_rank]
