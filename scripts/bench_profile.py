"""Where a training step's time goes, against the machine's limit: the trainer's real step (``Trainer.train_step``)
of a recipe profiled per op (torch.profiler, self time), its GFLOP (torch.utils.flop_counter), GFLOP/s and share
of the CPU's fp32 peak (derived from /proc/cpuinfo, printed with the derivation), and A/B ratios of step time
measured in one process with the two setups' steps alternating, so that load from other work hits both alike.

    python scripts/bench_train.py --profile                          # cpu-pennfudan recipe: table, GFLOP, peak, fused
    python scripts/bench_train.py --profile --try mkldnn-off,threads-1,channels-last,compile --pairs 20
    python scripts/bench_train.py --profile --device cuda            # the same on a GPU (no peak derived)

A/B setups (``--try``; ``fused`` always runs): each compares a setup B with A = the trainer as it is now, except
``fused``, whose A is the optimizer as built before (torch's default implementation) and B the trainer's.

Measured on cpu-pennfudan (256x192, batch 2; 2-core AMD EPYC, AVX2, shared with other work; B/A medians):
26.3 GFLOP per step. Fused AdamW 0.93 (24 rounds, 1 thread; 0.87-0.96 over five runs): kept. mkldnn off 1.15,
channels_last 1.03 (backbone only 1.08), torch.compile of the backbone 1.10 (all 16 rounds, 1 thread): not kept.
1 thread vs 2: 1.42 on a quiet machine (so 2 jobs x 1 thread beat 1 job x 2 threads), 0.13 on a loaded one (load
average 10: 2 threads wait on each other). Convolution backward is 2.3x the forward at 1 thread (1.4-1.7x at 2
threads under load, 3.4x in the issue): the 3x3 convolutions' backward costs 3-4x their forward on the deep, small
maps (512 channels at 6x8: the weight gradient reduces over only 96 positions per 2.4M weights, memory-bound).
"""

from __future__ import annotations

import re
import statistics
import time
from contextlib import contextmanager, nullcontext
from typing import Callable

import torch

from edgercnn.model.rcnn import set_trainable
from edgercnn.builders.optimizer import build_optimizer
from edgercnn.training.trainer import Trainer

#: FMA units per core: not in /proc/cpuinfo. Two 256-bit (AMD Zen 2+) or 512-bit (Intel Xeon Gold/Platinum) units
#: are the common case; a machine with one makes the share of peak shown twice too small.
FMA_UNITS = 2


def cpu_peak(cpuinfo: str, threads: int) -> tuple[float, str]:
    """fp32 GFLOP/s peak of ``threads`` cores of the CPU ``cpuinfo`` (/proc/cpuinfo's text) describes, and how it
    was derived: cores × clock × FMA units × fp32 lanes (16 with avx512f, 8 with avx/avx2, else 4) × 2 (an FMA is a
    multiply and an add; without fma, one add and one multiply unit count the same). The clock is the model name's
    "@ x GHz" if there is one, else the first "cpu MHz" (the current clock: turbo or power saving shift it)."""
    flags = set(re.search(r"^flags\s*:(.*)$", cpuinfo, re.M).group(1).split()) if "flags" in cpuinfo else set()
    lanes, isa = (16, "avx512f") if "avx512f" in flags else (8, "avx2" if "avx2" in flags else "avx") \
        if flags & {"avx", "avx2"} else (4, "sse")
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.M)
    model = model.group(1).strip() if model else "unknown CPU"
    ghz = re.search(r"@\s*([\d.]+)\s*GHz", model)
    if ghz:
        clock, source = float(ghz.group(1)), "model name"
    else:
        mhz = re.search(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.M)
        clock, source = (float(mhz.group(1)) / 1000, "cpu MHz (current clock)") if mhz else (2.0, "guessed")
    cores = len(set(re.findall(r"^core id\s*:\s*(\d+)", cpuinfo, re.M))) or cpuinfo.count("processor\t:") or 1
    used = min(threads, cores) if cores else threads
    peak = used * clock * FMA_UNITS * lanes * 2
    how = (f"{model}: {used} core(s) used ({threads} torch threads, {cores} cores) x {clock:.2f} GHz ({source}) x "
           f"{FMA_UNITS} FMA units (assumed) x {lanes} fp32 lanes ({isa}{', fma' if 'fma' in flags else ''}) x 2 "
           f"= {peak:.0f} GFLOP/s")
    return peak, how


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_flops(step: Callable[[], object]) -> float:
    """FLOPs of one ``step()`` (forward + backward) as torch's FlopCounterMode counts them: convolutions and
    matrix products; norms, RoIAlign and elementwise ops add little and are not counted."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def op_table(step: Callable[[], object], steps: int, device: torch.device, rows: int = 25) -> tuple[str, dict]:
    """torch.profiler's per-op table of ``steps`` steps by self time, and the self time (µs) per op name."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        sync(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    averages = prof.key_averages()
    per_op = {e.key: getattr(e, key) for e in averages}
    return averages.table(sort_by=key, row_limit=rows), per_op


def conv_by_shape(step: Callable[[], object], rows: int = 12) -> str:
    """Self CPU time of one step's convolutions, forward and backward, per input shape (which layers cost)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    events = [e for e in prof.key_averages(group_by_input_shape=True)
              if e.key in ("aten::mkldnn_convolution", "aten::convolution_backward")]
    events.sort(key=lambda e: -e.self_cpu_time_total)
    lines = [f"    {e.self_cpu_time_total / 1e3:8.1f} ms  {e.count:3d}x  {e.key:28s} {e.input_shapes[:3]}"
             for e in events[:rows]]
    return "\n".join(lines)


def alternate(steps: dict[str, Callable[[], object]], rounds: int, warmup: int,
              device: torch.device) -> dict[str, list[float]]:
    """Seconds per step of each setup, the setups' steps alternating (the order flips every round)."""
    names = list(steps)
    for _ in range(warmup):
        for name in names:
            steps[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            sync(device)
            t0 = time.perf_counter()
            steps[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def ratio_line(label: str, a: list[float], b: list[float]) -> tuple[float, str]:
    """B/A as the median of the per-round ratios, with their spread (min..max, quartiles)."""
    ratios = sorted(tb / ta for ta, tb in zip(a, b))
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
    med = statistics.median(ratios)
    return med, (f"  {label:44s} B/A {med:.3f}  (quartiles {q[0]:.3f}..{q[2]:.3f}, min..max {ratios[0]:.3f}.."
                 f"{ratios[-1]:.3f}, {len(ratios)} rounds; A {statistics.median(a) * 1e3:.0f} ms, "
                 f"B {statistics.median(b) * 1e3:.0f} ms median)")


@contextmanager
def threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def trainer_step(trainer: Trainer, batch, context: Callable[[], object] = nullcontext) -> Callable[[], object]:
    images, targets = batch

    def step():
        with context():
            return trainer.train_step(images, targets)
    return step


def _setup_b(name: str, trainer: Trainer) -> Callable[[], object]:
    """Turn ``trainer`` into setup ``name``'s B; returns the context its steps run in."""
    if name == "mkldnn-off":
        return lambda: torch.backends.mkldnn.flags(enabled=False)
    if name == "threads-1":
        return lambda: threads(1)
    if name == "channels-last":
        trainer.model.to(memory_format=torch.channels_last)
    elif name == "channels-last-backbone":
        trainer.model.backbone.to(memory_format=torch.channels_last)
    elif name == "compile":
        trainer.model.backbone = torch.compile(trainer.model.backbone)
    else:
        raise SystemExit(f"--try {name}: not a setup; choose {', '.join(SETUPS)}")
    return nullcontext


SETUPS = {
    "fused": "the trainer's optimizer (fused) vs torch's default implementation (the old path)",
    "mkldnn-off": "torch.backends.mkldnn.flags(enabled=False) around the step",
    "threads-1": "torch.set_num_threads(1) for the step (A: the current threads)",
    "channels-last": "the whole model in channels_last",
    "channels-last-backbone": "the backbone (ResNet + FPN) in channels_last",
    "compile": "torch.compile of the backbone (ResNet + FPN)",
}


def ab(name: str, make_trainer: Callable[[str], Trainer], batch, rounds: int, warmup: int,
       device: torch.device) -> tuple[float, str]:
    """Setup ``name``'s step-time ratio B/A, A and B alternating in this process (same seed, weights, inputs)."""
    a, b = make_trainer(f"{name}-a"), make_trainer(f"{name}-b")
    try:
        if name == "fused":  # A: the optimizer as built before (torch's default: for-loop on a CPU, foreach on CUDA)
            a.optimizer = build_optimizer(a.cfg, a.model, implementation="foreach" if device.type == "cuda"
                                          else "plain")
            context = nullcontext
        else:
            context = _setup_b(name, b)
        times = alternate({"a": trainer_step(a, batch), "b": trainer_step(b, batch, context)}, rounds, warmup,
                          device)
    finally:
        a.close()
        b.close()
    return ratio_line(f"{name}: {SETUPS[name]}", times["a"], times["b"])


def profile_report(make_trainer: Callable[[str], Trainer], batch, device: torch.device, tries: list[str],
                   rounds: int, warmup: int, profiled_steps: int) -> dict[str, float]:
    """Print the op table, GFLOP per step, GFLOP/s and share of peak, and the A/B ratios; returns the numbers."""
    trainer = make_trainer("profile")
    try:
        step = trainer_step(trainer, batch)
        for _ in range(warmup):
            step()
        flops = step_flops(step)
        table, per_op = op_table(step, profiled_steps, device)
        shapes = conv_by_shape(step) if device.type == "cpu" else ""
        times = alternate({"step": step}, rounds, 0, device)["step"]
    finally:
        trainer.close()
    step_s = statistics.median(times)
    gflops = flops / 1e9
    out = {"gflop_per_step": gflops, "step_s": step_s, "gflop_per_s": gflops / step_s}
    print(f"\nper-op self time, {profiled_steps} steps (torch.profiler):\n{table}")
    conv_f = per_op.get("aten::mkldnn_convolution", 0) + per_op.get("aten::_slow_conv2d_forward", 0)
    conv_b = per_op.get("aten::convolution_backward", 0)  # on a CPU its kernels run inside it (self time)
    if device.type == "cpu" and conv_f:
        out["conv_backward_over_forward"] = conv_b / conv_f
        print(f"convolution backward / forward (self CPU time): {conv_b / conv_f:.2f}; the costliest, one step, "
              f"by shapes (input, weight, grad or bias):\n{shapes}")
    print(f"work: {gflops:.2f} GFLOP per step (forward + backward, FlopCounterMode); step {step_s * 1e3:.0f} ms "
          f"(median of {len(times)}) -> {gflops / step_s:.1f} GFLOP/s")
    if device.type == "cpu":
        peak, how = cpu_peak(open("/proc/cpuinfo").read(), torch.get_num_threads())
        out["share_of_peak"] = gflops / step_s / peak
        print(f"fp32 peak: {how}\nshare of peak: {100 * gflops / step_s / peak:.1f} %")
    else:
        print(f"peak: not derived for {torch.cuda.get_device_name(device)} (take it from the vendor's sheet)")
    print(f"\nA/B step time, alternating in one process ({rounds} rounds after {warmup} warm-up each):")
    for name in ["fused"] + [t for t in tries if t != "fused"]:
        ratio, line = ab(name, make_trainer, batch, rounds, warmup, device)
        out[f"ratio_{name}"] = ratio
        print(line, flush=True)
    return out


def run(recipe: str, device: torch.device, tries: list[str], rounds: int, warmup: int, profiled_steps: int,
        data=None, canvas=None) -> dict[str, float]:
    """``profile_report`` for ``recipe`` (its canvas, batch, backbone, norm, optimizer) on synthetic shapes."""
    import tempfile
    from pathlib import Path

    from bench_edge_overhead import synthetic_batch

    from edgercnn.config.runconfig import config_from_dict
    from edgercnn.data.shapes import make_shapes

    with tempfile.TemporaryDirectory() as tmp:
        base = config_from_dict({"recipe": recipe})
        canvas = list(canvas or base.canvas)
        if data is None:
            data = Path(tmp) / "shapes"
            make_shapes(data, train=4, val=1, size=max(canvas), seed=0)

        def make_trainer(name: str) -> Trainer:
            trainer = Trainer(config_from_dict({"recipe": recipe, "data": str(data), "device": str(device),
                                                "canvas": canvas, "out_dir": str(Path(tmp) / "runs"),
                                                "experiment": name, "eval_at_end": False, "workers": 0}))
            set_trainable(trainer.model, trainer.stages[0]["layers"])
            trainer.model.train()
            return trainer

        cfg = make_trainer("probe")
        cfg.close()
        images, targets = synthetic_batch(canvas[0], canvas[1], cfg.cfg.batch_size, device)
        targets = [dict(t, labels=t["labels"].clamp(max=cfg.cfg.num_classes)) for t in targets]
        print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, recipe {recipe}: "
              f"{cfg.cfg.backbone} backbone, norm {cfg.cfg.norm}, {cfg.cfg.optimizer}, canvas {canvas[0]}x"
              f"{canvas[1]}, batch {cfg.cfg.batch_size}, edge loss {cfg.cfg.filters or 'off'}")
        return profile_report(make_trainer, (images, targets), device, tries, rounds, warmup, profiled_steps)
