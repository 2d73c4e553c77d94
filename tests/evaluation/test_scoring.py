"""Scoring a detections file (evaluation.scoring): eval --out never overwrites its input, the detections or the
ground truth (issue #18)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.clirunner import invoke, one_line


def test_eval_out_equal_to_the_detections_is_refused(tiny_shapes, tmp_path):
    dets = tmp_path / "dets.json"
    dets.write_text("[]")
    for out in (dets, tmp_path / "sub" / ".." / "dets.json"):
        line = one_line(invoke("eval", "--detections", dets, "--data", tiny_shapes, "--out", out).output)
        assert "--out" in line and "--detections" in line
        assert dets.read_text() == "[]"
    link = tmp_path / "link.json"
    os.link(dets, link)  # the same file under another name
    one_line(invoke("eval", "--detections", dets, "--data", tiny_shapes, "--out", link).output)
    assert dets.read_text() == "[]"


def test_eval_out_over_the_ground_truth_is_refused(tiny_shapes, tmp_path):
    dets = tmp_path / "dets.json"
    dets.write_text("[]")
    gt = next(p for p in Path(tiny_shapes).rglob("*.json") if "val" in p.name and p.name != "manifest.json")
    before = gt.read_bytes()
    one_line(invoke("eval", "--detections", dets, "--data", tiny_shapes, "--out", gt).output)
    assert gt.read_bytes() == before
