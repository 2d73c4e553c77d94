"""The synthetic shapes dataset: determinism, COCO validity, re-runs, CLI; --force never touches a foreign folder,
a re-run repairs damage, Ctrl-C, unwritable output, full disks and the pixel limit are one line."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from typer.testing import CliRunner

from edgercnn.cli import app
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.data.dataset import MAX_PIXELS_ENV
from edgercnn.data.manifest import load_manifest
from edgercnn.data.shapes import CLASSES, make_shapes

from tests.clirunner import invoke, one_line_error
from tests.crafted import file_bytes


def test_same_options_give_byte_identical_files(tmp_path):
    make_shapes(tmp_path / "a", train=3, val=2, size=64, seed=7)
    make_shapes(tmp_path / "b", train=3, val=2, size=64, seed=7)
    a, b = file_bytes(tmp_path / "a"), file_bytes(tmp_path / "b")
    assert set(a) == set(b) and "manifest.json" in a and len(a) == 3 + 2 + 2 + 1
    assert a == b
    make_shapes(tmp_path / "c", train=3, val=2, size=64, seed=8)
    assert file_bytes(tmp_path / "c")["images/train/000001.png"] != a["images/train/000001.png"]


def test_image_does_not_depend_on_counts(tmp_path):
    make_shapes(tmp_path / "a", train=2, val=1, size=64)
    make_shapes(tmp_path / "b", train=3, val=0, size=64)
    a, b = file_bytes(tmp_path / "a"), file_bytes(tmp_path / "b")
    assert a["images/train/000002.png"] == b["images/train/000002.png"]


def test_coco_json_is_valid(tmp_path):
    make_shapes(tmp_path, train=6, val=2, size=96)
    manifest = load_manifest(tmp_path)
    assert manifest["classes"] == CLASSES and manifest["category_ids"] == [1, 2, 3, 4]
    assert "created" not in manifest  # deterministic dataset: no timestamp
    coco = COCO(str(tmp_path / "annotations/instances_train.json"))
    assert sorted(coco.getImgIds()) == list(range(1, 7))
    assert sorted(coco.getAnnIds()) == list(range(1, len(coco.anns) + 1))
    for ann in coco.anns.values():
        mask = coco.annToMask(ann)
        assert ann["area"] == mask.sum() > 0
        assert ann["bbox"] == [float(v) for v in mask_utils.toBbox(ann["segmentation"])]
        assert ann["iscrowd"] == 0
    # occlusion: visible masks of one image never overlap
    for img_id in coco.getImgIds():
        masks = [coco.annToMask(a) for a in coco.loadAnns(coco.getAnnIds(imgIds=img_id))]
        assert 1 <= len(masks) <= 4
        assert np.sum(masks, axis=0).max() <= 1


def test_rerun_skips_and_other_options_need_force(tmp_path):
    first = make_shapes(tmp_path, train=2, val=1, size=64)
    assert not first["skipped"]
    assert make_shapes(tmp_path, train=2, val=1, size=64)["skipped"]
    with pytest.raises(EdgeRCNNError, match="manifest.json.*--force"):
        make_shapes(tmp_path, train=3, val=1, size=64)
    again = make_shapes(tmp_path, train=3, val=1, size=64, force=True)
    assert again["splits"]["train"]["images"] == 3
    assert len(list((tmp_path / "images/train").iterdir())) == 3


def test_cli_prepare_shapes(tmp_path):
    runner = CliRunner()
    out = tmp_path / "shapes"
    args = ["prepare", "shapes", "--out", str(out), "--train", "4", "--val", "2", "--size", "64"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["name"] == "shapes"
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "already complete" in result.output
    result = runner.invoke(app, ["prepare", "shapes", "--out", str(out), "--train", "5"])
    assert result.exit_code == 1 and "--force" in result.output


@pytest.mark.parametrize("command", ["shapes", "cityscapes", "coco"])
def test_cli_help_explains_every_option(command):
    result = CliRunner().invoke(app, ["prepare", command, "--help"])
    assert result.exit_code == 0
    assert "--out" in result.output


# ---- prepare shapes again: --force, damage, Ctrl-C, unwritable output, full disks -----------------------------------


SMALL = ["--train", "4", "--val", "2", "--size", "64"]


def _prepare(out, *extra):
    return CliRunner().invoke(app, ["prepare", "shapes", "--out", str(out), *SMALL, *extra])


def _text(result):
    """The CLI's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """The files of a fresh ``prepare shapes`` with SMALL options."""
    out = tmp_path_factory.mktemp("fresh") / "shapes"
    make_shapes(out, train=4, val=2, size=64)
    return file_bytes(out)


# ---- --force only replaces what prepare shapes made -----------------------------------------------------------------


def _foreign(root, manifest):
    (root / "images/train").mkdir(parents=True)
    (root / "annotations").mkdir()
    (root / "images/train/000001.png").write_bytes(b"the user's own photo")
    (root / "images/train/cat.jpg").write_bytes(b"jpeg")
    (root / "annotations/instances_train.json").write_text('{"mine": true}')
    if manifest is not None:
        (root / "manifest.json").write_text(manifest)
    return file_bytes(root)


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
    line = one_line_error(result)
    assert "--force" not in line and "another --out" in line
    assert file_bytes(tmp_path) == before  # nothing deleted, nothing added


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
    own = {k: v for k, v in file_bytes(out).items() if k not in ("images/train/mine.png", "images/train/000099.png",
                                                             "notes.txt")}
    assert own == fresh


# ---- prepare verifies what it skips ---------------------------------------------------------------------------------


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
    assert file_bytes(out) == fresh  # byte-identical to a fresh run
    assert "already complete" in _text(_prepare(out))


# ---- Ctrl-C advice fits prepare -------------------------------------------------------------------------------------


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
    assert file_bytes(out) == fresh


# ---- unwritable output, disk full -----------------------------------------------------------------------------------


def test_out_under_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    line = one_line_error(_prepare(blocker / "shapes"))
    assert "file.txt" in line and "--out" in line
    line = one_line_error(_prepare(blocker))
    assert "file.txt" in line and "--out" in line
    assert blocker.read_text() == "x"


def test_read_only_out_is_one_line(tmp_path, monkeypatch):
    import edgercnn.core.io

    def read_only(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(dir))

    monkeypatch.setattr(edgercnn.core.io.tempfile, "mkstemp", read_only)
    line = one_line_error(_prepare(tmp_path / "shapes"))
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
    line = one_line_error(_prepare(out))
    assert "No space left on device" in line and "free some disk space" in line
    written = [p for p in calls[:3] if p.suffix == ".png"]
    assert written and all(p.read_bytes() == fresh[p.relative_to(out).as_posix()] for p in written)
    monkeypatch.setattr(shapes, "atomic_write", write)
    assert _prepare(out).exit_code == 0
    assert file_bytes(out) == fresh


# ---- the pixel limit ------------------------------------------------------------------------------------------------


def test_prepare_shapes_refuses_a_size_over_the_limit(tmp_path, monkeypatch):
    monkeypatch.setenv(MAX_PIXELS_ENV, "10000")
    one_line_error(invoke("prepare", "shapes", "--out", tmp_path / "s", "--train", "1", "--val", "1", "--size",
                          "128"), "over the limit")
    assert not (tmp_path / "s").exists()
