"""The text form of config values and keys: the one place that writes and parses them.

A config value appears as text on the command line (``edgercnn train --canvas 1024x800 --filter sobel+laplace``,
``sweep --set stages=...``), in the result CSVs' config columns, in the report and in ``edgercnn recipes``:

- ``none``: an unset value (``smooth: none``, ``backbone_weights: none``), and ``filters`` of the baseline;
- ``canvas``: ``WIDTHxHEIGHT`` (``1024x800``);
- ``filters``: names joined with ``+`` (``sobel+laplace``; commas are read too);
- ``stages``: ``layers:steps@lr`` joined with commas (``heads:40000@0.001,4+:80000@0.001,all:40000@0.0001``);
- ``mask_losses``: names joined with ``+`` like filters (``dice+boundary``; ``none``: no term);
- ``mask_loss_weights``: ``name=weight`` joined with commas (``dice=2,boundary=0.5``; ``none``: the defaults).

A config key is an ``edgercnn train`` option by one rule: ``--`` + the key in kebab-case (``mask_size`` →
``--mask-size``; a boolean also ``--no-...``), except ``FLAG_NAMES``; ``TRAIN_KEYS`` are the keys it takes.
``train_command`` writes the ``edgercnn train`` command of a set of keys (through ``core.commands.format_command``,
the one command-line builder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import yaml

from edgercnn.core.commands import format_command
from edgercnn.core.errors import ConfigError

#: The text of an unset value (None) and of the baseline's empty filter list.
NONE = "none"
#: Keys whose ``edgercnn train`` option is not the key in kebab-case.
FLAG_NAMES = {"filters": "filter", "eval_at_end": "eval", "mask_losses": "mask_loss",
              "mask_loss_weights": "mask_loss_weight"}
#: Config keys that ``edgercnn train`` takes as options (the rest go through ``--config`` or ``--recipe``).
TRAIN_KEYS = ("recipe", "data", "filters", "p", "alpha", "smooth", "magnitude", "formulation", "mask_losses",
              "mask_loss_weights", "boundary_ramp_steps", "mask_size",
              "backbone", "backbone_weights", "init", "norm", "optimizer", "warmup_steps", "canvas", "steps", "lr",
              "batch_size", "workers", "device", "amp", "seed", "experiment", "name", "out_dir", "results_dir",
              "checkpoint_every", "eval_at_end", "eval_max_images", "eval_every", "strict")


# --------------------------------------------------------------------------------------------- flags
def flag(key: str) -> str:
    """The ``edgercnn train`` option of config key ``key``: ``mask_size`` → ``--mask-size``."""
    return "--" + FLAG_NAMES.get(key, key).replace("_", "-")


def negative_flag(key: str) -> str:
    """The off switch of a boolean key: ``amp`` → ``--no-amp``."""
    return "--no-" + flag(key)[2:]


def bool_flags(key: str) -> str:
    """``--on/--off`` as Typer declares a boolean option."""
    return f"{flag(key)}/{negative_flag(key)}"


# --------------------------------------------------------------------------------------------- writing
def format_canvas(canvas: Iterable[int]) -> str:
    return "x".join(str(int(v)) for v in canvas)


def format_filters(filters: Iterable[str]) -> str:
    filters = list(filters)
    return "+".join(filters) if filters else NONE


def format_weights(weights: dict[str, float]) -> str:
    return ",".join(f"{k}={float(v):g}" for k, v in weights.items()) if weights else NONE


def format_terms(names: Iterable[str], weights: dict[str, float] | None = None) -> str:
    """The mask-loss terms in a config name: ``dice``, ``dice-w2+boundary`` (a weight only where it is set)."""
    weights = weights or {}
    return "+".join(n + (f"-w{float(weights[n]):g}" if n in weights else "") for n in names)


def format_stages(stages: Iterable[dict[str, Any]]) -> str:
    return ",".join(f"{s['layers']}:{s['steps']}@{float(s['lr']):g}" for s in stages)


def format_value(key: str, value: Any) -> Any:
    """``value`` of ``key`` as one flat text-friendly value: lists in their text form, None as ``none``; numbers,
    booleans and strings as they are."""
    if key in ("filters", "mask_losses"):
        return format_filters(value or [])
    if key == "mask_loss_weights":
        return format_weights(value or {})
    if value is None:
        return NONE
    if key == "canvas":
        return format_canvas(value)
    if key == "stages":
        return format_stages(value)
    return value


# --------------------------------------------------------------------------------------------- reading
def is_none(text: Any) -> bool:
    """``none`` (any case), an empty text or an empty list: no value (no filters: the baseline)."""
    return text is None or str(text).strip().lower() in (NONE, "", "[]")


def parse_canvas(text: str, where: str = "--canvas") -> list[int]:
    """``1024x800`` → [1024, 800]; a one-line error naming ``where`` otherwise."""
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ConfigError(f"{where} {text!r}: expected WIDTHxHEIGHT, e.g. 1024x800") from None
    return [w, h]


def parse_filters(values: str | Iterable[str]) -> list[str]:
    """``sobel+laplace`` (or ``sobel,laplace``, or several such texts) → ['sobel', 'laplace']; ``none`` → []."""
    values = [values] if isinstance(values, str) else list(values)
    names = [n.strip().lower() for v in values for n in str(v).replace("+", ",").split(",") if n.strip()]
    return [n for n in names if n != NONE]


def parse_weights(values: str | Iterable[str], where: str = "--mask-loss-weight") -> dict[str, float]:
    """``dice=2,boundary=0.5`` (or several such texts) → {"dice": 2.0, "boundary": 0.5}; ``none`` → {}."""
    values = [values] if isinstance(values, str) else list(values)
    out = {}
    for part in (p.strip() for v in values for p in str(v).split(",")):
        if not part or part.lower() == NONE:
            continue
        name, eq, weight = part.partition("=")
        try:
            out[name.strip().lower()] = float(weight)
        except ValueError:
            raise ConfigError(f"{where} {part!r}: expected NAME=WEIGHT, e.g. dice=2") from None
        if not eq or not name.strip():
            raise ConfigError(f"{where} {part!r}: expected NAME=WEIGHT, e.g. dice=2")
    return out


def parse_stages(text: str, where: str = "stages") -> list[dict[str, Any]]:
    """``heads:40000@0.001,all:40000@0.0001`` → [{"layers": "heads", "steps": 40000, "lr": 0.001}, ...]."""
    stages = []
    for part in str(text).split(","):
        layers, _, rest = part.strip().rpartition(":")
        steps, _, lr = rest.partition("@")
        try:
            stages.append({"steps": int(steps), "layers": layers, "lr": float(lr)})
        except ValueError:
            raise ConfigError(f"{where} {text!r}: expected LAYERS:STEPS@LR joined by commas, e.g. "
                              "heads:40000@0.001,all:40000@0.0001") from None
        if not layers:
            raise ConfigError(f"{where} {text!r}: a stage lacks its layers (LAYERS:STEPS@LR)")
    return stages


def parse_value(key: str, text: str, where: str | None = None) -> Any:
    """The value of ``key`` from its text: the forms above for canvas, filters and stages, ``none`` for None,
    YAML for the rest (``3``, ``0.5``, ``true``, ``[sobel]``)."""
    where = where or flag(key)
    text = str(text)
    if not text.lstrip().startswith(("[", "{")):  # not a YAML list or mapping: the text forms
        if key in ("filters", "mask_losses"):
            return parse_filters(text)
        if key == "mask_loss_weights":
            return parse_weights(text, where)
        if key == "canvas":
            return parse_canvas(text, where)
        if key == "stages":
            return parse_stages(text, where)
        if text.strip().lower() == NONE:
            return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"{where} {text!r}: not a value (a number, true/false, a name or a YAML list)") from None


def normalize(values: dict[str, Any]) -> dict[str, Any]:
    """Config values from a file or options with their text forms read: ``filters: sobel+laplace`` or ``none``,
    ``canvas: 1024x800``, ``stages: heads:40000@0.001,...``, ``smooth: none``."""
    out = dict(values)
    for key in ("filters", "canvas", "stages", "mask_losses", "mask_loss_weights"):
        if isinstance(out.get(key), str):
            out[key] = parse_value(key, out[key], key)
    for key in ("filters", "mask_losses"):
        if isinstance(out.get(key), (list, tuple)):
            out[key] = parse_filters([str(f) for f in out[key]]) if all(isinstance(f, str) for f in out[key]) \
                else list(out[key])
    if out.get("mask_loss_weights") is None and "mask_loss_weights" in out:
        out["mask_loss_weights"] = {}
    for key in ("smooth", "backbone_weights", "init"):  # `--backbone-weights none`: random weights, asked for
        if isinstance(out.get(key), str) and is_none(out[key]):
            out[key] = None
    return out


# --------------------------------------------------------------------------------------------- commands
def train_options(keys: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(``edgercnn train`` options for ``keys``, ``key=value`` of the keys it has no option for)."""
    parts, rest = [], []
    for key, value in keys.items():
        if key == "filters":
            parts += [x for f in (value or [NONE]) for x in (flag(key), f)]
        elif key == "mask_losses":
            parts += [x for f in value or [] for x in (flag(key), f)]
        elif key == "mask_loss_weights":
            parts += [x for k, w in (value or {}).items() for x in (flag(key), f"{k}={float(w):g}")]
        elif key not in TRAIN_KEYS or value is None:
            rest.append(f"{key}={value}")
        elif isinstance(value, bool):
            parts.append(flag(key) if value else negative_flag(key))
        else:
            parts += [flag(key), str(format_value(key, value))]
    return parts, rest


def train_command(keys: dict[str, Any], config_file: Path | str | None = None, resume: bool = True) -> str:
    """The ``edgercnn train`` command of a run with ``keys`` (over ``config_file``, when given); keys without an
    option are listed after ``#``."""
    parts = ["edgercnn", "train"] + (["--config", str(config_file)] if config_file is not None else [])
    options, rest = train_options(keys)
    parts += options + (["--resume"] if resume else [])
    return format_command(parts) + (f"  # and {', '.join(rest)}" if rest else "")
