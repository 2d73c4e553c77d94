"""cli.errors: an uncaught OSError is one line naming the file, a traceback only with --debug."""

from __future__ import annotations

import errno

from tests.clirunner import invoke, one_line_error


def test_any_uncaught_os_error_is_one_line_unless_debug(monkeypatch, tmp_path):
    import edgercnn.reporting.report

    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error", str(tmp_path / "x.csv"))

    monkeypatch.setattr(edgercnn.reporting.report, "report", broken)
    one_line_error(invoke("report", tmp_path), "x.csv: Input/output error")
    result = invoke("report", tmp_path, "--debug")
    assert isinstance(result.exception, OSError)
