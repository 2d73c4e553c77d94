"""The CLI under Typer's CliRunner, and the suite's check that a failure is one line, not a traceback."""

from __future__ import annotations

from typer.testing import CliRunner

from edgercnn.cli import app

#: Training options for runs of seconds on CPU (the tiny shapes dataset).
TINY = ["--backbone", "small", "--canvas", "64x64", "--lr", "0.01", "--workers", "0", "--device", "cpu"]


def invoke(*args):
    """``edgercnn ARGS`` (paths and numbers as text), wide enough that a one-line error is not wrapped."""
    return CliRunner().invoke(app, [str(a) for a in args], terminal_width=200)


def one_line(output: str) -> str:
    """``output`` is one line starting with "error:", not a traceback; returns that line."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), output
    assert "Traceback" not in output
    return lines[0]


def one_line_error(result, needle=None):
    """The CLI failed with exit status 1 and one line (containing ``needle``, line wrapping undone)."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    line = one_line(result.output)
    if needle is not None:
        assert needle in " ".join(result.output.split()), result.output
    return line
