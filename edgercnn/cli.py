"""The `edgercnn` command line: options in, one library call out; no logic here."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from edgercnn import __version__
from edgercnn.data.cli import app as prepare_app

app = typer.Typer(
    help="Edge Agreement Loss for Mask R-CNN (Zimmermann & Siems): prepare data, train, evaluate, report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(prepare_app, name="prepare")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgercnn {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Edge Agreement Loss for Mask R-CNN."""


def _not_yet(name: str) -> None:
    typer.echo(f"edgercnn {name}: not implemented yet", err=True)
    raise typer.Exit(2)


@app.command()
def train() -> None:
    """Train Mask R-CNN with or without the Edge Agreement Loss (not implemented yet)."""
    _not_yet("train")


@app.command("eval")
def evaluate() -> None:
    """Evaluate a run folder on the val split (not implemented yet)."""
    _not_yet("eval")


@app.command()
def report() -> None:
    """Mean ± std tables and loss plots across seeds (not implemented yet)."""
    _not_yet("report")
