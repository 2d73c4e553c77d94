"""Where the weights start (model.pretrained): ImageNet by default for the paper's backbones, refused frozen random
backbones, torchvision's COCO Mask R-CNN (--init coco) and a file or run folder, with fake weight files in the torch
hub cache layout under a tmp TORCH_HOME (no download)."""

from pathlib import Path

import pytest
import torch
from torchvision.models import ResNet50_Weights, resnet50
from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights, maskrcnn_resnet50_fpn

from edgercnn.config import Config, load_config
from edgercnn.core.errors import ConfigError, EdgeRCNNError
from edgercnn.model.pretrained import resolve_backbone_weights
from edgercnn.builders.model import build_model
from edgercnn.core.checkpoint import write_weights

from tests.clirunner import invoke, one_line_error
from tests.paths import SHARED_DATASETS

PENNFUDAN = SHARED_DATASETS / "PennFudanPed"
ALL = [{"steps": 2, "layers": "all", "lr": 0.01}]


def _hub_file(torch_home: Path, url: str) -> Path:
    path = torch_home / "hub" / "checkpoints" / url.rsplit("/", 1)[-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def coco_state():
    """A torchvision maskrcnn_resnet50_fpn state_dict (random values, COCO's 91 classes): the COCO file's keys and
    shapes, built once per session."""
    torch.manual_seed(0)
    state = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # frozen batch norm has none


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    home = tmp_path / "torch"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def test_auto_backbone_weights_per_backbone_and_norm():
    assert Config().backbone_weights == "auto"
    assert resolve_backbone_weights("resnet50", "frozen_bn", "auto", None) == "imagenet"
    assert resolve_backbone_weights("resnet101", "frozen_stats_bn", "auto", None) == "imagenet"
    assert resolve_backbone_weights("resnet50", "gn", "auto", None) is None  # GroupNorm: the CPU recipes' random init
    assert resolve_backbone_weights("small", "frozen_bn", "auto", None) is None
    assert resolve_backbone_weights("resnet50", "frozen_bn", "auto", "coco") is None  # the COCO file covers it
    assert load_config(None, {"recipe": "cpu-pennfudan"}).backbone_weights == "auto"
    assert load_config(None, {"backbone_weights": "none", "stages": "all:10@0.01"}).backbone_weights is None


def test_frozen_random_paper_backbone_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="first stage that trains only 'heads'.*--backbone-weights imagenet") as err:
        load_config(None, {"backbone_weights": "none"})  # the paper's stages start with the heads
    assert "\n" not in str(err.value)
    assert Config(backbone_weights=None, stages=ALL).backbone_weights is None  # asked for explicitly: all layers
    with pytest.raises(ConfigError, match="leave --backbone-weights unset"):
        Config(init="coco", backbone_weights="imagenet")
    with pytest.raises(ConfigError, match="--backbone resnet50 --norm frozen_bn"):
        Config(init="coco", backbone="small")


def test_card_command_loads_imagenet_or_stops_with_one_line(torch_home):
    """`edgercnn train --data ... --filter sobel --p 2 --mask-size 56` (resnet50, frozen_bn, heads first)."""
    cfg = load_config(None, {"filters": ["sobel"], "p": 2.0, "mask_size": 56, "num_classes": 2, "canvas": [128, 128]})
    with pytest.raises(EdgeRCNNError) as err:
        build_model(cfg)
    url = ResNet50_Weights.IMAGENET1K_V1.url
    message = str(err.value)
    assert url in message and str(_hub_file(torch_home, url)) in message and "--backbone-weights none" in message
    assert "\n" not in message
    ref = resnet50(weights=None)
    torch.save(ref.state_dict(), _hub_file(torch_home, url))
    model = build_model(cfg)
    assert torch.equal(model.backbone.body.layer3[2].conv2.weight, ref.layer3[2].conv2.weight)


def test_init_coco_loads_all_but_new_predictors(torch_home, coco_state):
    path = _hub_file(torch_home, MaskRCNN_ResNet50_FPN_Weights.COCO_V1.url)
    with pytest.raises(EdgeRCNNError, match=f"COCO weights not found at {path}: download https://"):
        build_model(Config(init="coco", num_classes=2, canvas=[128, 128]))
    torch.save(coco_state, path)
    model = build_model(Config(init="coco", num_classes=2, canvas=[128, 128]))
    state = model.state_dict()
    predictors = [k for k in state if k.startswith(("roi_heads.box_predictor.", "roi_heads.mask_predictor."))]
    assert all(torch.equal(state[k], coco_state[k]) for k in state if k not in predictors)
    assert state["roi_heads.box_predictor.cls_score.weight"].shape == (3, 1024)  # 2 classes + background
    assert state["roi_heads.box_predictor.bbox_pred.weight"].shape == (12, 1024)
    assert state["roi_heads.mask_predictor.mask_fcn_logits.weight"].shape[0] == 3
    m56 = build_model(Config(init="coco", num_classes=2, canvas=[128, 128], mask_size=56)).state_dict()
    assert torch.equal(m56["backbone.fpn.layer_blocks.0.0.weight"], coco_state["backbone.fpn.layer_blocks.0.0.weight"])


def test_init_from_a_file_or_a_run_folder(tmp_path):
    small = dict(backbone="small", num_classes=2, canvas=[96, 96])
    torch.manual_seed(1)
    source = build_model(Config(**small)).state_dict()
    write_weights(tmp_path / "w.pt", source)
    run = tmp_path / "run"
    run.mkdir()
    write_weights(run / "model_final.pt", source)
    for init in (tmp_path / "w.pt", run):
        torch.manual_seed(2)
        state = build_model(Config(**small, init=str(init))).state_dict()
        assert all(torch.equal(state[k], v) for k, v in source.items())  # predictors too: same classes
    other = build_model(Config(**{**small, "num_classes": 5}, init=str(run))).state_dict()
    assert other["roi_heads.box_predictor.cls_score.weight"].shape[0] == 6  # other classes: new predictors
    del source["backbone.fpn.layer_blocks.0.0.weight"]
    write_weights(tmp_path / "bad.pt", source)
    with pytest.raises(EdgeRCNNError, match="does not fit this model .*missing"):
        build_model(Config(**small, init=str(tmp_path / "bad.pt")))
    with pytest.raises(EdgeRCNNError, match="no such file or run folder"):
        build_model(Config(**small, init=str(tmp_path / "nothing")))


@pytest.mark.slow
@pytest.mark.skipif(not PENNFUDAN.is_dir(), reason="no extracted Penn-Fudan copy at ../shared/datasets")
def test_init_coco_trains_on_pennfudan(torch_home, coco_state, tmp_path):
    from edgercnn.data.pennfudan import prepare_pennfudan
    from edgercnn.training.rundir import RunDir
    from edgercnn.training.trainer import Trainer

    torch.save(coco_state, _hub_file(torch_home, MaskRCNN_ResNet50_FPN_Weights.COCO_V1.url))
    prepare_pennfudan(PENNFUDAN, out=tmp_path / "pf", progress=False)
    cfg = load_config(None, {"data": str(tmp_path / "pf"), "init": "coco", "canvas": [160, 128], "steps": 3,
                             "lr": 0.005, "workers": 0, "device": "cpu", "batch_size": 1, "eval_at_end": False,
                             "out_dir": str(tmp_path / "runs"), "results_dir": str(tmp_path / "results")})
    trainer = Trainer(cfg)
    state = trainer.model.state_dict()
    assert state["roi_heads.box_predictor.cls_score.weight"].shape[0] == 2  # pedestrian + background
    assert torch.equal(state["rpn.head.conv.0.0.weight"], coco_state["rpn.head.conv.0.0.weight"])
    trainer.run()
    rows = RunDir.of(cfg).read_loss_rows()
    assert len(rows) == 3 and all(float(r["loss_mask"]) >= 0 for r in rows)


def test_card_command_on_the_cli_is_one_line_without_the_file(torch_home, tiny_shapes, tmp_path):
    from typer.testing import CliRunner

    from edgercnn.cli import app

    result = CliRunner().invoke(app, ["train", "--data", str(tiny_shapes), "--filter", "sobel", "--p", "2",
                                      "--mask-size", "56", "--canvas", "64x64", "--steps", "3", "--workers", "0",
                                      "--device", "cpu", "--out-dir", str(tmp_path / "runs"),
                                      "--results-dir", str(tmp_path / "results")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert ResNet50_Weights.IMAGENET1K_V1.url in result.output and "--backbone-weights none" in result.output
    assert not list((tmp_path / "runs").rglob("losses.csv"))  # nothing trained


# ---- recipes and backbones ------------------------------------------------------------------------------------------


def test_authors_recipe_with_the_small_backbone_does_not_ask_for_resnet50_weights(shapes, tmp_path):
    line = one_line_error(invoke("train", "--recipe", "authors-coco", "--backbone", "small", "--data", shapes,
                                 "--steps", "3", "--device", "cpu", "--out-dir", tmp_path / "runs"),
                          "imagenet-resnet50")
    assert "resnet18" in line and "download" not in line
    assert not (tmp_path / "runs").exists()
