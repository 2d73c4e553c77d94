"""Data benchmark: loader images/s per worker at 1024x800 (decode + annotations -> masks + resize + pad + flip)
and Cityscapes conversion seconds per frame.

Inputs: the shapes dataset (128 px, upscaled to the canvas) and the Cityscapes fixture frame upscaled to the
official 2048x1024 (nearest for ids), copied N times. Everything is written to a temporary folder.

    python scripts/bench_data.py [--images 40] [--frames 8] [--fixture PATH]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from PIL import Image

from edgercnn.data.cityscapes import convert_cityscapes
from edgercnn.data.dataset import CocoInstanceDataset
from edgercnn.data.shapes import make_shapes

STEM = "frankfurt/frankfurt_000000_000294"


def loader_rate(root: Path, split: str, n: int) -> float:
    """Images/s of one process reading (index, seed) samples with train=True at 1024x800."""
    ds = CocoInstanceDataset(root, split, canvas=(1024, 800), train=True)
    ds[(0, 0)]  # warm up
    start = time.perf_counter()
    for i in range(n):
        ds[(i % len(ds), i)]
    return n / (time.perf_counter() - start)


def full_size_cityscapes(fixture: Path, root: Path, frames: int) -> None:
    """``frames`` copies of the fixture frame at 2048x1024 in the official layout."""
    ids = Image.open(fixture / "gtFine/val" / f"{STEM}_gtFine_instanceIds.png").resize((2048, 1024), Image.NEAREST)
    img = Image.open(fixture / "leftImg8bit/val" / f"{STEM}_leftImg8bit.png").resize((2048, 1024), Image.BILINEAR)
    for k in range(frames):
        stem = f"frankfurt/frankfurt_000000_{k:06d}"
        for kind, suffix, im in (("gtFine", "_gtFine_instanceIds.png", ids), ("leftImg8bit", "_leftImg8bit.png", img)):
            path = root / kind / "val" / f"{stem}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            im.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40, help="samples timed per loader measurement")
    parser.add_argument("--frames", type=int, default=8, help="Cityscapes frames converted")
    parser.add_argument("--fixture", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "cityscapes",
                        help="Cityscapes fixture folder (one val frame)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_shapes(tmp / "shapes", train=max(args.images, 1), val=1)
        print(f"loader, shapes 128x128 -> 1024x800: {loader_rate(tmp / 'shapes', 'train', args.images):.1f} images/s "
              "per worker")
        cs = tmp / "cityscapes"
        full_size_cityscapes(args.fixture, cs, args.frames)
        start = time.perf_counter()
        convert_cityscapes(cs, workers=1, progress=False)
        per_frame = (time.perf_counter() - start) / args.frames
        print(f"conversion, Cityscapes 2048x1024 (1 worker): {per_frame:.3f} s per frame")
        start = time.perf_counter()
        convert_cityscapes(cs, workers=1, progress=False)
        print(f"re-run when up to date: {time.perf_counter() - start:.3f} s for {args.frames} frames")
        print(f"loader, Cityscapes 2048x1024 -> 1024x800 (1024x512 content): "
              f"{loader_rate(cs, 'val', args.images):.1f} images/s per worker")


if __name__ == "__main__":
    main()
