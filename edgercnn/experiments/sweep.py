"""`edgercnn sweep`: the paper's experiments as data (``edgercnn/experiments/*.yaml``), run where asked.

An experiment is a grid of named configurations × seeds on one dataset (file format: ``experiments/README.md``).
``sweep`` plans every (configuration, seed): done (its per-seed CSV exists), reuse (copied from an identical
configuration of another experiment), evaluate (trained, not evaluated), resume (a checkpoint exists) or new; it
hands the runs to an executor (``edgercnn.experiments.runner``) and ends with ``report`` against the paper's numbers.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from edgercnn.config import Config, config_from_dict
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.reporting.results import SeedResult
from edgercnn.training.rundir import RunDir
from edgercnn.experiments.runner import Executor, run_all

EXPERIMENTS_DIR = Path(__file__).parent
PRESETS_DIR = EXPERIMENTS_DIR / "presets"
_FIELDS = {"description", "dataset", "seeds", "base", "configs", "reuse", "compare"}
#: Keys of a run that the sweep, not the experiment file, decides.
RUN_KEYS = ("experiment", "name", "seed", "data", "device", "out_dir", "results_dir")


@dataclass(frozen=True)
class Experiment:
    """One experiment file: ``configs`` maps a configuration name to its config keys (``preset`` included)."""

    name: str
    path: Path
    description: str
    dataset: str
    seeds: tuple[int, ...]
    base: dict[str, Any]
    configs: dict[str, dict[str, Any]]
    reuse: dict[str, str]
    compare: str | None

    @classmethod
    def load(cls, name: str) -> "Experiment":
        """A packaged experiment by name (``table1_filters``, or a unique prefix of one: ``table1``) or any
        experiment YAML file by path."""
        if not name.endswith((".yaml", ".yml")):
            matches = [n for n in experiment_names() if n == name] or [n for n in experiment_names()
                                                                       if n.startswith(name)]
            name = matches[0] if len(matches) == 1 else name
        path = Path(name) if name.endswith((".yaml", ".yml")) else EXPERIMENTS_DIR / f"{name}.yaml"
        if not path.is_file():
            raise EdgeRCNNError(f"{name}: no such experiment; choose one of {', '.join(experiment_names())} "
                                "(edgercnn sweep --list) or pass an experiment YAML file")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise EdgeRCNNError(f"{path}: not valid YAML ({err.__class__.__name__}); fix the file") from None
        if not isinstance(data, dict) or not isinstance(data.get("configs"), dict) or not data["configs"]:
            raise EdgeRCNNError(f"{path}: expected a mapping with a non-empty `configs` mapping; see "
                                f"{EXPERIMENTS_DIR / 'README.md'}")
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            raise EdgeRCNNError(f"{path}: unknown field(s) {unknown}; known: {', '.join(sorted(_FIELDS))}")
        reuse = dict(data.get("reuse") or {})
        if set(reuse) - set(data["configs"]):
            raise EdgeRCNNError(f"{path}: reuse names {sorted(set(reuse) - set(data['configs']))}, which are not "
                                "in configs")
        return cls(name=path.stem, path=path, description=str(data.get("description", "")),
                   dataset=str(data.get("dataset", "coco")), seeds=tuple(int(s) for s in data.get("seeds", [0])),
                   base=dict(data.get("base") or {}), configs={str(k): dict(v or {}) for k, v in data["configs"].items()},
                   reuse={str(k): str(v) for k, v in reuse.items()}, compare=data.get("compare"))

    def keys(self, config: str) -> tuple[dict[str, Any], Path | None]:
        """The config keys of ``config`` (preset < base < its own) and its preset file (None without one)."""
        own = dict(self.configs[config])
        preset = own.pop("preset", None)
        values: dict[str, Any] = {}
        preset_path = None
        if preset is not None:
            preset_path = PRESETS_DIR / f"{preset}.yaml"
            if not preset_path.is_file():
                raise EdgeRCNNError(f"{self.path}: configs.{config}.preset {preset!r} is not in {PRESETS_DIR}")
            values.update(yaml.safe_load(preset_path.read_text()) or {})
        return values | self.base | own, preset_path


def experiment_names() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))


@dataclass(frozen=True)
class PlannedRun:
    cfg: Config
    state: str  # done | reuse | evaluate | resume | new
    command: str
    reuse_from: SeedResult | None = None


def plan(exp: Experiment, *, data: Path | None = None, seeds: tuple[int, ...] | None = None,
         device: str = "auto", out_dir: Path = Path("runs"), results_dir: Path = Path("results"),
         overrides: dict[str, Any] | None = None) -> list[PlannedRun]:
    """Every (configuration, seed) of ``exp`` with its state and its equivalent ``edgercnn train`` command."""
    runs = []
    data = Path(data) if data is not None else Path("data") / exp.dataset
    for name in exp.configs:
        keys, preset = exp.keys(name)
        keys |= dict(overrides or {})
        for seed in seeds or exp.seeds:
            run_keys = {"experiment": exp.name, "name": name, "seed": seed, "data": str(data), "device": device,
                        "out_dir": str(out_dir), "results_dir": str(results_dir)}
            cfg = config_from_dict(keys | run_keys, f"{exp.path}: configs.{name}")
            result, source = SeedResult.of(cfg), None
            if exp.reuse.get(name):
                source = SeedResult(results_dir, exp.reuse[name], name, seed)
            run = RunDir.of(cfg)
            if result.exists():
                state = "done"
            elif source is not None and source.exists():
                state = "reuse"
            elif run.final_weights.is_file():
                state = "evaluate"
            elif run.checkpoint.is_file():
                state = "resume"
            else:
                state = "new"
            runs.append(PlannedRun(cfg, state, train_command(keys | run_keys, preset),
                                   source if state == "reuse" else None))
    return runs


def train_command(keys: dict[str, Any], preset: Path | None) -> str:
    """The ``edgercnn train`` command of one run; keys without a CLI flag are listed after ``#``."""
    flags = _train_flags()
    parts, rest = ["edgercnn", "train"], []
    if preset is not None:
        parts += ["--config", str(preset)]
        from_preset = yaml.safe_load(preset.read_text()) or {}
        keys = {k: v for k, v in keys.items() if k not in from_preset or from_preset[k] != v}
    for key, value in keys.items():
        if key == "filters":
            parts += [x for f in (value or ["none"]) for x in ("--filter", f)]
        elif key == "canvas":
            parts += ["--canvas", "x".join(map(str, value))]
        elif isinstance(value, bool) and key in flags:
            parts.append(flags[key][0] if value else flags[key][1])
        elif key in flags and value is not None:
            parts += [flags[key][0], str(value)]
        else:
            rest.append(f"{key}={value}")
    parts.append("--resume")
    return " ".join(shlex.quote(p) for p in parts) + (f"  # and {', '.join(rest)}" if rest else "")


def _train_flags() -> dict[str, tuple[str, str | None]]:
    """Config key → (flag, negative flag) of ``edgercnn train``, read from the CLI itself."""
    import typer.main

    from edgercnn.cli import app

    command = typer.main.get_command(app).commands["train"]
    out = {}
    for param in command.params:
        if param.param_type_name == "option" and param.name:
            on = next((o for o in param.opts if o.startswith("--")), param.opts[0])
            off = next(iter(param.secondary_opts), None)
            out[param.name] = (on, off)
    return out


def list_experiments(console: Console) -> None:
    table = Table(title=f"experiments ({EXPERIMENTS_DIR})", title_justify="left")
    for col in ("name", "dataset", "runs", "description"):
        table.add_column(col)
    for name in experiment_names():
        exp = Experiment.load(name)
        table.add_row(name, exp.dataset, f"{len(exp.configs)} × {len(exp.seeds)}", exp.description)
    console.print(table)


def print_plan(runs: list[PlannedRun], console: Console) -> None:
    for r in runs:
        extra = f" from {r.reuse_from.csv}" if r.reuse_from else ""
        console.print(f"{r.state:8} {r.cfg.config_name()} seed {r.cfg.seed}{extra}: {r.command}", highlight=False,
                      soft_wrap=True)
    counts = {s: sum(r.state == s for r in runs) for s in ("done", "reuse", "evaluate", "resume", "new")}
    console.print(", ".join(f"{n} {s}" for s, n in counts.items()), highlight=False)


def sweep(name: str, *, executor: Executor | None = None, dry_run: bool = False, data: Path | None = None,
          seeds: tuple[int, ...] | None = None, device: str = "auto", out_dir: Path = Path("runs"),
          results_dir: Path = Path("results"), overrides: dict[str, Any] | None = None,
          console: Console | None = None, command: str = "edgercnn sweep") -> list[PlannedRun]:
    """Plan ``name``; unless ``dry_run``, copy reusable seeds, run the missing ones and print the report.
    Returns the plan (states as before running)."""
    from edgercnn.reporting.report import report

    console = console or Console()
    exp = Experiment.load(name)
    runs = plan(exp, data=data, seeds=seeds, device=device, out_dir=out_dir, results_dir=results_dir,
                overrides=overrides)
    print_plan(runs, console)
    if dry_run:
        return runs
    for r in runs:
        if r.state == "reuse":
            SeedResult.of(r.cfg).copy_from(r.reuse_from)
    todo = [r.cfg for r in runs if r.state in ("evaluate", "resume", "new")]
    if todo:
        executor = executor or Executor()
        console.print(f"{exp.name}: {len(todo)} run(s); {executor.describe()}", highlight=False)
        run_all(todo, console, command, executor, title=exp.name)
    compare = Path(exp.compare) if exp.compare else None
    if compare is not None and not compare.is_file():
        console.print(f"{compare} not found (run from the repository root to compare with the paper)",
                      highlight=False)
        compare = None
    report(Path(results_dir) / exp.name, compare=compare, console=console)
    return runs


def parse_sets(values: list[str] | None) -> dict[str, Any]:
    """``--set key=value`` options (values read as YAML: 3, 0.5, [sobel], true)."""
    out = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise EdgeRCNNError(f"--set {item!r}: expected KEY=VALUE with a config key, e.g. --set steps=1000")
        if key.strip() in RUN_KEYS:
            raise EdgeRCNNError(f"--set {key.strip()}: set by the sweep itself; use its own option (--data, "
                                "--seeds, --device, --out-dir, --results-dir)")
        out[key.strip()] = yaml.safe_load(value)
    return out
