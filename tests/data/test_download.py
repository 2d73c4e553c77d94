"""Downloads against a local HTTP server: resume after a cut, checksum mismatch, zip-slip, COCO and Cityscapes
flows; symlinks in zips and a full disk while extracting. Nothing leaves 127.0.0.1."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import stat
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from edgercnn.core.errors import EdgeRCNNError
from edgercnn.data.cityscapes import download_cityscapes
from edgercnn.data.coco import prepare_coco
from edgercnn.data.dataset import CocoInstanceDataset
from edgercnn.data.download import download_file, extract_zip, verify_zip
from edgercnn.data.shapes import make_shapes


class Server:
    """Serves ``files`` (path → bytes) with Range support; ``cut[path]`` = bytes after which the first response
    is cut. Records request headers. Also fakes the Cityscapes login/list/md5 endpoints."""

    def __init__(self):
        self.files, self.cut, self.requests, self.posts = {}, {}, [], []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                outer.posts.append(body)
                ok = "username=alice" in body and "password=s3cret" in body
                self.send_response(302 if ok else 200)
                self.send_header("Location", "/")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Range")))
                data = outer.files.get(self.path)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if self.path in outer.cut:
                    body = body[: outer.cut.pop(self.path)]  # announce everything, send part, hang up
                    self.close_connection = True
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _zip(entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_resume_after_cut_connection(server, tmp_path):
    payload = bytes(range(256)) * 400
    server.files["/big.bin"] = payload
    server.cut["/big.bin"] = 30000
    dest = download_file(f"{server.url}/big.bin", tmp_path / "big.bin", md5=hashlib.md5(payload).hexdigest(),
                         backoff=0, progress=False, chunk_size=4096)
    assert dest.read_bytes() == payload and not (tmp_path / "big.bin.part").exists()
    assert server.requests == [("/big.bin", None), ("/big.bin", "bytes=30000-")]
    # already there and matching: no request
    download_file(f"{server.url}/big.bin", dest, md5=hashlib.md5(payload).hexdigest(), progress=False)
    assert len(server.requests) == 2


def test_resume_of_complete_part_file(server, tmp_path):
    payload = b"x" * 1000
    server.files["/f"] = payload
    (tmp_path / "f.part").write_bytes(payload)
    download_file(f"{server.url}/f", tmp_path / "f", md5=hashlib.md5(payload).hexdigest(), progress=False)
    assert (tmp_path / "f").read_bytes() == payload and server.requests == [("/f", "bytes=1000-")]


def test_checksum_mismatch_keeps_final_name_clean(server, tmp_path):
    server.files["/f"] = b"hello"
    with pytest.raises(EdgeRCNNError, match=r"f\.zip: md5 .* does not match"):
        download_file(f"{server.url}/f", tmp_path / "f.zip", md5="0" * 32, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_http_error_and_gave_up(server, tmp_path):
    with pytest.raises(EdgeRCNNError, match="HTTP 404"):
        download_file(f"{server.url}/missing", tmp_path / "m", progress=False)
    server.files["/f"] = b"abcdef"
    server.cut["/f"] = 0
    with pytest.raises(EdgeRCNNError, match="download failed after 0 retries.*nothing was received; check the "
                                            "network") as err:
        download_file(f"{server.url}/f", tmp_path / "g", retries=0, backoff=0, progress=False)
    assert "is kept" not in str(err.value) and not (tmp_path / "g.part").exists()  # no file that does not exist


@pytest.mark.parametrize("evil", ["../escape.txt", "/abs.txt", "a/../../escape.txt", "C:\\win.txt"])
def test_zip_slip_is_refused(tmp_path, evil):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(_zip({"ok.txt": b"fine", evil: b"bad"}))
    target = tmp_path / "out"
    with pytest.raises(EdgeRCNNError, match="evil.zip: entry .* outside"):
        extract_zip(archive, target, progress=False)
    assert not target.exists() and not (tmp_path / "escape.txt").exists()


def test_extract_and_damaged_zip(tmp_path):
    archive = tmp_path / "good.zip"
    archive.write_bytes(_zip({"a/b.txt": b"payload" * 100}))
    extract_zip(archive, tmp_path / "out", progress=False)
    assert (tmp_path / "out/a/b.txt").read_bytes() == b"payload" * 100
    verify_zip(archive)
    data = bytearray(archive.read_bytes())
    data[40:60] = b"\0" * 20  # inside the stored member
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    with pytest.raises(EdgeRCNNError, match="bad.zip"):
        verify_zip(bad)
    (tmp_path / "trunc.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(EdgeRCNNError, match="trunc.zip: damaged zip"):
        extract_zip(tmp_path / "trunc.zip", tmp_path / "out2", progress=False)


def test_prepare_coco_download_from_local_server(server, tmp_path):
    shapes = tmp_path / "shapes"
    make_shapes(shapes, train=2, val=1, size=64)
    images = {f"{s}2017/{p.name}": p.read_bytes() for s in ("train", "val") for p in (shapes / "images" / s).iterdir()}
    ann = {f"annotations/instances_{s}2017.json": (shapes / f"annotations/instances_{s}.json").read_bytes()
           for s in ("train", "val")}
    archives = {}
    for name, entries in (("train2017.zip", {k: v for k, v in images.items() if k.startswith("train")}),
                          ("val2017.zip", {k: v for k, v in images.items() if k.startswith("val")}),
                          ("annotations_trainval2017.zip", ann)):
        data = _zip(entries)
        server.files[f"/{name}"] = data
        archives[name] = (f"{server.url}/{name}", hashlib.md5(data).hexdigest())
    root = tmp_path / "coco"
    summary = prepare_coco(root, download=True, archives=archives, progress=False)
    assert summary["splits"]["train"] == {"images": 2, "annotations": summary["splits"]["train"]["annotations"],
                                          "files": 2}
    assert any("118287" in w for w in summary["warnings"])
    ds = CocoInstanceDataset(root, "val", canvas=(64, 64))
    assert ds.classes == ["circle", "triangle", "square", "star"] and ds[0][0].shape == (3, 64, 64)
    partial = tmp_path / "partial"
    (partial / "train2017").mkdir(parents=True)
    with pytest.raises(EdgeRCNNError, match=r"instances_train2017\.json: missing; --root must hold"):
        prepare_coco(partial)


def test_cityscapes_download_flow(server, tmp_path, monkeypatch, capsys):
    gt = _zip({"gtFine/val/x/x_gtFine_instanceIds.png": b"png", "license.txt": b"l"})
    server.files["/login"] = b""
    server.files["/downloads/?list"] = json.dumps([{"name": "gtFine_trainvaltest.zip", "packageID": 1,
                                                    "size": "1 KB", "thirdparty": "0"}]).encode()
    server.files["/md5-sum/?packageID=1"] = (hashlib.md5(gt).hexdigest() + "  gtFine_trainvaltest.zip").encode()
    server.files["/file-handling/?packageID=1"] = gt
    server.cut["/file-handling/?packageID=1"] = 50
    monkeypatch.setenv("CITYSCAPES_USERNAME", "alice")
    monkeypatch.setenv("CITYSCAPES_PASSWORD", "s3cret")
    root = tmp_path / "cs"
    download_cityscapes(root, packages=("gtFine_trainvaltest.zip",), base_url=server.url, progress=False)
    assert (root / "gtFine/val/x/x_gtFine_instanceIds.png").read_bytes() == b"png"
    assert ("/file-handling/?packageID=1", "bytes=50-") in server.requests
    out = capsys.readouterr()
    assert "s3cret" not in out.out + out.err
    assert not any("s3cret" in p.read_bytes().decode("latin1") for p in root.rglob("*") if p.is_file())
    monkeypatch.setenv("CITYSCAPES_PASSWORD", "wrong")
    with pytest.raises(EdgeRCNNError, match="login refused") as err:
        download_cityscapes(root, base_url=server.url, progress=False)
    assert "wrong" not in str(err.value)
    monkeypatch.setenv("CITYSCAPES_PASSWORD", "s3cret")
    with pytest.raises(EdgeRCNNError, match="leftImg8bit_trainvaltest.zip not available"):
        download_cityscapes(root, base_url=server.url, progress=False)


# ---- symlinks in zips -----------------------------------------------------------------------------------------------


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
