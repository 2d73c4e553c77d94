"""Runs of seconds on the tiny shapes dataset for the training and evaluation tests: their config and CSV rows."""

from __future__ import annotations

import csv

from edgercnn.config import Config


def tiny_cfg(data, out, **kw):
    """A 3-step CPU run (checkpoint every step) under ``out``/runs and ``out``/results, experiment "tiny"."""
    base = dict(data=str(data), backbone="small", canvas=[64, 64], steps=3, lr=0.01, workers=0, checkpoint_every=1,
                out_dir=str(out / "runs"), results_dir=str(out / "results"), experiment="tiny", device="cpu")
    base.update(kw)
    return Config(**base)


def rows(path):
    """The rows of a CSV file as dicts."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
