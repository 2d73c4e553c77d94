"""The metric vocabulary and its presentation: which metrics an evaluation records and, for each, its label, its
column title, its digits and whether higher is better.

The one table everyone reads who prints, plots, compares or judges a metric (report, plots, verdict, reproduce,
the one-line summaries); the scores themselves come from ``cocometrics``/``cityscapesmetrics``, composed in
``scoring``. Plain data, no heavy imports: the CLI can read it without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: COCOeval.stats[0:6], per IoU type.
METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
IOU_TYPES = ("segm", "bbox", "boundary")
COCO_METRICS = tuple(f"{kind}_{name}" for kind in IOU_TYPES for name in METRIC_NAMES)
SEGM_METRICS, BBOX_METRICS, BOUNDARY_METRICS = (tuple(f"{kind}_{n}" for n in METRIC_NAMES) for kind in IOU_TYPES)
#: The official Cityscapes instance-level metric, on Cityscapes datasets only.
CITYSCAPES_METRICS = ("cityscapes_AP", "cityscapes_AP50")
#: The paper's mask-quality measure (section 5): the mean mask loss on val data. Lower is better.
LOSS_METRICS = ("val_loss_mask",)
#: What every evaluation measures: COCO segm/bbox/boundary AP and the val mask loss.
METRICS = (*COCO_METRICS, *LOSS_METRICS)
#: The headline number of each measure: mask, boundary and box AP and the val mask loss. What runs are compared on
#: (speed-up, the reference comparison, verdicts, convergence plots) and what the one-line summaries print.
HEADLINE_METRICS = ("segm_AP", "boundary_AP", "bbox_AP", *LOSS_METRICS)
#: What each evaluation during training records (``evals.csv``, convergence curves): the headlines and segm AP50/75.
TRAINING_METRICS = ("segm_AP", "segm_AP50", "segm_AP75", "boundary_AP", "bbox_AP", *LOSS_METRICS)
#: Counts an evaluation adds to its metrics dict (not metrics: never averaged or compared).
COUNTS = ("val_images", "detections")


@dataclass(frozen=True)
class Presentation:
    """How a metric is shown. ``label``: in words (``segm AP``, ``val mask loss``); ``short``: the paper's column
    title (``AP50``, ``bAP``, ``box AP``, ``val L_Mask``); ``axis``: a plot's axis title; ``digits``/``std_digits``:
    decimals of a mean and of its spread; ``higher_is_better``: its direction."""

    label: str
    short: str
    axis: str
    digits: int = 1
    std_digits: int = 2
    higher_is_better: bool = True


def _ap(metric: str, short: str) -> Presentation:
    label = metric.replace("_", " ")
    return Presentation(label=label, short=short, axis=label)


#: The one table of metric presentation.
PRESENTATION: dict[str, Presentation] = {
    **{m: _ap(m, m.split("_", 1)[1]) for m in SEGM_METRICS},
    **{m: _ap(m, "box " + m.split("_", 1)[1]) for m in BBOX_METRICS},
    **{m: _ap(m, "b" + m.split("_", 1)[1]) for m in BOUNDARY_METRICS},
    **{m: _ap(m, m) for m in CITYSCAPES_METRICS},
    "val_loss_mask": Presentation(label="val mask loss", short="val L_Mask", axis="val $L_{Mask}$", digits=4,
                                  std_digits=4, higher_is_better=False),
}


def presentation(metric: str) -> Presentation:
    """The row of ``PRESENTATION`` for ``metric``; an unknown column is shown as its name, higher is better."""
    return PRESENTATION.get(metric) or _ap(metric, metric)


def higher_is_better(metric: str) -> bool:
    return presentation(metric).higher_is_better


def metric_label(metric: str) -> str:
    """A metric in words: ``segm AP``, ``boundary AP``, ``val mask loss``."""
    return presentation(metric).label


def with_direction(text: str, metric: str) -> str:
    """``text``, with ``(lower is better)`` for a metric where lower is better."""
    return text if higher_is_better(metric) else f"{text} (lower is better)"


def metric_summary(metrics: dict[str, Any], digits: int | None = None, sep: str = " ") -> str:
    """The headline metrics of an evaluation on one line: ``segm AP 62.6 boundary AP 37.7 ... val mask loss 0.1566``.
    ``digits`` overrides the APs' decimals (a loss keeps its own)."""
    def fmt(m: str) -> str:
        p = presentation(m)
        return f"{p.label} {metrics[m]:.{digits if digits is not None and p.higher_is_better else p.digits}f}"
    return sep.join(fmt(m) for m in HEADLINE_METRICS if m in metrics)


def metric_names(metrics: dict[str, Any]) -> tuple[str, ...]:
    """The result-CSV metric columns of an evaluation: ``METRICS``, plus the official Cityscapes ones when it was on
    a Cityscapes dataset."""
    return METRICS + tuple(m for m in CITYSCAPES_METRICS if m in metrics)
