"""The training schedule as pure functions of the step: stages (section 4), their scaling, and linear warm-up.

A stage is a dict ``{"steps": int, "layers": "heads" | "4+" | "all", "lr": float}`` (layers: the model's
``architecture.STAGE_LAYERS``); steps are 1-based.
"""

from __future__ import annotations

from typing import Any

#: Linear warm-up starts at this fraction of the stage lr (torchvision's detection references use 0.001).
WARMUP_FACTOR = 0.001


def paper_stages() -> list[dict[str, Any]]:
    """The paper's schedule (section 4): 40k/80k/40k steps at lr 0.001, 0.001, 0.0001."""
    return [
        {"steps": 40_000, "layers": "heads", "lr": 0.001},
        {"steps": 80_000, "layers": "4+", "lr": 0.001},
        {"steps": 40_000, "layers": "all", "lr": 0.0001},
    ]


def scale_steps(lengths: list[int], total: int) -> list[int]:
    """Split ``total`` steps in proportion to ``lengths`` (largest remainders), every stage at least 1 step."""
    whole = sum(lengths)
    shares = [n * total / whole for n in lengths]
    out = [int(x) for x in shares]
    for i in sorted(range(len(shares)), key=lambda i: shares[i] - out[i], reverse=True)[: total - sum(out)]:
        out[i] += 1
    for i, n in enumerate(out):
        if n == 0:  # borrow from the longest stage
            out[out.index(max(out))] -= 1
            out[i] = 1
    return out


def stage_at(step: int, stages: list[dict[str, Any]]) -> int:
    """0-based stage index of 1-based ``step``; steps past the end stay in the last stage."""
    end = 0
    for i, stage in enumerate(stages):
        end += int(stage["steps"])
        if step <= end:
            return i
    return len(stages) - 1


def lr_at(step: int, stages: list[dict[str, Any]], warmup_steps: int = 0) -> float:
    """Learning rate of 1-based ``step``: its stage's lr, ramped linearly from ``WARMUP_FACTOR`` × lr at step 1
    to the full lr at ``warmup_steps`` (no warm-up when 0)."""
    lr = float(stages[stage_at(step, stages)]["lr"])
    if warmup_steps > 0 and step < warmup_steps:
        t = (step - 1) / warmup_steps
        lr *= WARMUP_FACTOR + (1 - WARMUP_FACTOR) * t
    return lr
