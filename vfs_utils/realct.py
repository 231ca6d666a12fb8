"""One real CT for development: a NIfTI reader and the pinned TotalSegmentator example.

:func:`load_nifti` reads any NIfTI file into a :class:`~vfs_utils.dicom.Volume` in the
project's convention (rows anterior -> posterior, columns right -> left, slices head ->
feet; the affine maps ``(row, col, slice, 1)`` to LPS mm). :func:`fetch_real_ct` returns
the example CT of the TotalSegmentator tests (Apache-2.0 repository; Wasserthal et al.,
Radiology: AI 2023; abdomen and lower thorax, 3 mm voxels) at a pinned commit, checked
against its sha256, with the centres of its T12-L5 reference masks (derived by this
project, shipped as ``registry/real-ct-vertebrae.json``; they include the posterior
elements). ``VFS_REAL_CT`` points at a local copy of the image (no network).
"""
from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import numpy as np

from .data import CONNECT_TIMEOUT, READ_TIMEOUT, _quiet_pooch, _sha256, cache_dir, offline
from .errors import DataNotFoundError, DownloadError, SeriesError

__all__ = ["ENV_REAL_CT", "REAL_CT_SHA256", "REAL_CT_URL", "fetch_real_ct", "load_nifti",
           "real_ct_path", "reference_centres"]

ENV_REAL_CT = "VFS_REAL_CT"
_REPO, _COMMIT = "wasserth/TotalSegmentator", "0effae9d718aab0c118ce1f8982dcd16b9e32a50"
REAL_CT_URL = (f"https://raw.githubusercontent.com/{_REPO}/{_COMMIT}/"
               "tests/reference_files/example_ct.nii.gz")
REAL_CT_SHA256 = "dbd3ae6d614d1d7ef3a46925c30c70038ed52da6b37fdd6afdc7b9b71387e3e1"
_FILE = "totalsegmentator_example_ct.nii.gz"


def load_nifti(path):
    """A NIfTI file (``.nii``/``.nii.gz``, any orientation) as a Volume in HU.

    Raises
    ------
    DataNotFoundError
        The file does not exist.
    SeriesError
        It is not a readable NIfTI image, or not 3D.
    """
    import nibabel as nib

    from .dicom import Volume

    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such NIfTI file; check the path (or run "
                                f"`vfs fetch --real-ct` for the example CT).")
    try:
        img = nib.as_closest_canonical(nib.load(str(path)))
        arr = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel's ImageFileError, gzip and EOF errors: one line
        raise SeriesError(f"{path}: cannot be read as a NIfTI image ({type(exc).__name__}: "
                          f"{str(exc)[:120]}); give a .nii or .nii.gz file.") from None
    if arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise SeriesError(f"{path}: the NIfTI image has shape {arr.shape} (header field dim); "
                          f"a CT volume must be 3D. Give one 3D volume per file.")
    ni, nj, nk = arr.shape
    zi, zj, zk = (float(z) for z in img.header.get_zooms()[:3])
    # canonical (i, j, k) = (R, A, S); the project's (row, col, slice) = (P, L, feet)
    array = np.ascontiguousarray(arr.transpose(1, 0, 2)[::-1, ::-1, ::-1])
    to_ijk = np.array([[0, -1, 0, ni - 1], [-1, 0, 0, nj - 1], [0, 0, -1, nk - 1],
                       [0, 0, 0, 1]], float)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine @ to_ijk
    return Volume(array, (zj, zi, zk), affine, (), "", path)


def real_ct_path(*, download: bool | None = None) -> Path:
    """The example CT file: ``VFS_REAL_CT``, else the cache (downloaded when allowed).

    Raises
    ------
    DataNotFoundError
        No local copy and downloads are off or fail.
    DownloadError
        The file differs from its pinned sha256.
    """
    value = os.environ.get(ENV_REAL_CT, "").strip()
    if value:
        path = Path(value).expanduser()
        if not path.is_file():
            raise DataNotFoundError(f"{ENV_REAL_CT}={value}: no such file. Point it at "
                                    f"{_FILE} or unset it to use `vfs fetch --real-ct`.")
        where = ENV_REAL_CT
    else:
        path = cache_dir() / "real-ct" / _FILE
        where = "the cache"
        if not path.is_file():
            if download is None:
                download = not offline()
            if not download:
                raise DataNotFoundError(
                    f"no copy of the real example CT: {ENV_REAL_CT} is not set and {path} is "
                    f"missing, and downloads are off. Set {ENV_REAL_CT} to a local copy or run "
                    f"`vfs fetch --real-ct` where there is network.")
            _download(path)
    if _sha256(path) != REAL_CT_SHA256:
        raise DownloadError(f"{path} ({where}) differs from its pinned sha256 {REAL_CT_SHA256[:12]}"
                            f"...; replace it with {REAL_CT_URL}"
                            + (" (delete it and run `vfs fetch --real-ct`)." if
                               where == "the cache" else f" or unset {ENV_REAL_CT}."))
    return path


def _download(path: Path) -> None:
    import pooch

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _quiet_pooch():
            pooch.retrieve(REAL_CT_URL, known_hash=f"sha256:{REAL_CT_SHA256}", fname=path.name,
                           path=path.parent, progressbar=False,
                           downloader=pooch.HTTPDownloader(
                               progressbar=False, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)))
    except ValueError as exc:
        raise DownloadError(f"{REAL_CT_URL}: the download does not match its pinned sha256 "
                            f"({exc}); run `vfs fetch --real-ct` again.") from None
    except OSError as exc:
        raise DataNotFoundError(f"could not download the real example CT from {REAL_CT_URL} "
                                f"({type(exc).__name__}: {str(exc)[:120]}). Set {ENV_REAL_CT} "
                                f"to a local copy.") from None


def reference_centres(volume) -> dict[str, np.ndarray]:
    """Level -> ``[row, col, slice]`` voxel (float) of the shipped reference centres (RAS
    mm, whole-vertebra masks) in ``volume``'s grid."""
    text = resources.files("vfs_utils").joinpath("registry", "real-ct-vertebrae.json").read_text()
    ras = json.loads(text)["centres_ras_mm"]
    inv = np.linalg.inv(np.asarray(volume.affine, float))
    out = {}
    for level, (x, y, z) in ras.items():
        out[level] = (inv @ np.array([-x, -y, z, 1.0]))[:3]
    return out


def fetch_real_ct(*, download: bool | None = None):
    """``(Volume, reference centres)`` of the pinned example CT (see the module docstring)."""
    vol = load_nifti(real_ct_path(download=download))
    return vol, reference_centres(vol)
