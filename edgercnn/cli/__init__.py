"""The command line (top layer): Typer commands that parse options and delegate to one library call each."""

from edgercnn.cli.main import app

__all__ = ["app"]
