"""Checkpoint and weight files: torch's format loaded with ``weights_only=True`` only (no pickled code runs), and
for checkpoints a one-line header with the SHA-256 of the payload, verified before anything is unpickled.

``checkpoint.pt`` = ``EDGERCNN-CHECKPOINT 1 sha256=<hex>\\n`` + a ``torch.save`` payload of plain data (tensors,
numbers, strings, lists, dicts): RNG states included, converted to tensors/lists/ints and back exactly.
``model_final.pt`` stays a plain torchvision ``MaskRCNN`` state_dict (loadable with ``torch.load``).
"""

from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgercnn.core.errors import EdgeRCNNError
from edgercnn.core.io import atomic_write_bytes

MAGIC = b"EDGERCNN-CHECKPOINT 1 sha256="
#: What a checkpoint holds (``Trainer.save_checkpoint``); a file without them is not one of ours.
CHECKPOINT_KEYS = frozenset({"model", "optimizer", "scaler", "step", "wall_time_s", "rng", "config"})


# ------------------------------------------------------------------ RNG states as plain data
def rng_state() -> dict[str, Any]:
    """The torch/python/numpy (and CUDA) RNG states as tensors, lists and numbers (``weights_only`` loadable)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned, exactly."""
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------ files
def _payload(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def write_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Header with the payload's SHA-256, then the payload; one atomic write (a crash keeps the previous file)."""
    payload = _payload(state)
    atomic_write_bytes(path, MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The state ``write_checkpoint`` wrote; a one-line EdgeRCNNError for anything else (damaged, truncated,
    edited, a plain state_dict, a file of an older version)."""
    path = Path(path)
    fix = "delete it to start the run over (or restore it from a backup)"
    try:
        data = path.read_bytes()
    except OSError as err:
        raise EdgeRCNNError(f"{path}: cannot read the checkpoint ({err.strerror}); {fix}") from None
    if not data.startswith(MAGIC):
        raise EdgeRCNNError(f"{path}: not an edgercnn checkpoint (no checksum header: a plain weights file, a file "
                            f"of an older version, or damaged); {fix}")
    header, _, payload = data.partition(b"\n")
    if hashlib.sha256(payload).hexdigest().encode() != header[len(MAGIC):]:
        raise EdgeRCNNError(f"{path}: checksum mismatch (the file is truncated or damaged); {fix}")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (weights_only refuses code; anything else is damage)
        raise EdgeRCNNError(f"{path}: unreadable checkpoint ({err.__class__.__name__}); {fix}") from None
    if not isinstance(state, dict) or not CHECKPOINT_KEYS <= set(state):
        raise EdgeRCNNError(f"{path}: not an edgercnn checkpoint (it lacks model/optimizer/step/...); {fix}")
    return state


def write_weights(path: Path, state_dict: dict[str, torch.Tensor]) -> None:
    """A plain state_dict, atomically."""
    atomic_write_bytes(path, _payload(state_dict))


def read_weights(path: Path, fix: str) -> dict[str, torch.Tensor]:
    """A state_dict saved with ``torch.save``, loaded with ``weights_only=True``; damage is a one-line error
    ending in ``fix``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise EdgeRCNNError(f"{path}: cannot read the weights ({err.strerror}); {fix}") from None
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (weights_only refuses code; anything else is damage)
        raise EdgeRCNNError(f"{path}: unreadable weights file ({err.__class__.__name__}: truncated, damaged or not "
                            f"a state_dict); {fix}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EdgeRCNNError(f"{path}: not a state_dict of weights; {fix}")
    return state
