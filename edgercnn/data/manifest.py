"""The dataset manifest: ``manifest.json`` at a dataset folder's root, read by ``train``/``eval`` via ``--data DIR``.

Layout::

    {"name": "shapes" | "cityscapes" | "coco" | "coco-json" | "masks" | "pennfudan",
     "classes": [...],            # label i + 1 = classes[i]; background 0 is not listed
     "category_ids": [...],       # the COCO-JSON category id of each class, same order
     "splits": {"train": {"images": DIR, "annotations": JSON}, "val": {...}},  # relative to the manifest or absolute
                                  # (absolute: imported datasets whose images stay in the user's folder)
     "source": ..., "created": ISO time (omitted for shapes: byte-identical), "command": ..., "edgercnn_version": ...,
     "split": {"method": "val-fraction", "val_fraction": F, "seed": N, ...}}  # imported datasets: how val was chosen
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
from pathlib import Path
from typing import Any, Iterator

from edgercnn.core.version import __version__
from edgercnn.core.commands import recorded_command
from edgercnn.core.errors import EdgeRCNNError, os_error_message
from edgercnn.core.io import atomic_write_text

MANIFEST = "manifest.json"
_FIX = "run edgercnn prepare shapes|cityscapes|coco|coco-json|masks|pennfudan --out DIR to (re)create it"


def relative_to(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when it lies inside it, else absolute (as stored in the manifest)."""
    path, base = Path(path).resolve(), Path(base).resolve()
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def write_manifest(
    root: Path,
    *,
    name: str,
    classes: list[str],
    category_ids: list[int],
    splits: dict[str, dict[str, str]],
    source: Any,
    command: str | None = None,
    created: bool = True,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``root/manifest.json`` atomically; ``created=False`` leaves the time out (deterministic datasets)."""
    manifest: dict[str, Any] = {
        "name": name,
        "classes": list(classes),
        "category_ids": [int(c) for c in category_ids],
        "splits": splits,
        "source": source,
    }
    if created:
        manifest["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    manifest["command"] = command if command is not None else recorded_command()
    manifest["edgercnn_version"] = __version__
    manifest.update(extra or {})
    path = Path(root) / MANIFEST
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
    return path


def manifest_name(root: Path | str) -> str | None:
    """The ``name`` in ``root/manifest.json``: None without one, "" when it is unreadable or has no name."""
    path = Path(root) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return ""
    name = manifest.get("name") if isinstance(manifest, dict) else None
    return name if isinstance(name, str) else ""


def check_owner(root: Path | str, name: str) -> None:
    """Refuse (one line, nothing changed) to write a ``name`` manifest over another dataset's in ``root``."""
    owner = manifest_name(root)
    if owner is not None and owner != name:
        what = f"a {owner!r} dataset" if owner else "an unreadable manifest"
        raise EdgeRCNNError(f"{Path(root) / MANIFEST}: {what} is there, not {name}; nothing was changed, choose "
                            "another --out")


@contextlib.contextmanager
def os_errors(path: Path | str, option: str = "--out") -> Iterator[None]:
    """Turn an OSError (unwritable folder, a file in the way, disk full) into a one-line EdgeRCNNError."""
    try:
        yield
    except OSError as exc:
        raise EdgeRCNNError(os_error_message(exc, where=path, option=option)) from exc


def load_manifest(root: Path | str) -> dict[str, Any]:
    """Read and validate ``root/manifest.json``; adds ``"root"`` (the folder, absolute). One-line errors."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        what = "is not a folder" if not root.is_dir() else f"has no {MANIFEST}"
        raise EdgeRCNNError(f"{root}: {what}; {_FIX} (e.g. edgercnn prepare shapes --out {root})")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgeRCNNError(f"{path}: not valid JSON ({exc}); {_FIX}") from None

    def bad(what: str) -> EdgeRCNNError:
        return EdgeRCNNError(f"{path}: {what}; {_FIX}")

    if not isinstance(manifest, dict):
        raise bad("expected a JSON object")
    for key in ("name", "classes", "category_ids", "splits"):
        if key not in manifest:
            raise bad(f"missing key {key!r}")
    classes, cat_ids, splits = manifest["classes"], manifest["category_ids"], manifest["splits"]
    if not isinstance(manifest["name"], str):
        raise bad("'name' must be a string")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise bad("'classes' must be a non-empty list of names")
    if not (isinstance(cat_ids, list) and len(cat_ids) == len(classes) and all(type(c) is int for c in cat_ids)):
        raise bad("'category_ids' must be a list of integers, one per class")
    if len(set(cat_ids)) != len(cat_ids):
        raise bad("'category_ids' has duplicates")
    if not (isinstance(splits, dict) and splits):
        raise bad("'splits' must be a non-empty object")
    for split, entry in splits.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("images"), str)
                and isinstance(entry.get("annotations"), str)):
            raise bad(f"split {split!r} needs string 'images' and 'annotations' paths")
    manifest["root"] = str(root.resolve())
    return manifest


def split_paths(manifest: dict[str, Any], split: str) -> tuple[Path, Path]:
    """(images folder, annotation JSON) of ``split``, resolved against the manifest's folder."""
    if split not in manifest["splits"]:
        have = ", ".join(sorted(manifest["splits"]))
        raise EdgeRCNNError(
            f"{Path(manifest['root']) / MANIFEST}: no split {split!r} (has: {have}); "
            "choose one of those or prepare the missing split"
        )
    root = Path(manifest["root"])
    entry = manifest["splits"][split]
    return root / entry["images"], root / entry["annotations"]


def dataset_fingerprint(root: Path | str) -> str:
    """SHA-256 over what a dataset is (its manifest's classes, category ids and splits, and the bytes of each
    split's annotation file), not where it lies: the same dataset at another path has the same fingerprint.
    Cheap: images are not read (their names and sizes are in the annotation files)."""
    import hashlib

    manifest = load_manifest(root)
    digest = hashlib.sha256(json.dumps({k: manifest[k] for k in ("name", "classes", "category_ids")},
                                       sort_keys=True).encode())
    for split in sorted(manifest["splits"]):
        _, annotations = split_paths(manifest, split)
        digest.update(f"\n{split}\n".encode())
        try:
            digest.update(hashlib.sha256(annotations.read_bytes()).digest())
        except OSError:
            digest.update(b"missing")
    return digest.hexdigest()
