"""Training-step time with vs. without the Edge Agreement Loss (issue target: ratio <= 1.02 CPU, <= 1.01 GPU).

Both models start from the same weights and see the same inputs; steps alternate between the two so that
machine noise hits both alike. Prints the medians after warm-up and their ratio.

    python scripts/bench_edge_overhead.py                 # CPU preset (resnet18-FPN, 256x256, batch 2)
    python scripts/bench_edge_overhead.py --device cuda   # adds R50-FPN at 1024x800, batch 2 (mask 28 and 56)
    python scripts/bench_edge_overhead.py --r50 --steps 6 --warmup 2   # the R50 setups on a CPU
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from edgercnn.config import Config
from edgercnn.model.rcnn import set_trainable
from edgercnn.builders.model import build_model

#: Timing only: random weights (no download), every layer training (a frozen random backbone is refused).
RANDOM_ALL = {"backbone_weights": None, "stages": [{"steps": 160000, "layers": "all", "lr": 0.001}]}


def synthetic_batch(width: int, height: int, batch: int, device: torch.device, seed: int = 0):
    """Images with 4 rectangular/elliptic instances each, as the data pipeline would give them."""
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    for _ in range(batch):
        images.append(torch.rand(3, height, width, generator=g).to(device))
        masks, boxes = [], []
        for _ in range(4):
            cx, cy = (torch.rand(2, generator=g) * torch.tensor([width * 0.6, height * 0.6]) +
                      torch.tensor([width * 0.2, height * 0.2])).tolist()
            rx, ry = (torch.rand(2, generator=g) * torch.tensor([width * 0.15, height * 0.15]) +
                      torch.tensor([width * 0.05, height * 0.05])).tolist()
            m = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1).to(torch.uint8)
            ys, xs = torch.where(m > 0)
            boxes.append([xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1])
            masks.append(m)
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32, device=device),
                        "labels": torch.randint(1, 4, (4,), generator=g).to(device),
                        "masks": torch.stack(masks).to(device)})
    return images, targets


def time_steps(cfg: Config, device: torch.device, steps: int, warmup: int, amp: bool) -> tuple[float, float]:
    torch.manual_seed(cfg.seed)
    edge = build_model(cfg).to(device)
    base = copy.deepcopy(edge)
    base.roi_heads.edge_loss = None  # plain torchvision RoIHeads.forward
    models = {"base": base, "edge": edge}
    opts = {}
    for name, model in models.items():
        set_trainable(model, "all")
        model.train()
        opts[name] = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)
    images, targets = synthetic_batch(cfg.canvas[0], cfg.canvas[1], cfg.batch_size, device)
    times = {"base": [], "edge": []}
    for i in range(warmup + steps):
        for name in ("base", "edge") if i % 2 == 0 else ("edge", "base"):
            torch.manual_seed(1000 + i)  # same RoI sampling for both models
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.autocast(device.type, enabled=amp):
                loss = sum(models[name](images, targets).values())
            opts[name].zero_grad(set_to_none=True)
            loss.backward()
            opts[name].step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return statistics.median(times["base"]), statistics.median(times["edge"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per model (after warm-up)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--filter", default="sobel")
    ap.add_argument("--amp", action="store_true", help="CUDA autocast (mixed precision)")
    ap.add_argument("--r50", action="store_true", help="also time R50-FPN at 1024x800 on a CPU (slow)")
    args = ap.parse_args()
    device = torch.device(args.device)
    setups = [("small preset (resnet18-FPN) 256x256, batch 2",
               Config(backbone="small", num_classes=3, canvas=[256, 256], filters=[args.filter]))]
    if device.type == "cuda" or args.r50:
        setups.append(("R50-FPN 1024x800, batch 2",
                       Config(backbone="resnet50", num_classes=80, canvas=[1024, 800], filters=[args.filter],
                              **RANDOM_ALL)))
        setups.append(("R50-FPN 1024x800, batch 2, mask 56",
                       Config(backbone="resnet50", num_classes=80, canvas=[1024, 800], mask_size=56,
                              filters=[args.filter], **RANDOM_ALL)))
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
          f"{args.steps} timed steps after {args.warmup} warm-up, filter {args.filter}, amp {args.amp}")
    for label, cfg in setups:
        base, edge = time_steps(cfg, device, args.steps, args.warmup, args.amp)
        print(f"{label}: median step {base * 1e3:.1f} ms without, {edge * 1e3:.1f} ms with edge loss; "
              f"ratio {edge / base:.4f}")


if __name__ == "__main__":
    main()
