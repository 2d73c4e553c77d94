"""Training and evaluation throughput in one run, with ratios: our training step (``Trainer.train_step``, edge
loss on) in fp32 / AMP / AMP + channels_last against a plain torchvision ``maskrcnn_resnet50_fpn`` training loop
on the same device and inputs; the data loader at the default workers against the step rate; the edge-loss
overhead (scripts/bench_edge_overhead.py); evaluation images/s (inference + mapping back + RLE, 100 detections).

    python scripts/bench_train.py --device cuda          # R50-FPN, 1024x800, batch 2 (the paper's setting)
    python scripts/bench_train.py --device cpu --tiny    # seconds: small preset, 128x128 (tests/scripts/test_bench.py)
    python scripts/bench_train.py --device cuda --data data/coco   # the loader on real data
    python scripts/bench_train.py --profile    # cpu-pennfudan's step: per-op table, GFLOP, share of peak, A/B ratios
                                               # (scripts/bench_profile.py; --try more setups, --recipe another)

AMP rows need CUDA (the trainer refuses --amp elsewhere); on a CPU they are left out.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_edge_overhead import synthetic_batch, time_steps  # noqa: E402  (a sibling script)

from edgercnn.config import Config  # noqa: E402
from edgercnn.data.shapes import make_shapes  # noqa: E402
from edgercnn.data.transforms import to_original  # noqa: E402
from edgercnn.evaluation.evaluate import coco_results  # noqa: E402
from edgercnn.model.rcnn import set_trainable  # noqa: E402
from edgercnn.training.trainer import Trainer  # noqa: E402

#: Timing only: random weights (no download), every layer training (a frozen random backbone is refused).
RANDOM_ALL = {"backbone_weights": None, "stages": [{"steps": 160000, "layers": "all", "lr": 0.001}]}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(step, images_per_step: int, steps: int, warmup: int, device: torch.device) -> float:
    """Images per second of ``step()`` (median-free: total time of ``steps`` after ``warmup``)."""
    for _ in range(warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return images_per_step * steps / (time.perf_counter() - t0)


def ours(cfg: Config, device: torch.device, batch, steps: int, warmup: int, channels_last: bool) -> float:
    """Images/s of ``Trainer.train_step`` (the real step: per-image RoI sampling, clipping, logging)."""
    trainer = Trainer(cfg)
    set_trainable(trainer.model, "all")
    if channels_last:
        trainer.model.to(memory_format=torch.channels_last)
    images, targets = batch
    return rate(lambda: trainer.train_step(images, targets), len(images), steps, warmup, device)


def plain_torchvision(cfg: Config, device: torch.device, batch, steps: int, warmup: int, amp: bool,
                      channels_last: bool) -> float:
    """Images/s of the textbook torchvision loop: maskrcnn_resnet50_fpn, SGD, autocast + GradScaler."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    torch.manual_seed(0)
    # min/max size = the canvas: the transform leaves our inputs at their size, as our CanvasTransform does
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=cfg.num_classes + 1,
                                  min_size=min(cfg.canvas), max_size=max(cfg.canvas)).to(device)  # all layers train
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    images, targets = batch

    def step():
        with torch.autocast(device.type, enabled=amp):
            loss = sum(model(images, targets).values())
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return rate(step, len(images), steps, warmup, device)


def loader_rate(cfg: Config, batches: int) -> float:
    """Images/s the training DataLoader delivers at ``cfg.workers`` workers (decode, augment, collate)."""
    trainer = Trainer(cfg)
    loader = iter(trainer._loader(batches + 1))
    next(loader)  # worker start-up is not throughput
    t0 = time.perf_counter()
    n = sum(len(images) for images, _ in (next(loader) for _ in range(batches)))
    return n / (time.perf_counter() - t0)


def eval_rate(cfg: Config, device: torch.device, batch, repeats: int) -> float:
    """Images/s of evaluation: inference, ``to_original`` and RLE encoding, ``detections_per_image`` each."""
    trainer = Trainer(cfg)
    model = trainer.model.eval()
    images = batch[0]
    h, w = images[0].shape[-2:]

    @torch.no_grad()
    def step():
        for pred in model(images):
            orig = to_original(pred, 1.0, (0, 0), (int(h), int(w)))
            coco_results(1, orig, {c: c for c in range(1, cfg.num_classes + 1)})

    return rate(step, len(images), repeats, 1, device)


def main(argv: list[str] | None = None) -> list[tuple[str, float, str]] | dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true", help="small preset at 128x128, 2 timed steps: a smoke run")
    ap.add_argument("--steps", type=int, default=20, help="timed training steps per setup")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5; --profile: 2)")
    ap.add_argument("--data", type=Path, default=None, help="a prepared dataset for the loader (default: "
                    "synthetic shapes at the canvas size in a temporary folder)")
    ap.add_argument("--profile", action="store_true", help="instead: profile a recipe's training step "
                    "(scripts/bench_profile.py): per-op table, GFLOP/step, GFLOP/s, share of the CPU's peak, "
                    "and step-time ratios of A/B setups alternating in this process")
    ap.add_argument("--recipe", default="cpu-pennfudan", help="--profile: the recipe whose step is profiled")
    ap.add_argument("--try", dest="tries", default="", help="--profile: comma-separated A/B setups beyond fused ("
                    "mkldnn-off, threads-1, channels-last, channels-last-backbone, compile)")
    ap.add_argument("--pairs", type=int, default=10, help="--profile: alternating rounds per A/B setup")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if args.profile:
        from bench_profile import run as profile_run

        tries = [t for t in args.tries.split(",") if t]
        return profile_run(args.recipe, device, tries, 2 if args.tiny else args.pairs,
                           1 if args.tiny else 2 if args.warmup is None else args.warmup, 1 if args.tiny else 3,
                           canvas=[64, 64] if args.tiny else None)
    args.warmup = 5 if args.warmup is None else args.warmup
    if args.tiny:
        args.steps, args.warmup = 2, 1
    canvas = [128, 128] if args.tiny else [1024, 800]
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "shapes"
            make_shapes(data, train=16 if args.tiny else 64, val=2, size=max(canvas), seed=0)
        cfg = Config(data=str(data), backbone="small" if args.tiny else "resnet50", canvas=canvas, batch_size=2,
                     device=str(device), out_dir=str(Path(tmp) / "runs"), eval_at_end=False,
                     eval_score_threshold=0.0, detections_per_image=100, filters=["sobel"], **RANDOM_ALL)
        batch_cfg = Trainer(cfg).cfg  # num_classes from the data
        batch = synthetic_batch(canvas[0], canvas[1], 2, device)
        batch = (batch[0], [dict(t, labels=t["labels"].clamp(max=batch_cfg.num_classes)) for t in batch[1]])
        cuda = device.type == "cuda"
        precisions = [("fp32", False, False)] + ([("AMP", True, False), ("AMP + channels_last", True, True)]
                                                 if cuda else [])
        for label, amp, cl in precisions:
            run_cfg = Config(**{**batch_cfg.to_dict(), "amp": amp, "experiment": label.replace(" ", "")})
            ours_rate = ours(run_cfg, device, batch, args.steps, args.warmup, cl)
            plain = plain_torchvision(batch_cfg, device, batch, args.steps, args.warmup, amp, cl)
            rows.append((f"train {label}: ours (edge loss on)", ours_rate, ""))
            rows.append((f"train {label}: plain torchvision maskrcnn_resnet50_fpn", plain,
                         f"ours / plain = {ours_rate / plain:.2f}"))
        step_rate = rows[0][1]
        load = loader_rate(Config(**{**batch_cfg.to_dict(), "experiment": "loader"}), 2 if args.tiny else 20)
        rows.append((f"data loader, {batch_cfg.workers} workers", load,
                     f"loader / fp32 step rate = {load / step_rate:.2f}"
                     + (f", / AMP = {load / rows[2][1]:.2f}" if cuda else "")))
        base, edge = time_steps(Config(**{**batch_cfg.to_dict(), "experiment": "overhead"}), device, args.steps,
                                args.warmup, False)
        rows.append(("edge-loss overhead, fp32 (step time with / without)", edge / base, "ratio, not images/s"))
        rows.append(("evaluation (inference + to_original + RLE, 100 dets)",
                     eval_rate(Config(**{**batch_cfg.to_dict(), "experiment": "eval"}), device, batch,
                               2 if args.tiny else 10), ""))
    name = "small preset" if args.tiny else "R50-FPN"
    print(f"torch {torch.__version__}, device {device}"
          f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, threads "
          f"{torch.get_num_threads()}, {name} {canvas[0]}x{canvas[1]}, batch 2, {args.steps} timed steps"
          + (" (--tiny: a smoke run; ours is the small preset, so ours / plain means nothing)" if args.tiny else ""))
    for label, value, note in rows:
        unit = "" if "overhead" in label else " img/s"
        print(f"  {label:58s} {value:9.3f}{unit}  {note}")
    return rows


if __name__ == "__main__":
    main()
