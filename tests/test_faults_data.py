"""Regressions from the data fault campaign: --force on foreign folders, truncated images, empty splits,
re-running prepare after damage, garbage RLEs, symlinks in zips, Ctrl-C advice, unwritable output."""

from __future__ import annotations

import errno
import io
import json
import random
import shutil
import stat
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from typer.testing import CliRunner

from edgercnn.cli import app
from edgercnn.data.dataset import CocoInstanceDataset
from edgercnn.data.shapes import make_shapes
from edgercnn.core.errors import EdgeRCNNError

SMALL = ["--train", "4", "--val", "2", "--size", "64"]
CANVAS = (96, 64)


def _prepare(out, *extra):
    return CliRunner().invoke(app, ["prepare", "shapes", "--out", str(out), *SMALL, *extra])


def _text(result):
    """The CLI's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def _one_line_error(result):
    """The CLI failed with exit status 1 and one line, not a traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """The files of a fresh ``prepare shapes`` with SMALL options."""
    out = tmp_path_factory.mktemp("fresh") / "shapes"
    make_shapes(out, train=4, val=2, size=64)
    return _files(out)


# ---- 1. --force only replaces what prepare shapes made ---------------------------------------------------------


def _foreign(root, manifest):
    (root / "images/train").mkdir(parents=True)
    (root / "annotations").mkdir()
    (root / "images/train/000001.png").write_bytes(b"the user's own photo")
    (root / "images/train/cat.jpg").write_bytes(b"jpeg")
    (root / "annotations/instances_train.json").write_text('{"mine": true}')
    if manifest is not None:
        (root / "manifest.json").write_text(manifest)
    return _files(root)


FOREIGN = {
    "other-name": json.dumps({"name": "mydata", "classes": ["a"], "category_ids": [1], "splits": {}}),
    "cityscapes": json.dumps({"name": "cityscapes", "classes": ["car"], "category_ids": [26], "splits": {}}),
    "coco": json.dumps({"name": "coco", "classes": ["person"], "category_ids": [1], "splits": {}}),
    "shapes-name-not-ours": json.dumps({"name": "shapes", "classes": ["a"], "category_ids": [1], "splits": {}}),
    "garbled": "{not json",
    "no-manifest": None,
}


@pytest.mark.parametrize("force", [True, False])
@pytest.mark.parametrize("kind", list(FOREIGN))
def test_force_never_touches_a_foreign_dataset(tmp_path, kind, force):
    before = _foreign(tmp_path, FOREIGN[kind])
    result = _prepare(tmp_path, *(["--force"] if force else []))
    line = _one_line_error(result)
    assert "--force" not in line and "another --out" in line
    assert _files(tmp_path) == before  # nothing deleted, nothing added


def test_force_deletes_only_its_own_files(tmp_path, fresh):
    out = tmp_path / "shapes"
    assert _prepare(out, "--train", "6").exit_code == 0
    (out / "images/train/mine.png").write_bytes(b"user file")
    (out / "images/train/000099.png").write_bytes(b"user file in our naming")
    (out / "notes.txt").write_text("keep me")
    result = _prepare(out, "--force")  # back to --train 4: images 5 and 6 go, the user's files stay
    assert result.exit_code == 0, result.output
    assert (out / "images/train/mine.png").read_bytes() == b"user file"
    assert (out / "images/train/000099.png").read_bytes() == b"user file in our naming"
    assert (out / "notes.txt").read_text() == "keep me"
    assert not (out / "images/train/000005.png").exists() and not (out / "images/train/000006.png").exists()
    own = {k: v for k, v in _files(out).items() if k not in ("images/train/mine.png", "images/train/000099.png",
                                                             "notes.txt")}
    assert own == fresh


def test_other_preparers_refuse_a_foreign_manifest(tmp_path):
    from edgercnn.data.coco import prepare_coco
    from edgercnn.data.cityscapes import convert_cityscapes

    out = tmp_path / "shapes"
    make_shapes(out, train=1, val=1, size=64)
    before = _files(out)
    root = tmp_path / "cityscapes"
    shutil.copytree(Path(__file__).resolve().parent / "fixtures" / "cityscapes", root)
    with pytest.raises(EdgeRCNNError, match=r"manifest.json: a 'shapes' dataset is there.*another --out") as err:
        convert_cityscapes(root, out=out, workers=1, progress=False)
    assert "--force" not in str(err.value)
    with pytest.raises(EdgeRCNNError, match=r"manifest.json: a 'shapes' dataset is there.*another --out"):
        prepare_coco(tmp_path / "coco", out=out, progress=False)
    result = CliRunner().invoke(app, ["prepare", "cityscapes", "--root", str(root), "--out", str(out),
                                      "--force", "--workers", "1"])
    assert "--force" not in _one_line_error(result)
    assert _files(out) == before


# ---- 2. truncated images are corrupt ---------------------------------------------------------------------------


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
    ds = CocoInstanceDataset(root, "train", canvas=CANVAS)
    with pytest.raises(EdgeRCNNError, match=r"000001\.jpg: cannot decode the image"):
        ds[0]


def test_truncated_png_is_corrupt(tmp_path):
    root = tmp_path / "ds"
    make_shapes(root, train=2, val=0, size=64)
    png = root / "images/train/000001.png"
    data = png.read_bytes()
    png.write_bytes(data[: len(data) // 2])
    (root / "images/train/000002.png").write_bytes(data[:-12])  # only the end chunk is missing
    ds = CocoInstanceDataset(root, "train", canvas=CANVAS)
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
    ds = CocoInstanceDataset(root, "train", canvas=CANVAS)
    path = str(root / "images/train" / name)
    expected = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)  # EXIF orientation applied
    got = ds._read_image(ds.coco.imgs[ds.ids[0]])
    assert got.shape == (64, 64, 3) and np.array_equal(got, expected)


# ---- 3. a split without instances is loud ----------------------------------------------------------------------


def test_empty_split_warns(tmp_path):
    from rich.console import Console

    from edgercnn.data.dataset import warn_if_empty

    root = tmp_path / "ds"
    make_shapes(root, train=3, val=1, size=64)
    buf = io.StringIO()
    ds = CocoInstanceDataset(root, "train", canvas=CANVAS)
    assert ds.instance_count == len(json.loads((root / "annotations/instances_train.json").read_text())["annotations"])
    assert warn_if_empty(ds, Console(file=buf)) is False and buf.getvalue() == ""
    path = root / "annotations/instances_train.json"
    data = json.loads(path.read_text())
    for ann in data["annotations"]:  # some crowd, some broken: nothing left to train on
        ann.update({"iscrowd": 1} if ann["id"] % 2 else {"category_id": 99})
    path.write_text(json.dumps(data))
    ds = CocoInstanceDataset(root, "train", canvas=CANVAS)
    assert len(ds) == 3 and ds.instance_count == 0
    assert warn_if_empty(ds, Console(file=buf, width=300)) is True
    out = buf.getvalue()
    assert "warning" in out and "instances_train.json" in out and "3 images but no instances" in out
    assert len(out.strip().splitlines()) == 1


# ---- 4. prepare verifies what it skips -------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["rm-image", "empty-image", "truncated-image", "rm-json", "garbled-json"])
def test_prepare_shapes_rerun_repairs_damage(tmp_path, fresh, damage):
    out = tmp_path / "shapes"
    assert _prepare(out).exit_code == 0
    img, ann = out / "images/train/000002.png", out / "annotations/instances_val.json"
    if damage == "rm-image":
        img.unlink()
    elif damage == "empty-image":
        img.write_bytes(b"")
    elif damage == "truncated-image":
        img.write_bytes(img.read_bytes()[:-30])
    elif damage == "rm-json":
        ann.unlink()
    else:
        ann.write_text("{")
    result = _prepare(out)
    assert result.exit_code == 0, result.output
    assert "already complete" not in _text(result) and "missing or damaged" in _text(result)
    assert _files(out) == fresh  # byte-identical to a fresh run
    assert "already complete" in _text(_prepare(out))


def test_cityscapes_rerun_notices_a_damaged_json(tmp_path):
    from edgercnn.data.cityscapes import convert_cityscapes

    root = tmp_path / "cityscapes"
    shutil.copytree(Path(__file__).resolve().parent / "fixtures" / "cityscapes", root)
    convert_cityscapes(root, workers=1, progress=False)
    assert convert_cityscapes(root, workers=1, progress=False)["splits"]["val"]["up_to_date"]
    json_path = root / "edgercnn/instances_val.json"
    good = json_path.read_bytes()
    json_path.write_bytes(good[: len(good) // 2])
    assert not convert_cityscapes(root, workers=1, progress=False)["splits"]["val"]["up_to_date"]
    assert json_path.read_bytes() == good
    (root / "edgercnn/instances_val.stamp.json").write_text("{")  # a garbled stamp: convert again, no traceback
    assert not convert_cityscapes(root, workers=1, progress=False)["splits"]["val"]["up_to_date"]


# ---- 5. garbage RLE counts are a per-annotation problem --------------------------------------------------------


def _rle_reference(counts: str) -> int:
    """Sum of run lengths as pycocotools' rleFrString decodes them, -1 when malformed (slow, for testing)."""
    raw, p, cnts = counts.encode("utf-8", "replace"), 0, []
    while p < len(raw):
        x = k = 0
        more = 1
        while more:
            if p >= len(raw) or not 0 <= raw[p] - 48 <= 63:
                return -1
            c = raw[p] - 48
            x |= (c & 0x1F) << 5 * k
            more, p, k = c & 0x20, p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << 5 * k
        if k > 7:
            return -1
        x += cnts[-2] if len(cnts) > 2 else 0
        if x < 0:
            return -1
        cnts.append(x)
    return sum(cnts)


def test_rle_sums_match_pycocotools_decoding():
    from edgercnn.data.coco_json import rle_sums

    rng, rnd = np.random.default_rng(0), random.Random(0)
    valid = []
    for h, w in [(64, 64), (37, 91), (300, 500)]:
        for _ in range(30):
            mask = np.asfortranarray((rng.random((h, w)) < rng.random() * 0.1).astype(np.uint8))
            valid.append((mask_utils.encode(mask)["counts"].decode(), h * w))
    assert rle_sums([s for s, _ in valid]).tolist() == [n for _, n in valid]
    alphabet = [chr(c) for c in range(40, 120)] + ["é"]
    garbage = []
    for _ in range(3000):
        base = list(rnd.choice(valid)[0])
        choice = rnd.random()
        if choice < 0.3:
            garbage.append("".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 10))))
        elif choice < 0.6:
            garbage.append("".join(base[: rnd.randint(0, len(base))]))
        else:
            base[rnd.randrange(len(base))] = rnd.choice(alphabet)
            garbage.append("".join(base))
    assert rle_sums(garbage).tolist() == [_rle_reference(s) for s in garbage]


@pytest.mark.parametrize("counts", ["garbage!!", "PPPP", "O", "", "half", [1, 2, 3], [5000], [-5, 3], 5, None])
def test_garbage_rle_is_skipped_or_strict(tmp_path, counts):
    root = tmp_path / "ds"
    make_shapes(root, train=2, val=0, size=64)
    path = root / "annotations/instances_train.json"
    data = json.loads(path.read_text())
    seg = data["annotations"][0]["segmentation"]
    seg["counts"] = seg["counts"][: len(seg["counts"]) // 2] if counts == "half" else counts
    path.write_text(json.dumps(data))
    ds = CocoInstanceDataset(root, "train", canvas=CANVAS)
    assert ds.skipped == {"bad_segmentation": 1}
    for i in range(len(ds)):
        ds[i]  # no traceback from pycocotools
    with pytest.raises(EdgeRCNNError, match=r"annotation 1 .*malformed segmentation.*--strict"):
        CocoInstanceDataset(root, "train", canvas=CANVAS, strict=True)


# ---- 6. symlinks in zips ---------------------------------------------------------------------------------------


def _zip_with(entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # unix: external_attr carries the mode
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return buf.getvalue()


@pytest.mark.parametrize("entries", [
    [("ok.txt", b"fine", stat.S_IFREG | 0o644), ("link", b"/etc", stat.S_IFLNK | 0o777),
     ("link/passwd", b"owned", stat.S_IFREG | 0o644)],
    [("dir/", b"", stat.S_IFDIR | 0o755), ("dir/link", b"../../outside", stat.S_IFLNK | 0o777)],
    [("fifo", b"", stat.S_IFIFO | 0o644)],
])
def test_zip_symlink_entries_are_refused(tmp_path, entries):
    from edgercnn.data.download import extract_zip

    archive = tmp_path / "evil.zip"
    archive.write_bytes(_zip_with(entries))
    target = tmp_path / "out"
    with pytest.raises(EdgeRCNNError, match=r"evil\.zip: entry '(link|dir/link|fifo)' is a symlink"):
        extract_zip(archive, target, progress=False)
    assert not target.exists()


def test_zip_extraction_disk_full_is_one_line(tmp_path, monkeypatch):
    from edgercnn.data.download import extract_zip

    archive = tmp_path / "good.zip"
    archive.write_bytes(_zip_with([("a.txt", b"x", stat.S_IFREG | 0o644), ("b.txt", b"y", stat.S_IFREG | 0o644)]))

    def full(self, member, path=None, pwd=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "extract", full)
    with pytest.raises(EdgeRCNNError, match=r"good\.zip: cannot extract entry 'a.txt' .*No space left.*free"):
        extract_zip(archive, tmp_path / "out", progress=False)


# ---- 7. Ctrl-C advice fits prepare -----------------------------------------------------------------------------


def test_interrupted_prepare_says_rerun_not_resume(tmp_path, monkeypatch, fresh):
    import edgercnn.data.shapes as shapes

    render, calls = shapes._render_image, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return render(*args)

    out = tmp_path / "shapes"
    monkeypatch.setattr(shapes, "_render_image", interrupted)
    result = _prepare(out)
    assert result.exit_code == 130
    assert "--resume" not in _text(result) and "re-run the same prepare command" in _text(result)
    assert (out / "images/train/000002.png").is_file()  # finished files are kept
    monkeypatch.setattr(shapes, "_render_image", render)
    assert _prepare(out, "--train", "5").exit_code == 1  # unfinished with other options: ours, --force replaces
    result = _prepare(out)  # the same command finishes the job
    assert result.exit_code == 0, result.output
    assert _files(out) == fresh


# ---- 8. unwritable output, disk full ---------------------------------------------------------------------------


def test_out_under_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    line = _one_line_error(_prepare(blocker / "shapes"))
    assert "file.txt" in line and "--out" in line
    line = _one_line_error(_prepare(blocker))
    assert "file.txt" in line and "--out" in line
    assert blocker.read_text() == "x"


def test_other_preparers_out_under_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    root = tmp_path / "cityscapes"
    shutil.copytree(Path(__file__).resolve().parent / "fixtures" / "cityscapes", root)
    result = CliRunner().invoke(app, ["prepare", "cityscapes", "--root", str(root), "--out", str(blocker / "cs"),
                                      "--workers", "1"])
    assert "file.txt" in _one_line_error(result)
    result = CliRunner().invoke(app, ["prepare", "coco", "--root", str(tmp_path), "--out", str(blocker / "coco")])
    assert "file.txt" in _one_line_error(result)


def test_read_only_out_is_one_line(tmp_path, monkeypatch):
    import edgercnn.core.io

    def read_only(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(dir))

    monkeypatch.setattr(edgercnn.core.io.tempfile, "mkstemp", read_only)
    line = _one_line_error(_prepare(tmp_path / "shapes"))
    assert "Read-only file system" in line and "writable --out" in line and str(tmp_path) in line


def test_disk_full_is_one_line_and_keeps_what_was_written(tmp_path, monkeypatch, fresh):
    import edgercnn.data.shapes as shapes

    write, calls = shapes.atomic_write, []

    def filling(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(path, *args, **kwargs)

    out = tmp_path / "shapes"
    monkeypatch.setattr(shapes, "atomic_write", filling)
    line = _one_line_error(_prepare(out))
    assert "No space left on device" in line and "free some disk space" in line
    written = [p for p in calls[:3] if p.suffix == ".png"]
    assert written and all(p.read_bytes() == fresh[p.relative_to(out).as_posix()] for p in written)
    monkeypatch.setattr(shapes, "atomic_write", write)
    assert _prepare(out).exit_code == 0
    assert _files(out) == fresh
