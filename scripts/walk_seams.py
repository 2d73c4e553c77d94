"""The walk of a config (``edgercnn train`` -> ``Trainer.__init__``) and of a run folder (``edgercnn eval`` -> the
per-seed result CSV writer), hop by hop against the layers contract: stays, descends and climbs.

    python scripts/walk_seams.py --tree .                   # this checkout
    python scripts/walk_seams.py --tree /path/to/checkout   # any other one, e.g. an older commit's

It imports the tree's code in a subprocess (PYTHONPATH=TREE), writes a tiny shapes dataset into a temp dir, trains
on it through the Typer app in process (a --config file of one 2-step stage, small backbone, 64x64, CPU, no eval
during training, eval at the end) and then runs ``edgercnn eval`` on the run folder, with ``sys.setprofile``
watching every call. When the target is called, the edgercnn frames on the stack, from the CLI command down, are
the walk. Each hop caller -> callee is a ``stay`` (same package), a ``descend`` (the callee's layer is lower) or a
``climb`` (higher: only a callback or an injected object can do that). Layers come from the tree's pyproject.toml
``[tool.importlinter]`` layers contract (``--layers`` when it has none); frames are classified by module name only,
so moved or renamed functions need no list. Besides the walk, every edgercnn -> edgercnn call of the command
(distinct caller -> callee pairs, import-time calls left out) is classified, and its climbs are listed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

DEFAULT_LAYERS = ("edgercnn.cli,edgercnn.experiments,edgercnn.reporting,edgercnn.training,edgercnn.evaluation,"
                  "edgercnn.config,edgercnn.model|edgercnn.data,edgercnn.core")
# (module, qualname) candidates of each target, tried in order: a tree may hold them in either place.
TARGETS = {
    "train->trainer": [("edgercnn.training.trainer", "Trainer.__init__"), ("edgercnn.training", "Trainer.__init__")],
    "eval->result csv": [("edgercnn.reporting.results", "write_result"),
                         ("edgercnn.experiments.pipeline", "write_result")],
}


def read_layers(tree: Path, fallback: str) -> tuple[list[list[str]], str]:
    """The layers, top first, each a list of independent packages; and where they came from."""
    try:
        tool = tomllib.loads((tree / "pyproject.toml").read_text())["tool"]["importlinter"]
        layers = next(c["layers"] for c in tool["contracts"] if c.get("type") == "layers")
        return [[p.strip() for p in layer.split("|")] for layer in layers], "pyproject.toml"
    except (OSError, KeyError, StopIteration):
        return [[p.strip() for p in layer.split("|")] for layer in fallback.split(",")], "--layers"


class Layering:
    def __init__(self, layers: list[list[str]]):
        self.rank = {pkg: i for i, layer in enumerate(layers) for pkg in layer}

    def package(self, module: str) -> str:
        hits = [p for p in self.rank if module == p or module.startswith(p + ".")]
        return max(hits, key=len) if hits else module

    def hop(self, caller: str, callee: str) -> str:
        a, b = self.package(caller), self.package(callee)
        if a == b:
            return "stay"
        if a not in self.rank or b not in self.rank:
            return "unlayered"
        ra, rb = self.rank[a], self.rank[b]
        return "descend" if rb > ra else "climb" if rb < ra else "across"


def is_ours(frame) -> bool:
    return frame.f_globals.get("__name__", "").split(".")[0] == "edgercnn" and frame.f_code.co_name != "<module>"


def where(frame) -> tuple[str, str]:
    return frame.f_globals["__name__"], frame.f_code.co_qualname


def holds(frame) -> str:
    """The arguments of a frame that carry an edgercnn object or a path: how the value travels."""
    code = frame.f_code
    names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
    out = []
    for name in names:
        value = frame.f_locals.get(name)
        kind = type(value)
        if name != "self" and (kind.__module__.startswith("edgercnn") or isinstance(value, os.PathLike)):
            out.append(f"{name}:{kind.__name__}")
    return ", ".join(out)


class Tracer:
    """Profiles one command: the edgercnn stack at the target's first call, and every edgercnn -> edgercnn hop."""

    def __init__(self, targets: list[tuple[str, str]], layering: Layering):
        self.targets, self.layering = set(targets), layering
        self.chain: list[tuple[str, str, int, str, str]] | None = None  # module, qualname, line, via, holds
        self.hops: dict[tuple[str, str], str] = {}  # ("mod:func", "mod:func") -> kind, in order of first call

    def __call__(self, frame, event, arg):
        if event != "call" or not is_ours(frame):
            return
        caller, via = frame.f_back, []
        while caller is not None and not is_ours(caller):
            via.append(caller.f_globals.get("__name__", "?"))
            caller = caller.f_back
        if caller is not None:
            key = (":".join(where(caller)), ":".join(where(frame)))
            if key not in self.hops:
                self.hops[key] = self.layering.hop(where(caller)[0], where(frame)[0])
        if self.chain is None and where(frame) in self.targets:
            self.chain = self.stack(frame)

    @staticmethod
    def stack(frame) -> list[tuple[str, str, int, str, str]]:
        out, via = [], []
        while frame is not None:
            if is_ours(frame):
                out.append((*where(frame), frame.f_lineno, " via " + ", ".join(dict.fromkeys(via)) if via else "",
                            holds(frame)))
                via = []
            else:
                via.append(frame.f_globals.get("__name__", "?"))
            frame = frame.f_back
        return out[::-1]


def traced(app, args: list[str], tracer: Tracer | None = None):
    from typer.testing import CliRunner

    sys.setprofile(tracer)
    try:
        result = CliRunner().invoke(app, args)
    finally:
        sys.setprofile(None)
    if result.exit_code != 0:
        sys.exit(f"edgercnn {' '.join(args)} failed ({result.exit_code}):\n{result.output}{result.exception!r}")
    return result


def report(name: str, tracer: Tracer, layering: Layering, command: str) -> None:
    print(f"\n== walk {name}: the edgercnn stack when the target is called (edgercnn {command})")
    if tracer.chain is None:
        print(f"   target not called: {sorted(tracer.targets)}")
        return
    counts = {"stay": 0, "descend": 0, "climb": 0, "across": 0, "unlayered": 0}
    for i, (module, qualname, line, via, args) in enumerate(tracer.chain):
        kind = "start" if i == 0 else layering.hop(tracer.chain[i - 1][0], module)
        counts[kind] = counts.get(kind, 0) + 1
        place = f"{module}:{qualname}" + (f":{line}" if i < len(tracer.chain) - 1 else "")
        print(f"   {kind:9} {place:70} [{layering.package(module).removeprefix('edgercnn.')}]"
              f"{'  ' + args if args else ''}{via}")
    packages = len({layering.package(m) for m, *_ in tracer.chain})
    extra = "".join(f", {counts[k]} {k}" for k in ("across", "unlayered") if counts[k])
    print(f"walk {name}: {len(tracer.chain)} frames, {counts['stay']} stays, {counts['descend']} descends, "
          f"{counts['climb']} climbs, {packages} packages visited{extra}")
    kinds = list(tracer.hops.values())
    print(f"all edgercnn -> edgercnn calls of `edgercnn {command}`: {len(kinds)} distinct caller -> callee pairs, "
          + ", ".join(f"{kinds.count(k)} {k}" for k in counts if kinds.count(k)))
    for (caller, callee), kind in tracer.hops.items():
        if kind in ("climb", "across"):
            print(f"   {kind}: {caller} -> {callee}")


def inner(tree: Path, fallback: str) -> None:
    import edgercnn
    from edgercnn.cli.main import app

    layers, source = read_layers(tree, fallback)
    layering = Layering(layers)
    print(f"edgercnn from {Path(edgercnn.__file__).parent}; layers from {source}: "
          + " > ".join("|".join(p.removeprefix("edgercnn.") for p in layer) for layer in layers))
    with tempfile.TemporaryDirectory(prefix="walk-seams-") as tmp:
        data, runs = Path(tmp) / "shapes", Path(tmp) / "runs"
        traced(app, ["prepare", "shapes", "--out", str(data), "--train", "4", "--val", "2", "--size", "64"])
        config = Path(tmp) / "two-steps.yaml"  # one stage: --steps must be >= the paper's 3 stages
        config.write_text("stages: [{steps: 2, layers: all, lr: 0.01}]\n")
        train = ["train", "--data", str(data), "--config", str(config), "--backbone", "small", "--canvas", "64x64",
                 "--workers", "0", "--device", "cpu", "--eval-every", "0", "--experiment", "walk",
                 "--out-dir", str(runs), "--results-dir", str(Path(tmp) / "results")]
        tracer = Tracer(TARGETS["train->trainer"], layering)
        traced(app, train, tracer)
        report("train->trainer", tracer, layering, "train --data DIR --config 2-STEPS.yaml ...")
        run_dir = next(runs.glob("walk/*/seed-*"))
        tracer = Tracer(TARGETS["eval->result csv"], layering)
        traced(app, ["eval", str(run_dir)], tracer)
        report("eval->result csv", tracer, layering, "eval RUN_DIR")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=Path("."), help="the checkout whose code is walked")
    parser.add_argument("--layers", default=DEFAULT_LAYERS,
                        help="layer order, top first, comma-separated ('|' joins independent packages); used only "
                             "when the tree's pyproject.toml has no layers contract")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    tree = args.tree.resolve()
    if args.inner:
        return inner(tree, args.layers)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, str(Path(__file__).resolve()), "--inner", "--tree", str(tree), "--layers", args.layers]
    sys.exit(subprocess.run(command, env=env, cwd=tempfile.gettempdir()).returncode)


if __name__ == "__main__":
    main()
