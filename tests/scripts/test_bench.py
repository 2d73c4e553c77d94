"""The benchmarks run (CPU, seconds) so that they cannot rot: scripts/bench_train.py --device cpu --tiny."""

import importlib.util
import math

import pytest

from tests.paths import REPO

SCRIPTS = REPO / "scripts"


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


def test_cpu_peak_from_cpuinfo():
    cpu_peak = load_script("bench_profile").cpu_peak
    xeon = ("processor\t: 0\ncore id\t\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6242 CPU @ 2.80GHz\n"
            "cpu MHz\t\t: 1200.000\nflags\t\t: fpu sse avx avx2 fma avx512f\n"
            "processor\t: 1\ncore id\t\t: 1\n")
    peak, how = cpu_peak(xeon, threads=1)
    assert peak == pytest.approx(2.8 * 2 * 16 * 2) and "model name" in how and "avx512f" in how
    assert cpu_peak(xeon, threads=8)[0] == pytest.approx(2 * peak)  # capped at the 2 cores listed
    epyc = "processor\t: 0\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2445.424\nflags\t\t: fpu avx avx2 fma\n"
    peak, how = cpu_peak(epyc, threads=1)
    assert peak == pytest.approx(2.445424 * 2 * 8 * 2) and "cpu MHz" in how


@pytest.mark.slow
def test_bench_train_profile_tiny_on_cpu(capsys):
    out = load_script("bench_train").main(["--device", "cpu", "--tiny", "--profile"])
    assert out["gflop_per_step"] > 0 and 0 < out["share_of_peak"] < 1 and out["ratio_fused"] > 0
    printed = capsys.readouterr().out
    assert "aten::convolution_backward" in printed and "fp32 peak:" in printed and "fused:" in printed
