"""Regressions from the third fault campaign (issue #18): names that would become paths outside their roots,
images over the pixel limit, truncated Cityscapes images, an empty val split, seeds that must not be pooled,
and hostile experiment YAML, --set values, detections and --compare files. Run-folder locks and eval --out:
tests/test_faults_locks.py."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from edgercnn.cli import app
from edgercnn.config import Config
from edgercnn.core.errors import ConfigError, EdgeRCNNError
from edgercnn.data.dataset import MAX_PIXELS_ENV, CocoInstanceDataset
from edgercnn.data.shapes import make_shapes
from edgercnn.experiments.sweep import Experiment
from edgercnn.training.rundir import RunDir

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY = ["--backbone", "small", "--canvas", "64x64", "--lr", "0.01", "--workers", "0", "--device", "cpu"]


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
        assert needle in " ".join(result.output.split()), result.output
    return lines[0]


def png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose header declares ``width`` x ``height`` pixels (a decompression bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.fixture()
def shapes(tmp_path):
    out = tmp_path / "shapes"
    make_shapes(out, train=2, val=2, size=64, seed=0)
    return out


def _val_json(root: Path) -> Path:
    return root / "annotations" / "instances_val.json"


# ---- names that become path components ----------------------------------------------------------------------


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


def _experiment(tmp_path, text, name="mine.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text,needle", [
    ("configs: {'../../x': {filters: [sobel]}}\n", "configs.../../x"),
    ("configs: {'/abs': {}}\n", "configs./abs"),
    ("configs: {a: {}}\nreuse: {a: ../other}\n", "reuse.a"),
    ("configs: {a: {}}\ndataset: ../../etc\n", "dataset"),
    ("seeds: abc\nconfigs: {a: {}}\n", "seeds"),
    ("seeds: [0, x]\nconfigs: {a: {}}\n", "seeds"),
    ("seeds: [-1]\nconfigs: {a: {}}\n", "seeds"),
    ("configs: {a: [1, 2]}\n", "configs.a"),
    ("configs: {a: {}}\nbase: [1]\n", "base"),
])
def test_hostile_experiment_yaml_is_one_line(tmp_path, text, needle):
    path = _experiment(tmp_path, text)
    with pytest.raises(EdgeRCNNError) as err:
        Experiment.load(str(path))
    assert needle in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)
    line = one_line_error(invoke("sweep", path, "--dry-run", "--out-dir", tmp_path / "runs", "--results-dir",
                                 tmp_path / "results"))
    assert needle in line
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_an_escaping_experiment_file_name_is_refused(tmp_path):
    path = _experiment(tmp_path, "configs: {a: {}}\n", name="bad name\x01.yaml")
    one_line_error(invoke("sweep", path, "--dry-run"), "experiment name")


def test_an_ambiguous_experiment_prefix_names_the_candidates():
    line = one_line_error(invoke("sweep", "table", "--dry-run"))
    assert "table1_filters" in line and "table2_p" in line and "no such experiment" not in line


@pytest.mark.parametrize("value", ["steps=[", "steps=!!python/object/apply:os.system ['echo pwned']",
                                   "steps={a: [1"])
def test_hostile_set_values_are_one_line(tmp_path, value, capfd):
    one_line_error(invoke("sweep", "table1_filters", "--dry-run", "--set", value, "--out-dir", tmp_path / "r"),
                   "--set steps")
    assert "pwned" not in capfd.readouterr().out


# ---- dataset file names stay inside the images folder -----------------------------------------------------------


@pytest.mark.parametrize("name", ["../../../etc/hostname", "/etc/hostname", "a/../../x.png", "..\\..\\x.png"])
def test_a_file_name_outside_the_images_folder_is_refused(shapes, name):
    path = _val_json(shapes)
    data = json.loads(path.read_text())
    data["images"][0]["file_name"] = name
    path.write_text(json.dumps(data))
    with pytest.raises(EdgeRCNNError, match="not a path inside the images folder"):
        CocoInstanceDataset(shapes, "val", canvas=(64, 64))


def test_subfolders_in_file_names_are_fine(shapes):
    images = shapes / "images" / "val"
    (images / "sub").mkdir()
    path = _val_json(shapes)
    data = json.loads(path.read_text())
    first = data["images"][0]["file_name"]
    shutil.move(images / first, images / "sub" / first)
    data["images"][0]["file_name"] = f"sub/{first}"
    path.write_text(json.dumps(data))
    ds = CocoInstanceDataset(shapes, "val", canvas=(64, 64))
    assert ds[0][0].shape == (3, 64, 64)


def test_prepare_coco_refuses_escaping_file_names_and_huge_images(tmp_path):
    from edgercnn.data.coco import prepare_coco

    root = tmp_path / "coco"
    for split in ("train", "val"):
        (root / f"{split}2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    cats = [{"id": 1, "name": "thing"}]
    for split, image in (("train", {"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}),
                         ("val", {"id": 2, "file_name": "../../../etc/hostname", "width": 10, "height": 10})):
        (root / "annotations" / f"instances_{split}2017.json").write_text(
            json.dumps({"images": [image], "annotations": [], "categories": cats}))
    with pytest.raises(EdgeRCNNError, match="not a path inside the images folder"):
        prepare_coco(root, out=tmp_path / "out", progress=False)
    val = root / "annotations" / "instances_val2017.json"
    val.write_text(json.dumps({"images": [{"id": 2, "file_name": "b.jpg", "width": 30000, "height": 30000}],
                               "annotations": [], "categories": cats}))
    with pytest.raises(EdgeRCNNError, match="over the limit"):
        prepare_coco(root, out=tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "manifest.json").exists()


# ---- the pixel limit ------------------------------------------------------------------------------------------


def _bomb(shapes: Path) -> Path:
    data = json.loads(_val_json(shapes).read_text())
    first = data["images"][0]
    path = shapes / "images" / "val" / first["file_name"]
    path.write_bytes(png_declaring(30000, 30000))
    first["width"] = first["height"] = 30000
    _val_json(shapes).write_text(json.dumps(data))
    return path


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(shapes):
    path = _bomb(shapes)
    assert path.stat().st_size < 1000
    ds = CocoInstanceDataset(shapes, "val", canvas=(64, 64))
    with pytest.raises(EdgeRCNNError, match="over the limit") as err:
        ds[0]
    assert "900000000 pixels" in str(err.value) and MAX_PIXELS_ENV in str(err.value)
    assert "\n" not in str(err.value)


def test_the_pixel_limit_is_configurable(shapes, monkeypatch):
    monkeypatch.setenv(MAX_PIXELS_ENV, str(64 * 64 - 1))
    ds = CocoInstanceDataset(shapes, "val", canvas=(64, 64))
    with pytest.raises(EdgeRCNNError, match="over the limit of 4095"):
        ds[0]
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(EdgeRCNNError, match=MAX_PIXELS_ENV):
        ds[0]
    monkeypatch.setenv(MAX_PIXELS_ENV, str(64 * 64))
    assert ds[0][0].shape == (3, 64, 64)


def test_prepare_shapes_refuses_a_size_over_the_limit(tmp_path, monkeypatch):
    monkeypatch.setenv(MAX_PIXELS_ENV, "10000")
    one_line_error(invoke("prepare", "shapes", "--out", tmp_path / "s", "--train", "1", "--val", "1", "--size",
                          "128"), "over the limit")
    assert not (tmp_path / "s").exists()


def _cityscapes(tmp_path):
    root = tmp_path / "cityscapes"
    shutil.copytree(FIXTURES / "cityscapes", root)
    return root, next((root / "leftImg8bit").rglob("*_leftImg8bit.png"))


def test_prepare_cityscapes_refuses_a_truncated_image(tmp_path):
    root, image = _cityscapes(tmp_path)
    data = image.read_bytes()
    image.write_bytes(data[: len(data) * 2 // 3])
    line = one_line_error(invoke("prepare", "cityscapes", "--root", root, "--workers", "1"), "truncated")
    assert str(image) in " ".join(line.split()) or image.name in line
    assert "ready" not in line


def test_prepare_cityscapes_refuses_an_image_over_the_limit(tmp_path, monkeypatch):
    root, image = _cityscapes(tmp_path)
    monkeypatch.setenv(MAX_PIXELS_ENV, "100")
    one_line_error(invoke("prepare", "cityscapes", "--root", root, "--workers", "1"), "over the limit")


def test_visualize_refuses_an_image_over_the_limit(shapes, tmp_path):
    from edgercnn.reporting.visualize import read_image

    _bomb(shapes)
    ds = CocoInstanceDataset(shapes, "val", canvas=(64, 64))
    with pytest.raises(EdgeRCNNError, match="over the limit"):
        read_image(ds, ds.ids[0])


# ---- empty val split --------------------------------------------------------------------------------------------


def test_an_empty_val_split_is_one_line_and_no_result(tmp_path):
    data = tmp_path / "shapes"
    make_shapes(data, train=2, val=0, size=64, seed=0)
    result = invoke("train", "--data", data, *TINY, "--steps", "3", "--out-dir", tmp_path / "runs",
                    "--results-dir", tmp_path / "results", "--experiment", "e")
    assert result.exit_code == 1 and "Traceback" not in result.output  # trained, then one line instead of NaNs
    errors = [line for line in " ".join(result.output.split()).split("error: ")[1:]]
    assert len(errors) == 1 and "the val split has no images" in errors[0]
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").rglob("seed-*.csv"))
    run = RunDir(tmp_path / "runs" / "e" / "sobel-p2" / "seed-0")
    assert run.final_weights.is_file() and not run.metrics.exists()  # the training is kept
    assert not run.lock_owner.exists()  # and the lock released
    one_line_error(invoke("eval", run.path), "the val split has no images")
    assert not run.metrics.exists() and not list((tmp_path / "results").rglob("seed-*.csv"))


# ---- report: seeds that are not one config ---------------------------------------------------------------------


def _seed_csv(folder: Path, seed: int, **cols):
    folder.mkdir(parents=True, exist_ok=True)
    row = {"experiment": folder.parent.name, "config": folder.name, "seed": seed, "filters": "sobel", "p": 2.0,
           "steps": 50, "data": "data/shapes", "data_fingerprint": "abc", "segm_AP": 20.0 + seed, "bbox_AP": 30.0}
    row.update(cols)
    pd.DataFrame([row]).to_csv(folder / f"seed-{seed}.csv", index=False)


@pytest.mark.parametrize("column,value", [("experiment", "other"), ("data_fingerprint", "def"), ("steps", 99),
                                          ("p", 3.0)])
def test_report_refuses_seeds_that_differ(tmp_path, column, value):
    exp = tmp_path / "results" / "demo"
    _seed_csv(exp / "sobel-p2", 0)
    _seed_csv(exp / "sobel-p2", 1)
    _seed_csv(exp / "sobel-p2", 2, **{column: value})
    line = one_line_error(invoke("report", exp), column)
    assert "sobel-p2" in line and "seed(s) 0, 1" in line and "seed(s) 2" in line
    result = invoke("report", exp, "--split-mixed", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert f"{column}={value}" in result.output


def test_report_pools_seeds_that_differ_only_in_where_they_ran(tmp_path):
    exp = tmp_path / "results" / "demo"
    _seed_csv(exp / "sobel-p2", 0, device="cpu", data="/a/shapes")
    _seed_csv(exp / "sobel-p2", 1, device="cuda", data="/b/shapes")  # same fingerprint, other path
    result = invoke("report", exp, "--format", "csv")
    assert result.exit_code == 0, result.output


def test_compare_csv_with_two_rows_for_one_config_is_one_line(tmp_path):
    exp = tmp_path / "results" / "demo"
    _seed_csv(exp / "sobel-p2", 0)
    ref = tmp_path / "ref.csv"
    ref.write_text("config,segm_AP\nsobel-p2,20\nsobel-p2,21\n")
    one_line_error(invoke("report", exp, "--compare", ref), "more than one row")


# ---- detections files ---------------------------------------------------------------------------------------------


def _det(**kw):
    entry = {"image_id": 1, "category_id": 1, "score": 0.9, "bbox": [1.0, 1.0, 5.0, 5.0]}
    entry.update(kw)
    return entry


@pytest.mark.parametrize("text,needle", [
    ("[" * 100000 + "]" * 100000, "nested too deeply"),
    ('[{"image_id": 1, "category_id": 1, "score": ' + "1" * 5001 + ', "bbox": [1, 1, 5, 5]}]', "cannot be read"),
    (json.dumps([_det(bbox=[10.0, 10.0, -4.0, 5.0])]), "negative width or height"),
    (json.dumps([_det(bbox=[10.0, 10.0, 4.0, -5.0])]), "negative width or height"),
    ('[{"image_id": 1, "category_id": 1, "score": ' + "9" * 4000 + ', "bbox": [1, 1, 5, 5]}]',
     "not a finite number"),
])
def test_hostile_detections_are_one_line(shapes, tmp_path, text, needle):
    dets = tmp_path / "dets.json"
    dets.write_text(text)
    line = one_line_error(invoke("eval", "--detections", dets, "--data", shapes), needle)
    assert len(line) < 600
    assert not (tmp_path / "dets-metrics.json").exists()


def test_valid_detections_score_and_the_input_is_kept(shapes, tmp_path):
    gt = json.loads(_val_json(shapes).read_text())
    dets = tmp_path / "dets.json"
    entries = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0, "bbox": a["bbox"],
                "segmentation": a["segmentation"]} for a in gt["annotations"]]
    dets.write_text(json.dumps(entries))
    before = dets.read_bytes()
    result = invoke("eval", "--detections", dets, "--data", shapes)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "dets-metrics.json").read_text())
    assert metrics["segm_AP"] == pytest.approx(100.0) and metrics["detections"] == len(entries)
    assert dets.read_bytes() == before


# ---- recipes and backbones --------------------------------------------------------------------------------------


def test_authors_recipe_with_the_small_backbone_does_not_ask_for_resnet50_weights(shapes, tmp_path):
    line = one_line_error(invoke("train", "--recipe", "authors-coco", "--backbone", "small", "--data", shapes,
                                 "--steps", "3", "--device", "cpu", "--out-dir", tmp_path / "runs"),
                          "imagenet-resnet50")
    assert "resnet18" in line and "download" not in line
    assert not (tmp_path / "runs").exists()
