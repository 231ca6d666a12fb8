"""Figures of the spine: sagittal views, expert overlays, a curved reformation, montages.

Every function draws in millimetres: a sagittal slice ``array[:, column, :]``
is shown with the row axis (anterior -> posterior) horizontal and the slice
axis (head -> feet) vertical, head at the top, each pixel ``spacing[0]`` mm
wide and ``spacing[2]`` mm tall, so the aspect ratio is the patient's. Expert
readings are coloured from the colour-blind-safe Okabe-Ito palette and also
differ by marker, so they can be told apart in grey print too.

A *volume* is anything with ``array`` (rows, cols, slices, in HU) and
``spacing`` (row, col, slice, in mm) attributes, such as
:class:`vfs_utils.dicom.Volume`. A *frame* is a table of readings from
:func:`vfs_utils.annotation.read_annotations`, restricted to one file.

Functions return matplotlib ``Axes`` or ``Figure`` objects and never call
``plt.show()``.

Every figure of the lessons is drawn here, one module per kind (as in nilearn's
plotting package); plot functions compute nothing a lesson would want as numbers.
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
