"""The one configuration object: defaults, YAML, overrides, validation (strict types, names that would become
paths), the stage schedule."""

import pytest
import yaml

from edgercnn.config import Config, load_config
from edgercnn.config.schedule import paper_stages, stage_at
from edgercnn.core.errors import ConfigError

from tests.clirunner import TINY, invoke, one_line_error


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


# ---- names that become path components ------------------------------------------------------------------------------


@pytest.mark.parametrize("key,value", [("name", "../../x"), ("name", "a/b"), ("experiment", "/abs/exp"),
                                       ("experiment", ".."), ("name", "a\\b"), ("experiment", "")])
def test_config_names_that_would_escape_are_refused(key, value):
    with pytest.raises(ConfigError, match=key):
        Config(**{key: value})


def test_train_with_an_escaping_name_is_one_line_and_writes_nothing(shapes, tmp_path):
    one_line_error(invoke("train", "--data", shapes, *TINY, "--steps", "3", "--no-eval", "--out-dir",
                          tmp_path / "runs", "--name", "../../escaped"), "name")
    one_line_error(invoke("train", "--data", shapes, *TINY, "--steps", "3", "--no-eval", "--out-dir",
                          tmp_path / "runs", "--experiment", str(tmp_path / "abs")), "experiment")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "escaped").exists()
    assert not (tmp_path / "abs").exists()


# ---- strict config types --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, needle", [
    ('magnitude: "false"\n', "magnitude: expected a boolean (true or false), got 'false' (str)"),
    ("batch_size: 2.5\n", "batch_size: expected an integer, got 2.5 (float)"),
    ('seed: "7"\n', "seed: expected an integer, got '7' (str)"),
    ("steps: 3.7\n", "steps: expected an integer or null, got 3.7 (float)"),
    ("amp: 1\n", "amp: expected a boolean (true or false), got 1 (int)"),
    ("hflip: true\n", "hflip: expected a number, got True (bool)"),
    ("canvas: [64, '64']\n", "canvas: expected a list of integers"),
    ("filters: [sobel, 3]\n", "filters: expected a list of strings"),
    ("lr: null\nexperiment: null\n", "experiment: expected a string, got None"),
    ("stages: [{steps: 3.7, layers: all, lr: 0.1}]\n", "stages[0].steps: expected an integer, got 3.7"),
    ("seed: -1\n", "seed: must be >= 0, got -1"),
])
def test_config_types_are_strict(tmp_path, text, needle):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_ints_are_numbers_and_none_where_optional():
    cfg = Config(p=2, alpha=1, lr=None, steps=None, grad_clip_norm=None, hflip=0, name=None)
    assert cfg.p == 2 and Config(**yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg


def test_bad_seed_and_binary_yaml_are_one_line_errors(tiny_shapes, tmp_path):
    one_line_error(invoke("train", "--data", tiny_shapes, "--seed", "-1", "--out-dir", tmp_path / "runs"),
                   "seed: must be >= 0")
    garbage = tmp_path / "g.yaml"
    garbage.write_bytes(bytes(range(256)) * 4)
    one_line_error(invoke("train", "--config", garbage), "g.yaml: not valid YAML")
    assert not (tmp_path / "runs").exists()
