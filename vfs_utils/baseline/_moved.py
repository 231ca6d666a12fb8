"""The figure functions of earlier versions of :mod:`vfs_utils.baseline`, kept working.

The figures live in :mod:`vfs_utils.plotting` (``plot_roc``, ``plot_calibration``,
``plot_patches``, ``plot_patch_grid``), which take the tables of
:func:`~vfs_utils.baseline.roc_curves`, :func:`~vfs_utils.baseline.calibration_curves`
and :func:`~vfs_utils.baseline.worst_errors`. These wrappers compute those tables and
draw them, with a ``DeprecationWarning``. Imported only on first use
(``vfs_utils.baseline.__getattr__``).
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .. import plotting
from ..plotting import OKABE_ITO
from .evaluation import calibration_curves, roc_curves, target_title, worst_errors

__all__ = ["OKABE_ITO", "plot_calibration", "plot_patches", "plot_roc", "plot_worst_patches"]


def _moved(name: str, stacklevel: int = 3) -> None:
    warnings.warn(f"vfs_utils.baseline.{name} moved to vfs_utils.plotting.{name}, which draws "
                  "the tables of vfs_utils.baseline (roc_curves, calibration_curves, "
                  "worst_errors)", DeprecationWarning, stacklevel=stacklevel)


def plot_roc(predictions: pd.DataFrame, target: str = "label_any", level: str = "vertebra",
             ax=None):
    """ROC curves of every model; see :func:`vfs_utils.plotting.plot_roc`."""
    _moved("plot_roc")
    return plotting.plot_roc(roc_curves(predictions, target, level),
                             title=f"ROC, {level} level, {target_title(target)}", ax=ax)


def plot_calibration(predictions: pd.DataFrame, target: str = "label_any",
                     models: Sequence[str] = ("logistic", "boosting"), n_bins: int = 10,
                     ax=None):
    """Reliability diagram; see :func:`vfs_utils.plotting.plot_calibration`."""
    _moved("plot_calibration")
    return plotting.plot_calibration(
        calibration_curves(predictions, target, models=models, n_bins=n_bins),
        title=f"Calibration, vertebra level, {target_title(target)}", ax=ax)


def plot_patches(patches: np.ndarray, titles: Sequence[str], *, ncols: int = 4,
                 window: tuple[float, float] = (-200.0, 800.0), suptitle: str | None = None):
    """Sagittal patches; see :func:`vfs_utils.plotting.plot_patches`."""
    _moved("plot_patches")
    return plotting.plot_patches(patches, titles, ncols=ncols, window=window,
                                 suptitle=suptitle)


def plot_worst_patches(predictions: pd.DataFrame, features: pd.DataFrame, patches: np.ndarray,
                       *, model: str = "boosting", target: str = "label_any", n: int = 4):
    """The worst errors as patches; see :func:`vfs_utils.baseline.worst_errors`."""
    _moved("plot_worst_patches")
    worst = worst_errors(predictions, features, model=model, target=target, n=n)
    return plotting.plot_patches(patches[worst["row"].to_numpy(int)], worst["title"], ncols=n,
                                 suptitle=f"Worst errors of {model} ({target_title(target)}): "
                                          "top row missed fractures, bottom row false alarms")
