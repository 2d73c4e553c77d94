"""Resume after kill -9, on any device: is a killed-and-resumed run bit-identical to an uninterrupted one?

Trains the same run three times with ``edgercnn train`` in subprocesses: A and A2 uninterrupted, B killed with
SIGKILL after k of its loss rows are written (several times) and finished with ``--resume``. Prints, per pair, the
first step whose logged losses differ and the largest difference of the final weights:

- A vs B: what resume costs; bit-identical when the run itself is deterministic;
- A vs A2: the device's own run-to-run floor. On CUDA, torchvision's RoIAlign backward accumulates with atomics
  (no deterministic kernel), so two uninterrupted runs can already differ in the last bits; then B can match A no
  better than A2 does.

    python scripts/resume_check.py --device cuda --data data/pennfudan --recipe cpu-pennfudan --steps 60
    python scripts/resume_check.py --device cpu --steps 8             # shapes made on the fly (a minute)
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def train_cmd(args, out: Path) -> list[str]:
    return [sys.executable, "-m", "edgercnn", "train", "--data", str(args.data), "--recipe", args.recipe,
            "--steps", str(args.steps), "--checkpoint-every", str(args.checkpoint_every), "--no-eval",
            "--device", args.device, "--workers", "0", "--out-dir", str(out), "--experiment", "resume-check",
            "--name", "run", "--results-dir", str(out / "results")]


def loss_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def first_difference(a: list[dict], b: list[dict]) -> str:
    """The first step whose logged losses differ (step times aside), or 'none'."""
    for ra, rb in zip(a, b):
        if {k: v for k, v in ra.items() if k != "step_time_s"} != {k: v for k, v in rb.items() if k != "step_time_s"}:
            return f"step {ra['step']}"
    return "none" if len(a) == len(b) else f"row counts {len(a)} vs {len(b)}"


def weight_difference(a: Path, b: Path) -> tuple[bool, float]:
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    same = sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    diff = max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa if sa[k].is_floating_point())
    return same, diff


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--data", type=Path, default=None, help="a prepared dataset (default: shapes made in a temp dir)")
    ap.add_argument("--recipe", default="cpu-shapes")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--checkpoint-every", type=int, default=1)
    ap.add_argument("--kills", default="2,4,6", help="kill -9 once this many loss rows are written, in turn")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.data is None:
            from edgercnn.data.shapes import make_shapes

            args.data = tmp / "shapes"
            make_shapes(args.data, train=16, val=4, size=64, seed=0)
        run = lambda out: out / "resume-check" / "run" / "seed-0"  # noqa: E731
        t0 = time.perf_counter()
        for name in ("a", "a2"):
            subprocess.run(train_cmd(args, tmp / name), env=env, check=True, capture_output=True)
        losses_b, kills = run(tmp / "b") / "losses.csv", 0
        for k in (int(x) for x in args.kills.split(",")):
            cmd = train_cmd(args, tmp / "b") + (["--resume"] if kills else [])
            before = len(loss_rows(losses_b))
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while proc.poll() is None and len(loss_rows(losses_b)) < max(k, before + 1):
                time.sleep(0.01)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
        subprocess.run(train_cmd(args, tmp / "b") + ["--resume"], env=env, check=True, capture_output=True)
        a, a2, b = (run(tmp / n) for n in ("a", "a2", "b"))
        print(f"device {args.device}, {args.recipe} recipe, {args.steps} steps, {kills} kill -9 of run B "
              f"({time.perf_counter() - t0:.0f} s)")
        for label, x, y in (("A vs B (killed + resumed)", a, b), ("A vs A2 (both uninterrupted)", a, a2)):
            same, diff = weight_difference(x / "model_final.pt", y / "model_final.pt")
            print(f"{label}: losses first differ at {first_difference(loss_rows(x / 'losses.csv'), loss_rows(y / 'losses.csv'))}; "
                  f"final weights {'bit-identical' if same else f'differ, max |diff| {diff:.3g}'}")


if __name__ == "__main__":
    main()
