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


def test_bench_trees_same_losses_compares_every_logged_loss():
    same_losses = load_script("bench_trees").same_losses
    a = [{"step": "1", "loss_total": "1.5", "loss_edge": "0.2", "step_time_s": "0.3"}]
    assert same_losses(a, [dict(a[0], step_time_s="0.9")])  # the time may differ, the losses not
    assert not same_losses(a, [dict(a[0], loss_edge="0.25")])
    assert not same_losses(a, a + a) and not same_losses([], [])


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / ".git").exists(), reason="needs a git checkout (--old HEAD is a worktree)")
def test_bench_trees_runs_a_revision_against_this_checkout(tiny_shapes, capsys):
    out = load_script("bench_trees").main(["--old", "HEAD", "--data", str(tiny_shapes), "--steps", "3", "--skip",
                                           "1", "--rounds", "1", "--", "--backbone", "small", "--canvas", "64x64"])
    assert math.isfinite(out["ratio"]) and out["ratio"] > 0 and len(out["rounds"]) == 1
    printed = capsys.readouterr().out
    assert "new/old step time, median over 1 round(s)" in printed and "identical losses:" in printed


def test_bench_trees_refuses_a_tree_shadowed_by_the_working_folder(tmp_path):
    # `python -m` puts the working folder before PYTHONPATH: a checkout there would be measured instead of the tree
    (tmp_path / "edgercnn").mkdir()
    (tmp_path / "edgercnn" / "__init__.py").write_text("")
    with pytest.raises(SystemExit, match="imports edgercnn from"):
        load_script("bench_trees").check_imports(REPO, tmp_path)
