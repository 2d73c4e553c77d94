"""Drawing ``edgercnn.reporting.visualize``'s arrays: run comparisons (Figure 5) and one RoI's edge maps (Figures 3, 7).

matplotlib's object API with the Agg canvas, as ``edgercnn.reporting.plots``: no pyplot, no global backend switch. Writes
PNG, or PDF when the path ends in .pdf, atomically.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import numpy as np
from matplotlib import colormaps, patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from edgercnn.config.values import format_value
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.core.io import atomic_write_bytes

FORMATS = {".png": "png", ".pdf": "pdf"}
#: Ground truth: a white line with a black rim, visible on any image.
GT_STYLE = dict(colors="white", linewidths=1.6)
GT_RIM = [patheffects.withStroke(linewidth=3.0, foreground="black")]
PRED_ALPHA = 0.45
#: Crops show one prediction each, in one colour that stands out against the white GT line.
CROP_COLOR = (1.0, 0.5, 0.0)
#: Diverging map for filter responses (centred at 0), sequential ones for masks and |ΔE|^p.
RESPONSE_CMAP, MASK_CMAP, ERROR_CMAP = "RdBu_r", "gray", "magma"


def check_output(path: Path | str) -> Path:
    """``path`` if it ends in .png or .pdf; a one-line error otherwise."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise EdgeRCNNError(f"--out {path}: give a .png or .pdf file name")
    return path


def save(fig: Figure, path: Path | str, dpi: int = 150) -> Path:
    """Write ``fig`` as PNG or PDF (by the suffix) atomically; return the path."""
    path = check_output(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=FORMATS[path.suffix.lower()], dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())
    return path


def instance_colors(n: int) -> np.ndarray:
    """[n, 3] RGB in [0, 1]: tab10, cycled."""
    cmap = colormaps["tab10"]
    return np.array([cmap(i % 10)[:3] for i in range(n)]).reshape(n, 3)


def mask_overlay(masks: np.ndarray, colors: np.ndarray, alpha: float = PRED_ALPHA) -> np.ndarray:
    """RGBA [H, W, 4] with each mask filled in its colour (later masks on top), transparent elsewhere."""
    h, w = masks.shape[-2:]
    rgba = np.zeros((h, w, 4))
    for mask, color in zip(masks, colors):
        on = mask.astype(bool)
        rgba[on, :3] = color
        rgba[on, 3] = alpha
    return rgba


def _outline(ax, mask: np.ndarray, **style) -> None:
    if mask.any() and not mask.all():
        ax.contour(mask.astype(float), levels=[0.5], **style)


def draw_panel(ax, panel, crop: bool) -> None:
    """One image with its predicted masks (filled and outlined, class and score) and the GT outlined in white."""
    ax.imshow(panel.image, interpolation="nearest" if crop else "antialiased")
    colors = np.array([CROP_COLOR] * len(panel.masks)) if crop else instance_colors(len(panel.masks))
    if len(panel.masks):
        ax.imshow(mask_overlay(panel.masks, colors), interpolation="nearest")
    for mask, color in zip(panel.masks, colors):
        _outline(ax, mask, colors=[color], linewidths=2.0 if crop else 1.2)
    for mask in panel.gt:
        contour = ax.contour(mask.astype(float), levels=[0.5], **GT_STYLE) if mask.any() else None
        if contour is not None:
            contour.set(path_effects=GT_RIM)
    if not crop:
        for mask, color, label, score in zip(panel.masks, colors, panel.labels, panel.scores):
            ys, xs = np.nonzero(mask)
            if len(xs):  # above the mask, or just inside it at the image's top edge
                top = ys.min() > 0.08 * mask.shape[0]
                ax.text(xs.min(), ys.min() - 0.5 if top else ys.min() + 0.5, f"{label} {score:.2f}", fontsize=7,
                        color="white", va="bottom" if top else "top",
                        bbox=dict(facecolor=color, alpha=0.85, pad=1, lw=0), clip_on=True)
    else:
        x0, y0, x1, y1 = panel.window
        ax.set_xlim(x0 - 0.5, x1 - 0.5)
        ax.set_ylim(y1 - 0.5, y0 - 0.5)
        text = (f"IoU {panel.iou:.2f}: {panel.labels[0]} {panel.scores[0]:.2f}" if len(panel.masks)
                else "no overlapping prediction")
        ax.set_xlabel(text, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def render_comparison(panels: list[list], row_labels: list[str], column_titles: list[str], path: Path | str, *,
                      crop: bool = False, title: str = "") -> Path:
    """``comparison_figure`` written to ``path``."""
    return save(comparison_figure(panels, row_labels, column_titles, crop=crop, title=title), path)


def comparison_figure(panels: list[list], row_labels: list[str], column_titles: list[str], *, crop: bool = False,
                      title: str = "") -> Figure:
    """Rows of images (or GT instances with ``crop``), one column per run."""
    n_rows, n_cols = len(panels), len(column_titles)
    size = 2.4 if crop else 3.2
    fig = Figure(figsize=(size * n_cols + 0.6, size * n_rows + 0.9), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.array(fig.subplots(n_rows, n_cols, squeeze=False))
    for r, row in enumerate(panels):
        for c, panel in enumerate(row):
            ax = axes[r, c]
            draw_panel(ax, panel, crop)
            if r == 0:
                ax.set_title(column_titles[c], fontsize=10)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=9)
    what = ("orange: best-IoU prediction per GT instance (enlarged)" if crop
            else "predicted masks (class, score)")
    fig.suptitle(wrap_title(f"{title + chr(10) if title else ''}{what}; white: ground truth", fig), fontsize=10)
    return fig


def wrap_title(text: str, fig: Figure, fontsize: float = 10) -> str:
    """``text`` with each line wrapped to the figure's width, so that a one-column figure's title is not cut off at
    its sides (about 0.6 × fontsize points per character: a margin over DejaVu Sans's average)."""
    chars = max(20, int(fig.get_figwidth() * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.fill(line, chars, break_on_hyphens=False) for line in text.split("\n"))


def _symmetric(*arrays) -> float:
    top = max(float(np.abs(np.asarray(a)).max()) for a in arrays if a is not None)
    return top if top > 0 else 1.0


def _image(fig, ax, array, title: str, cmap: str, vmin: float, vmax: float, bar: str | None = None):
    im = ax.imshow(np.asarray(array), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    fig.colorbar(im, ax=ax, shrink=0.8, label=bar).ax.tick_params(labelsize=7)
    return im


def render_edges(arrays, roi, path: Path | str, *, title: str = "", loss_value: float | None = None) -> Path:
    """``edges_figure`` written to ``path``."""
    return save(edges_figure(arrays, roi, title=title, loss_value=loss_value), path)


def edges_figure(arrays, roi, *, title: str = "", loss_value: float | None = None) -> Figure:
    """Figure 3/7 for one RoI: the image with the RoI; rows ground truth / prediction / |ΔE|^p, columns the mask
    as the filters see it and each filter channel; response colour bars centred at 0, shared by a channel's two
    rows."""
    has_pred = arrays.pred is not None
    n_rows, n_ch = (3 if has_pred else 1), len(arrays.channels)
    fig = Figure(figsize=(2.5 * (n_ch + 2), 2.3 * n_rows + 0.7), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.array(fig.subplots(n_rows, n_ch + 2, squeeze=False))
    loss = arrays.loss
    smooth = format_value("smooth", loss.smooth)
    # column 0: where the RoI is; settings
    ax = axes[0, 0]
    ax.imshow(roi.image.permute(1, 2, 0).numpy())
    x0, y0, x1, y1 = roi.box.tolist()
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="yellow", lw=1.5))
    ax.set_title(f"RoI: {roi.class_name} (GT box)", fontsize=9)
    ax.set_xlabel("canvas x (px)", fontsize=8)
    ax.set_ylabel("canvas y (px)", fontsize=8)
    ax.tick_params(labelsize=7)
    for r in range(1, n_rows):
        axes[r, 0].axis("off")
    if has_pred:
        summary = [f"filters: {'+'.join(loss.filters)}", f"p = {loss.p:g}, α = {loss.weight:g}",
                   f"smooth: {smooth}", f"magnitude in loss: {'yes' if loss.magnitude else 'no'}",
                   f"formulation: {loss.formulation}", f"mask {arrays.target.shape[-1]}×{arrays.target.shape[-1]}"]
        if loss_value is not None:
            summary.append(f"edge loss of this RoI:\n{loss_value:.4g}")
        axes[1, 0].text(0, 1, "\n".join(summary), va="top", fontsize=9, transform=axes[1, 0].transAxes)
    # the masks as the filters see them: Gaussian-smoothed where the loss smooths them (Figure 7)
    gt_smoothed = smooth in ("gt", "both")
    _image(fig, axes[0, 1], arrays.target_in, "target, smoothed" if gt_smoothed else "target mask", MASK_CMAP, 0, 1,
           "mask value")
    axes[0, 1].set_ylabel("ground truth", fontsize=10)
    if has_pred:
        _image(fig, axes[1, 1], arrays.pred_in, "prediction, smoothed" if smooth in ("pred", "both")
               else "predicted probability", MASK_CMAP, 0, 1, "probability")
        axes[1, 1].set_ylabel("prediction", fontsize=10)
        mean = f"mean {float(arrays.loss_map.mean()):.4g}"
        what = "α·mean$_c$|ΔE|$^p$" if loss.formulation == "lp" else "α·$L_{edge-pw}$"
        _image(fig, axes[2, 1], arrays.loss_map, f"{what} per pixel\n({mean})", ERROR_CMAP, 0,
               _symmetric(arrays.loss_map), "loss per pixel")
        axes[2, 1].set_ylabel("|ΔE|$^p$", fontsize=10)
    for c, name in enumerate(arrays.channels):
        vmax = _symmetric(arrays.target_edges[c], arrays.pred_edges[c] if has_pred else None)
        _image(fig, axes[0, c + 2], arrays.target_edges[c], f"{name}: E(target)", RESPONSE_CMAP, -vmax, vmax,
               "response")
        if not has_pred:
            continue
        _image(fig, axes[1, c + 2], arrays.pred_edges[c], f"{name}: E(pred)", RESPONSE_CMAP, -vmax, vmax,
               "response")
        if c < arrays.loss_channels:
            _image(fig, axes[2, c + 2], arrays.diff_p[c], f"{name}: |ΔE|$^{{{loss.p:g}}}$", ERROR_CMAP, 0,
                   _symmetric(arrays.diff_p[c]), "|ΔE|$^p$")
        else:
            axes[2, c + 2].axis("off")
            axes[2, c + 2].text(0.5, 0.5, f"{name}:\nnot in this loss\n(--magnitude adds it)", ha="center",
                                va="center", fontsize=9, transform=axes[2, c + 2].transAxes)
    for ax in axes[-1, 1:]:
        if ax.has_data():
            ax.set_xlabel("RoI x (mask px)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig
