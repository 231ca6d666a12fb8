"""DICOM series: header scan, ``load_series`` -> :class:`Volume`, ``write_series``, the index.

The voxel convention is the annotation's: a volume array has shape
``(rows, cols, slices)``, the slices stacked in *InstanceNumber* order, values
in Hounsfield units (HU). Points and affines use ``(row, col, slice)`` voxel
indices; the affine maps them to patient coordinates in millimetres in the
DICOM LPS frame (x to the patient's left, y to posterior, z to head).

Entry points:

``scan(path)``
    One row per series found under a study folder, a folder of study folders
    or a dataset root (``<root>/dicom/<Folder>/...``), from headers only.
``load_series(study_folder, series_uid)``
    The volume of one series of a study folder.
``write_series(folder, array, ...)``
    A valid, deterministic CT Image Storage series (used by the phantom).
:mod:`vfs_utils.dicom.index`
    The series index: what the headers of each study folder say, read once
    and kept as one JSON file per study folder under the cache folder, so
    that the second look at a study costs what reading its pixel bytes costs. ``index=False`` or
    ``VFS_NO_INDEX=1`` bypasses it; ``vfs index ROOT`` builds it ahead of time.

A study folder may hold the files of several series, directly or in
subfolders (searched recursively). Hidden files and folders (names starting
with ``.``), DICOMDIR files and anything that is not a DICOM image are skipped;
damaged DICOM files are reported (``scan``) or refused (``load_series``), with
the file and the header field at fault.

Inside: ``_common`` (Volume, SeriesWarning, geometry), ``_files`` (walking a
folder, reading headers into records), ``index`` (the JSON index),
``_scan``, ``_load``, ``_writer``.
"""
from __future__ import annotations

from ._common import SCAN_COLUMNS, SeriesWarning, Volume, quiet_uid_warnings
from ._load import load_series
from ._scan import scan
from ._writer import write_series

__all__ = [
    "SCAN_COLUMNS",
    "SeriesWarning",
    "Volume",
    "load_series",
    "quiet_uid_warnings",
    "scan",
    "write_series",
]
