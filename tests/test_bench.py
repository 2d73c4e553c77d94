"""The benchmarks run (CPU, seconds) so that they cannot rot: scripts/bench_train.py --device cpu --tiny."""

import importlib.util
import math
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_bench_train_tiny_on_cpu(capsys):
    rows = load_script("bench_train").main(["--device", "cpu", "--tiny"])
    labels = [label for label, _, _ in rows]
    assert any("ours" in label for label in labels) and any("plain torchvision" in label for label in labels)
    assert any("data loader" in label for label in labels) and any("overhead" in label for label in labels)
    assert any("evaluation" in label for label in labels)
    assert all(math.isfinite(value) and value > 0 for _, value, _ in rows)
    out = capsys.readouterr().out
    assert "ours / plain" in out and "loader / fp32 step rate" in out
