"""``to_original`` pastes masks only where they can be above 0.5 and gives the same binary masks (and metrics) as
interpolating every canvas probability map to the full image; scripts/bench_eval.py runs (--tiny)."""

import importlib.util

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import paste_masks_in_image

from edgercnn.data.transforms import to_original

from tests.paths import REPO

SCRIPTS = REPO / "scripts"


def full_interpolation(prediction, scale, pad, orig_size):
    """The reference: every probability map interpolated to the whole image, then thresholded."""
    h, w = orig_size
    top, left = pad
    canvas_h, canvas_w = prediction["masks"].shape[-2:]
    valid_h, valid_w = min(round(h * scale), canvas_h - top), min(round(w * scale), canvas_w - left)
    region = prediction["masks"][:, :, top:top + valid_h, left:left + valid_w].float()
    return (F.interpolate(region, size=(h, w), mode="bilinear", align_corners=False)[:, 0] > 0.5).to(torch.uint8)


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("orig, canvas, pad", [
    ((128, 256), (100, 128), (0, 0)),     # down to the canvas, up back (Cityscapes-like 2:1)
    ((200, 300), (512, 512), (0, 0)),     # canvas larger than the image: downsampled back
    ((427, 640), (800, 1024), (0, 0)),    # COCO-like, a non-integer ratio
    ((90, 70), (128, 128), (19, 14)),     # centred padding (the square resize mode)
])
def test_same_binary_masks_as_full_interpolation(orig, canvas, pad):
    h, w = orig
    top, left = pad
    scale = min((canvas[1] - 2 * left) / w, (canvas[0] - 2 * top) / h)
    g = torch.Generator().manual_seed(h * w)
    k = 25
    wh = torch.rand(k, 2, generator=g) * torch.tensor([w * scale / 2, h * scale / 2]) + 2
    x0 = torch.rand(k, generator=g) * (w * scale - wh[:, 0]) + left
    y0 = torch.rand(k, generator=g) * (h * scale - wh[:, 1]) + top
    boxes = torch.stack([x0, y0, x0 + wh[:, 0], y0 + wh[:, 1]], 1)
    probs = torch.sigmoid(torch.randn(k, 1, 28, 28, generator=g) * 3)
    probs[3] = 0.5  # exactly at the threshold everywhere
    probs[4] = 0.0  # empty
    pred = {"boxes": boxes, "masks": paste_masks_in_image(probs, boxes, canvas), "scores": torch.rand(k),
            "labels": torch.ones(k, dtype=torch.int64)}
    out = to_original(pred, scale, pad, orig)
    reference = full_interpolation(pred, scale, pad, orig)
    assert out["masks"].dtype == torch.uint8 and out["masks"].shape == (k, h, w)
    assert torch.equal(out["masks"], reference)
    assert reference.sum() > 0


def test_no_detections():
    pred = {"boxes": torch.zeros(0, 4), "masks": torch.zeros(0, 1, 64, 64), "scores": torch.zeros(0),
            "labels": torch.zeros(0, dtype=torch.int64)}
    assert to_original(pred, 0.5, (0, 0), (128, 128))["masks"].shape == (0, 128, 128)


def test_bench_eval_tiny_runs_and_agrees(capsys):
    out = load_script("bench_eval").main(["--tiny"])
    assert out["differing_pixels"] == 0 and out["same_metrics"]
    assert "to_original after" in capsys.readouterr().out
