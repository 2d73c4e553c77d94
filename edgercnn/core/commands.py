"""Command lines as text: the one quoting function (``format_command``) and the one recorder of the command this
process runs (``recorded_command``), which run folders (``command.txt``), result CSVs, sweep and reproduce runs and
dataset manifests all record, so that each can be pasted into a POSIX shell.

Which form is recorded: the CLI's *normalized* form when the process is the ``edgercnn`` command line (the CLI
registers it around the command it runs: ``edgercnn <command path>`` and the options the user gave, in
declaration order, defaults left out; ``python -m edgercnn`` records the same), else, for a library call (a
script, a notebook, a test runner), the raw ``sys.argv``. A run folder and a manifest made by the same kind of
invocation thus record the same form. The one exception is a dataset that must be byte-identical for the same
options (``prepare shapes``): it records the command that re-creates it from those options, however it was made.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

_registered: str | None = None


def format_command(parts: Iterable[Any]) -> str:
    """A command line from its words, each quoted for a POSIX shell where needed."""
    return " ".join(shlex.quote(str(p)) for p in parts)


@contextlib.contextmanager
def registered_command(parts: Iterable[Any]) -> Iterator[str]:
    """While inside: ``parts`` is the command this process runs, as recorded (the CLI: its normalized form, around
    the one command it runs; the previous one is restored after, so a long-lived process records no stale one)."""
    global _registered
    previous, _registered = _registered, format_command(parts)
    try:
        yield _registered
    finally:
        _registered = previous


def recorded_command() -> str:
    """The command this process runs, as recorded: the registered (CLI) form, else the raw ``sys.argv``
    (``edgercnn ...`` from the console script, the whole ``sys.argv`` otherwise)."""
    if _registered is not None:
        return _registered
    if Path(sys.argv[0]).name == "edgercnn":
        return format_command(["edgercnn", *sys.argv[1:]])
    return format_command(sys.argv)
