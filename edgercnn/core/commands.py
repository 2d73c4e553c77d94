"""Command lines as text: the one builder every recorded command (manifests, run folders, result CSVs, sweep plans)
goes through, so that each can be pasted into a POSIX shell."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any, Iterable


def format_command(parts: Iterable[Any]) -> str:
    """A command line from its words, each quoted for a POSIX shell where needed."""
    return " ".join(shlex.quote(str(p)) for p in parts)


def invoked_command() -> str:
    """The command line of this process as the user typed it (``edgercnn ...``)."""
    return format_command(["edgercnn", *sys.argv[1:]])


def running_command() -> str:
    """The command line that is running: ``edgercnn ...`` from the console script, else the whole ``sys.argv``
    (``python -m ...``, a script, a test runner)."""
    return invoked_command() if Path(sys.argv[0]).name == "edgercnn" else format_command(sys.argv)
