"""Issue 25, data import: hostile annotation values, empty datasets, the pixel-limit variable, EXIF orientation,
symlinks, lossy masks and messages that must not lie. Tiny synthetic files; CPU, seconds."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgercnn.cli import app
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.data.coco_json import mask_annotation
from edgercnn.data.dataset import CocoInstanceDataset

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def invoke(*args, env=None):
    result = CliRunner().invoke(app, [str(a) for a in args], terminal_width=200, env=env)
    result.plain = " ".join(ANSI.sub("", result.output).split())
    result.lines = [line for line in ANSI.sub("", result.output).splitlines() if line.strip()]
    return result


def _photo(w: int, h: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8)


def _square(x0=4, y0=4, x1=20, y1=16) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _export(root: Path, anns: list[dict], n_images: int = 2, size=(32, 24)) -> tuple[Path, Path]:
    """``n_images`` PNGs of ``size`` and a COCO JSON with ``anns`` (id and image_id filled in: image 1 unless
    given) plus one clean square on every image, so the train split always has an instance."""
    images = root / "imgs"
    images.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(1, n_images + 1):
        Image.fromarray(_photo(*size, i)).save(images / f"{i}.png")
        entries.append({"id": i, "file_name": f"{i}.png", "width": size[0], "height": size[1]})
    full = [{"image_id": i, "category_id": 1, "iscrowd": 0, "segmentation": _square()} for i in
            range(1, n_images + 1)] + [{"image_id": 1, **a} for a in anns]
    full = [{**a, "id": k} for k, a in enumerate(full, 1)]
    path = root / "export.json"
    path.write_text(json.dumps({"images": entries, "annotations": full,
                                "categories": [{"id": 1, "name": "thing"}]}))  # json writes NaN, Infinity
    return images, path


def _prepare(tmp_path, anns, *extra, **kw):
    images, path = _export(tmp_path / "user", anns, **kw)
    out = tmp_path / "out"
    return invoke("prepare", "coco-json", "--images", images, "--annotations", path, "--out", out, *extra), out


HOSTILE = {
    "nan": {"segmentation": [[4, 4, float("nan"), 4, 20, 16]]},
    "infinity": {"segmentation": [[4, 4, float("inf"), 4, 20, 16]]},
    "1e300": {"segmentation": [[4, 4, 1e300, 4, 20, 16, 4, 16]]},
    "string number": {"segmentation": [["4", 4, 20, 4, 20, 16]]},
    "odd length": {"segmentation": [[4, 4, 20, 4, 20, 16, 4]]},
    "bbox strings": {"segmentation": _square(), "bbox": ["4", 4, 16, 12]},
    "bbox of 3": {"segmentation": _square(), "bbox": [4, 4, 16]},
    "bbox nan": {"segmentation": _square(), "bbox": [4, 4, float("nan"), 12]},
    "float category": {"segmentation": _square(), "category_id": 1.0},
    "area string": {"segmentation": _square(), "area": "big"},
    "crowd bbox strings": {"segmentation": _square(), "iscrowd": 1, "bbox": ["a", "b", "c", "d"]},
    "iscrowd 2": {"segmentation": _square(), "iscrowd": 2},
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_values_are_skipped_counted_and_left_out_or_fatal_with_strict(tmp_path, case):
    ann = {"category_id": 1, "iscrowd": 0, **HOSTILE[case]}
    result, out = _prepare(tmp_path, [ann])
    assert result.exit_code == 0, result.plain
    assert "train: 2 images, 2 instances" in result.plain and "1 annotation(s) skipped" in result.plain
    written = json.loads((out / "annotations/instances_train.json").read_text())
    assert [a["id"] for a in written["annotations"]] == [1, 2]  # the bad one is not in the ground truth either
    ds = CocoInstanceDataset(out, "train", canvas=(32, 32))
    assert ds.instance_count == 2 and sum(len(ds[i][1]["labels"]) for i in range(len(ds))) == 2

    (out / "manifest.json").unlink()
    result, out = _prepare(tmp_path, [ann], "--strict")
    assert result.exit_code == 1 and len(result.lines) == 1 and "Traceback" not in result.output, result.output
    assert "annotation 3 (image 1)" in result.plain and not (out / "manifest.json").exists()


def test_loader_screens_a_hand_edited_file_the_same_way(tmp_path):
    """A prepared file edited afterwards (or made by another tool): the loader skips what prepare would, and the
    NaN polygon is never rasterised (that allocated memory until the machine ran out)."""
    result, out = _prepare(tmp_path, [])
    assert result.exit_code == 0, result.plain
    path = out / "annotations/instances_train.json"
    data = json.loads(path.read_text())
    data["annotations"] += [{"id": 10 + k, "image_id": 1, "category_id": 1, "iscrowd": 0, **HOSTILE[c]}
                            for k, c in enumerate(("nan", "1e300", "crowd bbox strings"))]
    path.write_text(json.dumps(data))
    ds = CocoInstanceDataset(out, "train", canvas=(32, 32))
    assert ds.skipped == {"bad_polygon": 2, "bad_value": 1} and ds.instance_count == 2
    assert [a["id"] for a in ds.coco.dataset["annotations"]] == [1, 2]  # evaluation never sees them either
    assert len(ds[0][1]["labels"]) == 1
    with pytest.raises(EdgeRCNNError, match="annotation 10 .*NaN"):
        CocoInstanceDataset(out, "train", canvas=(32, 32), strict=True)


def test_iscrowd_string_zero_is_not_crowd(tmp_path):
    result, out = _prepare(tmp_path, [{"category_id": 1, "iscrowd": "0", "segmentation": _square(2, 2, 8, 8)},
                                      {"category_id": 1, "iscrowd": "1", "segmentation": _square(22, 2, 30, 8)}])
    assert result.exit_code == 0 and "train: 2 images, 3 instances, 1 crowd regions" in result.plain, result.plain
    written = json.loads((out / "annotations/instances_train.json").read_text())["annotations"]
    assert [a["iscrowd"] for a in written] == [0, 0, 0, 1]


def test_prepare_and_loader_count_the_same_instances(tmp_path):
    """A polygon outside the image, a zero-area polygon and an all-background RLE: skipped by both alike."""
    empty = mask_annotation(np.zeros((24, 32), np.uint8), 1)
    result, out = _prepare(tmp_path, [
        {"category_id": 1, "iscrowd": 0, "segmentation": _square(40, 30, 60, 40)},  # right of and below 32x24
        {"category_id": 1, "iscrowd": 0, "segmentation": [[4, 4, 10, 10, 16, 16]]},  # collinear: no area
        {"category_id": 1, "iscrowd": 0, "segmentation": empty["segmentation"]},
        {"category_id": 1, "iscrowd": 0, "segmentation": _square(-5, -5, 3, 3)},  # partly inside: kept
    ])
    assert result.exit_code == 0, result.plain
    assert "train: 2 images, 3 instances" in result.plain and "3 with a zero-area mask" in result.plain
    ds = CocoInstanceDataset(out, "train", canvas=(32, 32))
    assert ds.instance_count == 3 == sum(len(ds[i][1]["labels"]) for i in range(len(ds)))


def test_image_ids_beyond_64_bits_are_one_line_errors(tmp_path):
    from edgercnn.evaluation.cocometrics import coco_metrics

    images, path = _export(tmp_path / "user", [])
    data = json.loads(path.read_text())
    data["images"][0]["id"] = 2**64
    for a in data["annotations"]:
        a["image_id"] = 2**64 if a["image_id"] == 1 else a["image_id"]
    path.write_text(json.dumps(data))
    result = invoke("prepare", "coco-json", "--images", images, "--annotations", path, "--out", tmp_path / "o")
    assert result.exit_code == 1 and len(result.lines) == 1 and "64-bit" in result.plain, result.output
    with pytest.raises(EdgeRCNNError, match="64-bit"):
        coco_metrics(data, [{"image_id": 2**64, "category_id": 1, "bbox": [0, 0, 4, 4], "score": 1.0}],
                     [2**64], kinds=("bbox",))


# ---------------------------------------------------------------- 0 images is never "dataset ready"

def test_no_images_is_an_error_not_dataset_ready(tmp_path):
    images, path = _export(tmp_path / "user", [])
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "images": [], "annotations": []}))
    out = tmp_path / "out"
    result = invoke("prepare", "coco-json", "--images", images, "--annotations", path, "--out", out)
    assert result.exit_code == 1 and "no usable images" in result.plain and "dataset ready" not in result.plain
    assert not (out / "manifest.json").exists()


def test_a_val_split_without_instances_is_named(tmp_path):
    images, path = _export(tmp_path / "user", [])
    data = json.loads(path.read_text())
    data["annotations"][1]["iscrowd"] = 1  # image 2: a crowd region only
    path.write_text(json.dumps(data))
    val = tmp_path / "val.json"
    val.write_text(json.dumps({**data, "images": data["images"][1:], "annotations": data["annotations"][1:]}))
    path.write_text(json.dumps({**data, "images": data["images"][:1], "annotations": data["annotations"][:1]}))
    result = invoke("prepare", "coco-json", "--images", images, "--annotations", path, "--val", val, "--out",
                    tmp_path / "o")
    assert result.exit_code == 0 and "val: 1 images but no instance to score" in result.plain, result.plain
    result = invoke("prepare", "coco-json", "--images", images, "--annotations", val, "--out", tmp_path / "o2")
    assert result.exit_code == 1 and "train split: 1 images but no instance to learn from" in result.plain
    assert not (tmp_path / "o2" / "manifest.json").exists()


def test_windows_separators_in_file_names_are_read(tmp_path):
    images, path = _export(tmp_path / "user", [])
    (images / "sub").mkdir()
    (images / "1.png").rename(images / "sub" / "1.png")
    data = json.loads(path.read_text())
    data["images"][0]["file_name"] = "sub\\1.png"
    path.write_text(json.dumps(data))
    out = tmp_path / "out"
    result = invoke("prepare", "coco-json", "--images", images, "--annotations", path, "--out", out)
    assert result.exit_code == 0 and "train: 2 images" in result.plain, result.plain
    ds = CocoInstanceDataset(out, "train", canvas=(32, 32))
    assert ds.coco.imgs[1]["file_name"] == "sub/1.png" and ds.image(1).shape == (24, 32, 3)


def _mask_set(root: Path, suffix: str = "_mask", same_folder: bool = False) -> tuple[Path, Path]:
    images = root / "images"
    masks = images if same_folder else root / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        Image.fromarray(_photo(16, 12, i)).save(images / f"p{i}.jpg")
        ids = np.zeros((12, 16), np.uint8)
        ids[2:8, 3:9] = 1
        Image.fromarray(ids).save(masks / f"p{i}{suffix}.png")
    return images, masks


@pytest.mark.parametrize("suffix, same, message", [
    ("_mask.png", False, "without separators or .png"),
    ("sub/_mask", False, "without separators"),
    ("", True, "need a suffix that tells them apart"),
])
def test_masks_suffix_that_cannot_match_is_an_error(tmp_path, suffix, same, message):
    images, masks = _mask_set(tmp_path, "_mask", same)
    result = invoke("prepare", "masks", "--images", images, "--masks", masks, "--out", tmp_path / "o",
                    "--suffix", suffix)
    assert result.exit_code == 1 and message in result.plain and "dataset ready" not in result.plain, result.plain


def test_masks_empty_suffix_in_a_folder_of_their_own(tmp_path):
    images, masks = _mask_set(tmp_path, "")
    result = invoke("prepare", "masks", "--images", images, "--masks", masks, "--out", tmp_path / "o",
                    "--suffix", "")
    assert result.exit_code == 0 and "train: 3 images, 3 instances" in result.plain, result.plain


def test_masks_with_every_mask_missing_is_an_error(tmp_path):
    images, masks = _mask_set(tmp_path, "_m")
    result = invoke("prepare", "masks", "--images", images, "--masks", masks, "--out", tmp_path / "o")
    assert result.exit_code == 1 and "no usable images" in result.plain and "mask file not found" in result.plain
    assert not (tmp_path / "o" / "manifest.json").exists()


# ---------------------------------------------------------------- pixel limit variable

@pytest.mark.parametrize("value", ["abc", "0", "-1", "1e30", "nan"])
def test_bad_pixel_limit_is_one_line_naming_the_variable(tmp_path, value):
    env = {"EDGERCNN_MAX_IMAGE_PIXELS": value}
    images, path = _export(tmp_path / "user", [])
    for args in (("coco-json", "--images", images, "--annotations", path),
                 ("masks", "--images", _mask_set(tmp_path)[0], "--masks", tmp_path / "masks")):
        result = invoke("prepare", *args, "--out", tmp_path / "o", env=env)
        assert result.exit_code == 1 and len(result.lines) == 1, result.output
        assert "EDGERCNN_MAX_IMAGE_PIXELS" in result.plain and "too large" not in result.plain
    for args in (("shapes", "--train", 1, "--val", 1, "--size", 32), ("cityscapes", "--root", tmp_path),
                 ("pennfudan", "--root", tmp_path)):  # before any work, in every prepare command
        result = invoke("prepare", *args, "--out", tmp_path / "o", env=env)
        assert result.exit_code == 1 and "EDGERCNN_MAX_IMAGE_PIXELS" in result.plain, result.output


def test_bad_pixel_limit_stops_training_before_a_loader_worker_meets_it(tmp_path, monkeypatch):
    result, out = _prepare(tmp_path, [])
    assert result.exit_code == 0, result.plain
    monkeypatch.setenv("EDGERCNN_MAX_IMAGE_PIXELS", "nan")
    with pytest.raises(EdgeRCNNError, match="EDGERCNN_MAX_IMAGE_PIXELS='nan'"):
        CocoInstanceDataset(out, "train")


# ---------------------------------------------------------------- EXIF orientation, links, lossy masks

def _rotated_jpeg(path: Path, w: int, h: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored w x h, shown rotated 90°: h x w
    Image.fromarray(_photo(w, h)).save(path, format="JPEG", exif=exif)


def test_exif_orientation_is_applied_at_import_and_in_training(tmp_path):
    images, path = _export(tmp_path / "user", [], size=(24, 24))
    _rotated_jpeg(images / "r.jpg", 32, 20)  # shown 20 wide, 32 high, as labelling tools show it
    data = json.loads(path.read_text())
    data["images"] += [{"id": 7, "file_name": "r.jpg", "width": 20, "height": 32},
                       {"id": 8, "file_name": "r.jpg", "width": 32, "height": 20}]  # the stored pixels' size
    data["annotations"] += [{"id": 70, "image_id": 7, "category_id": 1, "iscrowd": 0,
                             "segmentation": _square(2, 20, 18, 30)}]  # only inside the rotated view
    path.write_text(json.dumps(data))
    out = tmp_path / "out"
    result = invoke("prepare", "coco-json", "--images", images, "--annotations", path, "--out", out)
    assert result.exit_code == 0 and "train: 3 images, 3 instances" in result.plain, result.plain
    assert "is 20x32 after its EXIF orientation 6" in result.plain and "annotated as 32x20" in result.plain
    ds = CocoInstanceDataset(out, "train", canvas=(32, 32))
    assert ds.image(7).shape == (32, 20, 3)


def test_links_out_of_the_images_folder_are_refused(tmp_path):
    images, path = _export(tmp_path / "user", [])
    outside = tmp_path / "secret"
    outside.mkdir()
    Image.fromarray(_photo(32, 24)).save(outside / "x.png")
    (images / "2.png").unlink()
    (images / "2.png").symlink_to(outside / "x.png")
    out = tmp_path / "out"
    result = invoke("prepare", "coco-json", "--images", images, "--annotations", path, "--out", out)
    assert result.exit_code == 0 and "train: 1 images" in result.plain and "outside the images folder" in result.plain
    (images / "2.png").unlink()  # a link made after prepare: the loader refuses it too
    (images / "1.png").rename(outside / "1.png")
    (images / "1.png").symlink_to(outside / "1.png")
    ds = CocoInstanceDataset(out, "train", canvas=(32, 32))
    with pytest.raises(EdgeRCNNError, match="outside the images folder"):
        ds[0]


def test_a_jpeg_mask_named_png_is_refused(tmp_path):
    images, masks = _mask_set(tmp_path)
    buf = io.BytesIO()
    Image.open(masks / "p1_mask.png").convert("L").save(buf, format="JPEG")
    (masks / "p1_mask.png").write_bytes(buf.getvalue())
    result = invoke("prepare", "masks", "--images", images, "--masks", masks, "--out", tmp_path / "o")
    assert result.exit_code == 0 and "train: 2 images" in result.plain, result.plain
    assert "mask is a JPEG file, not a PNG; masks must be lossless" in result.plain


def test_pennfudan_errors_do_not_suggest_a_strict_option_it_lacks(tmp_path, monkeypatch):
    import edgercnn.data.pennfudan as pennfudan

    root = tmp_path / "PennFudanPed"
    images, masks = _mask_set(root)
    images.rename(root / "PNGImages")
    masks.rename(root / "PedMasks")
    for p in (root / "PNGImages").iterdir():  # Penn-Fudan's images are PNGs
        Image.open(p).save(p.with_suffix(".png"))
        p.unlink()
    (root / "PedMasks" / "p1_mask.png").write_bytes(b"broken")
    monkeypatch.setattr(pennfudan, "COUNT", 3)
    result = invoke("prepare", "pennfudan", "--root", root, "--out", tmp_path / "o")
    assert result.exit_code == 1 and len(result.lines) == 1, result.output
    assert "--strict" not in result.plain and "extract PennFudanPed.zip again" in result.plain
