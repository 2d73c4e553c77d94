"""edgercnn.reporting.report on hand-made per-seed CSVs: numbers against pandas and by hand, every format, plots,
the paper's reference CSVs (the experiment sweeps: tests/experiments/test_sweep.py)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from edgercnn.core.errors import EdgeRCNNError
from edgercnn.reporting.report import (
    SEGM_METRICS,
    add_relative,
    load_reference,
    load_runs,
    report,
    summarize,
)

from tests.clirunner import invoke, one_line_error
from tests.crafted import refuse_writes_in
from tests.paths import REPO

PAPER = REPO / "results" / "paper"

# Per config, per segm metric: the three seeds' values. Means are round numbers so that the relative
# changes can be worked out by hand (see test_relative_change_by_hand).
SEEDS = {
    "baseline": {
        "segm_AP": (18.0, 19.0, 20.0), "segm_AP50": (39.0, 40.0, 41.0), "segm_AP75": (19.0, 20.0, 21.0),
        "segm_APs": (9.0, 10.0, 11.0), "segm_APm": (19.5, 20.0, 20.5), "segm_APl": (24.0, 25.0, 26.0),
        "val_loss_mask": (0.29, 0.30, 0.31),
    },
    "sobel-p2": {
        "segm_AP": (20.0, 21.0, 22.0), "segm_AP50": (43.0, 44.0, 45.0), "segm_AP75": (21.5, 22.0, 22.5),
        "segm_APs": (10.0, 11.0, 12.0), "segm_APm": (20.0, 21.0, 22.0), "segm_APl": (29.0, 30.0, 31.0),
        "val_loss_mask": (0.26, 0.27, 0.28),
    },
}


def _write_runs(exp: Path, seeds: dict = SEEDS, losses: bool = True) -> Path:
    for config, metrics in seeds.items():
        folder = exp / config
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(3):
            row = {"experiment": exp.name, "config": config, "seed": i,
                   "filters": "none" if config == "baseline" else "sobel", "p": 2.0}
            row |= {m: v[i] for m, v in metrics.items()}
            row |= {"bbox_AP": 30.0 + i + (2.0 if config != "baseline" else 0.0), "steps": 50}
            pd.DataFrame([row]).to_csv(folder / f"seed-{i}.csv", index=False)
            if losses:
                steps = pd.Series(range(1, 51))
                shift = 0.1 if config == "baseline" else 0.0
                pd.DataFrame({
                    "step": steps, "stage": 1, "lr": 0.001,
                    "loss_mask": 1.0 / steps + shift + 0.01 * i,
                    "loss_mrcnn": 2.0 / steps + shift + 0.02 * i,
                }).to_csv(folder / f"seed-{i}-losses.csv", index=False)
    return exp


def _console() -> Console:
    return Console(file=io.StringIO(), width=200, color_system=None)


@pytest.fixture
def exp(tmp_path: Path) -> Path:
    return _write_runs(tmp_path / "results" / "demo")


def test_mean_std_n_match_pandas(exp: Path):
    summary = summarize(load_runs(exp))
    # independently: every seed CSV read by hand and aggregated with pandas
    raw = pd.concat([pd.read_csv(p) for p in sorted(exp.glob("*/seed-?.csv"))])
    expected = raw.groupby("config")[list(SEGM_METRICS) + ["val_loss_mask"]].agg(["mean", "std", "count"])
    for config in SEEDS:
        assert summary.at[config, "n"] == 3
        for m in (*SEGM_METRICS, "val_loss_mask"):
            assert summary.at[config, m] == pytest.approx(expected.at[config, (m, "mean")])
            assert summary.at[config, f"{m}_std"] == pytest.approx(expected.at[config, (m, "std")])
    # by hand: AP 18, 19, 20 → mean 19, sample std sqrt(((-1)² + 0² + 1²) / (3 - 1)) = 1
    assert summary.at["baseline", "segm_AP"] == pytest.approx(19.0)
    assert summary.at["baseline", "segm_AP_std"] == pytest.approx(1.0)
    # APm 19.5, 20, 20.5 → std sqrt((0.25 + 0 + 0.25) / 2) = 0.5
    assert summary.at["baseline", "segm_APm_std"] == pytest.approx(0.5)


def test_relative_change_by_hand(exp: Path):
    result = report(exp, console=_console())
    s = result.summary
    assert result.baseline == "baseline"
    # AP 21 vs 19: 2/19 = 10.526%; AP50 44/40, AP75 22/20, APs 11/10: +10%; APm 21/20: +5%; APl 30/25: +20%
    assert s.at["sobel-p2", "segm_AP_rel"] == pytest.approx(200 / 19)
    assert s.at["sobel-p2", "segm_APm_rel"] == pytest.approx(5.0)
    # the paper's "8.1%"-style headline: mean of the six relative changes
    assert s.at["sobel-p2", "segm_avg_rel"] == pytest.approx((200 / 19 + 10 + 10 + 10 + 5 + 20) / 6)  # 10.92%
    assert s.at["baseline", "segm_avg_rel"] == pytest.approx(0.0)
    # val mask loss 0.27 vs 0.30: -10% (lower is better)
    assert s.at["sobel-p2", "val_loss_mask_rel"] == pytest.approx(-10.0)
    assert "+10.9%" in result.text and "-10.0%" in result.text
    assert "lower is better" in result.text


def test_baseline_override_and_unknown(exp: Path):
    s = report(exp, baseline="sobel-p2", console=_console()).summary
    assert s.at["baseline", "segm_AP_rel"] == pytest.approx((19 - 21) / 21 * 100)
    with pytest.raises(EdgeRCNNError, match="no such config"):
        report(exp, baseline="nope", console=_console())


def test_table_layout_like_table_1(exp: Path):
    result = report(exp, console=_console())
    for header in ("AP50", "AP75", "APs", "APm", "APl"):
        assert header in result.text
    assert "19.0 ± 1.00" in result.text and "21.0 ± 1.00" in result.text
    # baseline last, as in the paper's Table 1
    first_table = result.text.split("Change relative")[0]
    assert first_table.index("sobel-p2") < first_table.index("baseline │")


def test_markdown(exp: Path):
    text = report(exp, fmt="markdown", console=_console()).text
    assert "| config | n | AP | AP50 | AP75 | APs | APm | APl | bAP | bAP50 | bAP75 | val L_Mask |" in text
    assert "| baseline | 3 | 19.0 ± 1.00 |" in text
    # these CSVs predate boundary AP: n/a, not a crash
    assert "| 25.0 ± 1.00 | n/a | n/a | n/a | 0.3000 ± 0.0100 |" in text


def test_latex(exp: Path):
    text = report(exp, fmt="latex", console=_console()).text
    assert r"\begin{tabular}" in text and r"\end{tabular}" in text
    assert r"19.0 $\pm$ 1.00" in text and r"+10.9\%" in text


def test_csv_parses_back(exp: Path):
    result = report(exp, fmt="csv", console=_console())
    back = pd.read_csv(io.StringIO(result.text)).set_index("config")
    assert list(back.index) == ["sobel-p2", "baseline"]
    assert back.at["baseline", "n"] == 3
    assert back.at["sobel-p2", "segm_AP"] == pytest.approx(21.0)
    assert back.at["sobel-p2", "segm_AP_std"] == pytest.approx(1.0)
    assert back.at["sobel-p2", "segm_avg_rel"] == pytest.approx(result.summary.at["sobel-p2", "segm_avg_rel"],
                                                                rel=1e-5)
    # notes and plot paths stay out of the machine-readable text
    assert "plot:" not in result.text


def test_plot_written(exp: Path, tmp_path: Path):
    result = report(exp, plot_dir=tmp_path / "plots", console=_console())
    assert result.plots == [tmp_path / "plots" / "losses.png"]
    png = result.plots[0].read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_plot_default_dir_and_missing_losses(tmp_path: Path):
    exp = _write_runs(tmp_path / "with")
    assert report(exp, console=_console()).plots == [exp / "losses.png"]
    bare = _write_runs(tmp_path / "without", losses=False)
    result = report(bare, console=_console())
    assert result.plots == [] and any("no loss plot" in n for n in result.notes)


def test_nan_metric(tmp_path: Path):
    seeds = {c: dict(v) for c, v in SEEDS.items()}
    seeds["sobel-p2"]["segm_APs"] = (10.0, math.nan, 12.0)  # one seed without small objects
    seeds["baseline"]["segm_APs"] = (math.nan,) * 3  # no small objects at all
    exp = _write_runs(tmp_path / "nan", seeds)
    result = report(exp, fmt="markdown", console=_console())
    s = result.summary
    assert s.at["sobel-p2", "segm_APs"] == pytest.approx(11.0)  # NaN skipped
    assert s.at["sobel-p2", "segm_APs_std"] == pytest.approx(math.sqrt(2))
    assert math.isnan(s.at["baseline", "segm_APs"]) and math.isnan(s.at["sobel-p2", "segm_APs_rel"])
    # average over the five metrics that have a value
    assert s.at["sobel-p2", "segm_avg_rel"] == pytest.approx((200 / 19 + 10 + 10 + 5 + 20) / 5)
    assert "n/a" in result.text
    report(exp, fmt="csv", console=_console())  # no crash on NaN
    report(exp, fmt="latex", console=_console())


def test_single_seed_has_no_std(tmp_path: Path):
    exp = _write_runs(tmp_path / "one")
    for config in SEEDS:
        for i in (1, 2):
            (exp / config / f"seed-{i}.csv").unlink()
    result = report(exp, fmt="markdown", console=_console())
    assert result.summary.at["baseline", "n"] == 1
    assert math.isnan(result.summary.at["baseline", "segm_AP_std"])
    assert "| baseline | 1 | 18.0 |" in result.text


def test_missing_or_empty_folder(tmp_path: Path):
    with pytest.raises(EdgeRCNNError, match="no such results folder"):
        report(tmp_path / "nope", console=_console())
    (tmp_path / "empty" / "baseline").mkdir(parents=True)
    with pytest.raises(EdgeRCNNError, match=r"run edgercnn train .* first") as err:
        report(tmp_path / "empty", console=_console())
    assert "empty" in str(err.value)


def test_bad_inputs(exp: Path, tmp_path: Path):
    with pytest.raises(EdgeRCNNError, match="--format"):
        report(exp, fmt="html", console=_console())
    with pytest.raises(EdgeRCNNError, match="reference CSV not found"):
        report(exp, compare=tmp_path / "missing.csv", console=_console())
    pd.concat([pd.read_csv(exp / "baseline" / "seed-0.csv")] * 2).to_csv(exp / "baseline" / "seed-0.csv")
    with pytest.raises(EdgeRCNNError, match="expected one row"):
        report(exp, console=_console())


def test_compare_shows_reference(exp: Path):
    out = _console()
    result = report(exp, compare=PAPER / "table1_filters.csv", console=out)
    for text in (result.text, out.file.getvalue()):
        assert "20.2 ± 0.17" in text and "18.8 ± 0.14" in text  # the paper's sobel and baseline AP
        assert "+8.1%" in text  # the paper's headline, recomputed from its Table 1
        assert "prewitt-p2" not in text  # only configs we ran
    back = pd.read_csv(io.StringIO(report(exp, fmt="csv", compare=PAPER / "table1_filters.csv",
                                          console=_console()).text)).set_index("config")
    assert back.at["sobel-p2", "ref_segm_AP"] == pytest.approx(20.2)
    assert back.at["sobel-p2", "segm_AP"] == pytest.approx(21.0)


def test_paper_reference_csvs():
    tables = {p.name: load_reference(p) for p in sorted(PAPER.glob("table*.csv"))}
    assert set(tables) == {"table1_filters.csv", "table2_p.csv", "table3_mask_size_coco.csv",
                           "table4_long_training.csv", "table5_cityscapes.csv"}
    t1 = tables["table1_filters.csv"]
    assert len(t1) == 7 and "sobel+laplace-p2" in t1.index
    assert t1.at["sobel-p2", "segm_AP"] == 20.2 and t1.at["sobel-p2", "segm_AP_std"] == 0.17
    assert t1.at["baseline", "segm_AP"] == 18.8 and t1.at["roberts-p2", "segm_APl"] == 26.7
    # section 5.1: "On average, the COCO metrics have been improved relatively by 8.1%"
    assert add_relative(t1, "baseline").at["sobel-p2", "segm_avg_rel"] == pytest.approx(8.1, abs=0.05)
    assert tables["table2_p.csv"].at["sobel-p4", "segm_AP50"] == 33.5
    assert tables["table3_mask_size_coco.csv"].at["sobel-p2-m56", "segm_AP_std"] == 0.03
    t4 = tables["table4_long_training.csv"]
    assert t4.at["sobel-p2-640k", "segm_AP"] == 22.7 and math.isnan(t4.at["sobel-p2-640k", "segm_AP_std"])
    t5 = tables["table5_cityscapes.csv"]
    assert t5.at["baseline", "segm_AP75"] == 12.43 and t5.at["sobel-p2-m56", "segm_APl_std"] == 0.297
    for name, table in tables.items():  # every row has all six means
        assert table[list(SEGM_METRICS)].notna().all().all(), name


def test_configs_pair_with_the_baseline_of_their_suffix():
    from edgercnn.reporting.report import add_relative, pair_baselines

    configs = ["baseline", "sobel-p2", "baseline-m56", "sobel-p2-m56", "sobel-p2-640k"]
    pairs = pair_baselines(configs, "baseline")
    assert pairs["sobel-p2-m56"] == "baseline-m56" and pairs["baseline-m56"] == "baseline-m56"
    assert pairs["sobel-p2"] == "baseline" and pairs["sobel-p2-640k"] == "baseline"  # no baseline-640k here
    assert set(pair_baselines(configs, "baseline", fixed=True).values()) == {"baseline"}
    summary = pd.DataFrame({"segm_AP": [20.0, 22.0, 10.0, 12.0, 30.0]}, index=configs)
    rel = add_relative(summary, pairs, metrics=("segm_AP",))["segm_AP_rel"]
    assert rel["sobel-p2-m56"] == pytest.approx(20.0)  # (12 − 10) / 10, against baseline-m56
    assert rel["sobel-p2"] == pytest.approx(10.0) and rel["baseline-m56"] == 0.0


# --------------------------------------------------------------------------------------------- significance
def _with(metric: str, values: dict[str, tuple]) -> dict:
    """SEEDS with ``metric`` replaced per config."""
    return {c: {**v, metric: values[c]} for c, v in SEEDS.items()}


def test_significance_matches_scipy(tmp_path: Path):
    from scipy import stats as st

    base, sobel = [30.1, 31.5, 29.8], [33.0, 34.2, 32.1]
    exp = _write_runs(tmp_path / "sig", _with("segm_AP", {"baseline": tuple(base), "sobel-p2": tuple(sobel)}))
    result = report(exp, fmt="csv", console=_console())
    expected = st.ttest_ind(sobel, base, equal_var=False)
    ci = expected.confidence_interval(confidence_level=0.95)
    back = pd.read_csv(io.StringIO(result.text)).set_index("config")
    row = back.loc["sobel-p2"]
    assert row["baseline"] == "baseline"
    assert row["segm_AP_diff"] == pytest.approx(33.1 - 30.466667, rel=1e-5)  # means 33.1 and 30.4667
    assert row["segm_AP_diff_lo"] == pytest.approx(ci.low, rel=1e-5)
    assert row["segm_AP_diff_hi"] == pytest.approx(ci.high, rel=1e-5)
    assert row["segm_AP_p"] == pytest.approx(expected.pvalue, rel=1e-5)
    assert expected.pvalue < 0.05 and bool(row["segm_AP_sig"]) is True
    # every metric is tested in the csv; the baseline row has no test
    for m in ("bbox_AP", "boundary_AP", "val_loss_mask", "segm_APl"):
        assert f"{m}_p" in back and f"{m}_sig" in back
    assert pd.isna(back.at["baseline", "segm_AP_diff"]) and pd.isna(back.at["baseline", "baseline"])
    # the same numbers, programmatically
    sig = result.significance.set_index(["config", "metric"])
    assert sig.at[("sobel-p2", "segm_AP"), "p"] == pytest.approx(expected.pvalue, rel=1e-12)
    assert sig.at[("sobel-p2", "segm_AP"), "ci_low"] == pytest.approx(ci.low, rel=1e-12)
    assert sig.at[("sobel-p2", "segm_AP"), "n"] == 3 and sig.at[("sobel-p2", "segm_AP"), "n_baseline"] == 3
    assert set(result.significance["config"]) == {"sobel-p2"}  # not the baseline against itself
    text = report(exp, fmt="markdown", console=_console()).text
    cell = f"+2.6 [{ci.low:+.1f}, {ci.high:+.1f}] p={expected.pvalue:.2g} |"
    assert f"| AP | {cell}" in text


def test_not_significant_marked_ns(exp: Path):
    text = report(exp, fmt="markdown", console=_console()).text
    assert "Difference to baseline (95 % CI, Welch p" in text
    # AP 18, 19, 20 vs 20, 21, 22: t = 2 / sqrt(2/3) = 2.449, dof 4 → p = 0.070
    assert "| AP | +2.0 [-0.3, +4.3] p=0.07 ns |" in text
    assert "| AP50 | +4.0 [+1.7, +6.3] p=0.008 |" in text  # p < 0.05: no marker
    back = pd.read_csv(io.StringIO(report(exp, fmt="csv", console=_console()).text)).set_index("config")
    assert not back.at["sobel-p2", "segm_AP_sig"] and back.at["sobel-p2", "segm_AP50_sig"]


def test_no_test_with_one_seed_is_ns(tmp_path: Path):
    exp = _write_runs(tmp_path / "one")
    for config in SEEDS:
        for i in (1, 2):
            (exp / config / f"seed-{i}.csv").unlink()
    text = report(exp, fmt="markdown", console=_console()).text
    assert "| AP | +2.0 p=n/a ns |" in text  # the difference, no interval, no p


def test_p_and_cell_formats():
    from edgercnn.reporting.report import fmt_diff, fmt_p, fmt_speedup

    assert fmt_p(0.0496) == "p=0.0496"  # not rounded up to the threshold
    assert fmt_p(0.093) == "p=0.093" and fmt_p(0.0004) == "p<0.001" and fmt_p(math.nan) == "p=n/a"
    assert fmt_diff(1.3, -0.4, 3.0, 0.09) == "+1.3 [-0.4, +3.0] p=0.09 ns"
    assert fmt_diff(-0.03, -0.05, -0.01, 0.01, digits=4) == "-0.0300 [-0.0500, -0.0100] p=0.01"
    assert fmt_diff(math.nan, math.nan, math.nan, math.nan) == "n/a"
    assert fmt_speedup(1.4234, 1.1, 1.74, 3, 3) == "1.42× [1.10, 1.74]"
    assert fmt_speedup(1.5, math.nan, math.nan, 1, 1) == "1.50×"
    assert fmt_speedup(math.nan, math.nan, math.nan, 3, 2) == "never reaches (reached by 2/3 seeds)"


# --------------------------------------------------------------------------------------------- convergence
STEPS = (100, 200, 300, 400)
# Per config and evals metric, one curve per seed at STEPS. The baseline ends at 30 segm AP in both seeds
# (target 30, budget 400 steps).
EVALS = {
    "baseline": {
        "segm_AP": ((10, 20, 25, 30), (12, 22, 27, 30)),
        "boundary_AP": ((5, 10, 15, 20), (5, 10, 15, 20)),
        "val_loss_mask": ((0.5, 0.4, 0.35, 0.3), (0.5, 0.4, 0.35, 0.3)),
    },
    "sobel-p2": {
        # seed 0: 25 at 200, 35 at 300 → 30 at 250 → 400/250 = 1.6; seed 1: 30 at 200 → 2.0;
        # seed 2: 26 at 200, 34 at 300 → 30 at 250 → 1.6. Mean 1.7333, sample std 0.23094,
        # 95 % CI 1.7333 ± t(0.975, 2) · 0.23094 / sqrt(3) = 1.7333 ± 4.3027 · 0.13333 = [1.160, 2.307].
        "segm_AP": ((15, 25, 35, 40), (20, 30, 33, 36), (10, 26, 34, 38)),
        # seed 2 tops out at 19 < 20: never reaches the baseline's final boundary AP
        "boundary_AP": ((8, 20, 22, 24), (8, 20, 22, 24), (8, 12, 16, 19)),
        # 0.3 first reached at step 300 by every seed → 400/300 = 1.333, no spread
        "val_loss_mask": ((0.45, 0.35, 0.3, 0.28),) * 3,
    },
}


def _write_evals(exp: Path, evals: dict = EVALS) -> Path:
    for config, metrics in evals.items():
        for seed in range(len(metrics["segm_AP"])):
            curve = {m: metrics[m][seed] for m in metrics}
            pd.DataFrame({"step": STEPS, **curve, "segm_AP50": curve["segm_AP"], "segm_AP75": curve["segm_AP"],
                          "bbox_AP": curve["segm_AP"]}).to_csv(exp / config / f"seed-{seed}-evals.csv", index=False)
    return exp


def test_speedup_by_hand(exp: Path):
    result = report(_write_evals(exp), fmt="csv", console=_console())
    speed = result.speedup.set_index(["config", "metric"])
    assert set(speed.index.get_level_values("config")) == {"sobel-p2"}  # not the baseline against itself
    ap = speed.loc[("sobel-p2", "segm_AP")]
    assert ap["target"] == pytest.approx(30.0) and ap["n"] == 3 and ap["n_reached"] == 3
    assert ap["speedup"] == pytest.approx((1.6 + 2.0 + 1.6) / 3)
    assert ap["ci_low"] == pytest.approx(1.1596, abs=1e-3) and ap["ci_high"] == pytest.approx(2.3071, abs=1e-3)
    assert speed.at[("sobel-p2", "val_loss_mask"), "speedup"] == pytest.approx(4 / 3)  # lower is better
    back = pd.read_csv(io.StringIO(result.text)).set_index("config")
    assert back.at["sobel-p2", "segm_AP_speedup"] == pytest.approx(1.73333, rel=1e-5)
    assert back.at["sobel-p2", "segm_AP_speedup_lo"] == pytest.approx(1.1596, abs=1e-3)
    assert back.at["sobel-p2", "segm_AP_speedup_reached"] == 3 and back.at["sobel-p2", "segm_AP_speedup_n"] == 3
    assert pd.isna(back.at["baseline", "segm_AP_speedup"])
    text = report(exp, fmt="markdown", console=_console()).text
    assert "| sobel-p2 | baseline | 1.73× [1.16, 2.31] |" in text


def test_never_reaches_is_not_one(exp: Path):
    result = report(_write_evals(exp), fmt="markdown", console=_console())
    row = result.speedup.set_index(["config", "metric"]).loc[("sobel-p2", "boundary_AP")]
    assert row["n_reached"] == 2 and row["n"] == 3 and math.isnan(row["speedup"])
    assert "| never reaches (reached by 2/3 seeds) |" in result.text
    back = pd.read_csv(io.StringIO(report(exp, fmt="csv", console=_console()).text)).set_index("config")
    assert pd.isna(back.at["sobel-p2", "boundary_AP_speedup"])
    assert back.at["sobel-p2", "boundary_AP_speedup_reached"] == 2


def test_convergence_plot_only_with_evals(exp: Path, tmp_path: Path):
    plots = tmp_path / "plots"
    without = report(exp, plot_dir=plots, console=_console())
    assert without.plots == [plots / "losses.png"] and not (plots / "convergence.png").exists()
    assert any("no convergence plot" in n for n in without.notes) and without.speedup.empty
    with_evals = report(_write_evals(exp), plot_dir=plots, console=_console())
    assert with_evals.plots == [plots / "losses.png", plots / "convergence.png"]
    png = (plots / "convergence.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


@pytest.mark.parametrize("fmt", ["table", "markdown", "latex", "csv"])
def test_every_format_has_the_new_sections(exp: Path, fmt: str):
    text = report(_write_evals(exp), fmt=fmt, console=_console()).text
    if fmt == "csv":
        header = text.splitlines()[0].split(",")
        for col in ("boundary_AP", "boundary_AP75_std", "segm_AP_diff", "segm_AP_diff_lo", "segm_AP_diff_hi",
                    "segm_AP_p", "segm_AP_sig", "val_loss_mask_sig", "segm_APl_n", "segm_AP_speedup",
                    "segm_AP_speedup_lo", "segm_AP_speedup_hi", "segm_AP_speedup_reached",
                    "val_loss_mask_speedup"):
            assert col in header, col
        return
    for piece in ("bAP50", "Difference to baseline (95 % CI, Welch p", "p=0.07 ns", "Speed-up",
                  "never reaches (reached by 2/3 seeds)"):
        assert piece in text, piece
    assert ("1.73$\\times$ [1.16, 2.31]" if fmt == "latex" else "1.73× [1.16, 2.31]") in text


# --------------------------------------------------------------------------------------------- robustness
def test_nan_seed_counts_per_metric(tmp_path: Path):
    exp = _write_runs(tmp_path / "nan", _with("segm_APl", {"baseline": (24.0, 25.0, 26.0),
                                                           "sobel-p2": (29.0, math.nan, 31.0)}))
    result = report(exp, fmt="markdown", console=_console())
    assert result.summary.at["sobel-p2", "segm_APl_n"] == 2 and result.summary.at["sobel-p2", "n"] == 3
    assert result.summary.at["sobel-p2", "segm_AP_n"] == 3
    assert "- sobel-p2: segm_APl n=2 of 3 (seed 1 NaN)" in result.text  # footnote
    assert any("sobel-p2: segm_APl n=2 of 3 (seed 1 NaN)" in n for n in result.notes)
    sig = result.significance.set_index(["config", "metric"])
    assert sig.at[("sobel-p2", "segm_APl"), "n"] == 2
    # boundary AP: no seed has one (CSVs from before it existed) → n/a, not a footnote
    assert not any("boundary" in n for n in result.notes)
    back = pd.read_csv(io.StringIO(report(exp, fmt="csv", console=_console()).text)).set_index("config")
    assert back.at["sobel-p2", "segm_APl_n"] == 2 and back.at["baseline", "segm_APl_n"] == 3
    for fmt in ("table", "latex"):
        assert "segm_APl n=2 of 3 (seed 1 NaN)" in report(exp, fmt=fmt, console=_console()).text


def test_torn_curves_are_dropped_with_a_note(exp: Path, tmp_path: Path):
    from edgercnn.reporting.report import clean_curves

    losses = exp / "sobel-p2" / "seed-1-losses.csv"
    lines = losses.read_text().splitlines()
    lines.insert(10, "garbage,x,y,z,w")  # non-numeric garbage inside
    losses.write_text("\n".join(lines) + "\n51,1\n")  # a torn last line: columns missing
    _write_evals(exp)
    evals = exp / "baseline" / "seed-0-evals.csv"
    evals.write_text(evals.read_text() + "500,31")  # a torn last evaluation
    result = report(exp, plot_dir=tmp_path / "plots", console=_console())
    assert result.plots == [tmp_path / "plots" / "losses.png", tmp_path / "plots" / "convergence.png"]
    assert any(str(losses) in n and "dropped 2" in n for n in result.notes)
    assert any(str(evals) in n and "dropped 1" in n for n in result.notes)
    # the torn evaluation is not the baseline's final one: the target is still 30
    assert result.speedup.set_index(["config", "metric"]).at[("sobel-p2", "segm_AP"), "target"] == pytest.approx(30)
    # a NaN inside a file (not its last row) is kept: an evaluation may lack a metric
    curves = pd.DataFrame({"config": "a", "seed": 0, "step": [1, 2, 3], "x": [1.0, math.nan, 3.0],
                           "y": [1.0, 2.0, 3.0]})
    clean, dropped = clean_curves(curves, ("x", "y"))
    assert len(clean) == 3 and dropped == {}


def test_unreadable_curve_file_does_not_fail_the_report(exp: Path):
    bad = exp / "baseline" / "seed-2-losses.csv"
    bad.write_text(bad.read_text() + "1,2,3,4,5,6,7,8\n")  # more fields than the header: unparseable
    result = report(exp, fmt="markdown", console=_console())
    assert result.plots == [] and any(str(bad) in n for n in result.notes)
    assert "| baseline | 3 | 19.0 ± 1.00 |" in result.text


# ---- report: seeds that are not one config --------------------------------------------------------------------------


def _seed_csv(folder: Path, seed: int, **cols):
    folder.mkdir(parents=True, exist_ok=True)
    row = {"experiment": folder.parent.name, "config": folder.name, "seed": seed, "filters": "sobel", "p": 2.0,
           "steps": 50, "data": "data/shapes", "data_fingerprint": "abc", "segm_AP": 20.0 + seed, "bbox_AP": 30.0}
    row.update(cols)
    pd.DataFrame([row]).to_csv(folder / f"seed-{seed}.csv", index=False)


@pytest.mark.parametrize("column,value", [("experiment", "other"), ("data_fingerprint", "def"), ("steps", 99),
                                          ("p", 3.0)])
def test_report_refuses_seeds_that_differ(tmp_path, column, value):
    exp = tmp_path / "results" / "demo"
    _seed_csv(exp / "sobel-p2", 0)
    _seed_csv(exp / "sobel-p2", 1)
    _seed_csv(exp / "sobel-p2", 2, **{column: value})
    line = one_line_error(invoke("report", exp), column)
    assert "sobel-p2" in line and "seed(s) 0, 1" in line and "seed(s) 2" in line
    result = invoke("report", exp, "--split-mixed", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert f"{column}={value}" in result.output


def test_report_pools_seeds_that_differ_only_in_where_they_ran(tmp_path):
    exp = tmp_path / "results" / "demo"
    _seed_csv(exp / "sobel-p2", 0, device="cpu", data="/a/shapes")
    _seed_csv(exp / "sobel-p2", 1, device="cuda", data="/b/shapes")  # same fingerprint, other path
    result = invoke("report", exp, "--format", "csv")
    assert result.exit_code == 0, result.output


def test_compare_csv_with_two_rows_for_one_config_is_one_line(tmp_path):
    exp = tmp_path / "results" / "demo"
    _seed_csv(exp / "sobel-p2", 0)
    ref = tmp_path / "ref.csv"
    ref.write_text("config,segm_AP\nsobel-p2,20\nsobel-p2,21\n")
    one_line_error(invoke("report", exp, "--compare", ref), "more than one row")


# ---- report: names are text, not markup -----------------------------------------------------------------------------


def test_split_mixed_table_keeps_the_bracketed_group_names(tmp_path):
    exp = tmp_path / "results" / "demo"
    for seed, experiment in ((0, "demo"), (1, "demo"), (2, "other")):
        folder = exp / "baseline"
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame([{"experiment": experiment, "config": "baseline", "seed": seed, "filters": "", "p": 2.0,
                       "steps": 50, "data": "data/shapes", "data_fingerprint": "abc", "segm_AP": 20.0 + seed,
                       "bbox_AP": 30.0}]).to_csv(folder / f"seed-{seed}.csv", index=False)
    result = invoke("report", exp, "--split-mixed")
    assert result.exit_code == 0, result.output
    assert "baseline [experiment=demo]" in result.output and "baseline [experiment=other]" in result.output


# ---- an unwritable --plots folder -----------------------------------------------------------------------------------


def test_read_only_plots_folder_for_report(run_copy, monkeypatch, tmp_path):
    _, run = run_copy
    assert invoke("eval", run.path).exit_code == 0  # a seed result to report
    plots = tmp_path / "plots"
    plots.mkdir()
    refuse_writes_in(monkeypatch, plots)
    out = one_line_error(invoke("report", tmp_path / "results" / "tiny", "--plots", plots), str(plots))
    assert "Read-only" in out
