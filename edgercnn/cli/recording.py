"""The command line the CLI records: every ``edgercnn`` command is a ``RecordedCommand``, which registers its
normalized form with ``core.commands`` around the command's body, so that run folders, result CSVs, sweep and
reproduce runs and dataset manifests all record it (``core.commands.recorded_command``)."""

from __future__ import annotations

from enum import Enum
from typing import Any

import click
from typer.core import TyperCommand

from edgercnn.core.commands import registered_command


def command_words(ctx: click.Context) -> list[str]:
    """The invoked command rebuilt from the options the user gave: ``edgercnn``, the command path (``prepare
    shapes``), then each given argument and option in declaration order, defaults left out."""
    path, node = [], ctx
    while node.parent is not None:  # the root's name is the program's (edgercnn, __main__.py, a test runner's)
        path.insert(0, node.info_name or "")
        node = node.parent
    return ["edgercnn", *path, *_given(ctx)]


def _given(ctx: click.Context) -> list[str]:
    """The arguments and options of ``ctx``'s command that the user gave, as words."""
    parts: list[str] = []
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source is None or source.name == "DEFAULT":
            continue
        value = ctx.params[param.name]
        if param.param_type_name == "argument":
            parts += [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        elif isinstance(value, bool):
            flag = next((o for o in param.opts if o.startswith("--")), param.opts[0]) if value else \
                next((o for o in param.secondary_opts), None)
            if flag:
                parts.append(flag)
        else:
            for item in value if isinstance(value, (list, tuple)) else [value]:
                item = item.value if isinstance(item, Enum) else item
                parts += [param.opts[0], str(item)]
    return parts


class RecordedCommand(TyperCommand):
    """A Typer command whose body runs with its normalized command line registered (``core.commands``)."""

    def invoke(self, ctx: click.Context) -> Any:
        with registered_command(command_words(ctx)):
            return super().invoke(ctx)
