"""Resumable, checksum-verified downloads and safe zip extraction.

``download_file`` talks to any server through an ``open_url(url, headers) -> response`` callable (``status``,
``headers.get``, ``read(n)``, ``close``), so the same code serves urllib (COCO), a logged-in requests session
(Cityscapes) and tests against a local ``http.server``. Bytes go to ``<dest>.part`` and reach ``dest`` only
after the checksum (or, without one, the caller's zip test) passes.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import stat
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from edgercnn.core.errors import EdgeRCNNError, os_error_message
from edgercnn.core.io import atomic_write_text

OpenUrl = Callable[[str, dict], Any]


def urllib_open(url: str, headers: dict) -> Any:
    """``open_url`` over urllib; an HTTP error response is returned (its status is checked by the caller)."""
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as err:
        return err


def requests_open(session: Any) -> OpenUrl:
    """``open_url`` over a requests.Session (e.g. one logged in to cityscapes-dataset.com)."""

    class _Response:
        def __init__(self, r: Any) -> None:
            self._r, self.status, self.headers = r, r.status_code, r.headers

        def read(self, n: int) -> bytes:
            # read1 returns what has arrived, so bytes before a cut connection reach the .part file
            raw = self._r.raw
            return raw.read1(n, decode_content=True) if hasattr(raw, "read1") else raw.read(n, decode_content=True)

        def close(self) -> None:
            self._r.close()

    # identity encoding: byte offsets (Range) and the md5 refer to the file itself
    return lambda url, headers: _Response(session.get(url, headers={**headers, "Accept-Encoding": "identity"},
                                                      stream=True, allow_redirects=False, timeout=60))


def md5sum(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _expected_total(resp: Any, start: int) -> int | None:
    """Full file size from Content-Range (206) or Content-Length (200), or None when the server does not say."""
    crange = resp.headers.get("Content-Range")
    if resp.status == 206 and crange and "/" in crange and not crange.endswith("/*"):
        return int(crange.rsplit("/", 1)[1])
    length = resp.headers.get("Content-Length")
    if length is None:
        return None
    return int(length) + (start if resp.status == 206 else 0)


def download_file(url: str, dest: Path | str, *, md5: str | None = None, open_url: OpenUrl = urllib_open,
                  retries: int = 5, backoff: float = 2.0, chunk_size: int = 1 << 20, progress: bool = True,
                  label: str | None = None) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part`` with an HTTP Range request after a cut connection.

    ``md5``: the expected checksum; on a mismatch the partial file is deleted and EdgeRCNNError raised (``dest``
    is never written). An existing ``dest`` that matches is kept (no download). ``retries`` counts consecutive
    attempts that made no progress.
    """
    dest = Path(dest)
    name = label or dest.name
    if dest.is_file():
        if md5 is None or md5sum(dest) == md5:
            return dest
        raise EdgeRCNNError(f"{dest}: exists but its md5 is not {md5}; delete it and run the command again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures, last_error = 0, ""
    with Progress("[bold]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  disable=not progress, transient=True) as bar:
        task = bar.add_task(name, total=None)
        while True:
            start = part.stat().st_size if part.exists() else 0
            got_before = start
            try:
                resp = open_url(url, {"Range": f"bytes={start}-"} if start else {})
                try:
                    if resp.status == 416 and start:  # nothing left to send: the partial file is complete
                        break
                    if resp.status not in (200, 206):
                        raise EdgeRCNNError(f"{url}: server answered HTTP {resp.status}; check the address, your "
                                            "access rights and the network, then run the command again")
                    total = _expected_total(resp, start)
                    if resp.status == 200:
                        start = 0  # no Range support: start over
                    bar.update(task, total=total, completed=start)
                    with open(part, "ab" if start else "wb") as handle:
                        for block in iter(lambda: resp.read(chunk_size), b""):
                            handle.write(block)
                            bar.advance(task, len(block))
                finally:
                    resp.close()
                size = part.stat().st_size
                if total is None or size == total:
                    break
                if size > total:
                    part.unlink()
                    raise EdgeRCNNError(f"{url}: received more bytes than announced; run the command again")
                last_error = f"connection closed at byte {size} of {total}"
            except (OSError, http.client.HTTPException) as exc:  # includes urllib/requests connection errors
                last_error = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # urllib3/requests protocol errors when the connection is cut mid-body
                if type(exc).__module__.split(".")[0] not in ("urllib3", "requests"):
                    raise
                last_error = f"{type(exc).__name__}: {exc}"
            now = part.stat().st_size if part.exists() else 0
            failures = 0 if now > got_before else failures + 1
            if failures > retries:
                if not now:
                    part.unlink(missing_ok=True)  # an empty file is nothing to resume
                kept = (f"the partial file {part} ({now} bytes) is kept, run the command again to resume" if now
                        else "nothing was received; check the network (or the address), then run the command again")
                raise EdgeRCNNError(f"{url}: download failed after {retries} retries ({last_error}); {kept}")
            time.sleep(backoff * failures)
    if md5 is not None:
        actual = md5sum(part)
        if actual != md5:
            part.unlink()
            raise EdgeRCNNError(f"{dest}: md5 {actual} does not match the expected {md5}; the download was deleted, "
                                "run the command again (if it repeats, the server's file changed)")
    os.replace(part, dest)
    return dest


def _unsafe(name: str) -> bool:
    """True for an archive entry that would land outside the target folder."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return True
    return ".." in PurePosixPath(name.replace("\\", "/")).parts


def _special(info: zipfile.ZipInfo) -> bool:
    """True for an entry whose Unix mode (high 16 bits of ``external_attr``) says symlink, device, fifo or socket."""
    kind = stat.S_IFMT(info.external_attr >> 16)
    return kind not in (0, stat.S_IFREG, stat.S_IFDIR)


def extract_zip(archive: Path | str, target: Path | str, *, progress: bool = True) -> Path:
    """Extract ``archive`` into ``target``, refusing (before writing anything) entries with ``..`` or absolute
    paths and symlink (or other special) entries; verifies CRCs while extracting. A marker file makes a re-run
    with the same archive a no-op."""
    archive, target = Path(archive), Path(target)
    st = archive.stat()
    marker = target / f".{archive.name}.extracted"
    stamp = f"{st.st_size} {st.st_mtime_ns}\n"
    if marker.is_file() and marker.read_text() == stamp:
        return target
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                if _unsafe(info.filename):
                    raise EdgeRCNNError(f"{archive}: entry {info.filename!r} would be written outside {target}; "
                                        "refusing to extract, get the archive from the official source")
                if _special(info):
                    raise EdgeRCNNError(f"{archive}: entry {info.filename!r} is a symlink or special file; refusing "
                                        "to extract, get the archive from the official source")
            target.mkdir(parents=True, exist_ok=True)
            with Progress("[bold]{task.description}", BarColumn(), "{task.completed}/{task.total}",
                          disable=not progress, transient=True) as bar:
                task = bar.add_task(f"extract {archive.name}", total=len(infos))
                for info in infos:
                    try:
                        zf.extract(info, target)
                    except OSError as exc:  # disk full, unwritable target, a file where a folder should be
                        raise EdgeRCNNError(f"{archive}: cannot extract entry {info.filename!r} "
                                            f"({os_error_message(exc, where=target, option='--root')})") from exc
                    bar.advance(task)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise EdgeRCNNError(f"{archive}: damaged zip archive ({exc}); delete it and download it again") from None
    atomic_write_text(marker, stamp)
    return target


def verify_zip(archive: Path | str) -> None:
    """Raise EdgeRCNNError unless every member's CRC checks out (used when no checksum is known)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
    except zipfile.BadZipFile as exc:
        raise EdgeRCNNError(f"{archive}: damaged zip archive ({exc}); delete it and download it again") from None
    if bad is not None:
        raise EdgeRCNNError(f"{archive}: member {bad!r} fails its CRC check; delete it and download it again")
