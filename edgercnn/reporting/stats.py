"""Statistics for comparing configurations over seeds: Welch's t-test and "faster training" as a speed-up.

Pure functions over plain numbers (numpy/scipy), so the report and the experiment scripts share one
definition of each number the paper quotes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats as st

Curve = tuple[Sequence[float], Sequence[float]]  # (steps ascending, values at those steps)


def _finite(values: Sequence[float]) -> np.ndarray:
    """``values`` as a float array with NaN (a missing seed or metric) dropped."""
    x = np.asarray(values, dtype=float).ravel()
    return x[~np.isnan(x)]


def welch(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Welch's t-test of mean(a) - mean(b): ``diff``, its ``ci_low``/``ci_high``, two-sided ``p``, ``n_a``, ``n_b``.

    Welch rather than Student because configurations need not share a variance across seeds. The interval
    is scipy's (``ttest_ind(..., equal_var=False).confidence_interval``, Welch–Satterthwaite dof). NaNs are
    dropped first. With fewer than 2 values on a side, or no spread on either side, the test says nothing:
    ``ci_low``, ``ci_high`` and ``p`` are NaN (``diff`` is still reported when both sides have a value).
    """
    x, y = _finite(a), _finite(b)
    out = {"diff": float(x.mean() - y.mean()) if len(x) and len(y) else math.nan,
           "ci_low": math.nan, "ci_high": math.nan, "p": math.nan, "n_a": len(x), "n_b": len(y)}
    if len(x) < 2 or len(y) < 2 or (np.ptp(x) == 0 and np.ptp(y) == 0):
        return out
    with warnings.catch_warnings():  # scipy warns of "precision loss" when one side is constant; it is exact
        warnings.simplefilter("ignore", RuntimeWarning)
        res = st.ttest_ind(x, y, equal_var=False)
        ci = res.confidence_interval(confidence_level=confidence)
    out.update(ci_low=float(ci.low), ci_high=float(ci.high), p=float(res.pvalue))
    return out


def steps_to_reach(steps: Sequence[float], values: Sequence[float], target: float,
                   higher_is_better: bool = True) -> float:
    """The first step at which a curve reaches ``target``, or ``math.inf`` if it never does.

    ``values[i]`` is the evaluation at ``steps[i]`` (ascending). Between the last evaluation short of the
    target and the first one at or past it the curve is taken as linear, so the step is interpolated; if the
    first evaluation already reaches it, that step is returned. ``higher_is_better=False`` is for losses
    (reached means value <= target). NaN evaluations are skipped.
    """
    s, v = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    if s.shape != v.shape or s.ndim != 1:
        raise ValueError(f"steps and values must be 1-D and of equal length, got {s.shape} and {v.shape}")
    keep = ~np.isnan(v)
    s, v = s[keep], v[keep]
    if np.any(np.diff(s) < 0):
        raise ValueError("steps must be ascending")
    sign = 1.0 if higher_is_better else -1.0
    v, target = sign * v, sign * target  # now "reached" is always value >= target
    hits = np.flatnonzero(v >= target)
    if len(hits) == 0:
        return math.inf
    i = int(hits[0])
    if i == 0:
        return float(s[0])
    s0, s1, v0, v1 = s[i - 1], s[i], v[i - 1], v[i]  # v0 < target <= v1
    return float(s0 + (target - v0) / (v1 - v0) * (s1 - s0))


def _t_interval(x: np.ndarray, confidence: float) -> tuple[float, float]:
    """Two-sided Student-t interval of the mean of ``x`` (NaN with fewer than 2 values)."""
    if len(x) < 2 or not np.all(np.isfinite(x)):
        return math.nan, math.nan
    half = st.t.ppf((1 + confidence) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def speedup(base_curves: Sequence[Curve], curves: Sequence[Curve], higher_is_better: bool = True,
            confidence: float = 0.95) -> dict:
    """The paper's "faster training" as one number: how many times fewer steps ``curves`` need to reach the
    baseline's final quality.

    Each curve is ``(steps, values)`` for one seed. The target is the mean over baseline seeds of each
    baseline curve's final value, and the baseline's budget the mean of their last steps. Per seed of
    ``curves``, ``per_seed[i] = budget / steps_to_reach(curve_i, target)`` (``inf`` when reached at step 0,
    0.0 when never reached). Returns ``target``, ``per_seed``, ``mean`` and a Student-t interval over seeds
    (``ci_low``, ``ci_high``), ``n`` seeds and ``n_reached``. If not every seed reaches the target a mean
    would hide that, so ``mean``/``ci_*`` are NaN and callers should report "never reaches (n_reached of n
    seeds)" instead; the interval is also NaN with a single seed.
    """
    if not base_curves or not curves:
        raise ValueError("speedup needs at least one baseline curve and one curve")
    finals, budgets = [], []
    for steps, values in base_curves:
        s, v = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
        keep = ~np.isnan(v)
        if not keep.any():
            raise ValueError("a baseline curve has no evaluations")
        finals.append(v[keep][-1])
        budgets.append(s[keep][-1])
    target, budget = float(np.mean(finals)), float(np.mean(budgets))
    reach = [steps_to_reach(s, v, target, higher_is_better) for s, v in curves]
    per_seed = [math.inf if r == 0 else budget / r for r in reach]  # budget / inf == 0.0: never reached
    n_reached = sum(math.isfinite(r) for r in reach)
    out = {"target": target, "per_seed": per_seed, "mean": math.nan, "ci_low": math.nan, "ci_high": math.nan,
           "n": len(curves), "n_reached": n_reached}
    if n_reached == len(curves):
        x = np.asarray(per_seed)
        out["mean"] = float(x.mean())
        out["ci_low"], out["ci_high"] = _t_interval(x, confidence)
    return out
