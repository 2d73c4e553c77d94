"""edgercnn.report on hand-made per-seed CSVs: numbers against pandas and by hand, every format, plots,
the paper's reference CSVs, and the experiment scripts (dry run)."""

from __future__ import annotations

import io
import math
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from edgercnn.errors import EdgeRCNNError
from edgercnn.report import (
    SEGM_METRICS,
    add_relative,
    load_reference,
    load_runs,
    report,
    summarize,
)

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "results" / "paper"

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
    assert "| config | n | AP | AP50 | AP75 | APs | APm | APl | val L_Mask |" in text
    assert "| baseline | 3 | 19.0 ± 1.00 |" in text


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


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "scripts").glob("run_*.sh")))
def test_scripts_dry_run(script: str, tmp_path: Path):
    env = os.environ | {"DRY_RUN": "1", "RESULTS_DIR": str(tmp_path), "SEEDS": "0 1 2"}
    done = tmp_path / "table1_filters" / "baseline"  # a finished seed is skipped
    done.mkdir(parents=True)
    (done / "seed-1.csv").write_text("x\n")
    run = subprocess.run(["bash", str(ROOT / "scripts" / script)], env=env, capture_output=True, text=True,
                         check=True)
    trains = [line for line in run.stdout.splitlines() if line.startswith("+ edgercnn train")]
    assert trains and all("--seed" in t and "--device cuda" in t for t in trains)
    assert run.stdout.rstrip().splitlines()[-1].startswith("+ edgercnn report")
    if script == "run_table1_filters.sh":
        assert len(trains) == 7 * 3 - 1
        assert "skip table1_filters/baseline seed 1" in run.stdout


def test_configs_pair_with_the_baseline_of_their_suffix():
    from edgercnn.report import add_relative, pair_baselines

    configs = ["baseline", "sobel-p2", "baseline-m56", "sobel-p2-m56", "sobel-p2-640k"]
    pairs = pair_baselines(configs, "baseline")
    assert pairs["sobel-p2-m56"] == "baseline-m56" and pairs["baseline-m56"] == "baseline-m56"
    assert pairs["sobel-p2"] == "baseline" and pairs["sobel-p2-640k"] == "baseline"  # no baseline-640k here
    assert set(pair_baselines(configs, "baseline", fixed=True).values()) == {"baseline"}
    summary = pd.DataFrame({"segm_AP": [20.0, 22.0, 10.0, 12.0, 30.0]}, index=configs)
    rel = add_relative(summary, pairs, metrics=("segm_AP",))["segm_AP_rel"]
    assert rel["sobel-p2-m56"] == pytest.approx(20.0)  # (12 − 10) / 10, against baseline-m56
    assert rel["sobel-p2"] == pytest.approx(10.0) and rel["baseline-m56"] == 0.0
