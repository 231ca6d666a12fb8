"""DICOM series: ``scan`` (headers only), ``load_series`` -> :class:`Volume`, ``write_series``.

A volume has shape ``(rows, cols, slices)``, slices in InstanceNumber order, in HU (the
annotation's convention); the affine maps ``(row, col, slice)`` to LPS mm. Headers are kept
in the series index (:mod:`vfs_utils.dicom.index`). Hidden files, DICOMDIR and non-images
are skipped; damaged files are reported (``scan``) or refused (``load_series``), naming the
file and the header field at fault.
"""
from __future__ import annotations

from ._common import SCAN_COLUMNS, SeriesWarning, Volume, quiet_uid_warnings
from ._load import load_series
from ._scan import scan
from ._writer import write_series

__all__ = ["SCAN_COLUMNS", "SeriesWarning", "Volume", "load_series", "quiet_uid_warnings",
           "scan", "write_series"]
