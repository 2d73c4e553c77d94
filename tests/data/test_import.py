"""Importers of a user's own data: prepare coco-json (ids kept, polygons/RLE/crowd, subfolders, image checks, seeded
splits), prepare masks (instance-id PNGs) and prepare pennfudan (the real copy when present; --download from a local
server). Round trips: exported and imported again gives the same masks; ground truth through the prediction path
scores AP 100; the prepared dataset trains."""

from __future__ import annotations

import contextlib
import io
import json
import re
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from edgercnn.cli import app
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.data.coco_import import check_image, import_coco_json, split_by_fraction
from edgercnn.data.coco_json import mask_annotation
from edgercnn.data.dataset import CocoInstanceDataset
from edgercnn.data.manifest import dataset_fingerprint, load_manifest
from edgercnn.data.masks import import_masks
from edgercnn.data.pennfudan import prepare_pennfudan
from edgercnn.data.transforms import to_original

from tests.paths import SHARED_DATASETS

PENNFUDAN = SHARED_DATASETS / "PennFudanPed"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], terminal_width=200)
    result.plain = " ".join(ANSI.sub("", result.output).split())
    return result


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _photo(w: int, h: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8)


def _user_export(root: Path) -> tuple[Path, Path, dict]:
    """A COCO export as annotation tools write it: images in subfolders, non-contiguous image/annotation/category
    ids, a polygon, a compressed RLE, an uncompressed RLE and an uncompressed-RLE crowd region."""
    images = root / "imgs"
    specs = {101: ("a/one.png", 48, 40), 205: ("b/c/two.jpg", 40, 56), 7: ("three.png", 64, 32)}
    entries = []
    for img_id, (name, w, h) in specs.items():
        _save(images / name, _photo(w, h, img_id))
        entries.append({"id": img_id, "file_name": name, "width": w, "height": h, "license": 0})
    square = np.zeros((40, 48), np.uint8)
    square[5:20, 8:30] = 1
    blob = np.zeros((56, 40), np.uint8)
    blob[10:40, 5:25] = 1
    crowd = np.zeros((56, 40), np.uint8)
    crowd[42:54, 20:38] = 1
    strip = np.zeros((32, 64), np.uint8)
    strip[4:28, 40:60] = 1

    def uncompressed(mask):  # COCO's uncompressed RLE: column-major run lengths, starting with zeros
        flat = mask.flatten(order="F")
        runs = np.diff(np.r_[0, np.flatnonzero(np.diff(flat)) + 1, flat.size]).tolist()
        return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": ([0] if flat[0] else []) + runs}

    anns = [
        {"id": 9000, "image_id": 101, "category_id": 7, "iscrowd": 0, "area": 300.0, "bbox": [8, 5, 22, 15],
         "segmentation": [[8, 5, 30, 5, 30, 20, 8, 20]]},
        {"id": 17, "image_id": 205, "category_id": 3, **mask_annotation(blob, 3)},
        {"id": 18, "image_id": 205, "category_id": 3, "iscrowd": 1, "area": int(crowd.sum()),
         "bbox": [20, 42, 18, 12], "segmentation": uncompressed(crowd)},
        {"id": 4, "image_id": 7, "category_id": 7, "iscrowd": 0, "area": int(strip.sum()), "bbox": [40, 4, 20, 24],
         "segmentation": uncompressed(strip)},
    ]
    data = {"info": {"description": "tool export"}, "images": entries, "annotations": anns,
            "categories": [{"id": 7, "name": "cat", "supercategory": "animal"},
                           {"id": 3, "name": "dog", "supercategory": "animal"}]}
    path = root / "export.json"
    path.write_text(json.dumps(data))
    return images, path, data


def _decoded(coco_data: dict) -> dict[int, np.ndarray]:
    """Annotation id → its mask decoded by pycocotools."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = coco_data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return {a["id"]: coco.annToMask(a) for a in coco_data["annotations"]}


def _prepared(out: Path, split: str) -> dict:
    return json.loads((out / "annotations" / f"instances_{split}.json").read_text())


def _ground_truth_ap(root: Path, split: str = "val") -> dict:
    """Feed each image's targets through the prediction path (to_original → COCO results) and score them."""
    from edgercnn.evaluation.cocometrics import coco_metrics
    from edgercnn.evaluation.evaluate import coco_results

    dataset = CocoInstanceDataset(root, split, canvas=(64, 64))
    results = []
    for i in range(len(dataset)):
        _, target = dataset[i]
        pred = {"boxes": target["boxes"], "masks": target["masks"][:, None].float(),
                "scores": torch.ones(len(target["labels"])), "labels": target["labels"]}
        orig = to_original(pred, float(target["scale"]), tuple(target["pad"].tolist()),
                           tuple(target["orig_size"].tolist()))
        results += coco_results(int(target["image_id"]), orig, dataset.label_to_cat_id)
    return coco_metrics(dataset.coco.dataset, results, dataset.ids)


# ---------------------------------------------------------------- prepare coco-json

def test_coco_json_keeps_ids_masks_and_references_images_in_place(tmp_path):
    images, path, original = _user_export(tmp_path / "user")
    out = tmp_path / "prepared"
    result = invoke("prepare", "coco-json", "--images", images, "--annotations", path, "--val-fraction", "0.34",
                    "--out", out)
    assert result.exit_code == 0, result.plain
    assert "train: 2 images" in result.plain and "val: 1 images" in result.plain
    manifest = load_manifest(out)
    assert manifest["classes"] == ["dog", "cat"] and manifest["category_ids"] == [3, 7]  # by category id
    assert manifest["splits"]["train"]["images"] == str(images.resolve())  # not copied
    assert manifest["split"] == {"method": "val-fraction", "val_fraction": 0.34, "seed": 0, "val_images": 1, "of": 3}
    assert not any(p.suffix in (".png", ".jpg") for p in out.rglob("*"))
    train, val = _prepared(out, "train"), _prepared(out, "val")
    assert sorted(i["id"] for i in train["images"] + val["images"]) == [7, 101, 205]
    by_id = {a["id"]: a for a in original["annotations"]}
    imported = train["annotations"] + val["annotations"]
    assert sorted(a["id"] for a in imported) == sorted(by_id)
    assert all(a == by_id[a["id"]] for a in imported)  # kept as they are (ids, polygons, RLE, crowd)
    want = _decoded(original)
    for data in (train, val):
        for ann_id, mask in _decoded(data).items():
            np.testing.assert_array_equal(mask, want[ann_id])
    for split in ("train", "val"):  # and the training loader sees every non-crowd mask, at the original size
        ds = CocoInstanceDataset(out, split, canvas=(64, 64))
        assert not ds.skipped
        for img_id in ds.ids:
            for ann in ds._targets[img_id]:
                np.testing.assert_array_equal(ds.coco.annToMask(ann), want[ann["id"]])
        assert len(ds[0][1]["labels"]) == len(ds._targets[ds.ids[0]])


def test_coco_json_split_is_seeded_and_recorded(tmp_path):
    assert split_by_fraction(range(100), 0.2, 5) == split_by_fraction(reversed(range(100)), 0.2, 5)
    assert len(split_by_fraction(range(100), 0.2, 5)) == 20
    assert split_by_fraction(range(100), 0.2, 5) != split_by_fraction(range(100), 0.2, 6)
    images, path, _ = _user_export(tmp_path / "user")
    a, b = tmp_path / "a", tmp_path / "b"
    import_coco_json(images, path, a, val_fraction=0.5, seed=3)
    import_coco_json(images, path, b, val_fraction=0.5, seed=3)
    assert _prepared(a, "val") == _prepared(b, "val")
    assert dataset_fingerprint(a) == dataset_fingerprint(b)
    assert load_manifest(a)["split"]["seed"] == 3
    with pytest.raises(EdgeRCNNError, match="--val-fraction 1.5"):
        import_coco_json(images, path, tmp_path / "c", val_fraction=1.5)
    with pytest.raises(EdgeRCNNError, match="pass one of them"):
        import_coco_json(images, path, tmp_path / "c", val=path, val_fraction=0.5)


def test_shapes_exported_and_imported_again_are_the_same_and_score_ap_100(tiny_shapes, tmp_path):
    out = tmp_path / "again"
    ann = tiny_shapes / "annotations"
    result = invoke("prepare", "coco-json", "--images", tiny_shapes / "images" / "train", "--annotations",
                    ann / "instances_train.json", "--val", ann / "instances_val.json", "--val-images",
                    tiny_shapes / "images" / "val", "--out", out)
    assert result.exit_code == 0, result.plain
    for split in ("train", "val"):
        before = json.loads((ann / f"instances_{split}.json").read_text())
        after = _prepared(out, split)
        assert after["images"] == before["images"] and after["annotations"] == before["annotations"]
        assert _decoded(after).keys() == _decoded(before).keys()
        for ann_id, mask in _decoded(after).items():
            np.testing.assert_array_equal(mask, _decoded(before)[ann_id])
    metrics = _ground_truth_ap(out)
    assert metrics["segm_AP"] == pytest.approx(100) and metrics["bbox_AP"] == pytest.approx(100)


def test_coco_json_bad_images_are_skipped_and_counted_or_fatal_with_strict(tmp_path):
    images, path, data = _user_export(tmp_path / "user")
    (images / "b" / "c" / "two.jpg").write_bytes(b"not an image")
    data["images"].append({"id": 300, "file_name": "gone.png", "width": 8, "height": 8})
    data["images"].append({"id": 301, "file_name": "../escape.png", "width": 8, "height": 8})
    data["images"][0]["width"] = 47  # one.png is 48 wide
    path.write_text(json.dumps(data))
    out = tmp_path / "prepared"
    result = invoke("prepare", "coco-json", "--images", images, "--annotations", path, "--out", out)
    assert result.exit_code == 0, result.plain
    assert "train: 1 images" in result.plain and "no val split" in result.plain
    for needle in ("skipped 1 image(s) with a missing file", "gone.png", "does not decode", "two.jpg",
                   "is 48x40 but annotated as 47x40", "path outside the images folder", "--strict"):
        assert needle in result.plain, needle
    assert [i["id"] for i in _prepared(out, "train")["images"]] == [7]
    result = invoke("prepare", "coco-json", "--images", images, "--annotations", path, "--out", out, "--strict")
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = [line for line in ANSI.sub("", result.output).splitlines() if line.strip()]
    assert len(lines) == 1 and "drop --strict" in lines[0], result.output


def test_check_image_decodes_as_the_loader_does(tmp_path, monkeypatch):
    _save(tmp_path / "x.png", _photo(10, 6, 0))
    assert check_image(tmp_path, "x.png") == (10, 6)
    assert check_image(tmp_path, "x.png", (6, 10)).reason == "size_mismatch"
    (tmp_path / "cut.png").write_bytes((tmp_path / "x.png").read_bytes()[:-20])  # IEND missing
    assert check_image(tmp_path, "cut.png").reason == "undecodable"
    assert check_image(tmp_path, "/etc/passwd").reason == "outside"
    monkeypatch.setenv("EDGERCNN_MAX_IMAGE_PIXELS", "50")  # the loader's pixel limit
    assert check_image(tmp_path, "x.png").reason == "too_large"


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["images"].append(dict(d["images"][0])), "image id 101 is listed twice"),
    (lambda d: d["annotations"].append({"id": 1, "image_id": 999, "category_id": 7}), "refers to image 999"),
    (lambda d: d.update(categories=[{"id": "x", "name": "cat"}]), "lacks an integer 'id'"),
    (lambda d: d.pop("images"), "not a COCO instances file"),
])
def test_coco_json_malformed_files_are_one_line_errors(tmp_path, mutate, message):
    images, path, data = _user_export(tmp_path / "user")
    mutate(data)
    path.write_text(json.dumps(data))
    result = invoke("prepare", "coco-json", "--images", images, "--annotations", path, "--out", tmp_path / "o")
    assert result.exit_code == 1 and message in result.plain and "Traceback" not in result.output


def test_coco_json_refuses_to_overwrite_its_input(tmp_path):
    images, path, _ = _user_export(tmp_path / "user")
    target = tmp_path / "o" / "annotations" / "instances_train.json"
    target.parent.mkdir(parents=True)
    target.write_text(path.read_text())
    with pytest.raises(EdgeRCNNError, match="would overwrite this input"):
        import_coco_json(images, target, tmp_path / "o")


# ---------------------------------------------------------------- prepare masks

def _mask_dataset(root: Path, count: int = 6) -> dict[str, list[np.ndarray]]:
    """Images (one in a subfolder) and their instance-id PNGs; returns name → the binary masks, by id value."""
    truth = {}
    for i in range(count):
        name = f"sub/img{i}.jpg" if i == 0 else f"img{i}.png"
        w, h = (32 if i % 2 else 64), 32  # scale 2 or 1 on the 64x64 canvas: exact round trips
        _save(root / "images" / name, _photo(w, h, i))
        ids = np.zeros((h, w), np.uint8)
        ids[2:12, 3:15] = 1
        ids[20:30, 2 + i:20 + i] = 4 if i % 2 else 2  # values need not be contiguous
        if i == 3:
            ids[25:29, 24:30] = 9
        _save(root / "masks" / Path(name).parent / f"{Path(name).stem}_mask.png", ids)
        truth[name] = [ids == v for v in np.unique(ids) if v]
    return truth


def test_masks_import_round_trip_and_ap_100(tmp_path):
    truth = _mask_dataset(tmp_path / "raw")
    out = tmp_path / "prepared"
    result = invoke("prepare", "masks", "--images", tmp_path / "raw" / "images", "--masks", tmp_path / "raw" / "masks",
                    "--class", "cell", "--val-fraction", "0.5", "--seed", "1", "--out", out)
    assert result.exit_code == 0, result.plain
    manifest = load_manifest(out)
    assert manifest["name"] == "masks" and manifest["classes"] == ["cell"] and manifest["split"]["val_images"] == 3
    seen = {}
    for split in ("train", "val"):
        data = _prepared(out, split)
        names = {i["id"]: i["file_name"] for i in data["images"]}
        for ann in data["annotations"]:
            seen.setdefault(names[ann["image_id"]], []).append(_decoded(data)[ann["id"]])
    assert sorted(seen) == sorted(truth)
    for name, masks in truth.items():
        assert len(seen[name]) == len(masks)
        for got, want in zip(seen[name], masks):
            np.testing.assert_array_equal(got, want)
    for split in ("train", "val"):
        metrics = _ground_truth_ap(out, split)
        assert metrics["segm_AP"] == pytest.approx(100) and metrics["bbox_AP"] == pytest.approx(100)


def test_manifest_records_the_one_recorded_command(tmp_path):
    """A manifest records core.commands.recorded_command: the CLI's normalized form (as run folders and result CSVs
    do), the raw argv for a library call; the CLI's form does not outlive its command."""
    import sys

    from edgercnn.core.commands import format_command, recorded_command

    _mask_dataset(tmp_path / "raw", count=2)
    images, masks = tmp_path / "raw" / "images", tmp_path / "raw" / "masks"
    result = invoke("prepare", "masks", "--out", tmp_path / "cli", "--masks", masks, "--images", images, "--seed", "0")
    assert result.exit_code == 0, result.plain
    assert load_manifest(tmp_path / "cli")["command"] == format_command(  # declaration order; a given default kept
        ["edgercnn", "prepare", "masks", "--images", images, "--masks", masks, "--out", tmp_path / "cli", "--seed", "0"])
    assert recorded_command() == format_command(sys.argv)
    import_masks(images, masks, tmp_path / "lib")
    assert load_manifest(tmp_path / "lib")["command"] == format_command(sys.argv)


def test_masks_problems_are_skipped_and_counted(tmp_path):
    _mask_dataset(tmp_path / "raw", 4)
    raw = tmp_path / "raw"
    (raw / "masks" / "img1_mask.png").unlink()
    _save(raw / "masks" / "img2_mask.png", np.zeros((32, 64, 3), np.uint8))  # RGB, not instance ids
    _save(raw / "masks" / "img3_mask.png", np.zeros((10, 10), np.uint8))  # wrong size
    summary = import_masks(raw / "images", raw / "masks", tmp_path / "o")
    assert summary["skipped_images"] == {"no_mask": 1, "bad_mask": 1, "size_mismatch": 1}
    assert summary["splits"] == {"train": {"images": 1, "instances": 2, "crowd": 0, "skipped_annotations": {}}}
    with pytest.raises(EdgeRCNNError, match="img1_mask.png: mask file not found; .*drop --strict"):
        import_masks(raw / "images", raw / "masks", tmp_path / "o", strict=True)


def test_masks_beside_images_then_train_and_evaluate_3_steps(tmp_path):
    _mask_dataset(tmp_path / "raw", 4)
    both = tmp_path / "raw" / "masks"  # images and masks in one folder: the masks are not taken for images
    for image in (tmp_path / "raw" / "images").rglob("*.*"):
        target = both / image.relative_to(tmp_path / "raw" / "images")
        image.rename(target)
    out = tmp_path / "prepared"
    summary = import_masks(both, both, out, val_fraction=0.25)
    assert sum(s["images"] for s in summary["splits"].values()) == 4
    result = invoke("train", "--data", out, "--backbone", "small", "--canvas", "64x64", "--steps", "3", "--workers",
                    "0", "--device", "cpu", "--experiment", "imp", "--out-dir", tmp_path / "runs", "--results-dir",
                    tmp_path / "results")
    assert result.exit_code == 0, result.plain


@pytest.mark.parametrize("command", ["coco-json", "masks", "pennfudan"])
def test_import_commands_explain_every_option(command):
    import typer.main

    click_cmd = typer.main.get_command(app).commands["prepare"].commands[command]
    for param in click_cmd.params:
        if param.param_type_name == "option":
            assert param.help and len(param.help) > 10, f"{command} {param.opts} lacks help"


# ---------------------------------------------------------------- prepare pennfudan

@pytest.mark.skipif(not PENNFUDAN.is_dir(), reason="no extracted Penn-Fudan copy at ../shared/datasets")
def test_pennfudan_real_copy(tmp_path):
    out = tmp_path / "pf"
    result = invoke("prepare", "pennfudan", "--root", PENNFUDAN, "--out", out)
    assert result.exit_code == 0, result.plain
    assert "train: 127 images, 314 instances" in result.plain and "val: 43 images, 109 instances" in result.plain
    val = _prepared(out, "val")
    names = sorted(p.name for p in (PENNFUDAN / "PNGImages").glob("*.png"))
    assert [i["file_name"] for i in val["images"]] == names[::4]
    ds = CocoInstanceDataset(out, "val", canvas=(128, 128))
    assert len(ds) == 43 and ds.instance_count == 109 and ds.classes == ["pedestrian"]


def _fake_pennfudan_zip(count: int = 170) -> bytes:
    """A Penn-Fudan-shaped zip of tiny images: one pedestrian (value 1) per mask."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("PennFudanPed/readme.txt", "fake")
        for i in range(count):
            stem = f"FudanPed{i + 1:05d}"
            for name, array in ((f"PNGImages/{stem}.png", _photo(12, 10, i)),
                                (f"PedMasks/{stem}_mask.png", np.pad(np.ones((4, 6), np.uint8), 3))):
                png = io.BytesIO()
                Image.fromarray(array).save(png, format="PNG")
                zf.writestr(f"PennFudanPed/{name}", png.getvalue())
    return buf.getvalue()


@pytest.fixture
def served(tmp_path):
    """A local HTTP server over tmp_path/www (nothing leaves 127.0.0.1)."""
    www = tmp_path / "www"
    www.mkdir()
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(www)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_pennfudan_download_from_a_local_server(served, tmp_path):
    www, url = served
    (www / "PennFudanPed.zip").write_bytes(_fake_pennfudan_zip())
    out = tmp_path / "pf"
    summary = prepare_pennfudan(out=out, download=True, url=f"{url}/PennFudanPed.zip", progress=False)
    assert {s: c["images"] for s, c in summary["splits"].items()} == {"train": 127, "val": 43}
    assert load_manifest(out)["splits"]["val"]["images"] == "PennFudanPed/PNGImages"  # inside --out: relative
    (www / "short.zip").write_bytes(_fake_pennfudan_zip(169))
    with pytest.raises(EdgeRCNNError, match="169 images and 169 masks.*has 170 of each"):
        prepare_pennfudan(out=tmp_path / "pf2", download=True, url=f"{url}/short.zip", progress=False)
    with pytest.raises(EdgeRCNNError, match="pass --root DIR"):
        prepare_pennfudan(out=tmp_path / "pf3")
