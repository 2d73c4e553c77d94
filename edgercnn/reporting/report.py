"""Per-seed result CSVs → mean ± std tables (like the paper's Table 1), relative changes, significance tests,
speed-ups, loss and convergence plots.

Input: ``<exp_dir>/<config>/seed-<n>.csv`` (one row of config columns and metrics each), ``seed-<n>-losses.csv``
(per-step losses) and, when training evaluated as it went, ``seed-<n>-evals.csv`` (metrics per evaluation), as
written by ``edgercnn train``/``eval``.

The summary DataFrame (index ``config``) has, for every metric ``m``: ``m`` = mean over seeds, ``m_std`` =
sample std (ddof=1; NaN with one seed), ``m_n`` = seeds with a value (NaN values are not counted), ``m_rel`` =
% change of the mean relative to the baseline's mean; plus ``n`` (seed count), ``segm_avg_rel`` /
``bbox_avg_rel`` (mean of the six COCO relative changes, the paper's headline "8.1%", NaN metrics skipped). Its
``segm_AP``/``segm_AP_std`` naming equals the reference CSVs' under results/paper/, so ``--format csv`` output
can itself be used as a ``--compare`` file.

Beside it, in long format: ``significance`` (each config against its baseline per metric: difference of the
means, its 95 % CI and Welch's p, ``stats.welch``) and ``speedup`` (baseline steps / steps to reach the
baseline's final mean, per evals metric, ``stats.speedup``).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from edgercnn.config.values import is_none
from edgercnn.reporting import results, stats
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.evaluation.metrics import (BBOX_METRICS, BOUNDARY_METRICS, HEADLINE_METRICS, LOSS_METRICS, METRICS,
                                         SEGM_METRICS, TRAINING_METRICS, higher_is_better, presentation,
                                         with_direction)
from edgercnn.reporting.plots import LOSS_PANELS, plot_convergence, plot_losses

# LOSS_METRICS: lower is better; their relative change is reported with the same sign convention (new - base).
FORMATS = ("table", "markdown", "latex", "csv")
#: Boundary APs shown in the main table next to the six segm APs (the csv output has all six).
TABLE_BOUNDARY = BOUNDARY_METRICS[:3]
#: Rows of the significance table in the text formats (the csv output tests every metric).
SIG_METRICS = SEGM_METRICS + TABLE_BOUNDARY + BBOX_METRICS[:1] + LOSS_METRICS
#: A difference is significant when Welch's p is below this (and there is a p at all).
ALPHA = 0.05
#: Metrics of seed-<n>-evals.csv (the convergence curves).
EVAL_METRICS = TRAINING_METRICS
#: Speed-up per evals metric: {metric: higher is better}.
SPEEDUP_METRICS = {m: higher_is_better(m) for m in HEADLINE_METRICS}
SIG_COLUMNS = ("config", "baseline", "metric", "diff", "ci_low", "ci_high", "p", "n", "n_baseline", "significant")
SPEEDUP_COLUMNS = ("config", "baseline", "metric", "target", "speedup", "ci_low", "ci_high", "n", "n_reached")


@dataclass
class ReportResult:
    """What ``report`` produced: the summary table, the rendered text, and the PNGs it wrote.

    ``significance`` and ``speedup`` are long format (one row per config and metric, ``SIG_COLUMNS`` /
    ``SPEEDUP_COLUMNS``; see ``significance`` and ``speedups``), empty without a baseline or evals.
    """

    summary: pd.DataFrame
    text: str
    plots: list[Path] = field(default_factory=list)
    baseline: str | None = None
    reference: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    significance: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SIG_COLUMNS))
    speedup: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SPEEDUP_COLUMNS))


# --------------------------------------------------------------------------------------------- loading
def load_runs(exp_dir: Path) -> pd.DataFrame:
    """All per-seed result rows of ``exp_dir`` (see ``edgercnn.reporting.results.load_runs``), every metric column present."""
    return results.load_runs(exp_dir, METRICS)


def clean_curves(curves: pd.DataFrame, columns: tuple[str, ...]) -> tuple[pd.DataFrame, dict[tuple[str, int], int]]:
    """``curves`` (long format, as from ``load_curves``) without the rows a torn write leaves, and the number of
    rows dropped per (config, seed).

    Dropped: a missing or non-numeric step, a non-numeric value, a row without any value, and a file's last row
    with a value missing (a truncated line such as ``12,0.4``). A NaN value inside a file is kept (e.g. an
    evaluation without a boundary AP). The result has numeric columns, sorted by config, seed and step.
    """
    df = curves.reset_index(drop=True)
    if df.empty:
        return df, {}
    num = {c: pd.to_numeric(df[c], errors="coerce") for c in ("step", *columns)}
    garbage = pd.concat([num[c].isna() & df[c].notna() for c in num], axis=1).any(axis=1)
    missing = pd.concat([num[c].isna() for c in columns], axis=1)
    last = ~df.duplicated(["config", "seed"], keep="last")
    bad = garbage | num["step"].isna() | missing.all(axis=1) | (last & missing.any(axis=1))
    dropped = {(str(c), int(s)): int(k) for (c, s), k in df[bad].groupby(["config", "seed"]).size().items()}
    out = df.assign(**num)[~bad].sort_values(["config", "seed", "step"], kind="stable").reset_index(drop=True)
    return out, dropped


def _tolerant_curves(exp_dir: Path, kind: str, columns: tuple[str, ...], notes: list[str]) -> pd.DataFrame:
    """``load_curves`` + ``clean_curves``, a note per file with dropped rows; an unreadable file leaves the
    report without that kind of curve (and a note naming it) rather than failing it."""
    try:
        raw = results.load_curves(exp_dir, kind, columns)
    except EdgeRCNNError as err:
        notes.append(f"note: {err}; no {kind} curves in this report")
        return pd.DataFrame(columns=["config", "seed", "step", *columns])
    curves, dropped = clean_curves(raw, columns)
    for (config, seed), k in dropped.items():
        path = getattr(results.SeedResult(exp_dir.parent, exp_dir.name, config, seed), kind)
        notes.append(f"note: {path}: dropped {k} incomplete or non-numeric row(s) (a torn write?); not plotted")
    return curves


def load_reference(path: Path) -> pd.DataFrame:
    """A reference CSV (e.g. results/paper/table1_filters.csv): ``config`` + metric and ``<metric>_std``
    columns, indexed by config. ``<metric>_mean`` is accepted for the mean; unknown columns are kept."""
    path = Path(path)
    if not path.is_file():
        raise EdgeRCNNError(f"{path}: reference CSV not found; pass e.g. --compare results/paper/table1_filters.csv")
    ref = results.read_csv(path)
    if "config" not in ref:
        raise EdgeRCNNError(f"{path}: no 'config' column; the reference CSV needs config, segm_AP, "
                            "segm_AP_std, ... (see results/paper/)")
    ref = ref.rename(columns={f"{m}_mean": m for m in METRICS})
    for m in METRICS:
        for col in (m, f"{m}_std"):
            ref[col] = pd.to_numeric(ref[col], errors="coerce") if col in ref else math.nan
    ref["config"] = ref["config"].astype(str)
    twice = sorted(set(ref["config"][ref["config"].duplicated()]))
    if twice:
        raise EdgeRCNNError(f"{path}: config(s) {', '.join(twice)} have more than one row; a reference CSV has one "
                            "row per config (mean and <metric>_std columns): keep one")
    return ref.set_index("config")


# --------------------------------------------------------------------------------------------- numbers
def summarize(runs: pd.DataFrame, metrics: tuple[str, ...] = METRICS) -> pd.DataFrame:
    """Per config: ``n`` (seed count), and per metric the mean (column ``m``) and sample std (``m_std``).

    std uses ddof=1 (pandas' default; the paper does not say which it used) and is NaN for a config with
    one seed. NaN metric values (e.g. APs on data without small objects) are skipped by mean/std.
    """
    grouped = runs.groupby("config", sort=True)
    out = pd.DataFrame({"n": grouped.size()})
    for m in metrics:
        out[m] = grouped[m].mean()
        out[f"{m}_std"] = grouped[m].std(ddof=1)
        out[f"{m}_n"] = grouped[m].count()
    return out


def nan_seeds(runs: pd.DataFrame, metrics: tuple[str, ...] = METRICS) -> list[str]:
    """One line per config and metric that some but not all of its seeds lack, e.g. ``sobel-p2: segm_APl n=2
    of 3 (seed 1 NaN)``: that metric's mean, std and test rest on fewer seeds than the config's n says.
    A metric no seed has (e.g. boundary AP in old CSVs) is shown as n/a instead and not listed."""
    lines = []
    for config, group in runs.groupby("config", sort=True):
        for m in metrics:
            nan = group[m].isna()
            if 0 < nan.sum() < len(group):
                seeds = ", ".join(str(s) for s in group.loc[nan, "seed"])
                lines.append(f"{config}: {m} n={len(group) - nan.sum()} of {len(group)} "
                             f"(seed{'s' if nan.sum() > 1 else ''} {seeds} NaN)")
    return lines


def find_baseline(configs: list[str], runs: pd.DataFrame | None = None, baseline: str | None = None) -> str | None:
    """The baseline config: ``baseline`` if given (must exist), else the one named ``baseline``, else the one
    whose ``filters`` column is ``none``; None when there is none."""
    if baseline is not None:
        if baseline not in configs:
            raise EdgeRCNNError(f"--baseline {baseline}: no such config; choose one of {', '.join(configs)}")
        return baseline
    if "baseline" in configs:
        return "baseline"
    if runs is not None and "filters" in runs:
        found = sorted(runs.loc[runs["filters"].map(is_none), "config"].unique())
        if found:
            return found[0]
    return None


def pair_baselines(configs: list[str], base: str | None, fixed: bool = False) -> dict[str, str]:
    """Each config's baseline. Experiments with several baselines (Table 3/5: ``baseline`` and ``baseline-m56``;
    Table 4: ``baseline-320k``, ...) compare ``X-m56`` with ``baseline-m56``: the baseline whose suffix the
    config name ends with (longest wins), else ``base``. ``fixed`` (an explicit --baseline) pairs all with base."""
    if base is None:
        return {}
    suffixes = {} if fixed else {c[len("baseline"):]: c for c in configs
                                 if c.startswith("baseline") and c != "baseline"}
    pairs = {}
    for c in configs:
        match = [sfx for sfx in suffixes if c.endswith(sfx)]
        pairs[c] = suffixes[max(match, key=len)] if match else base
    return pairs


def add_relative(summary: pd.DataFrame, baseline: str | dict[str, str] | None,
                 metrics: tuple[str, ...] = METRICS) -> pd.DataFrame:
    """Return ``summary`` with ``<m>_rel`` = 100 · (mean − baseline mean) / baseline mean for every metric,
    and ``segm_avg_rel`` / ``bbox_avg_rel`` = mean of the six COCO relative changes (NaN ones skipped).
    ``baseline``: one config for all rows, or a {config: its baseline} mapping (see ``pair_baselines``).

    The sign is the same for every metric: positive = larger than the baseline. For APs that is better;
    for ``val_loss_mask`` (lower is better) a negative change is the improvement. All NaN without a baseline.
    """
    out = summary.copy()
    if isinstance(baseline, str):
        baseline = {c: baseline for c in out.index}
    for m in metrics:
        if not baseline or m not in out:
            out[f"{m}_rel"] = math.nan
            continue
        base = pd.Series([out.at[baseline[c], m] if c in baseline else math.nan for c in out.index], index=out.index)
        out[f"{m}_rel"] = (out[m] - base) / base.where(base != 0) * 100.0
    for prefix, group in (("segm", SEGM_METRICS), ("bbox", BBOX_METRICS)):
        cols = [f"{m}_rel" for m in group if f"{m}_rel" in out]
        out[f"{prefix}_avg_rel"] = out[cols].mean(axis=1, skipna=True) if cols else math.nan
    return out


def significance(runs: pd.DataFrame, pairs: dict[str, str], metrics: tuple[str, ...] = METRICS,
                 confidence: float = 0.95) -> pd.DataFrame:
    """Each config of ``pairs`` ({config: its baseline}; baselines paired with themselves are skipped) against
    its baseline, per metric, by Welch's t-test over seeds (``stats.welch``; NaN seeds dropped).

    Columns ``SIG_COLUMNS``: ``diff`` = config mean − baseline mean, ``ci_low``/``ci_high`` its ``confidence``
    interval, two-sided ``p``, ``n``/``n_baseline`` seeds used, ``significant`` = p < ALPHA (False when there is
    no test, e.g. one seed or no spread). One row per config and metric, in ``pairs`` order.
    """
    by_config = dict(tuple(runs.groupby("config", sort=False)))
    rows = []
    for config, base in pairs.items():
        if config == base:
            continue
        for m in metrics:
            w = stats.welch(by_config[config][m], by_config[base][m], confidence)
            rows.append({"config": config, "baseline": base, "metric": m, "diff": w["diff"], "ci_low": w["ci_low"],
                         "ci_high": w["ci_high"], "p": w["p"], "n": w["n_a"], "n_baseline": w["n_b"],
                         "significant": bool(w["p"] < ALPHA)})
    return pd.DataFrame(rows, columns=list(SIG_COLUMNS))


def seed_curves(evals: pd.DataFrame, config: str, metric: str) -> list[tuple]:
    """``config``'s (steps, values) of ``metric`` per seed, NaN evaluations left out, seeds without any skipped."""
    df = evals[evals["config"] == config].dropna(subset=[metric]).sort_values(["seed", "step"], kind="stable")
    return [(g["step"].to_numpy(float), g[metric].to_numpy(float)) for _, g in df.groupby("seed", sort=True)]


def speedups(evals: pd.DataFrame, pairs: dict[str, str], metrics: dict[str, bool] = SPEEDUP_METRICS,
             confidence: float = 0.95) -> pd.DataFrame:
    """The paper's "faster training" per config of ``pairs`` and evals metric (``stats.speedup``): the
    baseline's steps / the steps the config needs to reach the baseline's final mean value.

    Columns ``SPEEDUP_COLUMNS``: ``target`` (the baseline's final mean), ``speedup`` (mean over seeds) and its
    Student-t ``ci_low``/``ci_high``, ``n`` seeds, ``n_reached`` of them reaching the target; ``speedup`` is NaN
    unless all do (report "never reaches" then). ``metrics``: {metric: higher is better}. A config or baseline
    without evaluations of a metric has no row for it.
    """
    rows = []
    for config, base in pairs.items():
        if config == base:
            continue
        for m, higher in metrics.items():
            base_curves, curves = seed_curves(evals, base, m), seed_curves(evals, config, m)
            if not base_curves or not curves:
                continue
            out = stats.speedup(base_curves, curves, higher_is_better=higher, confidence=confidence)
            rows.append({"config": config, "baseline": base, "metric": m, "target": out["target"],
                         "speedup": out["mean"], "ci_low": out["ci_low"], "ci_high": out["ci_high"], "n": out["n"],
                         "n_reached": out["n_reached"]})
    return pd.DataFrame(rows, columns=list(SPEEDUP_COLUMNS))


def order_configs(configs, baseline: str | None) -> list[str]:
    """Sorted, with the baseline last (as in the paper's tables)."""
    rest = sorted(c for c in configs if c != baseline)
    return rest + ([baseline] if baseline in configs else [])


# --------------------------------------------------------------------------------------------- text cells
def _isnan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x)) or pd.isna(x)


def fmt_mean_std(mean, std, digits: int = 1, std_digits: int = 2, pm: str = "±") -> str:
    """``20.2 ± 0.17`` like the paper; only the mean when std is NaN (one seed); ``n/a`` for a NaN mean."""
    if _isnan(mean):
        return "n/a"
    if _isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} {pm} {std:.{std_digits}f}"


def fmt_rel(value) -> str:
    return "n/a" if _isnan(value) else f"{value:+.1f}%"


def fmt_p(p) -> str:
    """``p=0.093``, ``p<0.001`` or ``p=n/a`` (no test)."""
    if _isnan(p):
        return "p=n/a"
    if p < 0.001:
        return "p<0.001"
    text = f"{p:.2g}"
    return f"p={f'{p:.3g}' if p < ALPHA and float(text) >= ALPHA else text}"  # 0.0496 is not "0.05"


def fmt_diff(diff, low, high, p, digits: int = 1) -> str:
    """``+1.3 [-0.4, +3.0] p=0.09 ns``: difference, its CI, Welch's p, and ``ns`` unless p < ALPHA."""
    if _isnan(diff):
        return "n/a"
    ci = "" if _isnan(low) else f" [{low:+.{digits}f}, {high:+.{digits}f}]"
    return f"{diff:+.{digits}f}{ci} {fmt_p(p)}" + ("" if not _isnan(p) and p < ALPHA else " ns")


def fmt_speedup(mean, low, high, n, n_reached) -> str:
    """``1.42× [1.10, 1.74]``; ``never reaches (reached by 1/3 seeds)`` when a seed does not reach the target."""
    if n_reached < n:
        return f"never reaches (reached by {int(n_reached)}/{int(n)} seeds)"
    if _isnan(mean):
        return "n/a"
    return f"{mean:.2f}×" + ("" if _isnan(low) else f" [{low:.2f}, {high:.2f}]")


def _label(m: str) -> str:
    """Row title of a metric: the paper's short name (``box AP`` for bbox), a reminder where lower is better."""
    return with_direction(presentation(m).short, m)


def _metric_cell(row: pd.Series, m: str, pm: str = "±") -> str:
    p = presentation(m)
    return fmt_mean_std(row.get(m), row.get(f"{m}_std"), digits=p.digits, std_digits=p.std_digits, pm=pm)


def metric_rows(summary: pd.DataFrame, configs: list[str], pm: str = "±", with_loss: bool = True,
                with_boundary: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the Table-1 layout: config, n, six segm APs (mean ± std)[, bAP, bAP50, bAP75]
    [, val L_Mask]."""
    has_n = "n" in summary
    metrics = SEGM_METRICS + (TABLE_BOUNDARY if with_boundary else ()) + (LOSS_METRICS if with_loss else ())
    header = ["config"] + (["n"] if has_n else []) + [presentation(m).short for m in metrics]
    rows = []
    for c in configs:
        row = summary.loc[c]
        n = [str(int(row["n"])) if not _isnan(row["n"]) else "?"] if has_n else []
        rows.append([c] + n + [_metric_cell(row, m, pm) for m in metrics])
    return header, rows


def relative_rows(summary: pd.DataFrame, configs: list[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the change-vs-baseline table: six segm APs, their average, box AP, val L_Mask."""
    header = (["config"] + [presentation(m).short for m in SEGM_METRICS]
              + ["avg (6 segm)", presentation(BBOX_METRICS[0]).short] + [_label(m) for m in LOSS_METRICS])
    rows = []
    for c in configs:
        row = summary.loc[c]
        rows.append([c] + [fmt_rel(row[f"{m}_rel"]) for m in SEGM_METRICS]
                    + [fmt_rel(row["segm_avg_rel"]), fmt_rel(row[f"{BBOX_METRICS[0]}_rel"])]
                    + [fmt_rel(row[f"{m}_rel"]) for m in LOSS_METRICS])
    return header, rows


def significance_rows(sig: pd.DataFrame, metrics: tuple[str, ...] = SIG_METRICS) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the significance table: one row per metric, one column per tested config."""
    configs = list(dict.fromkeys(sig["config"]))
    cells = sig.set_index(["config", "metric"])
    header = ["metric"] + [f"{c} vs {cells.at[(c, metrics[0]), 'baseline']}" for c in configs]
    rows = []
    for m in metrics:
        digits = presentation(m).digits
        rows.append([_label(m)] + [fmt_diff(*cells.loc[(c, m), ["diff", "ci_low", "ci_high", "p"]], digits=digits)
                                   for c in configs])
    return header, rows


def speedup_rows(speed: pd.DataFrame, configs: list[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the speed-up table: one row per config that has one, one column per evals metric."""
    cells = speed.set_index(["config", "metric"])
    header = ["config", "vs"] + [_label(m) for m in SPEEDUP_METRICS]
    rows = []
    for c in (c for c in configs if c in set(speed["config"])):
        base = speed.loc[speed["config"] == c, "baseline"].iloc[0]
        rows.append([c, base] + [fmt_speedup(*cells.loc[(c, m), ["speedup", "ci_low", "ci_high", "n", "n_reached"]])
                                 if (c, m) in cells.index else "n/a" for m in SPEEDUP_METRICS])
    return header, rows


# --------------------------------------------------------------------------------------------- renderers
def _sections(summary, configs, baseline, reference, ref_configs, ref_name, sig=None, speed=None):
    """(title, header, rows) for every table of the report, shared by all text formats."""
    seeds = "n = seeds; mean ± sample std (ddof=1)"
    out = [(f"Mask AP (COCO segm, 0-100), Boundary AP (bAP) and validation mask loss; {seeds}",
            *metric_rows(summary, configs))]
    if baseline is not None:
        paired = sorted({b for b in pair_baselines(configs, baseline).values()} - {baseline})
        also = f"; configs ending like {', '.join(paired)} against those" if paired else ""
        out.append((f"Change relative to '{baseline}'{also} (%, of the means; + = larger value)",
                    *relative_rows(summary, configs)))
    if sig is not None and not sig.empty:
        out.append((f"Difference to baseline (95 % CI, Welch p; ns = not significant, p >= {ALPHA} or no test)",
                    *significance_rows(sig)))
    if speed is not None and not speed.empty:
        out.append(("Speed-up: baseline's steps / steps to reach the baseline's final mean (interpolated between "
                    "evaluations); mean over seeds [95 % CI]", *speedup_rows(speed, configs)))
    if reference is not None:
        # the paper's tables have no validation mask loss or boundary AP: leave those columns out when empty
        h, r = metric_rows(reference, ref_configs, with_loss=bool(reference[list(LOSS_METRICS)].notna().any().any()),
                           with_boundary=bool(reference[list(TABLE_BOUNDARY)].notna().any().any()))
        if "segm_avg_rel" in reference:
            h = h + ["avg Δ (6 segm)"]
            r = [row + [fmt_rel(reference.at[c, "segm_avg_rel"])] for row, c in zip(r, ref_configs)]
        out.append((f"Reference: {ref_name} (not measured by us)", h, r))
    return out


def render_rich(sections, footnotes=()) -> Group:
    """The sections as rich tables; every string as plain Text, never markup (a config named ``x [p=3]`` by
    ``--split-mixed`` would otherwise lose its bracket as a style tag)."""
    tables = []
    for title, header, rows in sections:
        t = Table(title=Text(title), title_justify="left", header_style="bold")
        for i, h in enumerate(header):
            t.add_column(Text(h), justify="left" if i == 0 else "right", no_wrap=i == 0)
        for r in rows:
            t.add_row(*(Text(c) for c in r))
        tables.append(t)
    tables += [Text(line) for line in footnotes]
    return Group(*tables)


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


def render_markdown(sections, footnotes=()) -> str:
    parts = []
    for title, header, rows in sections:
        lines = [f"**{_md_escape(title)}**", "", "| " + " | ".join(map(_md_escape, header)) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(map(_md_escape, r)) + " |" for r in rows]
        parts.append("\n".join(lines))
    if footnotes:
        parts.append("\n".join(f"- {_md_escape(line)}" for line in footnotes))
    return "\n\n".join(parts) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex(s: str) -> str:
    s = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in s)
    return s.replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace("×", r"$\times$")


def render_latex(sections, footnotes=()) -> str:
    parts = []
    for title, header, rows in sections:
        lines = [f"% {title}", r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\hline",
                 " & ".join(_tex(h) for h in header) + r" \\", r"\hline"]
        lines += [" & ".join(_tex(c) for c in r) + r" \\" for r in rows]
        lines += [r"\hline", r"\end{tabular}"]
        parts.append("\n".join(lines))
    if footnotes:
        parts.append("\n".join(f"% {line}" for line in footnotes))
    return "\n\n".join(parts) + "\n"


def _wide(long: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """A long (config, metric, ...) table as one row per config: ``<metric><suffix>`` from each
    {column: suffix} of ``columns``."""
    cells: dict[str, dict[str, object]] = {}
    for row in long.to_dict("records"):
        cells.setdefault(row["config"], {}).update({f"{row['metric']}{sfx}": row[col] for col, sfx in columns.items()})
    return pd.DataFrame.from_dict(cells, orient="index") if cells else pd.DataFrame(index=pd.Index([], dtype=object))


def render_csv(summary: pd.DataFrame, configs: list[str], reference: pd.DataFrame | None = None,
               sig: pd.DataFrame | None = None, speed: pd.DataFrame | None = None) -> str:
    """One row per config: config, n, baseline (the one it is tested against; empty for baselines), then per
    metric mean, std, n (seeds with a value), rel, diff, diff_lo, diff_hi (95 % CI), p (Welch), sig (p < 0.05);
    the averages; per evals metric speedup, speedup_lo, speedup_hi, speedup_reached (seeds reaching the
    baseline's final mean), speedup_n; ``ref_*`` columns (the reference's mean and std, matched on config)
    when a reference is given."""
    sig = sig if sig is not None else pd.DataFrame(columns=list(SIG_COLUMNS))
    speed = speed if speed is not None else pd.DataFrame(columns=list(SPEEDUP_COLUMNS))
    sig_cols = {"diff": "_diff", "ci_low": "_diff_lo", "ci_high": "_diff_hi", "p": "_p", "significant": "_sig"}
    speed_cols = {"speedup": "_speedup", "ci_low": "_speedup_lo", "ci_high": "_speedup_hi",
                  "n_reached": "_speedup_reached", "n": "_speedup_n"}
    cols = (["n"] + [f"{m}{sfx}" for m in METRICS for sfx in ("", "_std", "_n", "_rel", *sig_cols.values())]
            + ["segm_avg_rel", "bbox_avg_rel"] + [f"{m}{sfx}" for m in SPEEDUP_METRICS for sfx in speed_cols.values()])
    out = summary.loc[configs].join([_wide(sig, sig_cols), _wide(speed, speed_cols)]).reindex(columns=cols)
    out.insert(1, "baseline", sig.groupby("config")["baseline"].first().reindex(configs))
    if reference is not None:
        ref_cols = [c for m in SEGM_METRICS for c in (m, f"{m}_std")]
        out = out.join(reference[ref_cols].add_prefix("ref_"), how="left")
    return out.reset_index().rename(columns={"index": "config"}).to_csv(index=False, float_format="%.6g")


def _plot_pairs(curves: pd.DataFrame, base: str | None, fixed: bool) -> tuple[list[str], dict[str, str]]:
    """The configs of ``curves`` in table order, and {config: its baseline} among them, for the plots."""
    configs = order_configs(set(curves["config"]), base)
    pairs = {c: b for c, b in pair_baselines(configs, base, fixed=fixed).items() if b in configs}
    return configs, pairs


# --------------------------------------------------------------------------------------------- entry point
def report(
    exp_dir: Path,
    *,
    fmt: str = "table",
    compare: Path | None = None,
    baseline: str | None = None,
    plot_dir: Path | None = None,
    console: Console | None = None,
    split_mixed: bool = False,
) -> ReportResult:
    """Summarise ``exp_dir`` (results/<experiment>): print the tables to ``console`` (a new stdout Console
    when None) in ``fmt`` (table | markdown | latex | csv), write ``losses.png`` (and ``convergence.png``) to
    ``plot_dir`` (default ``exp_dir``) when loss (evals) CSVs exist, and return the numbers, the text and the
    plot paths.

    Every config is tested against its baseline (``significance``), and with evals CSVs its speed-up is
    measured (``speedups``). Seeds with a NaN metric and torn curve rows are listed in the notes.

    ``compare``: a reference CSV (results/paper/*.csv) shown beside ours, matched on ``config``; its own
    relative changes use its row named like our baseline (or ``baseline``).

    Seeds of one config that differ in experiment, dataset, steps or config (``results.check_pooled``) are an
    error, or with ``split_mixed`` reported as separate configs.
    """
    if fmt not in FORMATS:
        raise EdgeRCNNError(f"--format {fmt}: unknown; choose one of {', '.join(FORMATS)}")
    exp_dir = Path(exp_dir)
    runs = results.check_pooled(load_runs(exp_dir), split=split_mixed)
    summary = summarize(runs)
    configs = list(summary.index)
    base = find_baseline(configs, runs, baseline)
    pairs = pair_baselines(configs, base, fixed=baseline is not None)
    summary = add_relative(summary, pairs)
    order = order_configs(configs, base)
    tested = {c: pairs[c] for c in order if c in pairs}
    sig = significance(runs, tested)
    footnotes = nan_seeds(runs)

    reference = ref_order = None
    notes: list[str] = [f"note: {line}: that metric's mean, std and test use the other seeds" for line in footnotes]
    if compare is not None:
        reference = load_reference(compare)
        ref_base = base if base in reference.index else ("baseline" if "baseline" in reference.index else None)
        reference = add_relative(reference, ref_base)
        matched = [c for c in order if c in reference.index]
        if not matched:
            notes.append(f"note: no config of {exp_dir} is in {compare} (its configs: "
                         f"{', '.join(reference.index)}); showing all of it")
        ref_order = matched or list(reference.index)
    if base is None:
        notes.append("note: no baseline config (name 'baseline' or filters 'none'); pass --baseline NAME "
                     "for relative changes")
    if summary["n"].min() < 2:
        notes.append("note: configs with n = 1 show the mean only (no std from one seed)")

    plots: list[Path] = []
    out_dir = Path(plot_dir if plot_dir is not None else exp_dir)
    losses = _tolerant_curves(exp_dir, "losses", tuple(column for column, _ in LOSS_PANELS), notes)
    if not losses.empty:
        plot_configs, plot_pairs = _plot_pairs(losses, base, baseline is not None)
        plots.append(plot_losses(losses, out_dir / "losses.png", baseline=base if base in plot_configs else None,
                                 configs=plot_configs, title=exp_dir.name, pairs=plot_pairs))
    else:
        notes.append(f"note: no seed-<n>-losses.csv under {exp_dir}; no loss plot")
    evals = _tolerant_curves(exp_dir, "evals", EVAL_METRICS, notes)
    speed = speedups(evals, tested)
    if not evals.empty:
        plot_configs, plot_pairs = _plot_pairs(evals, base, baseline is not None)
        plots.append(plot_convergence(evals, out_dir / "convergence.png", configs=plot_configs, title=exp_dir.name,
                                      baseline=base if base in plot_configs else None, pairs=plot_pairs))
        lacking = [c for c, b in tested.items() if c != b and not (speed["config"] == c).any()]
        if lacking:
            notes.append(f"note: no evals for {', '.join(lacking)} or their baseline; no speed-up for them")
    else:
        notes.append(f"note: no seed-<n>-evals.csv under {exp_dir} (train --eval-every N); no convergence plot "
                     "or speed-up")

    sections = _sections(summary, order, base, reference, ref_order, str(compare), sig, speed)
    console = console if console is not None else Console()
    if fmt == "table":
        group = render_rich(sections, footnotes)
        buf = io.StringIO()
        Console(file=buf, width=200, color_system=None).print(group)  # wide: no wrapped cells
        text = buf.getvalue()
        console.print(group)
    else:
        if fmt == "markdown":
            text = render_markdown(sections, footnotes)
        elif fmt == "latex":
            text = render_latex(sections, footnotes)
        else:
            text = render_csv(summary, order, reference, sig, speed)
        console.out(text, highlight=False, end="")  # raw: no wrapping or markup
    # notes and plot paths are not part of the text; for markdown/latex/csv they go to stderr so that
    # `edgercnn report ... --format csv > table.csv` stays machine readable
    note_console = console if fmt == "table" else Console(stderr=True)
    for line in notes + [f"plot: {p}" for p in plots]:
        note_console.print(Text(line, style="dim"))
    return ReportResult(summary=summary, text=text, plots=plots, baseline=base, reference=reference, notes=notes,
                        significance=sig, speedup=speed)
