"""How the CLI shows an error: the presentation of ``core.errors`` (one line on stderr, an exit status)."""

from __future__ import annotations

import contextlib
from typing import Iterator

import typer
from rich.console import Console
from rich.markup import escape

from edgercnn.core.errors import EdgeRCNNError, os_error_message


@contextlib.contextmanager
def user_errors(debug: bool = False) -> Iterator[None]:
    """For CLI commands: an EdgeRCNNError becomes one line on stderr and exit status 1 (traceback with --debug);
    Ctrl-C exits 130, keeping what was written."""
    try:
        yield
    except EdgeRCNNError as err:
        if debug:
            raise
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except OSError as err:  # a last resort: no traceback for a full disk or an unwritable folder either
        if debug:
            raise
        Console(stderr=True).print(f"[bold red]error:[/] {escape(os_error_message(err))}", highlight=False,
                                   soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted; the last checkpoint is kept: continue with --resume")
        raise typer.Exit(130) from None
