"""One configuration object for a run: defaults here, a YAML file over them, CLI options over that.

Keys are snake_case and double as the config columns of the per-seed result CSVs. An unknown key is an
error (nanoGPT-style: defaults visible in one place, overrides are small diffs). The resolved config is
saved as ``config.yaml`` in every run folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgercnn.errors import ConfigError
from edgercnn.io import atomic_write_text
from edgercnn.losses import check_edge_args
from edgercnn.architecture import BACKBONES, MASK_SIZES, NORMS
from edgercnn.optim import OPTIMIZERS
from edgercnn.schedule import STAGE_LAYERS, paper_stages, scale_steps



@dataclass(frozen=True)
class Config:
    """Everything a training/evaluation run depends on. Frozen once built: change it with
    ``dataclasses.replace`` (which validates again), never in place."""

    # what and where
    experiment: str = "default"
    name: str | None = None  # config name for results/<experiment>/<name>/; derived when None
    data: str = "data/shapes"
    out_dir: str = "runs"
    results_dir: str = "results"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # model
    backbone: str = "resnet50"
    backbone_weights: str | None = None  # None: random init; "imagenet": torch hub cache; else a file path
    norm: str = "frozen_bn"  # frozen_bn | gn (GroupNorm in ResNet + FPN; trains from random weights)
    mask_size: int = 28
    num_classes: int | None = None  # from the dataset manifest when None (background excluded)
    # edge agreement loss (section 3; ablations of section 5)
    filters: list[str] = field(default_factory=lambda: ["sobel"])  # [] = baseline Mask R-CNN
    p: float = 2.0
    alpha: float = 1.0
    smooth: str | None = None
    magnitude: bool = False
    formulation: str = "lp"
    # data pipeline (section 4)
    canvas: list[int] = field(default_factory=lambda: [1024, 800])  # width, height
    hflip: float = 0.5
    strict: bool = False  # per-annotation problems (bad polygons, zero-area boxes, ...) are fatal, not skipped
    workers: int = 2
    # schedule and optimiser (section 4)
    stages: list[dict[str, Any]] = field(default_factory=paper_stages)
    steps: int | None = None  # when set, the stages are scaled proportionally to this total
    lr: float | None = None  # when set, scales every stage's lr so the first stage uses this value
    warmup_steps: int = 0  # linear lr warm-up from 0.001 x lr over the first N steps (0: none)
    optimizer: str = "sgd"  # sgd (the paper's) | adamw
    batch_size: int = 2
    momentum: float = 0.9
    weight_decay: float = 0.0001
    amp: bool = False
    grad_clip_norm: float | None = 5.0  # global L2 norm; matterport's GRADIENT_CLIP_NORM, which the authors used
    # logging, checkpoints, evaluation
    checkpoint_every: int = 1000
    eval_at_end: bool = True
    eval_every: int = 0  # evaluate every N steps during training (and at the last step) → evals.csv; 0: never
    eval_max_images: int | None = None  # None: the whole val split
    eval_score_threshold: float = 0.05
    detections_per_image: int = 100

    # ------------------------------------------------------------------ helpers
    def config_name(self) -> str:
        """The folder name under results/<experiment>/ (baseline, sobel-p2, ...)."""
        if self.name:
            return self.name
        if not self.filters:
            base = "baseline"
        else:
            base = "+".join(self.filters) + f"-p{self.p:g}"
            if self.alpha != 1.0:
                base += f"-a{self.alpha:g}"
            if self.smooth:
                base += f"-smooth_{self.smooth}"
            if self.magnitude:
                base += "-mag"
            if self.formulation != "lp":
                base += f"-{self.formulation}"
        if self.mask_size != 28:
            base += f"-m{self.mask_size}"
        return base

    def total_steps(self) -> int:
        return sum(int(s["steps"]) for s in self.resolved_stages())

    def resolved_stages(self) -> list[dict[str, Any]]:
        """The stages after ``steps`` and ``lr`` are applied; each has steps, layers, lr."""
        stages = [dict(s) for s in self.stages]
        if self.steps is not None:
            for s, n in zip(stages, scale_steps([int(s["steps"]) for s in stages], self.steps)):
                s["steps"] = n
        if self.lr is not None:
            factor = self.lr / float(stages[0]["lr"])
            for s in stages:
                s["lr"] = float(s["lr"]) * factor
        return stages

    def validate(self) -> None:
        """Raise ConfigError (a ValueError) naming the key and what is allowed."""
        try:
            self._validate()
        except (TypeError, AttributeError, KeyError) as err:  # e.g. `p: abc` or `canvas: 5` in a YAML file
            raise ConfigError(f"config: a value has the wrong type ({err}); see the defaults in "
                              "edgercnn/config.py") from None

    def _validate(self) -> None:
        if self.alpha < 0:
            raise ConfigError(f"alpha: must be >= 0, got {self.alpha}")
        if self.filters:  # the edge-loss vocabulary and its rules live with the loss
            try:
                check_edge_args(self.filters, self.p, self.smooth, self.magnitude, self.formulation)
            except ValueError as err:
                raise ConfigError(str(err)) from None
        if self.backbone not in BACKBONES:
            raise ConfigError(f"backbone: got {self.backbone!r}; choose {', '.join(BACKBONES)}")
        if self.norm not in NORMS:
            raise ConfigError(f"norm: got {self.norm!r}; choose {', '.join(NORMS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer: got {self.optimizer!r}; choose {', '.join(OPTIMIZERS)}")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps: must be >= 0, got {self.warmup_steps}")
        if self.mask_size not in MASK_SIZES:
            raise ConfigError(f"mask_size: got {self.mask_size}; choose {' or '.join(map(str, MASK_SIZES))}")
        if len(self.canvas) != 2 or min(self.canvas) < 32:
            raise ConfigError(f"canvas: expected [width, height] >= 32, got {self.canvas}")
        if self.batch_size < 1 or self.workers < 0:
            raise ConfigError("batch_size must be >= 1 and workers >= 0")
        if self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every: must be >= 1, got {self.checkpoint_every}")
        if not 0 <= self.hflip <= 1:
            raise ConfigError(f"hflip: a probability in [0, 1], got {self.hflip}")
        if self.eval_every < 0:
            raise ConfigError(f"eval_every: must be >= 0 (0: no evaluation during training), got {self.eval_every}")
        if self.eval_max_images is not None and self.eval_max_images < 1:
            raise ConfigError(f"eval_max_images: must be >= 1, got {self.eval_max_images}")
        if self.steps is not None and self.steps < len(self.stages):
            raise ConfigError(f"steps: must be >= the number of stages ({len(self.stages)}), got {self.steps}")
        if not self.stages:
            raise ConfigError("stages: at least one stage is needed")
        for i, s in enumerate(self.stages):
            missing = {"steps", "layers", "lr"} - set(s)
            extra = set(s) - {"steps", "layers", "lr"}
            if missing or extra:
                raise ConfigError(f"stages[{i}]: needs exactly steps, layers, lr (missing {sorted(missing)}, "
                                 f"unknown {sorted(extra)})")
            if s["layers"] not in STAGE_LAYERS:
                raise ConfigError(f"stages[{i}].layers: got {s['layers']!r}; choose {', '.join(STAGE_LAYERS)}")
            if int(s["steps"]) < 1 or float(s["lr"]) <= 0:
                raise ConfigError(f"stages[{i}]: steps must be >= 1 and lr > 0")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr: must be > 0, got {self.lr}")

    def __post_init__(self) -> None:
        self.validate()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        atomic_write_text(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False))


def _field_names() -> set[str]:
    return {f.name for f in dataclasses.fields(Config)}


def config_from_dict(values: dict[str, Any], source: str = "config") -> Config:
    """Build a Config from a mapping; an unknown key is a ValueError naming it and the source."""
    unknown = sorted(set(values) - _field_names())
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}; known keys: {', '.join(sorted(_field_names()))}")
    values = dict(values)
    filters = values.get("filters")
    if isinstance(filters, str):
        filters = [filters]
    if isinstance(filters, (list, tuple)):
        values["filters"] = [f for f in filters if f != "none"]  # "none" = the baseline, here alone
    if values.get("smooth") == "none":
        values["smooth"] = None
    return Config(**values)


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults < YAML file < overrides (None values in overrides mean 'not given')."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found; pass an existing YAML file to --config")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err.__class__.__name__}); fix the file") from err
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
        values.update(loaded)
        source = str(path)
    else:
        source = "config"
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    return config_from_dict(values, source)
