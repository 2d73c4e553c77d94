"""`edgercnn sweep`: the paper's experiments as data (``edgercnn/experiments/*.yaml``), run where asked.

An experiment is a grid of named configurations × seeds on one dataset (file format: ``experiments/README.md``).
``sweep`` plans every (configuration, seed): done (its per-seed CSV exists), reuse (copied from an identical
configuration of another experiment), evaluate (trained, not evaluated), resume (a checkpoint exists) or new; it
hands the runs to an executor (``edgercnn.experiments.runner``) and ends with ``report`` against the paper's numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from edgercnn.config import Config, config_from_dict, values as config_text
from edgercnn.config.runconfig import check_path_component
from edgercnn.core.commands import recorded_command
from edgercnn.core.errors import ConfigError, EdgeRCNNError
from edgercnn.reporting.results import SeedResult
from edgercnn.experiments.runner import Executor, run_all
from edgercnn.experiments.runs import RUN_STATES, TO_RUN, advance_run, run_state

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
            if len(matches) > 1:
                raise EdgeRCNNError(f"{name}: matches several experiments ({', '.join(matches)}); pass one of "
                                    "them in full")
            name = matches[0] if len(matches) == 1 else name
        path = Path(name) if name.endswith((".yaml", ".yml")) else EXPERIMENTS_DIR / f"{name}.yaml"
        if not path.is_file():
            raise EdgeRCNNError(f"{name}: no such experiment; choose one of {', '.join(experiment_names())} "
                                "(edgercnn sweep --list) or pass an experiment YAML file")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as err:
            raise EdgeRCNNError(f"{path}: not valid YAML ({err.__class__.__name__}); fix the file") from None
        if not isinstance(data, dict) or not isinstance(data.get("configs"), dict) or not data["configs"]:
            raise EdgeRCNNError(f"{path}: expected a mapping with a non-empty `configs` mapping; see "
                                f"{EXPERIMENTS_DIR / 'README.md'}")
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            raise EdgeRCNNError(f"{path}: unknown field(s) {unknown}; known: {', '.join(sorted(_FIELDS))}")
        _check_fields(data, path)
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


def _check_fields(data: dict[str, Any], path: Path) -> None:
    """The types of an experiment file's fields, and its names that become folders (the experiment, each config,
    each reused experiment: one plain folder name each; seeds: integers >= 0): one line naming the entry."""
    where = f"{path}:"

    def component(value: Any, entry: str) -> None:
        try:
            check_path_component(str(value), entry)
        except ConfigError as err:
            raise EdgeRCNNError(f"{where} {err}") from None

    component(path.stem, "the experiment name (the file name)")
    for key in ("base", "reuse"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise EdgeRCNNError(f"{where} {key}: expected a mapping of keys to values, got {data[key]!r:.60}")
    for key in ("description", "dataset", "compare"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise EdgeRCNNError(f"{where} {key}: expected a text, got {data[key]!r:.60}")
    if data.get("dataset") is not None:
        component(data["dataset"], "dataset")
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int and s >= 0 for s in seeds):
        raise EdgeRCNNError(f"{where} seeds: expected a non-empty list of integers >= 0, e.g. [0, 1, 2], got "
                            f"{seeds!r:.60}")
    for config, keys in data["configs"].items():
        component(config, f"configs.{config}")
        if keys is not None and not isinstance(keys, dict):
            raise EdgeRCNNError(f"{where} configs.{config}: expected a mapping of config keys (e.g. {{filters: "
                                f"[sobel], p: 2}}), got {keys!r:.60}")
        preset = (keys or {}).get("preset")
        if preset is not None:
            component(preset, f"configs.{config}.preset")
    for config, source in (data.get("reuse") or {}).items():
        component(source, f"reuse.{config}")


def experiment_names() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))


@dataclass(frozen=True)
class PlannedRun:
    cfg: Config
    state: str  # one of runs.RUN_STATES
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
            source = SeedResult(results_dir, exp.reuse[name], name, seed) if exp.reuse.get(name) else None
            state = run_state(cfg, source)
            runs.append(PlannedRun(cfg, state, train_command(keys | run_keys, preset),
                                   source if state == "reuse" else None))
    return runs


def train_command(keys: dict[str, Any], preset: Path | None) -> str:
    """The ``edgercnn train`` command of one run (``config.values.train_command``: the config layer spells the
    options), with its preset file as ``--config`` and only the keys that differ from it."""
    if preset is not None:
        from_preset = yaml.safe_load(preset.read_text()) or {}
        keys = {k: v for k, v in keys.items() if k not in from_preset or from_preset[k] != v}
    return config_text.train_command(keys, preset)


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
    counts = {s: sum(r.state == s for r in runs) for s in RUN_STATES}
    console.print(", ".join(f"{n} {s}" for s, n in counts.items()), highlight=False)


def sweep(name: str, *, executor: Executor | None = None, dry_run: bool = False, data: Path | None = None,
          seeds: tuple[int, ...] | None = None, device: str = "auto", out_dir: Path = Path("runs"),
          results_dir: Path = Path("results"), overrides: dict[str, Any] | None = None,
          console: Console | None = None, command: str | None = None) -> list[PlannedRun]:
    """Plan ``name``; unless ``dry_run``, copy reusable seeds, run the missing ones and print the report.
    Returns the plan (states as before running)."""
    from edgercnn.reporting.report import report

    console = console or Console()
    command = command if command is not None else recorded_command()  # the workers get it as text
    exp = Experiment.load(name)
    runs = plan(exp, data=data, seeds=seeds, device=device, out_dir=out_dir, results_dir=results_dir,
                overrides=overrides)
    print_plan(runs, console)
    if dry_run:
        return runs
    for r in runs:
        if r.state == "reuse":
            advance_run(r.cfg, state="reuse", reuse_from=r.reuse_from, console=console, command=command)
    todo = [r.cfg for r in runs if r.state in TO_RUN]
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
    """``--set key=value`` options: values in their text form (``config.values.parse_value``: canvas=128x128,
    filters=sobel+laplace, smooth=none) or YAML (3, 0.5, [sobel], true)."""
    out = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise EdgeRCNNError(f"--set {item!r}: expected KEY=VALUE with a config key, e.g. --set steps=1000")
        if key.strip() in RUN_KEYS:
            raise EdgeRCNNError(f"--set {key.strip()}: set by the sweep itself; use its own option (--data, "
                                "--seeds, --device, --out-dir, --results-dir)")
        out[key.strip()] = config_text.parse_value(key.strip(), value, f"--set {key.strip()}")
    return out
