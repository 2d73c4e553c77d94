"""Albumentations transforms of section 4: fit into the canvas keeping the aspect ratio, zero-pad at the bottom
and right to exactly the canvas, and a horizontal flip (the only augmentation)."""

from __future__ import annotations

import cv2
import albumentations as A


def fit_scale(width: int, height: int, canvas: tuple[int, int]) -> float:
    """Resize factor that fits a ``width``×``height`` image into ``canvas`` = (W, H): min(W/w, H/h)."""
    return min(canvas[0] / width, canvas[1] / height)


def build_transforms(canvas: tuple[int, int] = (1024, 800), flip: bool = False) -> A.Compose:
    """Resize (fit, aspect kept) → zero pad to exactly canvas (W, H); with ``flip`` a horizontal flip first.

    The flip decision is made by the caller (from a per-sample seed), so this Compose is deterministic. Flipping
    before padding keeps the padding at the bottom/right.
    """
    width, height = canvas
    steps = [A.HorizontalFlip(p=1.0)] if flip else []
    steps += [
        # max_size_hw with both sides set scales by min(H/h, W/w), not by the longest side alone
        A.LongestMaxSize(max_size_hw=(height, width), interpolation=cv2.INTER_LINEAR,
                         mask_interpolation=cv2.INTER_NEAREST),
        A.PadIfNeeded(min_height=height, min_width=width, position="top_left",
                      border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0),
    ]
    return A.Compose(steps)
