"""edgercnn: the Edge Agreement Loss (Zimmermann & Siems) for torchvision's Mask R-CNN."""

from edgercnn.core.version import __version__

__all__ = ["__version__", "add_edge_loss"]


def __getattr__(name: str):
    """``edgercnn.add_edge_loss`` on first use, so that ``import edgercnn`` (the CLI, ``__version__``) stays light."""
    if name == "add_edge_loss":
        from edgercnn.model.edge_head import add_edge_loss

        return add_edge_loss
    raise AttributeError(f"module 'edgercnn' has no attribute {name!r}")
