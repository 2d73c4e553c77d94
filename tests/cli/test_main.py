"""The CLI with Typer's CliRunner: help for every option, one-line errors, train → eval → report → reproduce."""

import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from edgercnn import __version__
from edgercnn.cli import app

from tests.paths import REPO

runner = CliRunner()
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def invoke(*args):
    result = runner.invoke(app, list(args), terminal_width=200)
    result.plain = ANSI.sub("", result.output)
    return result


def test_top_level_help_and_version():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("prepare", "train", "eval", "report", "reproduce"):
        assert command in result.plain
    assert invoke("--version").plain.strip() == f"edgercnn {__version__}"


@pytest.mark.parametrize("command", ["train", "eval", "report", "reproduce"])
def test_every_option_has_help(command):
    import typer.main

    click_cmd = typer.main.get_command(app).commands[command]
    for param in click_cmd.params:
        if param.param_type_name == "option":
            assert param.help and len(param.help) > 10, f"{command} {param.opts} lacks help"
    assert invoke(command, "--help").exit_code == 0


@pytest.mark.parametrize("args, needle", [
    (["train", "--filter", "canny"], "filters: unknown ['canny']"),
    (["train", "--p", "0.5"], "p: must be >= 1"),
    (["train", "--canvas", "big"], "--canvas 'big': expected WIDTHxHEIGHT"),
    (["train", "--data", "/nonexistent/ds"], "/nonexistent/ds: is not a folder"),
    (["eval", "/nonexistent/run"], "config.yaml: not found"),
    (["train", "--device", "tpu9"], "--device tpu9: not a device name"),
    (["train", "--filter", "laplace", "--magnitude"], "magnitude: needs a two-kernel filter"),
    (["train", "--lr", "-1"], "lr: must be > 0"),
    (["train", "--canvas", "10x10"], "canvas: expected [width, height] >= 32"),
    (["report", "/nonexistent/results"], "/nonexistent/results"),
])
def test_bad_input_is_one_line_and_nonzero(args, needle):
    result = invoke(*args)
    assert result.exit_code == 1
    lines = [line for line in result.plain.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.plain
    assert needle in " ".join(result.plain.split()), result.plain


def test_config_file_unknown_key_and_wrong_types(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lr_rate: 1\n")
    result = invoke("train", "--config", str(cfg))
    assert result.exit_code == 1 and "unknown key(s) ['lr_rate']" in result.plain
    for text in ("p: abc\n", "canvas: 5\n", "stages: [1, 2]\n", "filters: 3\n"):
        cfg.write_text(text)
        result = invoke("train", "--config", str(cfg))
        assert result.exit_code == 1 and result.plain.startswith("error:"), (text, result.plain)
    cfg.write_text("smooth: none\nfilters: none\n")  # "none" spelled out in a file means None / baseline
    from edgercnn.config import load_config

    loaded = load_config(cfg)
    assert loaded.smooth is None and loaded.filters == []


@pytest.mark.slow
def test_train_eval_report_via_cli(tiny_shapes, tmp_path):
    common = ["--data", str(tiny_shapes), "--backbone", "small", "--canvas", "64x64", "--steps", "3", "--workers",
              "0", "--experiment", "cli", "--out-dir", str(tmp_path / "runs"), "--results-dir",
              str(tmp_path / "results"), "--device", "cpu", "--lr", "0.01"]
    result = invoke("train", *common, "--filter", "sobel,laplace", "--p", "1", "--smooth", "gt", "--mask-size", "56",
                    "--seed", "1", "--no-eval")
    assert result.exit_code == 0, result.plain
    run = tmp_path / "runs" / "cli" / "sobel+laplace-p1-smooth_gt-m56" / "seed-1"
    assert (run / "model_final.pt").is_file()
    result = invoke("eval", str(run), "--max-images", "2")  # a partial val split: metrics.json, no seed CSV
    assert result.exit_code == 0, result.plain
    assert (run / "metrics.json").is_file()
    assert not (tmp_path / "results" / "cli" / "sobel+laplace-p1-smooth_gt-m56" / "seed-1.csv").exists()
    result = invoke("eval", str(run))
    assert result.exit_code == 0, result.plain
    row = pd.read_csv(tmp_path / "results" / "cli" / "sobel+laplace-p1-smooth_gt-m56" / "seed-1.csv").iloc[0]
    assert (row["filters"], row["p"], row["smooth"], row["mask_size"], row["seed"]) == ("sobel+laplace", 1.0, "gt",
                                                                                          56, 1)
    assert row["command"].startswith("edgercnn train --data ") and "--filter sobel,laplace" in row["command"]
    assert "--no-eval" in row["command"] and "--resume" not in row["command"]
    result = invoke("train", *common, "--filter", "none", "--formulation", "lp")
    assert result.exit_code == 0, result.plain
    result = invoke("report", str(tmp_path / "results" / "cli"), "--format", "markdown", "--baseline", "baseline")
    assert result.exit_code == 0, result.plain
    assert "| sobel+laplace-p1-smooth_gt-m56 |" in result.plain.replace("  ", " ")


@pytest.mark.slow
def test_reproduce_small(tiny_shapes, tmp_path):
    args = ["reproduce", "--data", str(tiny_shapes), "--seeds", "1", "--steps", "2", "--jobs", "2", "--out-dir",
            str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results"), "--experiment", "rep"]
    result = invoke(*args)
    assert result.exit_code == 0, result.plain
    for config in ("baseline", "sobel-p2"):
        assert (tmp_path / "results" / "rep" / config / "seed-0.csv").is_file()
    assert "reproduce finished in" in result.plain and "losses.png" in result.plain
    again = invoke(*args)  # finished seeds are skipped
    assert again.exit_code == 0 and again.plain.count("skipped") == 2


@pytest.mark.slow
def test_reproduce_on_a_fresh_clone_trains_and_compares_with_the_committed_reference(tiny_shapes, tmp_path,
                                                                                     monkeypatch):
    """The committed results/shapes is a reference to compare with, never mistaken for the user's finished runs."""
    import shutil

    reference = tmp_path / "results" / "shapes"
    committed = REPO / "results" / "shapes"
    shutil.copytree(committed, reference)
    monkeypatch.chdir(tmp_path)
    result = invoke("reproduce", "--data", str(tiny_shapes), "--seeds", "2", "--steps", "3", "--jobs", "1")
    assert result.exit_code == 0, result.plain
    assert "skipped" not in result.plain
    assert (tmp_path / "runs" / "reproduce" / "results" / "shapes" / "baseline" / "seed-1.csv").is_file()
    assert "Your runs against the committed reference" in result.plain and "differs (p < 0.05)" in result.plain
    assert sorted(p.name for p in (reference / "baseline").iterdir()) == sorted(
        p.name for p in (committed / "baseline").iterdir())  # the reference is only read


def test_help_and_recipes_do_not_import_torch():
    """`edgercnn --help`, every command's --help and `edgercnn recipes` (list, show, diff) stay light: torch and
    torchvision load only inside the commands that compute (a fresh interpreter, so nothing is imported yet)."""
    import os
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    import edgercnn

    code = textwrap.dedent("""
        import sys
        from typer.main import get_command
        from typer.testing import CliRunner
        from edgercnn.cli import app

        group = get_command(app)
        calls = [["--help"], ["recipes"], ["recipes", "cpu-shapes"], ["recipes", "cpu-shapes", "--diff", "torchvision"]]
        calls += [[name, "--help"] for name in group.commands]
        calls += [["prepare", name, "--help"] for name in group.commands["prepare"].commands]
        for args in calls:
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 0, (args, result.output)
        print(sorted(m for m in ("torch", "torchvision") if m in sys.modules))
    """)
    root = str(Path(edgercnn.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
