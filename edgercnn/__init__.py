"""edgercnn: the Edge Agreement Loss (Zimmermann & Siems) for torchvision's Mask R-CNN."""

from edgercnn.core.version import __version__

__all__ = ["__version__", "add_edge_loss", "add_mask_losses"]


def __getattr__(name: str):
    """``edgercnn.add_edge_loss`` / ``add_mask_losses`` on first use, so that ``import edgercnn`` (the CLI,
    ``__version__``) stays light."""
    if name in ("add_edge_loss", "add_mask_losses"):
        from edgercnn.model import edge_head

        return getattr(edge_head, name)
    raise AttributeError(f"module 'edgercnn' has no attribute {name!r}")
