"""`edgercnn prepare ...` commands (filled in by the data issue)."""

import typer

app = typer.Typer(help="Download/convert a dataset to the edgercnn COCO-format layout.", no_args_is_help=True)


@app.command("shapes")
def shapes() -> None:
    """Not implemented yet."""
    typer.echo("edgercnn prepare shapes: not implemented yet (data issue)", err=True)
    raise typer.Exit(2)
