"""User-facing errors: one line saying what is wrong, where, and what to do (CONVENTIONS.md: errors)."""

from __future__ import annotations

import contextlib
import errno
from typing import Iterator


class EdgeRCNNError(Exception):
    """An error the CLI prints as one line (no traceback unless --debug) before exiting non-zero."""


class ConfigError(EdgeRCNNError, ValueError):
    """A configuration key or value that is not allowed (also a ValueError for library callers)."""


def os_error_message(err: OSError, fix: str | None = None, where: object = None, option: str | None = None) -> str:
    """One line for an OSError: the file (or ``where`` when the error names none), why, and (unless ``fix`` is
    given) what to do about it; ``option`` is the command-line option that chose the path (``--out``), named in
    the advice."""
    if fix is None:
        if err.errno == errno.ENOSPC:
            fix = "free some disk space, then re-run the command (" + (
                "files written so far are kept)" if option else "--resume continues a training run)")
        elif err.errno in (errno.ENOTDIR, errno.EEXIST):
            fix = f"a part of that path is a file, not a folder; choose another {option or 'path'}"
        elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            fix = (f"choose a writable {option} (or fix the folder's permissions)" if option else
                   "choose a writable place (or fix the permissions), then re-run the command")
        else:
            fix = "check the path and the disk (and the network when downloading), then re-run the command"
    where = err.filename if err.filename is not None else (where if where is not None else "writing a file")
    return f"{where}: {err.strerror or err}; {fix}"


@contextlib.contextmanager
def worker_errors() -> Iterator[None]:
    """Around iterating a DataLoader: an EdgeRCNNError raised in a worker process arrives re-raised by torch with
    a message of the whole worker traceback; turn it back into the original one-line message."""
    try:
        yield
    except EdgeRCNNError as err:
        text = str(err)
        if not (text.startswith("Caught ") and "DataLoader worker" in text.split("\n", 1)[0]):
            raise
        cls = type(err)
        lines = text.rstrip("\n").split("\n")
        # the traceback ends with "<module>.<name>: <original message>" (possibly over more lines)
        for i in range(len(lines) - 1, -1, -1):
            for prefix in (f"{cls.__module__}.{cls.__qualname__}: ", f"{cls.__qualname__}: "):
                if lines[i].startswith(prefix):
                    raise cls("\n".join([lines[i][len(prefix):], *lines[i + 1:]])) from None
        raise cls(lines[-1]) from None
