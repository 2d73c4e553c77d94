"""Running many (config, seed) runs with a live table of them (state, step, ETA).

Where they run is an ``Executor``: this machine (in this process, N worker processes, or one run per listed GPU
at a time) or Slurm through submitit (one job per run, requeued on preemption or time-out and resumed from the
run's checkpoint). ``reproduce`` and ``sweep`` both hand their runs to ``run_all``.
"""

from __future__ import annotations

import ctypes
import dataclasses
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

from edgercnn.config import Config
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.experiments.runs import advance_run, run_state
from edgercnn.training.rundir import RunDir

#: Where runs go: ``local`` (this machine), ``slurm`` (submitit), ``submitit-local`` (submitit's local executor:
#: the Slurm code path without a cluster, for tests and single machines).
EXECUTORS = ("local", "slurm", "submitit-local")
@dataclass(frozen=True)
class Executor:
    """Where and how many runs at a time. ``gpus``: one run per listed GPU at a time (CUDA_VISIBLE_DEVICES=i);
    otherwise ``jobs`` worker processes (1: in this process). Slurm fields apply to ``slurm``/``submitit-local``."""

    kind: str = "local"
    jobs: int = 1
    gpus: tuple[int, ...] = ()
    partition: str | None = None
    time_min: int = 4320
    gpus_per_run: int = 1
    cpus_per_run: int = 8
    mem_gb: int | None = None
    folder: str | None = None  # submitit's job files; default <out_dir>/<experiment>/submitit
    slurm_parameters: dict[str, Any] = field(default_factory=dict)  # passed to submitit's update_parameters

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise EdgeRCNNError(f"--executor {self.kind}: choose {', '.join(EXECUTORS)}")
        if self.jobs < 1 or self.gpus_per_run < 1 or self.cpus_per_run < 1 or self.time_min < 1:
            raise EdgeRCNNError("--jobs, --gpus-per-run, --cpus-per-run and --time must be >= 1")
        if self.kind == "slurm" and not self.partition:
            raise EdgeRCNNError("--executor slurm: pass --partition (the Slurm partition to submit to)")

    def describe(self) -> str:
        if self.kind != "local":
            where = f"partition {self.partition}" if self.kind == "slurm" else "this machine"
            return (f"{self.kind}: one job per run on {where}, {self.gpus_per_run} GPU(s), {self.cpus_per_run} CPUs, "
                    f"{self.time_min} min each, requeued on preemption")
        if self.gpus:
            return f"local: one run per GPU at a time on GPUs {','.join(map(str, self.gpus))}"
        return f"local: {self.jobs} run(s) at a time" + (" in worker processes" if self.jobs > 1 else "")


def run_one(cfg: Config, threads: int | None, command: str, gpu: int | None = None) -> str:
    """One run in a fresh worker process or job: train (resuming from its checkpoint) and evaluate, or only
    evaluate when trained; output goes to the run folder's ``train.log``. With ``gpu``, the process sees only that
    GPU (CUDA_VISIBLE_DEVICES, set before CUDA starts). Returns the per-seed CSV path ("" when none)."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
        cfg = dataclasses.replace(cfg, device="cuda")
    import torch

    if threads:
        torch.set_num_threads(threads)
    run = RunDir.of(cfg)
    run.path.mkdir(parents=True, exist_ok=True)
    with run.log.open("a") as handle:
        console = Console(file=handle, width=160, force_terminal=False)
        state = run_state(cfg)  # done: e.g. a requeued job whose run had finished
        if state == "evaluate" and int(os.environ.get("RANK", "0")) > 0:  # a requeued multi-GPU job: rank 0 evaluates
            return ""
        csv_path = advance_run(cfg, state=state, console=console, command=command)
    return str(csv_path or "")


#: prctl(2) option: the signal the kernel sends this process when the thread that started it ends (Linux).
PR_SET_PDEATHSIG = 1


def exit_with_parent() -> None:
    """Worker-process initializer: end this worker when the process that started it ends, even by kill -9 or an
    unhandled SIGTERM (a run would otherwise train to its end, then block forever writing its result to a pipe
    nobody reads). On Linux the kernel's parent-death signal (its starter is the thread that runs ``run_all``,
    which outlives every worker); everywhere a thread waiting on the parent's sentinel. A killed run resumes from
    its last checkpoint like any interrupted one."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):  # no libc prctl: the thread below still does it
            pass
    parent = multiprocessing.parent_process()
    if parent is None:  # not started by multiprocessing
        return
    if not parent.is_alive():  # it ended before the signal was armed
        os._exit(1)
    threading.Thread(target=_exit_after, args=(parent,), name="exit-with-parent", daemon=True).start()


def _exit_after(parent: Any) -> None:
    parent.join()  # returns when the parent's end of the sentinel pipe closes: when it exits, however
    os._exit(1)


class RunJob:
    """A submitit job for one run: ``__call__`` trains/evaluates it (resuming from ``checkpoint.pt``);
    ``checkpoint()`` (submitit's Checkpointable protocol, called on preemption or time-out) requeues the same
    job, which then resumes from the run's last checkpoint."""

    def __init__(self, cfg: Config, command: str, threads: int | None = None):
        self.cfg, self.command, self.threads = cfg, command, threads

    def __call__(self) -> str:
        cfg = self.cfg
        if self.cfg.device.startswith("cuda") or self.cfg.device == "auto":
            import submitit

            env = submitit.JobEnvironment()
            if env.num_tasks > 1:  # several GPUs per run: one process per GPU, DDP (edgercnn.training.distributed)
                submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
                cfg = dataclasses.replace(cfg, device=f"cuda:{env.local_rank}")
        return run_one(cfg, self.threads, self.command)

    def checkpoint(self, *args: Any, **kwargs: Any):
        import submitit

        return submitit.helpers.DelayedSubmission(RunJob(self.cfg, self.command, self.threads))


def _submitit_executor(executor: Executor, todo: list[Config]):
    import submitit

    folder = executor.folder or str(RunDir.job_files(todo[0]))
    if executor.kind == "submitit-local":
        ex = submitit.AutoExecutor(folder=folder, cluster="local")
    else:
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    params: dict[str, Any] = {"timeout_min": executor.time_min, "nodes": 1,
                              "tasks_per_node": executor.gpus_per_run, "cpus_per_task": executor.cpus_per_run}
    if executor.kind == "slurm":
        params.update(slurm_partition=executor.partition, gpus_per_node=executor.gpus_per_run)
        if executor.mem_gb:
            params["mem_gb"] = executor.mem_gb
    params.update(executor.slurm_parameters)
    ex.update_parameters(**params)
    return ex


def steps_done(cfg: Config) -> int:
    """Steps in the run folder's loss log (0 when it has none)."""
    path = RunDir.of(cfg).losses
    if not path.is_file():
        return 0
    with path.open("rb") as handle:
        return max(0, sum(1 for _ in handle) - 1)


@dataclass
class _Progress:
    """Per run: state, and when/at which step it was first seen running (for its ETA)."""

    state: str = "queued"
    since: float | None = None
    from_step: int = 0


def status_table(title: str, todo: list[Config], progress: list[_Progress], started: float,
                 done_before: int) -> Table:
    """Runs × (state, step, ETA); ETAs assume the step rate seen so far (evaluations included)."""
    now = time.perf_counter()
    steps = [steps_done(c) for c in todo]
    total = sum(c.total_steps() for c in todo)
    rate = (sum(steps) - done_before) / max(1e-9, now - started)
    eta = (total - sum(steps)) / rate if rate > 0 else float("nan")
    table = Table(title=f"{title}: {sum(steps)}/{total} steps, "
                        f"ETA {'?' if np.isnan(eta) else f'{eta / 60:.1f} min'} (evaluations included in the rate)",
                  title_justify="left")
    for col in ("config", "seed", "state", "step", "ETA"):
        table.add_column(col, justify="left" if col in ("config", "state") else "right")
    for cfg, n, p in zip(todo, steps, progress):
        run_eta = "–"
        if p.state == "running" and p.since is not None and n > p.from_step:
            left = (cfg.total_steps() - n) * (now - p.since) / (n - p.from_step)
            run_eta = f"{left / 60:.1f} min"
        table.add_row(cfg.config_name(), str(cfg.seed), p.state, f"{n}/{cfg.total_steps()}", run_eta)
    return table


def run_all(todo: list[Config], console: Console, command: str, executor: Executor | None = None,
            title: str = "runs") -> None:
    """Train and evaluate ``todo`` with ``executor`` (default: one after the other in this process), with a live
    status table (a plain summary line a minute when the console is not a terminal). A failed run stops the
    rest (local) or is reported after the others finished (Slurm) as one EdgeRCNNError naming its log."""
    executor = executor or Executor()
    if not todo:
        return
    if executor.kind == "local" and executor.jobs <= 1 and not executor.gpus:
        for cfg in todo:
            console.print(f"{cfg.config_name()} seed {cfg.seed}: training", highlight=False)
            _run_inline(cfg, console, command)
        return
    progress = [_Progress() for _ in todo]
    started, done_before = time.perf_counter(), sum(steps_done(c) for c in todo)
    pending: dict[Any, int] = {}  # future/job → index in todo
    failures: list[str] = []
    if executor.kind == "local":
        slots = list(executor.gpus) or [None] * executor.jobs
        free = list(range(len(slots)))
        threads = max(1, (os.cpu_count() or 1) // len(slots))
        queue = list(range(len(todo)))
        slot_of: dict[Any, tuple[int, ProcessPoolExecutor]] = {}

        def submit_free() -> None:
            while queue and free:
                i, slot = queue.pop(0), free.pop(0)
                pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"),  # a fresh process per run
                                           initializer=exit_with_parent)
                fut = pool.submit(run_one, todo[i], threads, command, slots[slot])
                pending[fut], slot_of[fut] = i, (slot, pool)
                progress[i].state = "running"
                progress[i].since, progress[i].from_step = time.perf_counter(), steps_done(todo[i])
    else:
        submitter = _submitit_executor(executor, todo)
        for i, cfg in enumerate(todo):
            pending[submitter.submit(RunJob(cfg, command, executor.cpus_per_run))] = i
            progress[i].state = "submitted"
        console.print(f"submitted {len(todo)} jobs; submitit files in {submitter.folder}", highlight=False)
    last_line = started
    try:
        with Live(console=console, refresh_per_second=1, transient=False) if console.is_terminal else \
                _NoLive() as live:
            if executor.kind == "local":
                submit_free()
            while pending:
                if executor.kind == "local":
                    finished, _ = wait(list(pending), timeout=2.0, return_when=FIRST_COMPLETED)
                else:
                    time.sleep(2.0)
                    finished = [job for job in pending if job.done()]
                for fut in finished:
                    i = pending.pop(fut)
                    cfg = todo[i]
                    try:
                        fut.result()
                        progress[i].state = "done"
                    except EdgeRCNNError as err:
                        raise EdgeRCNNError(f"{cfg.config_name()} seed {cfg.seed}: {err} (log: "
                                            f"{RunDir.of(cfg).log})") from None
                    except Exception as err:  # noqa: BLE001 - submitit wraps a job's error in its own
                        if executor.kind == "local":
                            raise
                        progress[i].state = "failed"
                        failures.append(f"{cfg.config_name()} seed {cfg.seed} ({str(err).strip().splitlines()[-1]}; "
                                        f"logs: {fut.paths.stderr})")
                    if not console.is_terminal:
                        console.print(f"{cfg.config_name()} seed {cfg.seed}: {progress[i].state}", highlight=False)
                    if executor.kind == "local":
                        slot, pool = slot_of.pop(fut)
                        pool.shutdown()
                        free.append(slot)
                if executor.kind == "local":
                    submit_free()
                else:
                    for i in pending.values():
                        if progress[i].state == "submitted" and steps_done(todo[i]) > 0:
                            progress[i].state = "running"
                            progress[i].since, progress[i].from_step = time.perf_counter(), steps_done(todo[i])
                table = status_table(title, todo, progress, started, done_before)
                if console.is_terminal:
                    live.update(table)
                elif time.perf_counter() - last_line > 60:
                    last_line = time.perf_counter()
                    console.print(table.title, highlight=False)
    finally:
        if executor.kind == "local":
            for _, pool in slot_of.values():  # after an error: wait for the runs still going
                pool.shutdown(wait=True, cancel_futures=True)
    if failures:
        raise EdgeRCNNError(f"{len(failures)} run(s) failed: {'; '.join(failures)}; fix and re-run the same command "
                            "(finished runs are skipped, unfinished ones resume)")


class _NoLive:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _run_inline(cfg: Config, console: Console, command: str) -> None:
    advance_run(cfg, console=console, command=command)
