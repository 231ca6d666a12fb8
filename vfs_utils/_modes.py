"""The names of the three data modes, in one place (described in :mod:`vfs_utils.tutorial`)."""
from __future__ import annotations

__all__ = ["MODES"]

#: The data modes, in the order :func:`vfs_utils.tutorial.setup` tries them.
MODES: tuple[str, ...] = ("real", "phantom", "synthetic")
