"""Loss-curve plots like the paper's Figure 4 (L_MRCNN and L_Mask per step) and convergence curves (metrics of the
evaluations during training per step), mean ± std over seeds.

Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend switch), so it works headless
and does not change the backend of a caller's interactive session.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from edgercnn.core.io import atomic_write_bytes
from edgercnn.evaluation.metrics import BBOX_METRICS, HEADLINE_METRICS, higher_is_better, presentation

#: (column of seed-<n>-losses.csv, axis title) for the rows of the figure, as in Figure 4.
LOSS_PANELS = (("loss_mrcnn", "$L_{MRCNN}$"), ("loss_mask", "$L_{Mask}$"))
#: (column of seed-<n>-evals.csv, axis title, higher is better) for the rows of the convergence figure: the mask
#: headline metrics (``metrics.HEADLINE_METRICS`` without box AP).
CONVERGENCE_PANELS = tuple((m, presentation(m).axis, higher_is_better(m)) for m in HEADLINE_METRICS
                           if m not in BBOX_METRICS)
#: At most this many points per line: 160k-step curves are thinned after smoothing.
MAX_POINTS = 2000


def smoothing_window(n_steps: int) -> int:
    """Rolling-mean window: ~1% of the run (1 for runs under 200 steps, i.e. no smoothing)."""
    return max(1, n_steps // 100)


def loss_band(losses: pd.DataFrame, column: str, window: int) -> pd.DataFrame:
    """Per config and step: mean and sample std (ddof=1) over seeds of the rolling-mean-smoothed ``column``.

    ``losses`` is long format with columns config, seed, step, ``column``. Each seed's curve is smoothed
    first (trailing rolling mean, ``min_periods=1``), then seeds are aligned on ``step``; a step that only
    some seeds reached (e.g. an unfinished run) uses those seeds. With one seed the std is NaN (no band).
    Returns columns config, step, mean, std, n.
    """
    df = losses[["config", "seed", "step", column]].sort_values(["config", "seed", "step"])
    smooth = df.groupby(["config", "seed"], sort=False)[column].transform(
        lambda s: s.rolling(window, min_periods=1).mean()
    )
    df = df.assign(value=smooth)
    out = df.groupby(["config", "step"])["value"].agg(mean="mean", std="std", n="count").reset_index()
    return out


def relative_curve(band: pd.DataFrame, config: str, baseline: str) -> pd.DataFrame:
    """Change of ``config``'s mean curve relative to ``baseline``'s, in %, on their common steps."""
    a = band[band["config"] == config].set_index("step")["mean"]
    b = band[band["config"] == baseline].set_index("step")["mean"]
    a, b = a.align(b, join="inner")
    return pd.DataFrame({"step": a.index, "rel": (a - b) / b * 100.0})


def _thin(df: pd.DataFrame) -> pd.DataFrame:
    stride = max(1, len(df) // MAX_POINTS)
    return df.iloc[::stride]


def line_colors(configs: list[str], baselines: set[str], main: str | None) -> dict[str, str]:
    """One color per config: C0, C1, ... for the others, black then greys for the baselines (``main`` first)."""
    colors = {c: f"C{i % 10}" for i, c in enumerate(x for x in configs if x not in baselines)}
    for i, b in enumerate(sorted(baselines, key=lambda b: b != main)):
        colors[b] = ("black", "dimgray", "darkgray", "silver")[min(i, 3)]
    return colors


def _save(fig: Figure, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def plot_losses(
    losses: pd.DataFrame,
    path: Path,
    *,
    baseline: str | None = None,
    configs: list[str] | None = None,
    title: str = "",
    pairs: dict[str, str] | None = None,
) -> Path:
    """Write a Figure-4-style PNG of L_MRCNN (top) and L_Mask (bottom) to ``path``; return ``path``.

    Solid lines (left axis): mean over seeds with a ±1 std band. Dotted lines (right axis): change relative
    to ``baseline`` in % (negative = lower loss than the baseline), drawn when a baseline is given; ``pairs``
    maps a config to another baseline (e.g. ``sobel-p2-m56`` → ``baseline-m56``).
    """
    pairs = pairs or {}
    configs = configs or sorted(losses["config"].unique())
    window = smoothing_window(int(losses["step"].max()))
    fig = Figure(figsize=(8, 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    baselines = {baseline, *pairs.values()} - {None}
    colors = line_colors(configs, baselines, baseline)
    axes = fig.subplots(len(LOSS_PANELS), 1, sharex=True)
    for ax, (column, label) in zip(axes, LOSS_PANELS):
        band = loss_band(losses, column, window)
        for config in configs:
            cur = _thin(band[band["config"] == config])
            if cur.empty:
                continue
            ax.plot(cur["step"], cur["mean"], color=colors[config], lw=1.2, label=config)
            ax.fill_between(cur["step"], cur["mean"] - cur["std"], cur["mean"] + cur["std"],
                            color=colors[config], alpha=0.2, lw=0)
        ax.set_ylabel(f"{label} (solid)")
        ax.grid(alpha=0.3)
        if baseline is not None and (band["config"] == baseline).any():
            rel_ax = ax.twinx()
            for config in configs:
                ref = pairs.get(config, baseline)
                if config in baselines or not (band["config"] == ref).any():
                    continue
                rel = relative_curve(band, config, ref)
                # skip the first window: means of a few noisy steps there would set the right axis' range
                rel = _thin(rel[rel["step"] >= window] if window > 1 else rel)
                rel_ax.plot(rel["step"], rel["rel"], color=colors[config], ls=":", lw=1.2)
            rel_ax.axhline(0.0, color="grey", lw=0.6)
            rel_ax.set_ylabel(f"vs {'its ' if len(baselines) > 1 else ''}{baseline if len(baselines) == 1 else 'baseline'}"
                              " (%, dotted)")
    axes[0].legend(fontsize=8, loc="upper right")
    axes[-1].set_xlabel("step")
    smoothing = "no smoothing" if window == 1 else f"rolling mean over {window} steps"
    fig.suptitle(f"{title + ': ' if title else ''}mean ± std over seeds ({smoothing})", fontsize=10)
    return _save(fig, path)


def plot_convergence(
    evals: pd.DataFrame,
    path: Path,
    *,
    baseline: str | None = None,
    configs: list[str] | None = None,
    title: str = "",
    pairs: dict[str, str] | None = None,
) -> Path:
    """Write a PNG of segm AP, boundary AP and val L_Mask (one panel each) against the training step to ``path``.

    ``evals`` is long format (config, seed, step, the ``CONVERGENCE_PANELS`` columns), as from
    ``results.load_curves(exp_dir, "evals", ...)``. Lines: mean over seeds at each evaluation, with a ±1 std band
    (no smoothing: evaluations are few). A dashed line per baseline marks its final mean, the target of the
    report's speed-up ("steps to reach the baseline's final value"). ``pairs`` as in ``plot_losses``.
    """
    pairs = pairs or {}
    configs = configs or sorted(evals["config"].unique())
    baselines = {baseline, *pairs.values()} - {None}
    colors = line_colors(configs, baselines, baseline)
    fig = Figure(figsize=(8, 9), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(CONVERGENCE_PANELS), 1, sharex=True)
    for ax, (column, label, higher) in zip(axes, CONVERGENCE_PANELS):
        band = loss_band(evals.dropna(subset=[column]), column, window=1)
        for config in configs:
            cur = band[band["config"] == config]
            if cur.empty:
                continue
            ax.plot(cur["step"], cur["mean"], color=colors[config], lw=1.2, marker=".", ms=4, label=config)
            ax.fill_between(cur["step"], cur["mean"] - cur["std"], cur["mean"] + cur["std"],
                            color=colors[config], alpha=0.2, lw=0)
            if config in baselines:
                ax.axhline(cur["mean"].iloc[-1], color=colors[config], ls="--", lw=0.8)
        if band.empty:
            ax.text(0.5, 0.5, "no evaluations", transform=ax.transAxes, ha="center", va="center", color="grey")
        ax.set_ylabel(f"{label} ({'higher' if higher else 'lower'} is better)")
        ax.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=8, loc="lower right")
    axes[-1].set_xlabel("step")
    fig.suptitle(f"{title + ': ' if title else ''}evaluations during training, mean ± std over seeds "
                 "(dashed: baseline's final mean)", fontsize=10)
    return _save(fig, path)
