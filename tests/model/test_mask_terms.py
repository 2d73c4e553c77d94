"""The boundary-aware mask losses as run options: config and CLI spelling, the RoI heads' loss dict, the trainer's
log, ``add_mask_losses`` on torchvision's own model, and the ranking of a comparison."""

import csv
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

import edgercnn
from edgercnn.config import Config, config_from_dict
from edgercnn.config.values import parse_value, train_command
from edgercnn.core.errors import ConfigError, EdgeRCNNError
from edgercnn.experiments.reproduce import COMPARISONS, REFERENCES
from edgercnn.model.bmask import BMaskHead
from edgercnn.model.mask_losses import dice_loss
from edgercnn.model.mask_terms import MASK_TERMS, TERM_KEYS, MaskTerms
from edgercnn.reporting.ranking import ranking, ranking_rows
from edgercnn.builders.model import build_model
from edgercnn.training.trainer import Trainer

from tests.model.v2small import SIZE, V2_SMALL, one_image


def test_config_spelling_names_and_errors():
    cfg = config_from_dict({"filters": "none", "mask_losses": "dice+boundary", "mask_loss_weights": "dice=2"})
    assert cfg.mask_losses == ["dice", "boundary"] and cfg.mask_loss_weights == {"dice": 2.0}
    assert cfg.config_name() == "dice-w2+boundary"
    assert Config(mask_losses=["lovasz"]).config_name() == "sobel-p2+lovasz"
    assert Config(filters=[]).config_name() == "baseline"
    assert parse_value("mask_loss_weights", "none") == {} and parse_value("mask_losses", "none") == []
    assert "--mask-loss dice --mask-loss-weight dice=2" in train_command({"mask_losses": ["dice"],
                                                                         "mask_loss_weights": {"dice": 2.0}})
    for bad, word in (({"mask_losses": ["dice", "dice"]}, "twice"), ({"mask_losses": ["focal"]}, "unknown"),
                      ({"mask_losses": ["dice"], "mask_loss_weights": {"lovasz": 1.0}}, "not among"),
                      ({"mask_losses": ["dice"], "mask_loss_weights": {"dice": math.nan}}, "finite"),
                      ({"mask_losses": ["dice"], "mask_loss_weights": {"dice": -1.0}}, ">= 0"),
                      ({"boundary_ramp_steps": 0}, ">= 1")):
        with pytest.raises(ConfigError, match=word):
            Config(**bad)


def test_weights_follow_the_defaults_overrides_and_the_ramp():
    terms = MaskTerms(("dice", "boundary"), (("dice", 3.0),), ramp_steps=10)
    assert terms.weight("dice", 0) == 3.0 == terms.weight("dice", 999)  # a given weight is constant
    assert terms.weight("boundary", 0) == pytest.approx(0.01) and terms.weight("boundary", 25) == pytest.approx(0.03)
    assert MaskTerms(("bmask",)).weight("bmask", 100) == 1.0


@pytest.mark.parametrize("names", [("dice",), ("lovasz", "hausdorff"), ("boundary", "bmask")])
def test_heads_add_each_term_weighted_with_gradients(names):
    torch.manual_seed(0)
    cfg = Config(backbone="small", num_classes=1, canvas=[SIZE, SIZE], filters=["sobel"], mask_losses=list(names),
                 mask_loss_weights={"dice": 2.0} if "dice" in names else {})
    model = build_model(cfg).train()
    assert isinstance(model.roi_heads.mask_head, BMaskHead) == ("bmask" in names)
    images, targets = one_image()
    losses = model(images, targets)
    assert {f"loss_{n}" for n in names} | {"loss_edge", "loss_mask"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.roi_heads.loss_step == 1  # counted per training forward
    assert all(p.grad is not None for p in model.roi_heads.mask_head.parameters())
    if "dice" in names:  # the dict holds weight × the pure loss on the same logits and targets
        assert losses["loss_dice"].item() > 0


def test_dice_term_is_weight_times_the_pure_loss():
    logits, target = torch.randn(3, 28, 28), (torch.rand(3, 28, 28) > 0.5).float()
    out = MaskTerms(("dice",), (("dice", 2.5),))(logits, target, step=0)
    assert torch.allclose(out["loss_dice"], 2.5 * dice_loss(logits, target))
    empty = torch.zeros(0, 28, 28, requires_grad=True)
    assert MaskTerms(("dice", "lovasz"))(empty, empty.detach(), 0)["loss_lovasz"].requires_grad


def test_add_mask_losses_on_torchvision_v2_trains_and_loads_into_plain_torchvision():
    torch.manual_seed(0)
    model = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=2, **V2_SMALL)
    keys = set(model.state_dict())
    edgercnn.add_mask_losses(model, "dice", "hausdorff")
    edgercnn.add_edge_loss(model)
    assert set(model.state_dict()) == keys  # the pure losses add no parameters
    images, targets = one_image()
    losses = model.train()(images, targets)
    assert {"loss_dice", "loss_hausdorff", "loss_edge"} <= set(losses)
    sum(losses.values()).backward()
    plain = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=2, **V2_SMALL)
    plain.load_state_dict(model.state_dict(), strict=True)
    edgercnn.add_mask_losses(model, "bmask")
    assert isinstance(model.roi_heads.mask_head, BMaskHead) and "loss_bmask" in model(images, targets)
    assert model.eval()(images)[0]["masks"].shape[1:] == (1, SIZE, SIZE)  # boundary output dropped at inference
    with pytest.raises(EdgeRCNNError, match="unknown"):
        edgercnn.add_mask_losses(model, "focal")


def test_trainer_logs_the_terms_and_sets_the_schedule_step(tiny_shapes, tmp_path):
    cfg = Config(data=str(tiny_shapes), backbone="small", canvas=[64, 64], steps=3, lr=0.01, workers=0,
                 filters=[], mask_losses=["boundary"], out_dir=str(tmp_path / "runs"),
                 results_dir=str(tmp_path / "results"), experiment="t", device="cpu", eval_at_end=False)
    trainer = Trainer(cfg)
    trainer.run()
    assert trainer.model.roi_heads.loss_step == 3
    with open(trainer.rundir.losses, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and all(float(r["loss_terms"]) != 0 for r in rows)  # signed: φ_G < 0 inside
    for r in rows:  # the terms are not Mask R-CNN's own loss
        own = sum(float(r[k]) for k in ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness",
                                        "loss_rpn_box_reg"))
        assert float(r["loss_mrcnn"]) == pytest.approx(own, rel=1e-4)
        assert float(r["loss_total"]) == pytest.approx(own + float(r["loss_terms"]), rel=1e-4)


def test_the_comparison_has_every_term_and_ranks_against_both_references():
    configs = COMPARISONS["boundary-losses"]
    assert set(configs) == {"baseline", "sobel-p2", *MASK_TERMS}
    assert REFERENCES["boundary-losses"] == ("baseline", "sobel-p2")
    assert len(TERM_KEYS) == len(MASK_TERMS)
    rng = np.random.default_rng(0)
    means = {"baseline": 30.0, "sobel-p2": 36.0, "dice": 33.0}
    runs = pd.DataFrame([{"config": c, "seed": s, "segm_AP": m + rng.normal(0, 0.3), "val_loss_mask": 0.2}
                         for c, m in means.items() for s in range(3)])
    evals = pd.DataFrame([{"config": c, "seed": s, "step": step, "segm_AP": m * step / 100}
                          for c, m in means.items() for s in range(3) for step in (50, 100)])
    losses = pd.DataFrame([{"config": c, "seed": 0, "step": step, "step_time_s": t}
                           for c, t in (("baseline", 1.0), ("sobel-p2", 1.1), ("dice", 1.2))
                           for step in range(1, 31)])
    table, verdicts = ranking(runs, evals, losses, {"segm_AP": True, "val_loss_mask": False}, ("baseline", "sobel-p2"))
    seg = table[table["metric"] == "segm_AP"]
    assert list(seg["config"]) == ["sobel-p2", "dice", "baseline"] and list(seg["rank"]) == [1, 2, 3]
    assert seg.set_index("config").loc["dice", "step_time_ratio"] == pytest.approx(1.2)
    head, rows = ranking_rows(table, verdicts, "segm_AP", ("baseline", "sobel-p2"), 1)
    dice = next(r for r in rows if r[1] == "dice")
    assert dice[3].startswith("helps +3.") and dice[4].startswith("hurts -")  # vs baseline, vs sobel-p2
    assert head[3:5] == ["vs baseline", "vs sobel-p2"]
