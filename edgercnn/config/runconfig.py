"""One configuration object for a run: defaults here, a YAML file over them, CLI options over that.

Keys are snake_case and double as the config columns of the per-seed result CSVs. An unknown key is an
error (nanoGPT-style: defaults visible in one place, overrides are small diffs). The resolved config is
saved as ``config.yaml`` in every run folder.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgercnn.core.errors import ConfigError
from edgercnn.core.io import atomic_write_text
from edgercnn.model.architecture import (BACKBONES, CROWD_NEGATIVES, MASK_HEADS_56, MASK_SIZES, MASK_TARGETS,
                                         NORMS, POSTPROCESS, ROI_SAMPLING, STAGE_LAYERS)
from edgercnn.model.vocab import (BOUNDARY_RAMP_STEPS, BOX_LOSSES, CE_EXP, CLASS_LOSSES, OPTIMIZER_PER_STAGE,
                                  OPTIMIZERS, PROPOSAL_SELECTION, ROI_ALIGNS, ROI_LEVELS, UNLOADED_INIT,
                                  WEIGHT_DECAY_MODES, check_edge_args, check_init, check_terms, check_weight)
from edgercnn.data.vocab import EVAL_IMAGES, RESIZE_MODES
from edgercnn.config.recipes import check_recipe, recipe_values  # the recipe vocabulary is the packaged files
from edgercnn.config.schedule import paper_stages, scale_steps
from edgercnn.config.values import format_filters, format_terms, normalize



def check_path_component(value: str, key: str) -> None:
    """``experiment`` and ``name`` (and an experiment's config names) become one folder each under --out-dir and
    --results-dir: a separator, ``..``, an absolute path or a control character would put runs and results
    elsewhere. ConfigError naming ``key`` unless ``value`` is one plain folder name."""
    bad = None
    if not isinstance(value, str) or not value.strip():
        bad = "is empty"
    elif "/" in value or "\\" in value:
        bad = "contains a path separator"
    elif value in (".", ".."):
        bad = "is a relative folder reference"
    elif any(ord(c) < 32 or ord(c) == 127 for c in value):
        bad = "contains a control character"
    elif Path(value).is_absolute():
        bad = "is an absolute path"
    if bad:
        raise ConfigError(f"{key}: {value!r} {bad}; it names one folder (under --out-dir and --results-dir), so use "
                          "letters, digits, -, _, + or .")


@dataclass(frozen=True)
class Config:
    """Everything a training/evaluation run depends on. Frozen once built: change it with
    ``dataclasses.replace`` (which validates again), never in place."""

    # what and where
    recipe: str | None = None  # a packaged preset (edgercnn/recipes/NAME.yaml) under the file and CLI options
    experiment: str = "default"
    name: str | None = None  # config name for results/<experiment>/<name>/; derived when None
    data: str = "data/shapes"
    out_dir: str = "runs"
    results_dir: str = "results"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    world_size: int = 1  # processes training the run (torchrun, edgercnn.training.distributed); recorded by the trainer
    # model
    backbone: str = "resnet50"
    backbone_weights: str | None = "auto"  # auto: "imagenet" for resnet50/101 with frozen batch norm, else random
    # (model.pretrained.resolve_backbone_weights); None: random init; "imagenet": torch hub cache;
    # "imagenet-resnet50": the ResNet-50 file by layer name (the authors' load); else a file path
    init: str | None = None  # the whole detector's start: "coco" (torchvision's COCO Mask R-CNN, new predictors), a
    # Mask R-CNN state_dict file or a run folder; None: backbone_weights (model.pretrained)
    norm: str = "frozen_bn"  # frozen_bn | gn (GroupNorm in ResNet + FPN; trains from random weights)
    mask_size: int = 28
    mask_head_56: str = "deconv"  # deconv | authors (architecture.MASK_HEADS_56)
    num_classes: int | None = None  # from the dataset manifest when None (background excluded)
    # edge agreement loss (section 3; ablations of section 5)
    filters: list[str] = field(default_factory=lambda: ["sobel"])  # [] = baseline Mask R-CNN
    p: float = 2.0
    alpha: float = 1.0
    smooth: str | None = None
    magnitude: bool = False
    formulation: str = "lp"
    # the other boundary-aware mask losses (model.mask_terms), alone or beside the edge loss
    mask_losses: list[str] = field(default_factory=list)  # dice | lovasz | boundary | hausdorff | bmask
    mask_loss_weights: dict[str, float] = field(default_factory=dict)  # per name; default mask_terms.TERM_WEIGHTS
    boundary_ramp_steps: int = BOUNDARY_RAMP_STEPS  # the boundary loss's weight +0.01 every N steps
    # data pipeline (section 4)
    canvas: list[int] = field(default_factory=lambda: [1024, 800])  # width, height
    resize: str = "fit"  # fit | square (data.vocab.RESIZE_MODES)
    resize_min_dim: int = 800  # square: short side scaled up to this (never down) unless the long side passes
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
    weight_decay_mode: str = "uniform"  # uniform | per_size (optim.WEIGHT_DECAY_MODES)
    optimizer_per_stage: str = "keep"  # keep | fresh (optim.OPTIMIZER_PER_STAGE)
    amp: bool = False
    grad_clip_norm: float | None = 5.0  # global L2 norm; matterport's GRADIENT_CLIP_NORM, which the authors used
    # RPN and RoI heads (torchvision's defaults; the authors' values are in the authors-* recipes)
    rpn_channels: int | None = None  # channels of the RPN's shared 3x3 conv; None: the FPN width (torchvision)
    roi_per_image: int | None = None  # RoIs sampled per image for the heads; None: the backbone preset's (512)
    roi_positive_fraction: float = 0.25
    roi_sampling: str = "torchvision"  # torchvision | matterport (architecture.ROI_SAMPLING)
    add_gt_to_proposals: bool = True
    mask_targets: str = "soft"  # soft | binary (architecture.MASK_TARGETS)
    crowd_negatives: str = "keep"  # keep | exclude (architecture.CROWD_NEGATIVES)
    # logging, checkpoints, evaluation
    checkpoint_every: int = 1000
    eval_at_end: bool = True
    eval_every: int = 0  # evaluate every N steps during training (and at the last step) → evals.csv; 0: never
    eval_max_images: int | None = None  # None: the whole val split
    eval_score_threshold: float = 0.05
    eval_nms_threshold: float = 0.5
    eval_images: str = "all"  # all | annotated (only images with annotations, as matterport's COCO evaluation)
    postprocess: str = "torchvision"  # torchvision | matterport (architecture.POSTPROCESS)
    detections_per_image: int = 100
    # the authors' (matterport) code where torchvision differs; defaults are torchvision's (model.matterport;
    # README "What the authors' code does that torchvision does not")
    unloaded_init: str = "torchvision"  # torchvision | glorot: ResNet layers no weights file covers (UNLOADED_INIT)
    box_loss: str = "torchvision"  # torchvision | matterport: RPN and RoI box regression losses (BOX_LOSSES)
    class_loss: str = "torchvision"  # torchvision | matterport: RoI slots zero-padded as background (CLASS_LOSSES)
    roi_level: str = "floor"  # floor | round: RoI → FPN level (ROI_LEVELS)
    roi_align: str = "torchvision"  # torchvision | crop_and_resize: RoI feature sampling (ROI_ALIGNS)
    head_classes: int | None = None  # object-class outputs of the box/mask predictors; None: num_classes
    rpn_crowd_negatives: str = "keep"  # keep | exclude: anchors overlapping a crowd region as RPN negatives
    proposal_selection: str = "per_level"  # per_level | global: RPN top-n per FPN level or over all (PROPOSAL_SELECTION)
    skip_empty_images: bool = False  # training skips images without a non-crowd instance (matterport)
    max_gt_instances: int | None = None  # at most N random instances per image for the RoI heads; None: all
    ce_exp: str = "paper"  # paper | authors: the ce-exp formulation as the paper writes it or as coded (CE_EXP)

    # ------------------------------------------------------------------ helpers
    def config_name(self) -> str:
        """The folder name under results/<experiment>/ (baseline, sobel-p2, ...)."""
        if self.name:
            return self.name
        if not self.filters:
            base = "baseline"
        else:
            base = format_filters(self.filters) + f"-p{self.p:g}"
            if self.alpha != 1.0:
                base += f"-a{self.alpha:g}"
            if self.smooth:
                base += f"-smooth_{self.smooth}"
            if self.magnitude:
                base += "-mag"
            if self.formulation != "lp":
                base += f"-{self.formulation}"
        if self.mask_losses:
            terms = format_terms(self.mask_losses, self.mask_loss_weights)
            base = terms if base == "baseline" else f"{base}+{terms}"
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
        check_types(self)  # first: the value checks below assume the annotated types
        try:
            self._validate()
        except (TypeError, AttributeError, KeyError) as err:  # e.g. `p: abc` or `canvas: 5` in a YAML file
            raise ConfigError(f"config: a value has the wrong type ({err}); see the defaults in "
                              "edgercnn/config.py") from None

    def _validate(self) -> None:
        check_path_component(self.experiment, "experiment")
        if self.name is not None:
            check_path_component(self.name, "name")
        if self.seed < 0:
            raise ConfigError(f"seed: must be >= 0, got {self.seed}; pass a seed >= 0 (--seed)")
        try:  # the edge-loss vocabulary and its rules live with the loss
            check_weight(self.alpha)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if self.filters:
            try:
                check_edge_args(self.filters, self.p, self.smooth, self.magnitude, self.formulation)
            except ValueError as err:
                raise ConfigError(str(err)) from None
        try:
            check_terms(self.mask_losses, self.mask_loss_weights, self.boundary_ramp_steps)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if self.backbone not in BACKBONES:
            raise ConfigError(f"backbone: got {self.backbone!r}; choose {', '.join(BACKBONES)}")
        if self.backbone_weights == "imagenet-resnet50" and \
                BACKBONES[self.backbone]["in_channels"] != BACKBONES["resnet50"]["in_channels"]:
            raise ConfigError(f"backbone_weights: imagenet-resnet50 loads the ResNet-50 file by layer name, which "
                              f"fits only the bottleneck ResNets (resnet50, resnet101), not backbone {self.backbone} "
                              f"({BACKBONES[self.backbone]['resnet']}); pass --backbone-weights imagenet (its own "
                              "ImageNet file), a state_dict file, or another --backbone")
        if self.norm not in NORMS:
            raise ConfigError(f"norm: got {self.norm!r}; choose {', '.join(NORMS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer: got {self.optimizer!r}; choose {', '.join(OPTIMIZERS)}")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps: must be >= 0, got {self.warmup_steps}")
        if self.mask_size not in MASK_SIZES:
            raise ConfigError(f"mask_size: got {self.mask_size}; choose {' or '.join(map(str, MASK_SIZES))}")
        for key, allowed in (("mask_head_56", MASK_HEADS_56), ("resize", RESIZE_MODES), ("postprocess", POSTPROCESS),
                             ("roi_sampling", ROI_SAMPLING), ("mask_targets", MASK_TARGETS),
                             ("eval_images", EVAL_IMAGES), ("crowd_negatives", CROWD_NEGATIVES),
                             ("weight_decay_mode", WEIGHT_DECAY_MODES),
                             ("optimizer_per_stage", OPTIMIZER_PER_STAGE), ("unloaded_init", UNLOADED_INIT),
                             ("box_loss", BOX_LOSSES), ("class_loss", CLASS_LOSSES), ("roi_level", ROI_LEVELS),
                             ("roi_align", ROI_ALIGNS), ("rpn_crowd_negatives", CROWD_NEGATIVES),
                             ("ce_exp", CE_EXP), ("proposal_selection", PROPOSAL_SELECTION)):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key}: got {getattr(self, key)!r}; choose {', '.join(allowed)}")
        if self.recipe is not None:
            check_recipe(self.recipe)
        for key in ("head_classes", "max_gt_instances"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be >= 1 (or unset), got {getattr(self, key)}")
        if self.rpn_channels is not None and self.rpn_channels < 1:
            raise ConfigError(f"rpn_channels: must be >= 1 (or unset for the FPN width), got {self.rpn_channels}")
        if self.roi_per_image is not None and self.roi_per_image < 1:
            raise ConfigError(f"roi_per_image: must be >= 1, got {self.roi_per_image}")
        if not 0 < self.roi_positive_fraction <= 1:
            raise ConfigError(f"roi_positive_fraction: must be in (0, 1], got {self.roi_positive_fraction}")
        if self.resize_min_dim < 1:
            raise ConfigError(f"resize_min_dim: must be >= 1, got {self.resize_min_dim}")
        if len(self.canvas) != 2 or min(self.canvas) < 32:
            raise ConfigError(f"canvas: expected [width, height] >= 32, got {self.canvas}")
        if self.world_size < 1:
            raise ConfigError(f"world_size: must be >= 1, got {self.world_size}")
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
            for key, want in (("steps", int), ("layers", str), ("lr", float)):
                if not _matches(s[key], want):
                    raise ConfigError(f"stages[{i}].{key}: expected {_describe(want)}, got {_shown(s[key])}")
            if s["layers"] not in STAGE_LAYERS:
                raise ConfigError(f"stages[{i}].layers: got {s['layers']!r}; choose {', '.join(STAGE_LAYERS)}")
            if int(s["steps"]) < 1 or float(s["lr"]) <= 0:
                raise ConfigError(f"stages[{i}]: steps must be >= 1 and lr > 0")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr: must be > 0, got {self.lr}")
        problem = check_init(self.backbone, self.norm, self.backbone_weights, self.init, self.rpn_channels,
                             self.stages[0]["layers"])
        if problem:
            raise ConfigError(problem)

    def __post_init__(self) -> None:
        self.validate()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        atomic_write_text(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False))


def _matches(value: Any, hint: Any) -> bool:
    """``value`` is of the annotated type ``hint`` (bool is not an int; an int is a float; None only where
    Optional; lists and dicts checked element by element)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is list:
        return isinstance(value, list) and all(_matches(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_matches(k, args[0]) and _matches(v, args[1])
                                               for k, v in value.items())
    return isinstance(value, origin or hint)


def _describe(hint: Any) -> str:
    """The annotated type in words: 'an integer', 'a list of strings or null', ..."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in args)
    if origin is list:
        return f"a list of {_describe(args[0]).split(' ', 1)[1]}s"
    if origin is dict:
        return "a mapping"
    words = {bool: "a boolean (true or false)", int: "an integer", float: "a number", str: "a string",
             type(None): "null"}
    return words.get(hint, f"a {getattr(hint, '__name__', hint)}")


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{text if len(text) <= 60 else text[:57] + '...'} ({type(value).__name__})"


def check_types(cfg: Config) -> None:
    """Raise ConfigError when a value does not have its field's annotated type (``magnitude: "false"`` is a
    string, not a boolean; ``batch_size: 2.5`` is not an integer)."""
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if not _matches(value, hints[f.name]):
            raise ConfigError(f"{f.name}: expected {_describe(hints[f.name])}, got {_shown(value)}; fix {f.name} "
                              "in the config file (or its command-line option)")


def _field_names() -> set[str]:
    return {f.name for f in dataclasses.fields(Config)}


def config_from_dict(values: dict[str, Any], source: str = "config") -> Config:
    """Build a Config from a mapping (over the values of its ``recipe``, if any); an unknown key is a ValueError
    naming it and the source."""
    unknown = sorted(set(values) - _field_names())
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}; known keys: {', '.join(sorted(_field_names()))}")
    values = dict(values)
    if values.get("recipe") is not None:  # the recipe's values under every key given here
        values = {**recipe_values(values["recipe"]), **values}
    return Config(**normalize(values))  # text forms (filters: none, canvas: 1024x800, ...) read by their owner


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults < recipe < YAML file < overrides (None values in overrides mean 'not given'); the recipe is the
    ``recipe`` of the overrides, else of the file."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found; pass an existing YAML file to --config")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError, ValueError) as err:  # binary garbage: not even text
            raise ConfigError(f"{path}: not valid YAML ({err.__class__.__name__}); fix the file") from None
        if not isinstance(loaded, dict) or not all(isinstance(k, str) for k in loaded):
            raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
        values.update(loaded)
        source = str(path)
    else:
        source = "config"
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    return config_from_dict(values, source)
