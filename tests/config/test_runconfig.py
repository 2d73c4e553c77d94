"""The one configuration object: defaults, YAML, overrides, validation, the stage schedule."""

import pytest
import yaml

from edgercnn.config import Config, load_config
from edgercnn.config.schedule import paper_stages, stage_at
from edgercnn.core.errors import ConfigError


def test_defaults_are_the_papers_schedule():
    cfg = Config()
    assert [(s["steps"], s["layers"], s["lr"]) for s in cfg.resolved_stages()] == [
        (40_000, "heads", 0.001), (80_000, "4+", 0.001), (40_000, "all", 0.0001)]
    assert cfg.total_steps() == 160_000
    assert (cfg.momentum, cfg.weight_decay, cfg.batch_size, cfg.canvas) == (0.9, 0.0001, 2, [1024, 800])
    assert cfg.filters == ["sobel"] and cfg.p == 2 and cfg.alpha == 1 and cfg.mask_size == 28


def test_steps_scale_stages_proportionally_and_lr_scales_all():
    cfg = Config(steps=16, lr=0.01)
    stages = cfg.resolved_stages()
    assert [s["steps"] for s in stages] == [4, 8, 4]
    assert [s["lr"] for s in stages] == pytest.approx([0.01, 0.01, 0.001])
    for total in (3, 4, 7, 10, 1000, 123_457):
        stages = Config(steps=total).resolved_stages()
        assert sum(s["steps"] for s in stages) == total and min(s["steps"] for s in stages) >= 1
    assert [s["steps"] for s in Config(steps=3).resolved_stages()] == [1, 1, 1]
    # 6 → shares 1.5 / 3 / 1.5: floors 1/3/1, the one left goes to the first largest remainder
    assert [s["steps"] for s in Config(steps=6).resolved_stages()] == [2, 3, 1]


def test_stage_is_a_pure_function_of_the_step():
    stages = paper_stages()
    assert [stage_at(s, stages) for s in (1, 40_000, 40_001, 120_000, 120_001, 160_000, 170_000)] == [
        0, 0, 1, 1, 2, 2, 2]


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"p": 4, "alpha": 0.0625, "filters": ["laplace"], "mask_size": 56}))
    cfg = load_config(path, {"p": 2.0, "alpha": None})  # None = option not given
    assert (cfg.p, cfg.alpha, cfg.filters, cfg.mask_size) == (2.0, 0.0625, ["laplace"], 56)


def test_unknown_key_is_an_error_naming_it(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("p: 2\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown key\(s\) \['learning_rate'\]"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


@pytest.mark.parametrize("values, match", [
    ({"filters": ["canny"]}, "filters"), ({"p": 0.5}, "p: must be >= 1"), ({"mask_size": 32}, "mask_size"),
    ({"smooth": "x"}, "smooth"), ({"backbone": "vgg"}, "backbone"), ({"canvas": [10, 10]}, "canvas"),
    ({"stages": [{"steps": 5, "layers": "5+", "lr": 0.1}]}, "layers"), ({"stages": [{"steps": 5}]}, "missing"),
    ({"steps": 2}, "number of stages"), ({"checkpoint_every": 0}, "checkpoint_every"), ({"hflip": 1.5}, "hflip"),
])
def test_invalid_values(values, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, values)


def test_config_names_and_baseline():
    assert Config(filters=[]).config_name() == "baseline"
    assert load_config(None, {"filters": ["none"]}).filters == []
    assert Config(filters=["sobel", "laplace"]).config_name() == "sobel+laplace-p2"
    assert Config(p=4, alpha=0.0625, mask_size=56).config_name() == "sobel-p4-a0.0625-m56"
    assert Config(smooth="gt", magnitude=True, formulation="ce-exp").config_name() == "sobel-p2-smooth_gt-mag-ce-exp"
    assert Config(name="mine").config_name() == "mine"


def test_save_round_trip(tmp_path):
    cfg = Config(steps=10, filters=["roberts"], smooth="both")
    cfg.save(tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_warmup_ramps_linearly_to_the_stage_lr():
    from edgercnn.config.schedule import WARMUP_FACTOR, lr_at

    stages = [{"steps": 10, "layers": "all", "lr": 0.1}, {"steps": 10, "layers": "all", "lr": 0.01}]
    assert lr_at(1, stages, 5) == pytest.approx(0.1 * WARMUP_FACTOR)
    assert lr_at(3, stages, 5) == pytest.approx(0.1 * (WARMUP_FACTOR + (1 - WARMUP_FACTOR) * 2 / 5))
    assert [lr_at(s, stages, 5) for s in (5, 10, 11, 20)] == pytest.approx([0.1, 0.1, 0.01, 0.01])
    assert lr_at(1, stages, 0) == 0.1


def test_norm_optimizer_and_eval_every_are_validated():
    for key, value in (("norm", "bn"), ("optimizer", "adam"), ("warmup_steps", -1), ("eval_every", -2)):
        with pytest.raises(ConfigError, match=key):
            Config(**{key: value})


def test_config_is_frozen():
    import dataclasses

    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3
    assert dataclasses.replace(cfg, seed=3).seed == 3
    with pytest.raises(ConfigError):
        dataclasses.replace(cfg, p=0.5)
