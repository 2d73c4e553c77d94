"""``edgercnn recipes NAME --diff OTHER``: the config keys two recipes set differently, with the config defaults for
the keys a recipe leaves unset. Above both the recipes and the Config it reads, so neither imports the other's
caller (no import cycle in ``edgercnn.config``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from edgercnn.config.recipes import load_recipe
from edgercnn.config.runconfig import Config
from edgercnn.config.values import format_value


def recipe_diff(name: str, other: str) -> list[dict[str, Any]]:
    """The config keys whose values differ between recipes ``name`` and ``other``, in ``name``'s key order then
    ``other``'s: ``{"key", "values": (a, b), "sources": (a, b)}``; a key a recipe does not set has the config default
    (source "edgercnn default")."""
    defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                for f in dataclasses.fields(Config)}
    recipes = [load_recipe(name)["keys"], load_recipe(other, "--diff")["keys"]]
    rows = []
    for key in dict.fromkeys([*recipes[0], *recipes[1]]):
        entries = [r.get(key, {"value": defaults[key], "source": "edgercnn default"}) for r in recipes]
        if entries[0]["value"] != entries[1]["value"]:
            rows.append({"key": key, "values": tuple(e["value"] for e in entries),
                         "sources": tuple(str(e["source"]) for e in entries)})
    return rows


def print_recipe_diff(name: str, other: str, console: Any) -> None:
    """``edgercnn recipes NAME --diff OTHER``: one line per differing key (values, then sources cut to the line;
    ``edgercnn recipes NAME`` shows them whole), as a table on a rich Console."""
    from rich.markup import escape
    from rich.table import Table

    rows = recipe_diff(name, other)
    console.print(f"[bold]{name}[/] vs [bold]{other}[/]: {len(rows)} keys differ", highlight=False)
    cells = [(row["key"], *(str(format_value(row["key"], v)) for v in row["values"]), *row["sources"])
             for row in rows]
    table = Table("key", name, other, f"source ({name})", f"source ({other})", show_lines=False)
    # one line per key: key and values whole (up to 36 characters), the two sources share the rest of the width
    widths = [min(max([len(c[i]) for c in cells] + [len(str(table.columns[i].header))]), 36) for i in range(3)]
    source_width = max((console.width - sum(widths) - 3 * len(table.columns) - 1) // 2, 12)
    for column, width in zip(table.columns, [*widths, source_width, source_width]):
        column.no_wrap, column.overflow, column.width = True, "ellipsis", width
    for c in cells:
        table.add_row(*(escape(x) for x in c))
    console.print(table)
