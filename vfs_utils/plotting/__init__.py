"""Every figure of the lessons, one module per kind; nothing a lesson wants as a number.

Sagittal slices are drawn in millimetres, anterior -> posterior horizontal and head at
the top, so the aspect ratio is the patient's; experts differ by Okabe-Ito colour and by
marker. A *volume* has ``array`` (rows, cols, slices; HU) and ``spacing`` (mm), like
:class:`vfs_utils.dicom.Volume`; a *frame* holds the readings of one file. Functions
return ``Axes`` or ``Figure`` and never call ``plt.show()``.
"""
from __future__ import annotations

from ._style import OKABE_ITO, WINDOWS
from .agreement import (
    plot_bland_altman,
    plot_flip_rate_vs_observed,
    plot_level_reference,
    plot_prevalence_by_level,
)
from .browser import SliceBrowser, slice_browser
from .classifier import plot_calibration, plot_patches, plot_roc
from .keypoints import (
    plot_heatmap_offsets,
    plot_keypoint_distances,
    plot_keypoint_gallery,
    plot_keypoint_input,
    plot_keypoint_predictions,
)
from .morphometry import plot_grade_prevalence, plot_kappa_heatmap, plot_vertebra_heights
from .reformation import plot_curved_reformation
from .sagittal import plot_readings, plot_sagittal, plot_vertebra_montage

__all__ = [
    "OKABE_ITO",
    "WINDOWS",
    "SliceBrowser",
    "plot_bland_altman",
    "plot_calibration",
    "plot_curved_reformation",
    "plot_flip_rate_vs_observed",
    "plot_grade_prevalence",
    "plot_kappa_heatmap",
    "plot_keypoint_distances",
    "plot_level_reference",
    "plot_patches",
    "plot_prevalence_by_level",
    "plot_readings",
    "plot_roc",
    "plot_sagittal",
    "plot_vertebra_heights",
    "plot_vertebra_montage",
    "plot_heatmap_offsets",
    "plot_keypoint_gallery",
    "plot_keypoint_input",
    "plot_keypoint_predictions",
    "slice_browser",
]
