"""The names of the three data modes, in one place.

``real`` (real CT images and annotations), ``phantom`` (real annotations over phantom
images rendered from them) and ``synthetic`` (phantom images with simulated readings:
only where no annotation copy is at hand and none can be downloaded; ``VFS_OFFLINE=1``
means "no network", not "synthetic").
:mod:`vfs_utils.tutorial` chooses among them; :class:`vfs_utils.baseline.Study` says
which one a study comes from.
"""
from __future__ import annotations

__all__ = ["MODES"]

#: The data modes, in the order :func:`vfs_utils.tutorial.setup` tries them.
MODES: tuple[str, ...] = ("real", "phantom", "synthetic")
