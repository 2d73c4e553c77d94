"""Per-seed result CSVs → mean ± std tables (like the paper's Table 1), relative changes, loss plots.

Input: ``<exp_dir>/<config>/seed-<n>.csv`` (one row of config columns and metrics each) and
``seed-<n>-losses.csv`` (per-step losses), as written by ``edgercnn train``/``eval``.

The summary DataFrame (index ``config``) has, for every metric ``m``: ``m`` = mean over seeds, ``m_std`` =
sample std (ddof=1; NaN with one seed), ``m_rel`` = % change of the mean relative to the baseline's mean;
plus ``n`` (seed count), ``segm_avg_rel`` / ``bbox_avg_rel`` (mean of the six COCO relative changes, the
paper's headline "8.1%", NaN metrics skipped). Its ``segm_AP``/``segm_AP_std`` naming equals the reference
CSVs' under results/paper/, so ``--format csv`` output can itself be used as a ``--compare`` file.
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

from edgercnn import results
from edgercnn.cocometrics import IOU_TYPES, METRIC_NAMES
from edgercnn.errors import EdgeRCNNError
from edgercnn.evaluate import METRICS
from edgercnn.plots import plot_losses

SEGM_METRICS, BBOX_METRICS, BOUNDARY_METRICS = (tuple(f"{kind}_{n}" for n in METRIC_NAMES) for kind in IOU_TYPES)
#: Lower is better for these; their relative change is reported with the same sign convention (new - base).
LOSS_METRICS = tuple(m for m in METRICS if m.startswith("val_loss"))
#: Column titles as in the paper's tables.
SHORT = ({m: m.split("_", 1)[1] for m in SEGM_METRICS + BBOX_METRICS}
         | {m: "b" + m.split("_", 1)[1] for m in BOUNDARY_METRICS} | {"val_loss_mask": "val L_Mask"})
FORMATS = ("table", "markdown", "latex", "csv")



@dataclass
class ReportResult:
    """What ``report`` produced: the summary table, the rendered text, and the PNGs it wrote."""

    summary: pd.DataFrame
    text: str
    plots: list[Path] = field(default_factory=list)
    baseline: str | None = None
    reference: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- loading
def load_runs(exp_dir: Path) -> pd.DataFrame:
    """All per-seed result rows of ``exp_dir`` (see ``edgercnn.results.load_runs``), every metric column present."""
    return results.load_runs(exp_dir, METRICS)


def load_losses(exp_dir: Path, columns: tuple[str, ...] = ("loss_mrcnn", "loss_mask")) -> pd.DataFrame:
    """All ``seed-<n>-losses.csv`` in long format: config (folder name), seed, step, ``columns``."""
    return results.load_curves(exp_dir, "losses", columns)


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
    return out


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
        filters = runs["filters"].astype(str).str.strip().str.lower()
        found = sorted(runs.loc[filters.isin(["none", "", "[]"]), "config"].unique())
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


def _metric_cell(row: pd.Series, m: str, pm: str = "±") -> str:
    if m in LOSS_METRICS:
        return fmt_mean_std(row.get(m), row.get(f"{m}_std"), digits=4, std_digits=4, pm=pm)
    return fmt_mean_std(row.get(m), row.get(f"{m}_std"), pm=pm)


def metric_rows(summary: pd.DataFrame, configs: list[str], pm: str = "±",
                with_loss: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the Table-1 layout: config, n, six segm APs (mean ± std)[, val L_Mask]."""
    has_n = "n" in summary
    metrics = SEGM_METRICS + (LOSS_METRICS if with_loss else ())
    header = ["config"] + (["n"] if has_n else []) + [SHORT[m] for m in metrics]
    rows = []
    for c in configs:
        row = summary.loc[c]
        n = [str(int(row["n"])) if not _isnan(row["n"]) else "?"] if has_n else []
        rows.append([c] + n + [_metric_cell(row, m, pm) for m in metrics])
    return header, rows


def relative_rows(summary: pd.DataFrame, configs: list[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the change-vs-baseline table: six segm APs, their average, box AP, val L_Mask."""
    header = (["config"] + [SHORT[m] for m in SEGM_METRICS]
              + ["avg (6 segm)", "box AP", "val L_Mask (lower is better)"])
    rows = []
    for c in configs:
        row = summary.loc[c]
        rows.append([c] + [fmt_rel(row[f"{m}_rel"]) for m in SEGM_METRICS]
                    + [fmt_rel(row["segm_avg_rel"]), fmt_rel(row["bbox_AP_rel"]), fmt_rel(row["val_loss_mask_rel"])])
    return header, rows


# --------------------------------------------------------------------------------------------- renderers
def _sections(summary, configs, baseline, reference, ref_configs, ref_name):
    """(title, header, rows) for every table of the report, shared by all text formats."""
    seeds = "n = seeds; mean ± sample std (ddof=1)"
    out = [(f"Mask AP (COCO segm, 0-100) and validation mask loss; {seeds}", *metric_rows(summary, configs))]
    if baseline is not None:
        paired = sorted({b for b in pair_baselines(configs, baseline).values()} - {baseline})
        also = f"; configs ending like {', '.join(paired)} against those" if paired else ""
        out.append((f"Change relative to '{baseline}'{also} (%, of the means; + = larger value)",
                    *relative_rows(summary, configs)))
    if reference is not None:
        # the paper's tables have no validation mask loss: leave that column out when it is empty
        h, r = metric_rows(reference, ref_configs, with_loss=bool(reference["val_loss_mask"].notna().any()))
        if "segm_avg_rel" in reference:
            h = h + ["avg Δ (6 segm)"]
            r = [row + [fmt_rel(reference.at[c, "segm_avg_rel"])] for row, c in zip(r, ref_configs)]
        out.append((f"Reference: {ref_name} (not measured by us)", h, r))
    return out


def render_rich(sections) -> Group:
    tables = []
    for title, header, rows in sections:
        t = Table(title=title, title_justify="left", header_style="bold")
        for i, h in enumerate(header):
            t.add_column(h, justify="left" if i == 0 else "right", no_wrap=i == 0)
        for r in rows:
            t.add_row(*r)
        tables.append(t)
    return Group(*tables)


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


def render_markdown(sections) -> str:
    parts = []
    for title, header, rows in sections:
        lines = [f"**{_md_escape(title)}**", "", "| " + " | ".join(map(_md_escape, header)) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(map(_md_escape, r)) + " |" for r in rows]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex(s: str) -> str:
    s = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in s)
    return s.replace("±", r"$\pm$").replace("Δ", r"$\Delta$")


def render_latex(sections) -> str:
    parts = []
    for title, header, rows in sections:
        lines = [f"% {title}", r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\hline",
                 " & ".join(_tex(h) for h in header) + r" \\", r"\hline"]
        lines += [" & ".join(_tex(c) for c in r) + r" \\" for r in rows]
        lines += [r"\hline", r"\end{tabular}"]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def render_csv(summary: pd.DataFrame, configs: list[str], reference: pd.DataFrame | None = None) -> str:
    """One row per config: config, n, then per metric mean/std/rel, the averages; ``ref_*`` columns
    (the reference's mean and std, matched on config) when a reference is given."""
    cols = ["n"] + [c for m in METRICS for c in (m, f"{m}_std", f"{m}_rel")] + ["segm_avg_rel", "bbox_avg_rel"]
    out = summary.loc[configs, cols]
    if reference is not None:
        ref_cols = [c for m in SEGM_METRICS for c in (m, f"{m}_std")]
        out = out.join(reference[ref_cols].add_prefix("ref_"), how="left")
    return out.reset_index().rename(columns={"index": "config"}).to_csv(index=False, float_format="%.6g")


# --------------------------------------------------------------------------------------------- entry point
def report(
    exp_dir: Path,
    *,
    fmt: str = "table",
    compare: Path | None = None,
    baseline: str | None = None,
    plot_dir: Path | None = None,
    console: Console | None = None,
) -> ReportResult:
    """Summarise ``exp_dir`` (results/<experiment>): print the tables to ``console`` (a new stdout Console
    when None) in ``fmt`` (table | markdown | latex | csv), write ``losses.png`` to ``plot_dir`` (default
    ``exp_dir``) when loss CSVs exist, and return the numbers, the text and the plot paths.

    ``compare``: a reference CSV (results/paper/*.csv) shown beside ours, matched on ``config``; its own
    relative changes use its row named like our baseline (or ``baseline``).
    """
    if fmt not in FORMATS:
        raise EdgeRCNNError(f"--format {fmt}: unknown; choose one of {', '.join(FORMATS)}")
    exp_dir = Path(exp_dir)
    runs = load_runs(exp_dir)
    summary = summarize(runs)
    configs = list(summary.index)
    base = find_baseline(configs, runs, baseline)
    summary = add_relative(summary, pair_baselines(configs, base, fixed=baseline is not None))
    order = order_configs(configs, base)

    reference = ref_order = None
    notes: list[str] = []
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
    losses = load_losses(exp_dir)
    if not losses.empty:
        plot_path = Path(plot_dir if plot_dir is not None else exp_dir) / "losses.png"
        plot_configs = order_configs(set(losses["config"]), base)
        pairs = {c: b for c, b in pair_baselines(plot_configs, base, fixed=baseline is not None).items()
                 if b in plot_configs}
        plots.append(plot_losses(losses, plot_path, baseline=base if base in plot_configs else None,
                                 configs=plot_configs, title=exp_dir.name, pairs=pairs))
    else:
        notes.append(f"note: no seed-<n>-losses.csv under {exp_dir}; no loss plot")

    sections = _sections(summary, order, base, reference, ref_order, str(compare))
    console = console if console is not None else Console()
    if fmt == "table":
        group = render_rich(sections)
        buf = io.StringIO()
        Console(file=buf, width=200, color_system=None).print(group)  # wide: no wrapped cells
        text = buf.getvalue()
        console.print(group)
    else:
        if fmt == "markdown":
            text = render_markdown(sections)
        elif fmt == "latex":
            text = render_latex(sections)
        else:
            text = render_csv(summary, order, reference)
        console.out(text, highlight=False, end="")  # raw: no wrapping or markup
    # notes and plot paths are not part of the text; for markdown/latex/csv they go to stderr so that
    # `edgercnn report ... --format csv > table.csv` stays machine readable
    note_console = console if fmt == "table" else Console(stderr=True)
    for line in notes + [f"plot: {p}" for p in plots]:
        note_console.print(Text(line, style="dim"))
    return ReportResult(summary=summary, text=text, plots=plots, baseline=base, reference=reference, notes=notes)
