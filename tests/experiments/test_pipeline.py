"""experiments.pipeline: evaluating a run in a read-only run folder is one line that says what to do."""

from __future__ import annotations

from tests.clirunner import invoke, one_line_error
from tests.crafted import refuse_writes_in


def test_eval_in_a_read_only_run_folder(run_copy, monkeypatch):
    _, run = run_copy
    refuse_writes_in(monkeypatch, run.path)
    one_line_error(invoke("eval", run.path), "make the run folder writable")
