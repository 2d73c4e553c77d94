"""User-facing errors: one line saying what is wrong, where, and what to do (CONVENTIONS: errors)."""


class EdgeRCNNError(Exception):
    """An error the CLI prints as one line (no traceback unless --debug) before exiting non-zero."""


class ConfigError(EdgeRCNNError, ValueError):
    """A configuration key or value that is not allowed (also a ValueError for library callers)."""
