"""The text form of config values has one owner (edgercnn.config.values): written and read back the same way by the
CLI, sweep --set, the result CSVs and the train-command builder; `edgercnn train` spells each key by its rule."""

import typer.main
import pytest

from edgercnn.cli import app
from edgercnn.config import Config
from edgercnn.config.values import (NONE, TRAIN_KEYS, flag, format_value, negative_flag, parse_value,
                                    train_command)
from edgercnn.core.errors import ConfigError
from edgercnn.experiments.sweep import parse_sets
from edgercnn.reporting.results import config_columns


def test_train_options_are_the_declared_keys_by_their_rule():
    command = typer.main.get_command(app).commands["train"]
    options = {p.name: p for p in command.params if p.param_type_name == "option"}
    by_flag = {o: p for p in options.values() for o in p.opts}
    for key in TRAIN_KEYS:
        assert flag(key) in by_flag, key
        if by_flag[flag(key)].is_flag and by_flag[flag(key)].secondary_opts:
            assert by_flag[flag(key)].secondary_opts == [negative_flag(key)], key
    config_keys = set(Config().to_dict())
    assert set(TRAIN_KEYS) <= config_keys
    # every train option is a config key (by the rule) or one of the command's own
    assert {o for p in options.values() for o in p.opts} - {flag(k) for k in TRAIN_KEYS} == {
        "--config", "--resume", "--debug"}


@pytest.mark.parametrize("key, value, text", [
    ("canvas", [1024, 800], "1024x800"), ("filters", ["sobel", "laplace"], "sobel+laplace"), ("filters", [], NONE),
    ("stages", [{"steps": 40000, "layers": "heads", "lr": 0.001}, {"steps": 20, "layers": "4+", "lr": 1e-4}],
     "heads:40000@0.001,4+:20@0.0001"), ("smooth", None, NONE), ("p", 2.0, 2.0)])
def test_values_round_trip_through_their_text(key, value, text):
    assert format_value(key, value) == text
    assert parse_value(key, str(text)) == value


def test_text_forms_are_read_everywhere():
    cfg = Config(canvas=[64, 48], filters=["sobel", "laplace"], smooth=None)
    columns = config_columns(cfg)
    assert columns["canvas"] == "64x48" and columns["filters"] == "sobel+laplace" and columns["smooth"] == NONE
    assert parse_sets(["canvas=64x48", "filters=sobel+laplace", "smooth=none", "filters=[sobel]"]) == {
        "canvas": [64, 48], "filters": ["sobel"], "smooth": None}
    from edgercnn.config import config_from_dict

    assert config_from_dict({"canvas": "64x48", "filters": "none", "stages": "all:10@0.01"}).to_dict() == {
        **Config().to_dict(), "canvas": [64, 48], "filters": [], "stages": [{"steps": 10, "layers": "all",
                                                                           "lr": 0.01}]}
    with pytest.raises(ConfigError, match="--set canvas '64by48': expected WIDTHxHEIGHT"):
        parse_sets(["canvas=64by48"])
    with pytest.raises(ConfigError, match="LAYERS:STEPS@LR"):
        parse_value("stages", "heads:many@0.1")


def test_train_command_spells_keys_as_the_cli():
    command = train_command({"filters": [], "mask_size": 56, "amp": False, "eval_at_end": True, "canvas": [64, 64],
                             "stages": [{"steps": 1, "layers": "all", "lr": 0.1}], "backbone_weights": None})
    assert command.startswith("edgercnn train --filter none --mask-size 56 --no-amp --eval --canvas 64x64 --resume")
    assert command.endswith("# and stages=[{'steps': 1, 'layers': 'all', 'lr': 0.1}], backbone_weights=None")
