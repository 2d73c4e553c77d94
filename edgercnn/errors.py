"""User-facing errors: one line saying what is wrong, where, and what to do (CONVENTIONS.md: errors)."""

from __future__ import annotations

import contextlib
from typing import Iterator


class EdgeRCNNError(Exception):
    """An error the CLI prints as one line (no traceback unless --debug) before exiting non-zero."""


class ConfigError(EdgeRCNNError, ValueError):
    """A configuration key or value that is not allowed (also a ValueError for library callers)."""


@contextlib.contextmanager
def user_errors(debug: bool = False) -> Iterator[None]:
    """For CLI commands: an EdgeRCNNError becomes one line on stderr and exit status 1 (traceback with --debug);
    Ctrl-C exits 130, keeping what was written."""
    import typer
    from rich.console import Console
    from rich.markup import escape

    try:
        yield
    except EdgeRCNNError as err:
        if debug:
            raise
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted; the last checkpoint is kept: continue with --resume")
        raise typer.Exit(130) from None
