"""The canvas mapping of section 4, both directions side by side.

Forward (albumentations, data side): fit into the canvas keeping the aspect ratio, zero-pad at the bottom and
right to exactly the canvas, and a horizontal flip (the only augmentation); ``canvas_geometry`` is what the
forward pass did (scale and pad offsets), recorded in every target. Inverse (``to_original``, evaluation side):
predicted boxes and masks on the canvas back to original image pixels.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import torch
import torch.nn.functional as F

#: Where the padding goes: the image sits at the top-left of the canvas.
PAD_POSITION = "top_left"


def fit_scale(width: int, height: int, canvas: tuple[int, int]) -> float:
    """Resize factor that fits a ``width``×``height`` image into ``canvas`` = (W, H): min(W/w, H/h)."""
    return min(canvas[0] / width, canvas[1] / height)


def canvas_geometry(width: int, height: int, canvas: tuple[int, int]) -> tuple[float, tuple[int, int]]:
    """(scale, (pad_top, pad_left)) of the forward mapping for a ``width``×``height`` image."""
    return fit_scale(width, height, canvas), (0, 0)


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
        A.PadIfNeeded(min_height=height, min_width=width, position=PAD_POSITION,
                      border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0),
    ]
    return A.Compose(steps)


def to_original(prediction: dict[str, torch.Tensor], scale: float, pad: tuple[int, int],
                orig_size: tuple[int, int]) -> dict[str, Any]:
    """Invert the forward mapping for one image's predictions on the canvas: boxes [K,4] and binary masks
    [K,h,w] in original pixels (masks thresholded at 0.5). ``pad`` = (top, left) offsets, ``orig_size`` = (h, w)."""
    h, w = orig_size
    top, left = pad
    boxes = prediction["boxes"].cpu().clone()
    boxes[:, 0::2] = ((boxes[:, 0::2] - left) / scale).clamp(0, w)
    boxes[:, 1::2] = ((boxes[:, 1::2] - top) / scale).clamp(0, h)
    canvas_h, canvas_w = prediction["masks"].shape[-2:]
    valid_h, valid_w = min(round(h * scale), canvas_h - top), min(round(w * scale), canvas_w - left)
    masks = []
    for prob in prediction["masks"]:  # one at a time: full-resolution float masks add up fast
        m = F.interpolate(prob[None, :, top:top + valid_h, left:left + valid_w].float(), size=(h, w),
                          mode="bilinear", align_corners=False)
        masks.append((m[0, 0] > 0.5).to(torch.uint8).cpu())
    masks_t = torch.stack(masks) if masks else torch.zeros(0, h, w, dtype=torch.uint8)
    return {"boxes": boxes, "masks": masks_t, "scores": prediction["scores"].cpu(),
            "labels": prediction["labels"].cpu()}
