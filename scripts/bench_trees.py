"""Same-machine A/B of the training step between two checkouts of edgercnn: the ratio new/old that a time target
measured on another machine cannot give.

Both trees train the same run (``edgercnn train``, sobel/L2 by default, no evaluation, seed 0) at the same time,
one thread each, as ``reproduce`` runs its jobs on two cores; each round swaps the start order. The step time is
the median of the logged ``step_time_s`` after the first ``--skip`` steps. The losses of the two trees are compared
too: identical losses mean both trees did the same arithmetic, so the ratio is the code's speed alone.

    python scripts/bench_trees.py --old 22c1c33 --data data/pennfudan --recipe cpu-pennfudan
    python scripts/bench_trees.py --old ../edgercnn-old --new . --data data/shapes --recipe cpu-shapes --rounds 2
    python scripts/bench_trees.py --old HEAD~3 --data data/shapes -- --backbone small --canvas 64x64   # extra args

``--old``/``--new`` take a checkout folder or a git revision of this repository (checked out into a temporary
``git worktree``, removed afterwards). Each tree runs with ``PYTHONPATH=<tree>`` so that its own ``edgercnn`` is
imported; the interpreter and installed dependencies are this one's.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def checkout(spec: str, stack: ExitStack, scratch: Path) -> tuple[Path, str]:
    """A folder holding ``edgercnn/`` for ``spec`` (a folder, or a git revision checked out as a worktree) and its
    label (the short commit when git knows it)."""
    folder = Path(spec)
    if (folder / "edgercnn" / "__init__.py").is_file():
        return folder.resolve(), _label(folder.resolve(), spec)
    rev = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}"], cwd=REPO,
                         capture_output=True, text=True)
    if rev.returncode != 0:
        raise SystemExit(f"bench_trees: {spec!r} is neither a checkout (a folder with edgercnn/__init__.py) nor a "
                         f"git revision of {REPO}; give one of those")
    sha = rev.stdout.strip()
    tree = scratch / f"tree-{sha[:10]}"
    subprocess.run(["git", "worktree", "add", "--quiet", "--detach", str(tree), sha], cwd=REPO, check=True)
    stack.callback(subprocess.run, ["git", "worktree", "remove", "--force", str(tree)], cwd=REPO,
                   capture_output=True)
    return tree, sha[:10]


def _label(folder: Path, spec: str) -> str:
    sha = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=folder, capture_output=True, text=True)
    return sha.stdout.strip() or spec


def tree_env(tree: Path, threads: int) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def check_imports(tree: Path, cwd: Path) -> None:
    """Refuse a tree whose own ``edgercnn`` is not the one ``PYTHONPATH=<tree>`` imports from ``cwd`` (where the
    runs start: ``python -m`` puts the working folder before PYTHONPATH, so a checkout there would win)."""
    found = subprocess.run([sys.executable, "-c", "import edgercnn, pathlib; "
                            "print(pathlib.Path(edgercnn.__file__).resolve().parent)"],
                           env=tree_env(tree, 1), capture_output=True, text=True, cwd=cwd)
    if Path(found.stdout.strip() or "?") != (tree / "edgercnn").resolve():
        raise SystemExit(f"bench_trees: PYTHONPATH={tree} imports edgercnn from {found.stdout.strip() or '?'} "
                         f"{found.stderr.strip()[-200:]}; install its dependencies in this interpreter")


def train_command(args: argparse.Namespace, out: Path) -> list[str]:
    """The ``edgercnn train`` command line both trees run."""
    cmd = [sys.executable, "-m", "edgercnn", "train", "--data", str(args.data), "--steps", str(args.steps),
           "--no-eval", "--workers", "0", "--device", "cpu", "--checkpoint-every", str(args.steps), "--seed", "0",
           "--out-dir", str(out / "runs"), "--results-dir", str(out / "results"), "--experiment", "bench"]
    if args.recipe:
        cmd += ["--recipe", args.recipe]
    for name in args.filter:
        cmd += ["--filter", name]
    if args.filter:
        cmd += ["--p", str(args.p)]
    return cmd + list(args.extra)


def read_losses(out: Path) -> list[dict[str, str]]:
    found = sorted((out / "runs").glob("bench/*/seed-0/losses.csv"))
    if not found:
        raise SystemExit(f"bench_trees: no losses.csv under {out / 'runs'}; see {out / 'train.log'}")
    with open(found[0], newline="") as handle:
        return list(csv.DictReader(handle))


def run_round(args: argparse.Namespace, trees: dict[str, Path], order: list[str], scratch: Path,
              index: int) -> dict[str, list[dict[str, str]]]:
    """Both trees' runs at once (one thread each), started in ``order``; their losses.csv rows."""
    procs = {}
    for name in order:
        out = scratch / f"round-{index}" / name
        out.mkdir(parents=True)
        env = tree_env(trees[name], args.threads)
        log = open(out / "train.log", "w")
        procs[name] = (subprocess.Popen(train_command(args, out), env=env, stdout=log, stderr=subprocess.STDOUT,
                                        cwd=scratch), log, out)
    rows = {}
    for name, (proc, log, out) in procs.items():
        code = proc.wait()
        log.close()
        if code != 0:
            tail = (out / "train.log").read_text().strip().splitlines()[-1:]
            raise SystemExit(f"bench_trees: the {name} tree's run failed (exit {code}): {' '.join(tail)}; "
                             f"see {out / 'train.log'}")
        rows[name] = read_losses(out)
    return rows


def median_step(rows: list[dict[str, str]], skip: int) -> float:
    times = [float(r["step_time_s"]) for r in rows][skip:]
    if not times:
        raise SystemExit(f"bench_trees: no steps left after --skip {skip}; train more --steps")
    return statistics.median(times)


def same_losses(a: list[dict[str, str]], b: list[dict[str, str]]) -> bool:
    """Whether both runs logged the same loss values at every step (the columns both trees log)."""
    keys = [k for k in a[0] if k.startswith("loss_") and k in b[0]] if a and b else []
    return bool(keys) and len(a) == len(b) and all(ra[k] == rb[k] for ra, rb in zip(a, b) for k in keys)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", required=True, help="the reference checkout: a folder or a git revision")
    parser.add_argument("--new", default=str(REPO), help="the checkout measured against it (default this one)")
    parser.add_argument("--data", required=True, type=Path, help="a prepared dataset both trees train on")
    parser.add_argument("--recipe", default=None, help="the recipe both trees train (e.g. cpu-pennfudan)")
    parser.add_argument("--filter", action="append", default=None,
                        help="edge filter (default sobel; 'none' for the baseline)")
    parser.add_argument("--p", type=float, default=2.0, help="exponent of the edge loss (default 2)")
    parser.add_argument("--steps", type=int, default=200, help="training steps per run (default 200)")
    parser.add_argument("--skip", type=int, default=20, help="first steps left out of the median (default 20)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, start order swapped each round (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="threads per run (default 1: two jobs on two cores)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs and logs in this folder")
    parser.add_argument("extra", nargs="*", help="after --: more `edgercnn train` options for both trees")
    args = parser.parse_args(argv)
    args.filter = [] if args.filter == ["none"] else (args.filter or ["sobel"])
    args.data = args.data.resolve()
    if not args.data.is_dir():
        parser.error(f"--data {args.data} is not a folder; make one with `edgercnn prepare`")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    with ExitStack() as stack:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            scratch = args.keep.resolve()
        else:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_trees-")))
        old, old_label = checkout(args.old, stack, scratch)
        new, new_label = checkout(args.new, stack, scratch)
        trees = {"old": old, "new": new}
        for tree in trees.values():
            check_imports(tree, scratch)
        print(f"old: {old_label} ({old})\nnew: {new_label} ({new})\n"
              f"each run: {' '.join(train_command(args, Path('<out>'))[1:])}, {args.threads} thread(s), "
              f"both trees at once; median step_time_s after step {args.skip}")
        rounds = []
        for index in range(args.rounds):
            order = ["old", "new"] if index % 2 == 0 else ["new", "old"]
            rows = run_round(args, trees, order, scratch, index)
            t_old, t_new = median_step(rows["old"], args.skip), median_step(rows["new"], args.skip)
            same = same_losses(rows["old"], rows["new"])
            rounds.append({"old_s": t_old, "new_s": t_new, "ratio": t_new / t_old, "same_losses": same})
            print(f"round {index + 1} (started {order[0]} first): old {t_old:.3f} s, new {t_new:.3f} s, "
                  f"new/old {t_new / t_old:.3f}; identical losses: {'yes' if same else 'no'}")
    ratio = statistics.median(r["ratio"] for r in rounds)
    print(f"new/old step time, median over {len(rounds)} round(s): {ratio:.3f}")
    return {"ratio": ratio, "rounds": rounds, "old": old_label, "new": new_label}


if __name__ == "__main__":
    main()
