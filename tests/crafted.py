"""Hostile inputs and failing disks that tests of several packages share: a PNG header declaring a huge image, a
dataset whose image is one (a decompression bomb), folders that refuse writes, and a byte snapshot of a folder
(to prove that nothing in it changed)."""

from __future__ import annotations

import errno
import json
import os
import struct
import tempfile
import zlib
from pathlib import Path


def png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose header declares ``width`` x ``height`` pixels (a decompression bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def val_json(root: Path) -> Path:
    """The val annotation file of a shapes dataset."""
    return root / "annotations" / "instances_val.json"


def bomb(shapes: Path) -> Path:
    """Replace the first val image of ``shapes`` by a 30000 x 30000 PNG header (and say so in its annotation)."""
    data = json.loads(val_json(shapes).read_text())
    first = data["images"][0]
    path = shapes / "images" / "val" / first["file_name"]
    path.write_bytes(png_declaring(30000, 30000))
    first["width"] = first["height"] = 30000
    val_json(shapes).write_text(json.dumps(data))
    return path


def refuse_writes_in(monkeypatch, folder, code=errno.EROFS):
    """Make every temp file (atomic writes, writability probes) under ``folder`` fail like a read-only disk."""
    real = tempfile.mkstemp
    folder = Path(folder).resolve()

    def mkstemp(*args, **kwargs):
        where = Path(kwargs.get("dir") or ".").resolve()
        if where == folder or folder in where.parents:
            raise OSError(code, os.strerror(code), str(where))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def file_bytes(root) -> dict[str, bytes]:
    """Every file under ``root``: relative POSIX path -> bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}
