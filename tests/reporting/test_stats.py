"""edgercnn.reporting.stats on hand-picked numbers: Welch's test against scipy and an independent formula,
steps-to-target interpolation and the speed-up by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from edgercnn.reporting.stats import speedup, steps_to_reach, welch

A = [30.1, 31.5, 29.8]
B = [27.0, 28.2, 26.9]


def test_welch_matches_scipy_and_the_textbook_formula():
    out = welch(A, B)
    assert out["n_a"] == out["n_b"] == 3
    assert out["diff"] == pytest.approx(np.mean(A) - np.mean(B))  # 30.4667 - 27.3667 = 3.1
    assert out["diff"] == pytest.approx(3.1)
    assert out["p"] == pytest.approx(st.ttest_ind(A, B, equal_var=False).pvalue, rel=1e-12)
    # Independent CI: diff ± t_{0.975, dof} · se with se² = s_a²/n_a + s_b²/n_b and Welch–Satterthwaite dof.
    va, vb = np.var(A, ddof=1) / 3, np.var(B, ddof=1) / 3
    dof = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
    half = st.t.ppf(0.975, dof) * math.sqrt(va + vb)
    assert out["ci_low"] == pytest.approx(3.1 - half, rel=1e-9)
    assert out["ci_high"] == pytest.approx(3.1 + half, rel=1e-9)
    assert 0 < out["ci_low"] < out["diff"] < out["ci_high"]


def test_welch_confidence_level_widens_the_interval():
    narrow, wide = welch(A, B, confidence=0.8), welch(A, B, confidence=0.99)
    assert wide["ci_low"] < narrow["ci_low"] < narrow["ci_high"] < wide["ci_high"]
    assert wide["p"] == narrow["p"]


def test_welch_drops_nan():
    assert welch(A + [math.nan], [math.nan] + B) == pytest.approx(welch(A, B))
    assert welch(A + [math.nan], B)["n_a"] == 3


@pytest.mark.parametrize("a, b, diff", [
    ([30.0], B, 30.0 - np.mean(B)),          # one seed on a side
    (A, [math.nan, 27.0], np.mean(A) - 27.0),  # one seed left after dropping NaN
    ([1.0, 1.0, 1.0], [2.0, 2.0], -1.0),     # no spread on either side
    ([], B, math.nan),                         # nothing on a side
])
def test_welch_degenerate_gives_nan_not_an_error(a, b, diff):
    out = welch(a, b)
    assert math.isnan(out["ci_low"]) and math.isnan(out["ci_high"]) and math.isnan(out["p"])
    assert out["diff"] == pytest.approx(diff, nan_ok=True)


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # the reference scipy call below
def test_welch_one_constant_side_is_fine():
    out = welch([1.0, 1.0, 1.0], [2.0, 2.5, 2.0])
    ref = st.ttest_ind([1.0, 1.0, 1.0], [2.0, 2.5, 2.0], equal_var=False)
    assert out["p"] == pytest.approx(ref.pvalue)
    assert out["diff"] == pytest.approx(1.0 - 13 / 6)  # mean(b) = 6.5 / 3
    assert out["ci_low"] < out["diff"] < out["ci_high"] < 0


def test_steps_to_reach_interpolates_the_first_crossing():
    # 20 at step 200, 30 at step 300: 25 is halfway → step 250.
    assert steps_to_reach([100, 200, 300], [10, 20, 30], 25) == pytest.approx(250.0)
    # Crossed at 200→300 first, even though the curve dips and crosses again later.
    assert steps_to_reach([100, 200, 300, 400, 500], [10, 20, 40, 5, 30], 25) == pytest.approx(225.0)
    assert steps_to_reach([100, 200, 300], [10, 20, 30], 20) == 200.0  # exactly reached at an evaluation


def test_steps_to_reach_already_and_never():
    assert steps_to_reach([100, 200], [30, 40], 25) == 100.0
    assert steps_to_reach([100, 200], [10, 20], 25) == math.inf
    assert steps_to_reach([], [], 25) == math.inf


def test_steps_to_reach_losses_go_down():
    # Loss 0.5 at 0, 0.3 at 1000: 0.4 is halfway → step 500.
    assert steps_to_reach([0, 1000, 2000], [0.5, 0.3, 0.2], 0.4, higher_is_better=False) == pytest.approx(500.0)
    assert steps_to_reach([0, 1000], [0.5, 0.3], 0.1, higher_is_better=False) == math.inf
    assert steps_to_reach([0, 1000], [0.5, 0.3], 0.6, higher_is_better=False) == 0.0


def test_steps_to_reach_skips_nan_and_checks_its_input():
    assert steps_to_reach([100, 200, 300], [10, math.nan, 30], 20) == pytest.approx(200.0)  # 10→30 over 100..300
    with pytest.raises(ValueError):
        steps_to_reach([100, 200], [10], 5)
    with pytest.raises(ValueError):
        steps_to_reach([200, 100], [10, 20], 5)


BASE = [([0, 1000, 2000], [0.0, 20.0, 30.0]),
        ([0, 1000, 2000], [0.0, 22.0, 34.0])]
# target = mean final value = (30 + 34) / 2 = 32; baseline budget = mean last step = 2000.


def test_speedup_by_hand():
    curves = [([0, 1000, 2000], [0.0, 32.0, 40.0]),   # reaches 32 at step 1000      → 2000 / 1000 = 2.0
              ([0, 1000, 2000], [0.0, 24.0, 40.0]),   # 24→40 over 1000: 32 at 1500 → 2000 / 1500 = 4/3
              ([0, 500, 1000], [0.0, 16.0, 48.0])]    # 16→48 over 500: 32 at 750   → 2000 / 750  = 8/3
    out = speedup(BASE, curves)
    assert out["target"] == pytest.approx(32.0)
    assert out["per_seed"] == pytest.approx([2.0, 4 / 3, 8 / 3])
    assert out["mean"] == pytest.approx(2.0)  # (6/3 + 4/3 + 8/3) / 3
    # sd of (2, 4/3, 8/3) = 2/3; half width = t_{0.975,2} · (2/3) / √3
    half = st.t.ppf(0.975, 2) * (2 / 3) / math.sqrt(3)
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((2.0 - half, 2.0 + half))
    assert out["n"] == out["n_reached"] == 3


def test_speedup_of_the_baseline_against_itself_is_about_one():
    out = speedup(BASE, BASE)
    # seed 1: 30 → never reaches 32; so the result says so instead of a mean.
    assert out["n_reached"] == 1 and out["n"] == 2
    assert math.isnan(out["mean"]) and math.isnan(out["ci_low"])
    assert out["per_seed"][0] == 0.0
    # seed 2: 22→34 over 1000..2000: 32 at 1000 + 10/12·1000 = 1833.3 → 2000 / 1833.3 = 1.0909
    assert out["per_seed"][1] == pytest.approx(2000 / (1000 + 1000 * 10 / 12))


def test_speedup_for_losses():
    base = [([0, 100], [1.0, 0.4])]  # target 0.4, budget 100
    out = speedup(base, [([0, 50, 100], [1.0, 0.4, 0.2]), ([0, 100], [1.0, 0.2])], higher_is_better=False)
    # seed 1 reaches 0.4 at 50 → 2.0; seed 2: 1.0→0.2 over 100, 0.4 at 75 → 4/3
    assert out["per_seed"] == pytest.approx([2.0, 4 / 3])
    assert out["mean"] == pytest.approx(5 / 3)


def test_speedup_single_seed_has_no_interval():
    out = speedup(BASE, [([0, 1000], [0.0, 32.0])])
    assert out["mean"] == pytest.approx(2.0)
    assert math.isnan(out["ci_low"]) and math.isnan(out["ci_high"])
