"""The training Dataset and its transforms: canvas, padding, flip/resize consistency, bad input (file names outside
the images folder, the pixel limit, truncated images, EXIF, splits without instances, garbage RLEs)."""

from __future__ import annotations

import io
import json
import random
import shutil

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from edgercnn.core.errors import EdgeRCNNError
from edgercnn.data.dataset import MAX_PIXELS_ENV, CocoInstanceDataset, collate, masks_to_boxes
from edgercnn.data.shapes import make_shapes

from tests.crafted import bomb, val_json

CANVAS = (200, 160)  # W x H; a square 96 px image fits as 160x160, 40 px of right padding
SMALL_CANVAS = (96, 64)  # W x H of the image decoding and annotation checks


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root, train=6, val=2, size=96, seed=3)
    return root


def _fresh(tmp_path, shapes_root):
    import shutil
    root = tmp_path / "ds"
    shutil.copytree(shapes_root, root)
    return root


def _check(image, target, canvas=CANVAS):
    w, h = canvas
    assert image.dtype == torch.float32 and image.shape == (3, h, w) and 0 <= image.min() and image.max() <= 1
    k = len(target["labels"])
    assert target["boxes"].shape == (k, 4) and target["boxes"].dtype == torch.float32
    assert target["masks"].shape == (k, h, w) and target["masks"].dtype == torch.uint8
    assert target["labels"].dtype == torch.int64 and target["image_id"].dtype == torch.int64
    boxes = target["boxes"]
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    if k:
        assert torch.equal(torch.from_numpy(masks_to_boxes(target["masks"].numpy())[0]), boxes)


def test_canvas_padding_and_resize_consistency(shapes_root):
    ds = CocoInstanceDataset(shapes_root, "train", canvas=CANVAS, train=True)
    assert len(ds) == 6 and ds.ids == sorted(ds.ids) and ds.classes[0] == "circle"
    for i in range(len(ds)):
        image, target = ds[(i, i)]
        _check(image, target)
        assert target["scale"].item() == pytest.approx(160 / 96)
        assert target["orig_size"].tolist() == [96, 96]
        assert image[:, :, 160:].abs().sum() == 0 and target["masks"][:, :, 160:].sum() == 0  # zero padding right
        # masks follow the resize: shrink back and compare with the original annotation
        info = ds.coco.imgs[ds.ids[i]]
        anns = [a for a in ds.coco.imgToAnns[ds.ids[i]] if not a["iscrowd"]]
        flipped = ds.flips(i)
        for ann, mask in zip(anns, target["masks"]):
            small = np.array(Image.fromarray(mask[:, :160].numpy() * 255).resize((96, 96), Image.BILINEAR)) > 127
            orig = ds.coco.annToMask(ann).astype(bool)
            orig = orig[:, ::-1] if flipped else orig
            iou = (small & orig).sum() / (small | orig).sum()
            assert iou > 0.9, (i, iou)
        assert info["width"] == 96


def test_flip_depends_only_on_seed(shapes_root):
    ds = CocoInstanceDataset(shapes_root, "train", canvas=CANVAS, train=True, hflip=0.5)
    seeds = range(200)
    decisions = [ds.flips(s) for s in seeds]
    assert 60 < sum(decisions) < 140
    seed = next(s for s in seeds if ds.flips(s))
    a, b = ds[(0, seed)], ds[(0, seed)]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["masks"], b[1]["masks"])
    plain_img, plain = ds[0]  # int key: never flipped
    flip_img, flip = a
    # flipping the content (160 px wide, padding stays right) mirrors image, masks and boxes
    assert (flip_img[:, :, :160] - plain_img[:, :, :160].flip(-1)).abs().mean() < 0.01
    # nearest-neighbour resizing is not exactly flip-equivariant: allow a pixel at the edges
    fm, pm = flip["masks"][:, :, :160].bool(), plain["masks"][:, :, :160].flip(-1).bool()
    assert ((fm & pm).sum((1, 2)) / (fm | pm).sum((1, 2)) > 0.95).all()
    expected = plain["boxes"].clone()
    expected[:, 0], expected[:, 2] = 160 - plain["boxes"][:, 2], 160 - plain["boxes"][:, 0]
    assert torch.allclose(flip["boxes"], expected, atol=1.01)
    assert flip_img[:, :, 160:].abs().sum() == 0
    eval_ds = CocoInstanceDataset(shapes_root, "train", canvas=CANVAS, train=False)
    assert torch.equal(eval_ds[(0, seed)][0], plain_img)


def test_seeded_loader_in_workers_matches_main_process(shapes_root):
    ds = CocoInstanceDataset(shapes_root, "train", canvas=CANVAS, train=True)
    keys = [(i, random.Random(9).randrange(10**9) + i) for i in range(4)]
    loader = torch.utils.data.DataLoader([k for k in keys], batch_size=2, num_workers=2,
                                         collate_fn=lambda b: collate([ds[k] for k in b]))
    got = [img for images, _ in loader for img in images]
    for key, img in zip(keys, got):
        assert torch.equal(img, ds[key][0])


def test_collate_and_max_images(shapes_root):
    ds = CocoInstanceDataset(shapes_root, "train", canvas=CANVAS, max_images=3)
    assert len(ds) == 3
    images, targets = collate([ds[0], ds[1]])
    assert len(images) == len(targets) == 2 and isinstance(images, list)


def test_image_without_instances_and_crowd_excluded(tmp_path, shapes_root):
    root = _fresh(tmp_path, shapes_root)
    path = root / "annotations/instances_train.json"
    data = json.loads(path.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 1]
    first2 = next(a for a in data["annotations"] if a["image_id"] == 2)
    first2["iscrowd"] = 1
    path.write_text(json.dumps(data))
    ds = CocoInstanceDataset(root, "train", canvas=CANVAS)
    image, target = ds[0]
    _check(image, target)
    assert target["boxes"].shape == (0, 4) and target["masks"].shape == (0, 160, 200)
    n2 = sum(1 for a in data["annotations"] if a["image_id"] == 2)
    assert len(ds[1][1]["labels"]) == n2 - 1
    assert first2["id"] in ds.coco.anns  # kept for evaluation


def test_tiny_instance_dropped_after_resize(tmp_path, shapes_root):
    root = _fresh(tmp_path, shapes_root)
    path = root / "annotations/instances_train.json"
    data = json.loads(path.read_text())
    data["annotations"].append({"id": 999, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 1,
                                "bbox": [5, 5, 1, 1], "segmentation": [[5, 5, 6, 5, 6, 6]]})
    path.write_text(json.dumps(data))
    before = sum(1 for a in data["annotations"] if a["image_id"] == 1) - 1
    ds = CocoInstanceDataset(root, "train", canvas=(40, 30))  # downscale: the 1-pixel triangle vanishes
    _, target = ds[0]
    _check(_, target, canvas=(40, 30))
    assert len(target["labels"]) <= before


@pytest.mark.parametrize("bad,reason", [
    ({"segmentation": [[1, 1, 5, 5]]}, "polygon_lt_3_points"),
    ({"bbox": [1, 1, 0, 4]}, "zero_area_box"),
    ({"area": 0}, "zero_area_mask"),
    ({"category_id": 77}, "unknown_category"),
])
def test_bad_annotations_skipped_or_strict(tmp_path, shapes_root, bad, reason):
    root = _fresh(tmp_path, shapes_root)
    path = root / "annotations/instances_train.json"
    data = json.loads(path.read_text())
    data["annotations"][0].update(bad)
    path.write_text(json.dumps(data))
    ds = CocoInstanceDataset(root, "train", canvas=CANVAS)
    assert ds.skipped == {reason: 1}
    with pytest.raises(EdgeRCNNError, match=r"instances_train\.json: annotation 1 .*--strict"):
        CocoInstanceDataset(root, "train", canvas=CANVAS, strict=True)


def test_bad_files_name_the_file(tmp_path, shapes_root):
    root = _fresh(tmp_path, shapes_root)
    with pytest.raises(EdgeRCNNError, match="has no manifest.json.*edgercnn prepare shapes"):
        CocoInstanceDataset(tmp_path, "train")
    with pytest.raises(EdgeRCNNError, match="no split 'test'"):
        CocoInstanceDataset(root, "test")
    (root / "images/train/000001.png").write_bytes(b"garbage")
    ds = CocoInstanceDataset(root, "train", canvas=CANVAS)
    with pytest.raises(EdgeRCNNError, match=r"000001\.png: cannot decode"):
        ds[0]
    (root / "images/train/000002.png").unlink()
    with pytest.raises(EdgeRCNNError, match=r"000002\.png: image file not found"):
        ds[1]
    (root / "annotations/instances_val.json").write_text("{not json")
    with pytest.raises(EdgeRCNNError, match=r"instances_val\.json: malformed JSON"):
        CocoInstanceDataset(root, "val")
    (root / "annotations/instances_val.json").write_text('{"images": []}')
    with pytest.raises(EdgeRCNNError, match=r"instances_val\.json: not a COCO instances file"):
        CocoInstanceDataset(root, "val")
    (root / "annotations/instances_val.json").unlink()
    with pytest.raises(EdgeRCNNError, match=r"instances_val\.json: annotation file not found"):
        CocoInstanceDataset(root, "val")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["splits"]["train"]["images"] = "nowhere"
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EdgeRCNNError, match="nowhere: images folder"):
        CocoInstanceDataset(root, "train")
    del manifest["classes"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EdgeRCNNError, match="manifest.json: missing key 'classes'"):
        CocoInstanceDataset(root, "train")
    (root / "manifest.json").write_text("[")
    with pytest.raises(EdgeRCNNError, match="manifest.json: not valid JSON"):
        CocoInstanceDataset(root, "train")


# ---- dataset file names stay inside the images folder ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../../etc/hostname", "/etc/hostname", "a/../../x.png", "..\\..\\x.png"])
def test_a_file_name_outside_the_images_folder_is_refused(shapes, name):
    path = val_json(shapes)
    data = json.loads(path.read_text())
    data["images"][0]["file_name"] = name
    path.write_text(json.dumps(data))
    with pytest.raises(EdgeRCNNError, match="not a path inside the images folder"):
        CocoInstanceDataset(shapes, "val", canvas=(64, 64))


def test_subfolders_in_file_names_are_fine(shapes):
    images = shapes / "images" / "val"
    (images / "sub").mkdir()
    path = val_json(shapes)
    data = json.loads(path.read_text())
    first = data["images"][0]["file_name"]
    shutil.move(images / first, images / "sub" / first)
    data["images"][0]["file_name"] = f"sub/{first}"
    path.write_text(json.dumps(data))
    ds = CocoInstanceDataset(shapes, "val", canvas=(64, 64))
    assert ds[0][0].shape == (3, 64, 64)


# ---- the pixel limit ------------------------------------------------------------------------------------------------


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(shapes):
    path = bomb(shapes)
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


# ---- truncated images are corrupt -----------------------------------------------------------------------------------


def _jpeg_dataset(tmp_path, jpeg: bytes, name="000001.jpg"):
    root = tmp_path / "ds"
    make_shapes(root, train=1, val=0, size=64)
    path = root / "annotations/instances_train.json"
    data = json.loads(path.read_text())
    data["images"][0]["file_name"] = name
    path.write_text(json.dumps(data))
    (root / "images/train" / name).write_bytes(jpeg)
    return root


def _jpeg(size=64, exif=None) -> bytes:
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur((rng.random((size, size, 3)) * 255).astype(np.uint8), (7, 7), 2)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90, **({"exif": exif} if exif else {}))
    return buf.getvalue()


def _with_app_segment(jpeg: bytes, payload: bytes) -> bytes:
    """``jpeg`` with an APP15 segment right after SOI (as an EXIF thumbnail would sit: a whole JPEG inside)."""
    segment = b"\xff\xef" + (len(payload) + 2).to_bytes(2, "big") + payload
    return jpeg[:2] + segment + jpeg[2:]


@pytest.mark.parametrize("cut", [0.7, 0.95])
def test_truncated_jpeg_is_corrupt(tmp_path, cut):
    full = _with_app_segment(_jpeg(), _jpeg(16))  # the inner JPEG's EOI must not make the file look complete
    root = _jpeg_dataset(tmp_path, full[: int(len(full) * cut)])
    ds = CocoInstanceDataset(root, "train", canvas=SMALL_CANVAS)
    with pytest.raises(EdgeRCNNError, match=r"000001\.jpg: cannot decode the image"):
        ds[0]


def test_truncated_png_is_corrupt(tmp_path):
    root = tmp_path / "ds"
    make_shapes(root, train=2, val=0, size=64)
    png = root / "images/train/000001.png"
    data = png.read_bytes()
    png.write_bytes(data[: len(data) // 2])
    (root / "images/train/000002.png").write_bytes(data[:-12])  # only the end chunk is missing
    ds = CocoInstanceDataset(root, "train", canvas=SMALL_CANVAS)
    for i, name in enumerate(["000001.png", "000002.png"]):
        with pytest.raises(EdgeRCNNError, match=rf"{name}: cannot decode the image"):
            ds[i]


@pytest.mark.parametrize("kind", ["png", "jpeg", "jpeg-exif-rotated", "jpeg-trailing-bytes", "jpeg-thumbnail"])
def test_valid_images_decode_exactly_as_cv2_imread(tmp_path, kind):
    ex = Image.Exif()
    ex[0x0112] = 6  # rotate 90°: applied, as viewers and labelling tools show the image (data.dataset.decode_image)
    data = {"png": None, "jpeg": _jpeg(), "jpeg-exif-rotated": _jpeg(exif=ex),
            "jpeg-trailing-bytes": _jpeg() + b"\0" * 100, "jpeg-thumbnail": _with_app_segment(_jpeg(), _jpeg(16))}[kind]
    if data is None:
        root = tmp_path / "ds"
        make_shapes(root, train=1, val=0, size=64)
        name = "000001.png"
    else:
        name = "000001.jpg"
        root = _jpeg_dataset(tmp_path, data, name)
    ds = CocoInstanceDataset(root, "train", canvas=SMALL_CANVAS)
    path = str(root / "images/train" / name)
    expected = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)  # EXIF orientation applied
    got = ds._read_image(ds.coco.imgs[ds.ids[0]])
    assert got.shape == (64, 64, 3) and np.array_equal(got, expected)


# ---- a split without instances is loud ------------------------------------------------------------------------------


def test_empty_split_warns(tmp_path):
    from rich.console import Console

    from edgercnn.data.dataset import warn_if_empty

    root = tmp_path / "ds"
    make_shapes(root, train=3, val=1, size=64)
    buf = io.StringIO()
    ds = CocoInstanceDataset(root, "train", canvas=SMALL_CANVAS)
    assert ds.instance_count == len(json.loads((root / "annotations/instances_train.json").read_text())["annotations"])
    assert warn_if_empty(ds, Console(file=buf)) is False and buf.getvalue() == ""
    path = root / "annotations/instances_train.json"
    data = json.loads(path.read_text())
    for ann in data["annotations"]:  # some crowd, some broken: nothing left to train on
        ann.update({"iscrowd": 1} if ann["id"] % 2 else {"category_id": 99})
    path.write_text(json.dumps(data))
    ds = CocoInstanceDataset(root, "train", canvas=SMALL_CANVAS)
    assert len(ds) == 3 and ds.instance_count == 0
    assert warn_if_empty(ds, Console(file=buf, width=300)) is True
    out = buf.getvalue()
    assert "warning" in out and "instances_train.json" in out and "3 images but no instances" in out
    assert len(out.strip().splitlines()) == 1


# ---- garbage RLE counts are a per-annotation problem ----------------------------------------------------------------


@pytest.mark.parametrize("counts", ["garbage!!", "PPPP", "O", "", "half", [1, 2, 3], [5000], [-5, 3], 5, None])
def test_garbage_rle_is_skipped_or_strict(tmp_path, counts):
    root = tmp_path / "ds"
    make_shapes(root, train=2, val=0, size=64)
    path = root / "annotations/instances_train.json"
    data = json.loads(path.read_text())
    seg = data["annotations"][0]["segmentation"]
    seg["counts"] = seg["counts"][: len(seg["counts"]) // 2] if counts == "half" else counts
    path.write_text(json.dumps(data))
    ds = CocoInstanceDataset(root, "train", canvas=SMALL_CANVAS)
    assert ds.skipped == {"bad_segmentation": 1}
    for i in range(len(ds)):
        ds[i]  # no traceback from pycocotools
    with pytest.raises(EdgeRCNNError, match=r"annotation 1 .*malformed segmentation.*--strict"):
        CocoInstanceDataset(root, "train", canvas=SMALL_CANVAS, strict=True)
