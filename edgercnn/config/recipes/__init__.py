"""Recipes: named, packaged presets of config keys (``NAME.yaml`` beside this file), each value with its source.

A recipe file is ``{description: str, keys: {config_key: {value: ..., source: "file:line or paper section"}}}``.
``load_config`` puts a recipe under the --config file and the CLI options (recipe < file < options), so any key
can still be overridden. Authors' code = github.com/zimmerrol/mask-rcnn-edge-agreement-loss (commit 2a6ccb7), a
fork of matterport/Mask_RCNN; paper = /work/shared/paper.md (Zimmermann & Siems).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from edgercnn.config.values import format_value
from edgercnn.core.errors import ConfigError

RECIPES_DIR = Path(__file__).resolve().parent


def recipe_names() -> list[str]:
    """Names of the packaged recipes, sorted."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def check_recipe(name: str, what: str = "recipe") -> str:
    """``name`` if it is a packaged recipe, else ConfigError naming ``what`` (the key or option): the one rule for
    ``recipes NAME``, ``recipes --diff`` and ``train --recipe``. Only the packaged names count, never a path (a
    name with ``/`` or ``..`` would read any YAML file)."""
    if not isinstance(name, str) or name not in recipe_names():
        raise ConfigError(f"{what} {name!r}: no such recipe; choose {', '.join(recipe_names())} (edgercnn recipes lists them)")
    return name


def load_recipe(name: str, what: str = "recipe") -> dict[str, Any]:
    """``{"description": str, "keys": {key: {"value": ..., "source": str}}}`` of recipe ``name``."""
    path = RECIPES_DIR / f"{check_recipe(name, what)}.yaml"
    data = yaml.safe_load(path.read_text())
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, dict) or not all(isinstance(v, dict) and {"value", "source"} <= set(v)
                                             for v in keys.values()):
        raise ConfigError(f"{path}: expected keys: {{KEY: {{value: ..., source: ...}}}}; fix the recipe file")
    return {"description": str(data.get("description", "")), "keys": keys}


def recipe_values(name: str) -> dict[str, Any]:
    """The config values of recipe ``name`` (its sources dropped), ``recipe`` itself included."""
    return {"recipe": name, **{k: v["value"] for k, v in load_recipe(name)["keys"].items()}}


def print_recipes(console: Any) -> None:
    """``edgercnn recipes``: one line per recipe (name, description) on a rich Console."""
    from rich.markup import escape

    for name in recipe_names():
        console.print(f"[bold]{name}[/]: {escape(load_recipe(name)['description'])}", highlight=False)


def print_recipe(name: str, console: Any) -> None:
    """``edgercnn recipes NAME``: each key with its value and source, as a table on a rich Console."""
    from rich.markup import escape
    from rich.table import Table

    recipe = load_recipe(name)
    console.print(f"[bold]{name}[/]: {escape(recipe['description'])}", highlight=False)
    table = Table("key", "value", "source", show_lines=False)
    for key, entry in recipe["keys"].items():
        value = entry["value"]
        table.add_row(key, escape(str(format_value(key, value))), escape(str(entry["source"])))
    console.print(table)
