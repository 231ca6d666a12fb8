"""Every figure of the lessons, one module per kind; nothing a lesson wants as a number.

Sagittal slices are drawn in millimetres, anterior -> posterior horizontal and head at
the top, so the aspect ratio is the patient's; experts differ by Okabe-Ito colour and by
marker. A *volume* has ``array`` (rows, cols, slices; HU) and ``spacing`` (mm), like
:class:`vfs_utils.dicom.Volume`; a *frame* holds the readings of one file. Functions
return ``Axes`` or ``Figure`` and never call ``plt.show()``.
"""
from __future__ import annotations

from ._style import (
                     ENV_STATIC_FIGURES,
                     GRADE_COLORS,
                     MODEL_COLORS,
                     OKABE_ITO,
                     WINDOWS,
                     expert_colors,
                     sagittal_extent,
)
from .agreement import (
                     plot_bland_altman,
                     plot_flip_rate_vs_observed,
                     plot_level_reference,
                     plot_prevalence_by_level,
)
from .browser import SliceBrowser, slice_browser
from .classifier import plot_calibration, plot_patches, plot_roc
from .keypoints import (
                     plot_keypoint_distances,
                     show_heatmap_offsets,
                     show_keypoint_gallery,
                     show_keypoint_input,
                     show_keypoint_predictions,
)
from .morphometry import (
                     draw_vertebra_heights,
                     plot_distributions,
                     plot_flip_rate,
                     plot_grade_prevalence,
                     plot_kappa_heatmap,
)
from .reformation import CurvedReformation, curved_reformation, show_curved_reformation
from .sagittal import (
                     overlay_readings,
                     sagittal_column,
                     show_sagittal,
                     vertebra_centres,
                     vertebra_columns,
                     vertebra_montage,
                     zoom_to_readings,
)

__all__ = [
    "ENV_STATIC_FIGURES",
    "GRADE_COLORS",
    "MODEL_COLORS",
    "OKABE_ITO",
    "WINDOWS",
    "CurvedReformation",
    "SliceBrowser",
    "curved_reformation",
    "draw_vertebra_heights",
    "expert_colors",
    "overlay_readings",
    "plot_bland_altman",
    "plot_calibration",
    "plot_distributions",
    "plot_flip_rate",
    "plot_flip_rate_vs_observed",
    "plot_grade_prevalence",
    "plot_kappa_heatmap",
    "plot_keypoint_distances",
    "plot_level_reference",
    "plot_patches",
    "plot_prevalence_by_level",
    "plot_roc",
    "sagittal_column",
    "sagittal_extent",
    "show_curved_reformation",
    "show_heatmap_offsets",
    "show_keypoint_gallery",
    "show_keypoint_input",
    "show_keypoint_predictions",
    "show_sagittal",
    "slice_browser",
    "vertebra_centres",
    "vertebra_columns",
    "vertebra_montage",
    "zoom_to_readings",
]
