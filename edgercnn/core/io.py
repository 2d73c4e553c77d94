"""Atomic file writes: a temporary file in the same folder, then a rename (CONVENTIONS.md: files and results)."""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "w") -> None:
    """Call ``write(fileobj)`` on a temp file beside ``path``, then rename it over ``path``.

    The file gets the usual permissions (0666 minus the umask), not mkstemp's private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_stale_temps(folder: Path, names) -> list[Path]:
    """Delete the temp files ``atomic_write`` leaves behind when killed mid-write (``.<name>.*.tmp``) for the
    given file ``names`` in ``folder`` (only there, only that pattern); returns what was removed."""
    removed = []
    for name in names:
        for tmp in Path(folder).glob(f".{name}.*.tmp"):
            if tmp.is_file() and not tmp.is_symlink():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


def check_writable(path: Path) -> None:
    """Raise the OSError a write under ``path`` would raise (a file in the way, a read-only folder or disk),
    without creating anything: probes the nearest existing folder with a temp file, deleted at once."""
    path = Path(path)
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "a part of the path is a file, not a folder", str(probe))
    if not os.access(probe, os.W_OK):
        raise PermissionError(errno.EACCES, "Permission denied", str(probe))
    fd, tmp = tempfile.mkstemp(prefix=".write-test.", suffix=".tmp", dir=probe)
    os.close(fd)
    os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data), mode="wb")


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN/inf float as None: JSON has no NaN (``json.dump`` would write a bare ``NaN``)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def atomic_write_json(path: Path, obj: Any, indent: int | None = 2) -> None:
    """Strict JSON (non-finite floats written as null), atomically."""
    atomic_write(path, lambda f: json.dump(json_safe(obj), f, indent=indent, allow_nan=False))
