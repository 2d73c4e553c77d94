"""Regressions from the fourth fault campaign (issue #25), the non-data half: recipe names that are paths, edge-loss
weights that are not finite, reproduce's options and empty splits, reproduce's workers outliving it, and rich markup
in report tables. The annotation-file half: tests/test_faults_data.py."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn
from torchvision.models.detection.roi_heads import RoIHeads
from typer.testing import CliRunner

from edgercnn import add_edge_loss
from edgercnn.cli import app
from edgercnn.config import Config, load_config
from edgercnn.config.recipes import check_recipe, load_recipe, recipe_diff
from edgercnn.core.errors import ConfigError
from edgercnn.model.losses import EdgeLoss, edge_agreement_loss


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], terminal_width=200)


def one_line_error(result, needle=None):
    """The CLI failed with a non-zero status and one line, not a traceback."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output
    if needle is not None:
        assert needle in lines[0], lines[0]


# ---------------------------------------------------------------- recipes: one rule for a name

@pytest.mark.parametrize("name", ["../recipes/torchvision", "../../config/recipes/torchvision",
                                  "torchvision/../torchvision", "/tmp/x", ""])
def test_a_recipe_name_is_a_packaged_name_never_a_path(name):
    for call in (lambda: check_recipe(name), lambda: load_recipe(name), lambda: recipe_diff("torchvision", name),
                 lambda: load_config(None, {"recipe": name})):
        with pytest.raises(ConfigError, match="no such recipe; choose .*torchvision"):
            call()
    one_line_error(invoke("recipes", name), "no such recipe")
    one_line_error(invoke("recipes", "torchvision", "--diff", name), "--diff")
    one_line_error(invoke("recipes", name, "--diff", "torchvision"), "no such recipe")
    one_line_error(invoke("train", "--recipe", name, "--data", "."), "no such recipe")


def test_packaged_recipes_still_load():
    assert load_recipe("torchvision")["keys"] and check_recipe("authors-coco") == "authors-coco"
    assert invoke("recipes", "authors-coco", "--diff", "torchvision").exit_code == 0


# ---------------------------------------------------------------- edge-loss weight and p: one rule

BAD_EDGE = [({"alpha": -1.0}, "alpha: must be >= 0"), ({"alpha": math.nan}, "alpha: must be >= 0"),
            ({"alpha": math.inf}, "alpha: must be >= 0"), ({"p": math.inf}, "p: must be >= 1"),
            ({"p": math.nan}, "p: must be >= 1"), ({"p": 0.5}, "p: must be >= 1")]


@pytest.mark.parametrize("kw,message", BAD_EDGE)
def test_add_edge_loss_refuses_what_the_command_line_refuses(kw, message):
    with pytest.raises(ConfigError, match=message):
        Config(filters=["sobel"], **kw).validate()
    weight = {"weight": kw["alpha"]} if "alpha" in kw else kw
    with pytest.raises(ValueError, match=message):
        EdgeLoss(**weight)
    with pytest.raises(ValueError, match=message):
        edge_agreement_loss(torch.rand(1, 4, 4), torch.ones(1, 4, 4), **weight)
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2)
    with pytest.raises(ValueError, match=message):
        add_edge_loss(model, **kw)
    assert type(model.roi_heads) is RoIHeads  # refused before the model was touched
    flag = "--alpha" if "alpha" in kw else "--p"
    one_line_error(invoke("train", flag, next(iter(kw.values())), "--data", "."), message)


def test_edge_loss_weights_that_are_allowed():
    assert EdgeLoss(weight=0).weight == 0 and EdgeLoss(p=1, weight=2.5).p == 1
    Config(filters=["sobel"], alpha=0.0, p=3.0).validate()
    with pytest.raises(ConfigError, match="alpha"):  # checked with or without filters, as before
        Config(filters=[], alpha=-1.0).validate()
