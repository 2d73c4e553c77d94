"""The canvas mapping of section 4, both directions side by side.

Forward (albumentations, data side): resize keeping the aspect ratio, zero-pad to exactly the canvas, and a
horizontal flip (the only augmentation); ``canvas_geometry`` is what the forward pass did (scale and pad offsets),
recorded in every target. Two resize modes (``RESIZE_MODES``): ``fit`` (fit into the canvas, pad bottom/right) and
``square`` (matterport's IMAGE_RESIZE_MODE "square", mrcnn/utils.py resize_image: scale the short side up to
``min_dim`` but never down, unless the long side would pass the canvas, then pad centred). Inverse
(``to_original``, evaluation side): predicted boxes and masks on the canvas back to original image pixels.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import torch

from edgercnn.data.vocab import PAD_POSITION, RESIZE_MODES  # noqa: F401 (owned there)



def fit_scale(width: int, height: int, canvas: tuple[int, int]) -> float:
    """Resize factor that fits a ``width``×``height`` image into ``canvas`` = (W, H): min(W/w, H/h)."""
    return min(canvas[0] / width, canvas[1] / height)


def square_scale(width: int, height: int, canvas: tuple[int, int], min_dim: int) -> float:
    """matterport's "square" scale: max(1, min_dim / short side), or long side → canvas if it would pass it."""
    scale = max(1.0, min_dim / min(width, height))
    if round(max(width, height) * scale) > min(canvas):
        scale = min(canvas) / max(width, height)
    return scale


def canvas_geometry(width: int, height: int, canvas: tuple[int, int], resize: str = "fit",
                    min_dim: int = 800) -> tuple[float, tuple[int, int]]:
    """(scale, (pad_top, pad_left)) of the forward mapping for a ``width``×``height`` image."""
    if resize == "fit":
        return fit_scale(width, height, canvas), (0, 0)
    scale = square_scale(width, height, canvas, min_dim)
    # albumentations' centred padding (and matterport's): the smaller half on top/left
    return scale, ((canvas[1] - round(height * scale)) // 2, (canvas[0] - round(width * scale)) // 2)


def boxes_to_canvas(boxes: torch.Tensor, scale: float, pad: tuple[int, int], width: int, flip: bool = False
                    ) -> torch.Tensor:
    """xyxy boxes [K, 4] in original pixels → canvas pixels, as the forward mapping moves the image (flip, then
    scale, then pad by (top, left))."""
    boxes = boxes.clone().float()
    if flip:
        boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    top, left = pad
    return boxes * scale + torch.tensor([left, top, left, top], dtype=boxes.dtype)


def build_transforms(canvas: tuple[int, int] = (1024, 800), flip: bool = False, resize: str = "fit",
                     image_size: tuple[int, int] | None = None, min_dim: int = 800) -> A.Compose:
    """Resize (aspect kept) → zero pad to exactly canvas (W, H); with ``flip`` a horizontal flip first.

    ``fit`` is the same Compose for every image; ``square`` depends on the image: pass its ``image_size`` (w, h).
    The flip decision is made by the caller (from a per-sample seed), so this Compose is deterministic. Flipping
    before padding keeps the padding where ``canvas_geometry`` says.
    """
    width, height = canvas
    steps = [A.HorizontalFlip(p=1.0)] if flip else []
    if resize == "square":
        if image_size is None:
            raise ValueError("build_transforms(resize='square') needs image_size=(width, height)")
        scale = square_scale(image_size[0], image_size[1], canvas, min_dim)
        steps += [
            A.Resize(height=round(image_size[1] * scale), width=round(image_size[0] * scale),
                     interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST),
            A.PadIfNeeded(min_height=height, min_width=width, position=PAD_POSITION[resize],
                          border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0),
        ]
        return A.Compose(steps)
    steps += [
        # max_size_hw with both sides set scales by min(H/h, W/w), not by the longest side alone
        A.LongestMaxSize(max_size_hw=(height, width), interpolation=cv2.INTER_LINEAR,
                         mask_interpolation=cv2.INTER_NEAREST),
        A.PadIfNeeded(min_height=height, min_width=width, position=PAD_POSITION["fit"],
                      border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0),
    ]
    return A.Compose(steps)


def to_original(prediction: dict[str, torch.Tensor], scale: float, pad: tuple[int, int],
                orig_size: tuple[int, int]) -> dict[str, Any]:
    """Invert the forward mapping for one image's predictions on the canvas: boxes [K,4] and binary masks
    [K,h,w] in original pixels (masks thresholded at 0.5). ``pad`` = (top, left) offsets, ``orig_size`` = (h, w).

    The masks are ``F.interpolate(valid canvas region, size=(h, w), mode="bilinear", align_corners=False) > 0.5``,
    computed only where it can be true (as torchvision's ``paste_masks_in_image`` works inside each box): an
    output pixel is a convex combination of 2×2 source pixels, so it exceeds 0.5 only next to a source pixel above
    0.5 (0.49 here, a margin for rounding). Same sampling positions and weights as PyTorch's kernel; the result
    can differ from the full interpolation only where a value is within float rounding of 0.5
    (tests/data/test_transforms.py, scripts/bench_eval.py)."""
    h, w = orig_size
    top, left = pad
    boxes = prediction["boxes"].cpu().clone()
    boxes[:, 0::2] = ((boxes[:, 0::2] - left) / scale).clamp(0, w)
    boxes[:, 1::2] = ((boxes[:, 1::2] - top) / scale).clamp(0, h)
    canvas_h, canvas_w = prediction["masks"].shape[-2:]
    valid_h, valid_w = min(round(h * scale), canvas_h - top), min(round(w * scale), canvas_w - left)
    probs = prediction["masks"][:, 0, top:top + valid_h, left:left + valid_w].float()
    # stored [K, w, h] and returned transposed: [h, w, K] is then Fortran-ordered, as pycocotools' RLE encoder
    # wants it (evaluate.coco_results), without a copy
    masks = torch.zeros(len(probs), w, h, dtype=torch.uint8).transpose(1, 2)
    if len(probs):
        rows, cols = _bilinear_taps(valid_h, h, probs.device), _bilinear_taps(valid_w, w, probs.device)
        for k, (y0, y1) in enumerate(_output_spans(probs.amax(dim=2) > 0.49, rows)):
            if y0 >= y1:
                continue
            r_lo, r_hi = int(rows[0][y0]), int(rows[1][y1 - 1])
            band = probs[k, r_lo:r_hi + 1]  # the source rows these output rows sample
            ((x0, x1),) = _output_spans(band.amax(dim=0, keepdim=True) > 0.49, cols)
            if x0 < x1:
                masks[k, y0:y1, x0:x1] = _interpolate(band, r_lo, rows, cols, y0, y1, x0, x1).gt(0.5).cpu()
    return {"boxes": boxes, "masks": masks, "scores": prediction["scores"].cpu(), "labels": prediction["labels"].cpu()}


def _bilinear_taps(in_size: int, out_size: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """PyTorch's bilinear sampling along one axis (align_corners=False, ``size`` given; float32 as its CPU
    kernel computes it): per output index the source indices i0, i1 and weights l0, l1."""
    ratio = torch.tensor(in_size, dtype=torch.float32) / out_size
    src = ((torch.arange(out_size, dtype=torch.float32) + 0.5) * ratio - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=in_size - 1)
    l1 = (src - i0).clamp(0, 1)
    i1 = i0 + (i0 < in_size - 1).long()
    return tuple(t.to(device) for t in (i0, i1, 1 - l1, l1))


def _output_spans(support: torch.Tensor, taps: tuple[torch.Tensor, ...]) -> list[tuple[int, int]]:
    """Per mask, the output range [start, stop) along one axis whose samples touch its support ([K, in] bool:
    where the source is above the threshold)."""
    i0, i1 = taps[0], taps[1]
    n = support.shape[1]
    first = support.to(torch.uint8).argmax(dim=1)
    last = n - 1 - support.flip(1).to(torch.uint8).argmax(dim=1)
    start = torch.searchsorted(i1, first)  # the first output sampling a source index >= first
    stop = torch.searchsorted(i0, last, right=True)  # past the last output sampling one <= last
    empty = ~support.any(dim=1)
    return [(0, 0) if e else (a, b) for a, b, e in zip(start.tolist(), stop.tolist(), empty.tolist())]


def _interpolate(band: torch.Tensor, r_lo: int, rows, cols, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    """Output rows [y0, y1) × cols [x0, x1) of the bilinear interpolation of a source image whose rows from
    ``r_lo`` on are ``band`` (all the rows these outputs sample)."""
    (ri0, ri1, rl0, rl1), (ci0, ci1, cl0, cl1) = rows, cols
    # columns first, then rows: the order of PyTorch's kernel
    t = band[:, ci0[x0:x1]] * cl0[x0:x1] + band[:, ci1[x0:x1]] * cl1[x0:x1]
    return t[ri0[y0:y1] - r_lo] * rl0[y0:y1, None] + t[ri1[y0:y1] - r_lo] * rl1[y0:y1, None]
