"""training.rundir: torn and garbage CSV rows (dropped after the checkpoint, an error before it) and stale temp files
of a run."""

from __future__ import annotations

import csv

import pytest

from edgercnn.core.errors import EdgeRCNNError
from edgercnn.training.rundir import LOSS_COLUMNS
from edgercnn.training.trainer import Trainer

from tests.tinyrun import rows

# ---- torn and garbage CSV rows --------------------------------------------------------------------------------------


@pytest.mark.parametrize("tail", ["1\n", "\x00\x17garbage,,,\n", "3,2,0.01,nan,x,1,1,1,1,1,1,0.1\n", "1,2,3"])
def test_torn_loss_rows_after_the_checkpoint_are_dropped_on_resume(half, tail, tmp_path):
    cfg, run = half
    with open(run.losses, "a") as handle:
        handle.write(tail)
    resumed = Trainer(cfg, resume=True)
    assert resumed.step == 2
    assert [r["step"] for r in rows(run.losses)] == ["1", "2"]
    resumed.run()
    table = rows(run.losses)
    assert [r["step"] for r in table] == ["1", "2", "3", "4"]
    assert all(r[c] not in (None, "") for r in table for c in LOSS_COLUMNS)
    assert run.read_loss_rows(4) == table


def test_a_damaged_row_the_checkpoint_covers_is_a_one_line_error(half):
    cfg, run = half
    lines = run.losses.read_text().splitlines()
    run.losses.write_text("\n".join([lines[0], "1", lines[2]]) + "\n")
    with pytest.raises(EdgeRCNNError, match="losses.csv: the row of step 1 is missing or damaged"):
        Trainer(cfg, resume=True)


def test_torn_eval_rows_are_dropped_on_resume(half):
    cfg, run = half
    run.append_eval(2, {k: 1.0 for k in ("segm_AP", "segm_AP50", "segm_AP75", "boundary_AP", "bbox_AP",
                                         "val_loss_mask")})
    with open(run.evals, "a") as handle:
        handle.write("3,1.5,\ngarbage\n")  # a torn row, then garbage
    Trainer(cfg, resume=True)
    assert [r["step"] for r in rows(run.evals)] == ["2"]


def test_results_get_checked_loss_rows(run_copy):
    cfg, run = run_copy
    with open(run.losses, "a") as handle:
        handle.write("4,3,garbage\n")
    text = run.loss_csv_text(3)
    assert [r["step"] for r in csv.DictReader(text.splitlines())] == ["1", "2", "3"]


# ---- stale temp files -----------------------------------------------------------------------------------------------


def test_stale_temp_files_of_the_run_are_removed_on_start(half):
    cfg, run = half
    ours = [run.path / ".checkpoint.pt.k2j3h4g5.tmp", run.path / ".losses.csv.abc_123x.tmp"]
    theirs = [run.path / "notes.tmp", run.path / ".mine.tmp", run.path / ".checkpoint.pt.bak",
              run.path.parent / ".checkpoint.pt.zzzzzzzz.tmp"]
    for path in ours + theirs:
        path.write_bytes(b"x" * 100)
    Trainer(cfg, resume=True)
    assert not any(p.exists() for p in ours)
    assert all(p.exists() for p in theirs)
