"""A plain verdict per metric for a paired experiment (a config against its baseline): helps / no detectable
difference / hurts, with the 95 % CI and Welch's p, or the reason no verdict can be given.

No verdict is printed when the experiment cannot support one:
- fewer than ``MIN_SEEDS`` seeds on a side: one seed shows a direction, not a difference beyond seed noise (on
  results/shapes the baseline's final segm AP varied by 5 points between seeds);
- the runs stopped while the baseline was still climbing steeply (``too_short``): on shapes the two curves are
  level for the first ~1000 of 2500 steps (segm AP at step 500: 18.5-20.0 baseline vs 13.8-20.5 Sobel/L2,
  results/shapes) and separate afterwards; a run stopped in that phase says nothing about the effect.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd

from edgercnn.evaluation.metrics import HEADLINE_METRICS, presentation
from edgercnn.reporting import stats

#: Significance level of the verdicts (two-sided Welch test).
ALPHA = 0.05
MIN_SEEDS = 2
#: Too short: the baseline's mean segm AP rose by more than this fraction of its final value over the last
#: ``LATE_FRACTION`` of the steps. Measured: 8-10 % on the full shapes runs (2000 → 2500), 13 % on the Penn-Fudan
#: probe (1200 → 1500), 76 % on the 500-step shapes runs (250 → 500), whose two configs were still level.
STEEP_RISE = 0.25
LATE_FRACTION = 0.2
VERDICT_COLUMNS = ("config", "baseline", "metric", "diff", "ci_low", "ci_high", "p", "n", "n_base", "led",
                   "verdict", "reason")


def curve_at(steps: np.ndarray, values: np.ndarray, step: float) -> float:
    """The curve's value at ``step``, linear between evaluations (NaN outside them)."""
    if len(steps) == 0 or step < steps[0] or step > steps[-1]:
        return math.nan
    return float(np.interp(step, steps, values))


def too_short(evals: pd.DataFrame, baseline: str, metric: str = HEADLINE_METRICS[0]) -> str | None:
    """Why the runs are too short for a verdict (the baseline's mean ``metric`` still rising steeply at the end),
    or None. ``evals``: the evaluations during training (config, seed, step, metrics)."""
    rows = evals[evals["config"] == baseline]
    if rows.empty or metric not in rows:
        return None
    curve = rows.groupby("step")[metric].mean().dropna().sort_index()
    if len(curve) < 2:
        return None
    steps, values = curve.index.to_numpy(float), curve.to_numpy(float)
    end, final = steps[-1], values[-1]
    earlier = curve_at(steps, values, end * (1 - LATE_FRACTION))
    if math.isnan(earlier) or final <= 0:
        return None
    rise = final - earlier
    if rise > STEEP_RISE * final:
        return (f"too short: the baseline's {metric} was still rising steeply ({earlier:.1f} → {final:.1f} over the "
                f"last {LATE_FRACTION:.0%} of {end:.0f} steps); train longer before reading a difference")
    return None


def leads(evals: pd.DataFrame, config: str, baseline: str, metric: str, higher_is_better: bool) -> tuple[int, int]:
    """(evaluations where ``config`` was ahead of ``baseline``, evaluations compared), paired by seed and step."""
    a = evals[evals["config"] == config].set_index(["seed", "step"])[metric]
    b = evals[evals["config"] == baseline].set_index(["seed", "step"])[metric]
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    ahead = (both["a"] > both["b"]) if higher_is_better else (both["a"] < both["b"])
    return int(ahead.sum()), len(both)


def judge(diff: float, p: float, higher_is_better: bool) -> str:
    """helps / hurts (p < ALPHA, by the direction of ``diff``) or no detectable difference."""
    if math.isnan(p) or p >= ALPHA or diff == 0:
        return "no detectable difference"
    better = diff > 0 if higher_is_better else diff < 0
    return "helps" if better else "hurts"


def verdicts(runs: pd.DataFrame, evals: pd.DataFrame, pairs: dict[str, str],
             metrics: dict[str, bool]) -> pd.DataFrame:
    """One row per (config, metric) of ``pairs`` (config → its baseline; baselines themselves skipped): the final
    difference, its CI and p (``stats.welch`` over seeds), the evaluations it led, and the verdict or why there is
    none. ``metrics``: metric → higher is better."""
    rows = []
    for config, base in pairs.items():
        if config == base:
            continue
        short = too_short(evals, base) if not evals.empty else None
        for metric, higher in metrics.items():
            if metric not in runs:
                continue
            a = runs.loc[runs["config"] == config, metric].to_numpy(float)
            b = runs.loc[runs["config"] == base, metric].to_numpy(float)
            test = stats.welch(a, b)
            led, compared = leads(evals, config, base, metric, higher) if not evals.empty and metric in evals \
                else (0, 0)
            n, n_base = test["n_a"], test["n_b"]
            if min(n, n_base) < MIN_SEEDS:
                verdict, reason = "no verdict", (f"{min(n, n_base)} seed: shows the direction only, no test - run "
                                                 f"{MIN_SEEDS}+ seeds per config for a verdict")
            elif short:
                verdict, reason = "no verdict", short
            else:
                verdict, reason = judge(test["diff"], test["p"], higher), ""
            rows.append({"config": config, "baseline": base, "metric": metric, "diff": test["diff"],
                         "ci_low": test["ci_low"], "ci_high": test["ci_high"], "p": test["p"], "n": n,
                         "n_base": n_base, "led": f"{led}/{compared}" if compared else "", "verdict": verdict,
                         "reason": reason})
    return pd.DataFrame(rows, columns=list(VERDICT_COLUMNS))


def verdict_lines(table: pd.DataFrame, labels: dict[str, str] | None = None) -> Iterable[str]:
    """Plain sentences, one per row: ``sobel-p2 vs baseline, segm AP: helps (+4.5 [+1.2, +7.8], p = 0.01; ahead
    at 9/10 evaluations)``."""
    labels = labels or {}
    for r in table.itertuples():
        d = presentation(r.metric).digits
        numbers = f"{r.diff:+.{d}f}" if not math.isnan(r.diff) else "n/a"
        if not math.isnan(r.ci_low):
            numbers += f" [{r.ci_low:+.{d}f}, {r.ci_high:+.{d}f}], p = {r.p:.2g}"
        if r.led:
            numbers += f"; ahead at {r.led} evaluations"
        what = r.verdict if not r.reason else f"{r.verdict} ({r.reason})"
        yield f"{r.config} vs {r.baseline}, {labels.get(r.metric, r.metric)}: {what}; {numbers}"
