"""`python -m edgercnn` runs the CLI."""

from edgercnn.cli import app

if __name__ == "__main__":
    app(prog_name="edgercnn")
