"""A ranking of several configs (losses) per headline metric, each judged against one or more references.

For a comparison such as ``reproduce --compare boundary-losses``: per metric the configs ordered by their mean over
seeds, each with its verdict against every reference config (the plain baseline and the edge loss, say: the
difference, its 95 % CI and Welch's p, ``reporting.verdict``), its speed-up over the first reference (the steps
that reference needs for its final mean / the steps the config needs, ``report.speedups``) and its training-step
time relative to the first reference, measured in the same runs (``step_time_s`` of the per-step losses; the first
``WARMUP_STEPS`` steps left out).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from edgercnn.reporting import verdict
from edgercnn.reporting.report import fmt_mean_std, fmt_speedup, speedups

#: Steps at the start of each run left out of its mean step time (allocator and thread-pool warm-up).
WARMUP_STEPS = 10
RANK_COLUMNS = ("metric", "rank", "config", "mean", "std", "n", "speedup", "speedup_ci_low", "speedup_ci_high",
                "speedup_n", "speedup_reached", "step_time_s", "step_time_ratio")


def step_times(losses: pd.DataFrame) -> pd.Series:
    """Mean training-step seconds per config (``losses``: config, seed, step, step_time_s), warm-up left out."""
    if losses.empty:
        return pd.Series(dtype=float)
    late = losses[losses["step"] > WARMUP_STEPS]
    return (late if not late.empty else losses).groupby("config")["step_time_s"].mean()


def ranking(runs: pd.DataFrame, evals: pd.DataFrame, losses: pd.DataFrame, metrics: dict[str, bool],
            references: tuple[str, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ranking, verdicts). ``ranking``: one row per (metric, config), ``RANK_COLUMNS``, best first (rank 1);
    ``verdicts``: ``verdict.VERDICT_COLUMNS`` of every config against every reference it is not.

    ``runs``: config, seed and the final ``metrics`` per seed; ``evals``: the evaluations during training;
    ``losses``: config, seed, step, step_time_s; ``metrics``: {metric: higher is better}; ``references``: the
    configs each config is judged against (the first is the speed-up's and the step time's baseline)."""
    configs = sorted(runs["config"].unique())
    first = references[0]
    tables = [verdict.verdicts(runs, evals, {c: ref for c in configs if c != ref}, metrics)
              for ref in references if ref in configs]
    verdicts = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=verdict.VERDICT_COLUMNS)
    curves = {m: h for m, h in metrics.items() if m in evals}  # metrics evaluated during training
    speed = speedups(evals, {c: first for c in configs}, curves) if not evals.empty else pd.DataFrame()
    speed = speed.set_index(["config", "metric"]) if not speed.empty else speed
    times = step_times(losses)
    base_time = times.get(first, math.nan)
    rows = []
    for metric, higher in metrics.items():
        if metric not in runs:
            continue
        stats = runs.groupby("config")[metric].agg(["mean", "std", "count"])
        stats = stats.sort_values("mean", ascending=not higher, na_position="last")
        for rank, (config, s) in enumerate(stats.iterrows(), start=1):
            sp = speed.loc[(config, metric)] if not speed.empty and (config, metric) in speed.index else None
            t = times.get(config, math.nan)
            rows.append({"metric": metric, "rank": rank, "config": config, "mean": s["mean"], "std": s["std"],
                         "n": int(s["count"]),
                         "speedup": sp["speedup"] if sp is not None else math.nan,
                         "speedup_ci_low": sp["ci_low"] if sp is not None else math.nan,
                         "speedup_ci_high": sp["ci_high"] if sp is not None else math.nan,
                         "speedup_n": sp["n"] if sp is not None else 0,
                         "speedup_reached": sp["n_reached"] if sp is not None else 0,
                         "step_time_s": t, "step_time_ratio": t / base_time if base_time else math.nan})
    return pd.DataFrame(rows, columns=list(RANK_COLUMNS)), verdicts


def verdict_cell(verdicts: pd.DataFrame, config: str, reference: str, metric: str, digits: int) -> str:
    """``helps +4.5 [+1.2, +7.8] p=0.01``, ``—`` for the reference itself, or the reason there is no verdict."""
    if config == reference:
        return "—"
    row = verdicts[(verdicts["config"] == config) & (verdicts["baseline"] == reference)
                   & (verdicts["metric"] == metric)]
    if row.empty:
        return "n/a"
    r = row.iloc[0]
    if np.isnan(r["diff"]):
        return "n/a"
    ci = "" if np.isnan(r["ci_low"]) else f" [{r['ci_low']:+.{digits}f}, {r['ci_high']:+.{digits}f}]"
    p = "" if np.isnan(r["p"]) else f" p={r['p']:.2g}"
    word = r["verdict"] if r["verdict"] != "no detectable difference" else "no diff."
    return f"{word} {r['diff']:+.{digits}f}{ci}{p}"


def ranking_rows(table: pd.DataFrame, verdicts: pd.DataFrame, metric: str, references: tuple[str, ...],
                 digits: int) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one metric's ranking, for rich, markdown or plain text."""
    head = ["rank", "config", "mean ± std", *[f"vs {r}" for r in references], f"speed-up vs {references[0]}",
            "step time"]
    rows = []
    for r in table[table["metric"] == metric].itertuples():
        speed = "—" if r.config == references[0] else \
            fmt_speedup(r.speedup, r.speedup_ci_low, r.speedup_ci_high, r.speedup_n, r.speedup_reached) \
            if r.speedup_n else "n/a"
        time = "n/a" if math.isnan(r.step_time_s) else f"{r.step_time_s:.3f} s ({r.step_time_ratio:.2f}×)"
        rows.append([str(r.rank), r.config, fmt_mean_std(r.mean, r.std, digits, digits),
                     *[verdict_cell(verdicts, r.config, ref, metric, digits) for ref in references], speed, time])
    return head, rows


def markdown_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)
