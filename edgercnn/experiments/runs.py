"""A run's life cycle: what the run of a (config, seed) still needs, and the one dispatch that does it.

Used by ``reproduce`` and ``sweep`` (through ``runner``) alike; ``edgercnn train`` and ``edgercnn eval`` are the
two actions it chooses between (``pipeline.train_and_evaluate``, ``pipeline.evaluate_run``). Light to import (no
torch): worker processes read the state before they load the model code.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from edgercnn.config import Config
from edgercnn.reporting.results import SeedResult
from edgercnn.training.rundir import RunDir

#: What a run still needs: nothing (``done``: its per-seed result CSV exists), a copy of an identical run's result
#: (``reuse``: sweep's ``reuse``), evaluation (``evaluate``: trained, ``model_final.pt``), the rest of its training
#: (``resume``: a checkpoint), everything (``new``).
RUN_STATES = ("done", "reuse", "evaluate", "resume", "new")
#: The states that train or evaluate (the rest only read or copy a result CSV).
TO_RUN = ("evaluate", "resume", "new")


def run_state(cfg: Config, reuse_from: SeedResult | None = None) -> str:
    """What the run of ``cfg`` still needs (one of ``RUN_STATES``; ``reuse`` only when ``reuse_from`` exists): the
    one place that decides it, for sweep's plan, reproduce and the workers that run it."""
    if SeedResult.of(cfg).exists():
        return "done"
    if reuse_from is not None and reuse_from.exists():
        return "reuse"
    run = RunDir.of(cfg)
    if run.final_weights.is_file():
        return "evaluate"
    return "resume" if run.checkpoint.is_file() else "new"


def advance_run(cfg: Config, *, console: Console, command: str, state: str | None = None,
                reuse_from: SeedResult | None = None) -> Path | None:
    """Do what the run of ``cfg`` still needs (``state``, default ``run_state``): nothing, copy ``reuse_from``,
    evaluate, or train (resuming) and evaluate. Returns its per-seed result CSV (None when none was written)."""
    state = state or run_state(cfg, reuse_from)
    if state == "done":
        return SeedResult.of(cfg).csv
    if state == "reuse":
        SeedResult.of(cfg).copy_from(reuse_from)
        return SeedResult.of(cfg).csv
    from edgercnn.experiments.pipeline import evaluate_run, train_and_evaluate  # torch: only to run

    if state == "evaluate":
        return evaluate_run(RunDir.of(cfg), console=console)[1]
    return train_and_evaluate(cfg, resume=state == "resume", console=console, command=command)[2]
