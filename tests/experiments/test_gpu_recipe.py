"""The GPU recipe of `reproduce --data` (gpu-coco-finetune), chosen by device; tested by its config, not on a GPU."""

from pathlib import Path

import torch

from edgercnn.config import load_config
from edgercnn.config.recipes import load_recipe
from edgercnn.experiments.reproduce import CUSTOM, CUSTOM_GPU, PROTOCOLS, pick_protocol, reproduce_configs


def test_a_users_data_on_cuda_gets_the_gpu_recipe():
    assert pick_protocol(None, "cuda") is CUSTOM_GPU and pick_protocol(None, "cuda:1") is CUSTOM_GPU
    assert pick_protocol(None, "cpu") is CUSTOM and CUSTOM.recipe == "cpu-pennfudan"
    assert pick_protocol(None, "auto") is (CUSTOM_GPU if torch.cuda.is_available() else CUSTOM)
    for name in PROTOCOLS:  # the measured datasets keep the protocols their references were made with
        assert pick_protocol(name, "cuda") is PROTOCOLS[name]
    assert CUSTOM_GPU.jobs == 1  # one run at a time on the GPU


def test_gpu_recipe_config_is_coco_finetuning_at_800_px(tmp_path):
    cfg = load_config(None, {"recipe": CUSTOM_GPU.recipe})
    assert (cfg.init, cfg.backbone, cfg.norm, cfg.optimizer, cfg.momentum, cfg.weight_decay) == (
        "coco", "resnet50", "frozen_bn", "sgd", 0.9, 0.0005)
    assert cfg.resolved_stages()[0]["lr"] == 0.005 and min(cfg.canvas) == 800
    assert all(s["layers"] == "all" for s in cfg.stages)
    assert all(entry["source"] for entry in load_recipe(CUSTOM_GPU.recipe)["keys"].values())
    configs = reproduce_configs(Path(tmp_path / "data"), 1, 400, "mine", tmp_path / "runs", tmp_path / "results", 0,
                                "cuda", CUSTOM_GPU.evals, CUSTOM_GPU.recipe, [1120, 928])
    assert {c.config_name() for c in configs} == {"baseline", "sobel-p2"}
    assert all((c.init, c.device, c.canvas, c.total_steps()) == ("coco", "cuda", [1120, 928], 400) for c in configs)
