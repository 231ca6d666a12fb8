"""The phantom demo dataset: one study's series (:func:`write_study`), the dataset built on
demand (:func:`build_dataset`, :func:`missing_studies`), its ``manifest.json``, the damage
check (:func:`damage`) and :func:`cache_key`."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import warnings
from pathlib import Path

import numpy as np

from .._fs import (
    atomic_file,
    atomic_folder,
    check_stop,
    partial_name,
    remove_stale_partials,
    study_dir,
    write_text_atomic,
)
from ..annotation import Annotation, load_annotation, write_annotation
from ..data import annotation_dir as configured_annotation_dir
from ..data import cache_dir, demo_dir
from ..dicom import write_series
from ..errors import DataNotFoundError, DatasetExistsError
from .render import render_volume, with_acquisition
from .spine import (
    SpineTruth,
    phantom_uid,
    sample_fractures,
    sample_readings,
    sample_spine,
    spine_from_annotation,
)

__all__ = ["DEFAULT_STUDIES", "PHANTOM_VERSION", "build_dataset", "cache_key", "damage",
           "dataset_manifest", "missing_studies", "read_manifest", "write_study"]

log = logging.getLogger(__name__)

#: Number of studies of the default fully synthetic dataset (size budget: about 1 GB).
DEFAULT_STUDIES = 4
_MANIFEST = "manifest.json"
_FORMAT = "vfs-phantom-1"
#: Bumped whenever what the phantom writes changes: ``tests/phantom/test_dataset.py`` renders
#: a tiny study, compares its bytes with the digest recorded for this version, and fails
#: until this is bumped (and the new digest recorded).
PHANTOM_VERSION = 3


def cache_key() -> str:
    """The format and :data:`PHANTOM_VERSION`, stored in the manifest (``parameters.code``)
    so that a cached build written by a phantom that wrote other bytes is rebuilt."""
    return f"{_FORMAT}.{PHANTOM_VERSION}"


def dataset_manifest(root: str | os.PathLike) -> dict | None:
    """The build parameters of a phantom dataset at ``root``, or None (:func:`read_manifest`
    says why)."""
    try:
        return read_manifest(Path(root) / _MANIFEST)["parameters"]
    except (DatasetExistsError, FileNotFoundError):
        return None


def read_manifest(path: str | os.PathLike) -> dict:
    """Read a ``manifest.json`` written by :func:`build_dataset`.

    Raises
    ------
    FileNotFoundError
        No such file.
    DatasetExistsError
        Not valid JSON, or not this package's manifest: its folder is never replaced.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        raise FileNotFoundError(path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetExistsError(f"{path}: unreadable ({exc}); the folder {path.parent} is "
                                 "left untouched. Pass another --out.") from exc
    try:
        manifest = json.loads(text)
    except ValueError as exc:
        raise DatasetExistsError(
            f"{path}: not valid JSON ({exc}), so {path.parent} cannot be recognised as a "
            "phantom dataset of vfs_utils and is left untouched. Pass another --out, or "
            "delete that folder yourself if it is yours.") from exc
    params = manifest.get("parameters") if isinstance(manifest, dict) else None
    generator = manifest.get("generator") if isinstance(manifest, dict) else None
    if (not isinstance(generator, str) or not generator.startswith("vfs_utils.phantom")
            or not isinstance(params, dict)
            or not str(params.get("format", "")).startswith("vfs-phantom-")):
        raise DatasetExistsError(
            f"{path}: not the manifest of a vfs_utils phantom dataset (fields 'generator' and "
            "'parameters.format'), so {path.parent} is someone else's and is left untouched. "
            "Pass another --out, or delete that folder yourself if it is yours.")
    return manifest


_SLICE_DIR = np.array([0.0, 0.0, -1.0])   # slice index grows head -> feet (-z in LPS)


def _thick_slabs(vol: np.ndarray, spacing, thickness_mm: float = 5.0):
    """Average consecutive slices into slabs of about ``thickness_mm``; (array, n per slab)."""
    m = max(1, int(round(thickness_mm / spacing[2])))
    base = vol.transpose(2, 0, 1)                          # (slices, rows, cols)
    n = base.shape[0] // m
    thick = np.empty((n,) + base.shape[1:], np.float32)
    for k in range(n):
        thick[k] = base[k * m:(k + 1) * m].mean(axis=0, dtype=np.float32)
    return thick.transpose(1, 2, 0), m


def _localizer(vol: np.ndarray, spacing) -> np.ndarray:
    """A coronal projection (rows = slices, cols = cols) scaled like a scout image."""
    base = vol.transpose(2, 0, 1)
    path = np.zeros(base.shape[::2], np.float32)           # (slices, cols)
    for k in range(base.shape[0]):
        path[k] = np.clip(base[k].astype(np.float32) + 1000.0, 0, None).sum(axis=0)
    path *= spacing[0] / 1000.0                              # water-equivalent path, mm
    return np.clip(path * 8.0 - 1000.0, -1024, 3071)


def _truth_record(truth: SpineTruth) -> dict:
    heights = truth.heights_mm()
    return {
        "folder": truth.folder,
        "series_uid": truth.series_uid,
        "shape": list(truth.geometry.shape),
        "spacing": [round(s, 6) for s in truth.geometry.spacing],
        "bone_hu": round(truth.bone_hu, 2),
        "osteoporotic": bool(truth.osteoporotic),
        "acquisition": {"noise_hu": round(truth.noise_hu, 3), "blur_px": round(truth.blur_px, 4),
                        "hu_offset": round(truth.hu_offset, 3)},
        "vertebrae": [
            {"level": v.level, "grade": v.grade, "deformity": v.deformity,
             "detail": dict(v.detail), "annotated": v.annotated,
             "heights_mm": [round(float(h), 3) for h in hs],
             "points": [[round(float(c), 4) for c in p] for p in v.points]}
            for v, hs in zip(truth.vertebrae, heights)],
    }


def write_study(root: str | os.PathLike, truth: SpineTruth, *, rng: np.random.Generator,
                patient_id: str = "VFS-PHANTOM", annotations: bool = True) -> dict:
    """Render one study and write its three series (and annotations) under ``root``.

    ``dicom/<folder>/series-001`` (thin, ``truth.series_uid``), ``-002`` (5 mm slabs) and
    ``-003`` (a LOCALIZER); with ``annotations``, ``truth.readings`` as v1 and v2 files.
    ``truth`` needs ``folder`` and ``series_uid``; ``rng`` is the noise source.

    Returns
    -------
    dict
        The study's manifest record: truth and the three SeriesInstanceUIDs.
    """
    root = Path(root)
    if not truth.series_uid:
        raise ValueError("truth.series_uid is empty: set a SeriesInstanceUID before writing")
    made = [p for p in (root, root / "dicom") if not p.exists()]  # removed again on failure
    for folder in made:
        folder.mkdir(parents=True)
    target = study_dir(root, truth.folder, must_exist=False)
    study_uid = phantom_uid("study", truth.series_uid)
    frame_uid = phantom_uid("frame", truth.series_uid)
    common = dict(study_uid=study_uid, frame_of_reference_uid=frame_uid, patient_id=patient_id,
                  patient_name="Phantom^Synthetic", study_date="20200101")
    with warnings.catch_warnings():
        # upstream SeriesInstanceUIDs end with a dot, which pydicom flags; keep them unchanged
        warnings.filterwarnings("ignore", message="Invalid value for VR UI")
        try:
            check_stop()
            vol = render_volume(truth, rng=rng)
            check_stop()
            with atomic_folder(target) as study:     # all three series, or none
                _write_series(study, truth, vol, common)
        except BaseException:
            for folder in reversed(made):
                with contextlib.suppress(OSError):
                    folder.rmdir()                   # only when still empty
            raise
    record = _truth_record(truth)
    record["series"] = {"thin": truth.series_uid,
                        "thick_5mm": phantom_uid("thick", truth.series_uid),
                        "localizer": phantom_uid("localizer", truth.series_uid)}
    record["patient_id"] = patient_id
    if annotations:
        ann = Annotation(truth.folder, truth.series_uid, "v2", dict(truth.readings))
        for sub, version in (("annotation", "v1"), ("annotation_v2", "v2")):
            with atomic_file(root / sub / f"{truth.folder}.json") as tmp:
                write_annotation(ann, tmp, version=version)
    return record


def _write_series(study: Path, truth: SpineTruth, vol: np.ndarray, common: dict) -> None:
    geom = truth.geometry
    write_series(study / "series-001", vol, spacing=geom.spacing, series_uid=truth.series_uid,
                 origin=geom.origin, series_number=1,
                 series_description=f"Chest {geom.spacing[2]:g} mm (synthetic phantom)",
                 **common)
    check_stop()
    thick, m = _thick_slabs(vol, geom.spacing)
    thick_uid = phantom_uid("thick", truth.series_uid)
    origin5 = np.asarray(geom.origin) + (m - 1) / 2 * geom.spacing[2] * _SLICE_DIR
    write_series(study / "series-002", thick,
                 spacing=(geom.spacing[0], geom.spacing[1], m * geom.spacing[2]),
                 series_uid=thick_uid, origin=tuple(float(o) for o in origin5), series_number=2,
                 series_description="Chest 5 mm (synthetic phantom)", **common)
    del thick
    check_stop()
    scout = _localizer(vol, geom.spacing)
    del vol
    scout_uid = phantom_uid("localizer", truth.series_uid)
    rows = geom.shape[0]
    scout_origin = (geom.origin[0], geom.origin[1] + 0.5 * rows * geom.spacing[0], geom.origin[2])
    write_series(study / "series-003", scout, spacing=(geom.spacing[2], geom.spacing[1], 1.0),
                 series_uid=scout_uid, origin=scout_origin,
                 orientation=(1.0, 0.0, 0.0, 0.0, 0.0, -1.0), series_number=3,
                 series_description="Topogram (synthetic phantom)",
                 image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), **common)


def _synthetic_truths(n: int, seed: int, size: int = 512,
                      only: int | None = None) -> list[SpineTruth]:
    """The n studies' truths (``only``: just study ``only``'s, in a list of one)."""
    truths = []
    for i in (range(n) if only is None else [only]):
        rng = np.random.default_rng([seed, i, 0])
        fractures = sample_fractures(rng)
        # every dataset shows a wedge and a biconcave fracture (grade 2)
        if i == 0:
            fractures.insert(0, ("wedge", 2))
        if i == min(1, n - 1):
            fractures.insert(0, ("biconcave", 2))
        folder = f"SYNTH{seed:04d}-{i + 1:03d}_PHANTOM"
        truth = sample_spine(rng, fractures=fractures, folder=folder, shape=(size, size),
                             series_uid=phantom_uid("series", "synthetic", seed, i))
        readings = sample_readings(truth, np.random.default_rng([seed, i, 1]))
        truths.append(dataclasses.replace(truth, folder=folder, readings=readings))
    return truths


def _sibling_dir(version: str) -> Path | None:
    try:
        return configured_annotation_dir(version, download=False)
    except DataNotFoundError:
        return None


def _hash_files(files: list[Path]) -> str:
    """sha256 (hex) over (name, sha256 of the file's bytes) pairs, in the given order."""
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


_README = """# Synthetic phantom dataset (vfs-tutorials)

These CT series are SYNTHETIC: rendered by `vfs_utils.phantom` (`vfs demo-data`), not
images of any patient. They stand in for the registration-gated MosMed CTLungCa-500
series so that the lessons run offline. Layout as the real dataset:

- `dicom/<Folder>/series-001`: the annotated thin-slice series (SeriesInstanceUID of the annotation)
- `dicom/<Folder>/series-002`: a 5 mm reconstruction (slab average), its own SeriesInstanceUID
- `dicom/<Folder>/series-003`: a one-image coronal localizer (ImageType LOCALIZER)
- `annotation/<Folder>.json` (v1 schema) and `annotation_v2/<Folder>.json` (v2 schema)
- `manifest.json`: parameters, seed, the planned study folders (`folders`) and, per study
  written so far, its truth (true heights, grades, deformity types including the non-fracture
  ones of grade 0, levels, bone density, the acquisition: noise, blur, HU offset) and its
  file counts. Studies are written on demand, each whole (built aside, then renamed), and
  the manifest is rewritten after each one: it lists exactly the complete studies.

Mode: {mode}. {detail}
"""


@dataclasses.dataclass
class _Plan:
    """What a build with given parameters holds: ``params``, default folder ``name``, the
    study ``folders`` in order, and how to write study ``i`` (:meth:`write`)."""

    params: dict
    name: str
    folders: list[str]
    detail: str
    seed: int
    size: int = 512
    files: list[Path] = dataclasses.field(default_factory=list)
    anns: list[Annotation] = dataclasses.field(default_factory=list)

    def write(self, root: Path, i: int) -> dict:
        """Write study ``i`` under ``root``; its manifest record."""
        seed = self.seed
        if not self.files:
            truth = _synthetic_truths(len(self.folders), seed, self.size, only=i)[0]
            return write_study(root, truth, rng=np.random.default_rng([seed, i, 2]),
                               patient_id=f"VFS-PHANTOM-{seed:04d}-{i + 1:03d}")
        f, ann = self.files[i], self.anns[i]
        versions = {a.version for a in self.anns}
        sibling_version = "v2" if versions == {"v1"} else ("v1" if versions == {"v2"} else None)
        sibling = _sibling_dir(sibling_version) if sibling_version else None
        other = sibling / f.name if sibling is not None else None
        other_ann = load_annotation(other) if other is not None and other.is_file() else None
        extra = None
        if other_ann is not None and other_ann.folder == ann.folder:
            extra = np.concatenate([np.stack([v.points for v in vs]).reshape(-1, 3)
                                    for vs in other_ann.experts.values() if vs])
        # levels from the v2 reading guide the lungs and organs; the given file sets the spine
        truth = spine_from_annotation(ann, extra_points=extra)
        truth = with_acquisition(truth, np.random.default_rng([seed, i, 3]))
        digest = hashlib.sha256(ann.folder.encode()).hexdigest()[:8].upper()
        rec = write_study(root, truth, rng=np.random.default_rng([seed, i, 2]),
                          patient_id=f"VFS-PHANTOM-{digest}", annotations=False)
        # the layout: annotation/ holds v1 files, annotation_v2/ v2 files (each when at hand)
        other = other if other_ann is not None else None
        for sub, source in (("annotation", f if ann.version == "v1" else other),
                            ("annotation_v2", f if ann.version == "v2" else other)):
            if source is not None:
                with atomic_file(root / sub / f.name) as tmp:
                    shutil.copyfile(source, tmp)
        return rec


def _plan(studies, seed, annotation_dir, image_size) -> _Plan:
    seed = int(seed)
    if annotation_dir is not None:
        annotation_dir = Path(annotation_dir)
        files = sorted(annotation_dir.glob("*.json"))
        if not files:
            raise DataNotFoundError(f"{annotation_dir}: no *.json annotation files; pass the "
                                    "folder of <Folder>.json files (see `vfs fetch`).")
        if studies is not None:
            files = files[:max(int(studies), 1)]
        digest = _hash_files(files)
        params = {"format": _FORMAT, "code": cache_key(), "mode": "from-annotations",
                  "seed": seed, "studies": len(files), "annotation_files_sha256": digest}
        anns = [load_annotation(f) for f in files]
        detail = (f"{len(files)} studies rendered from the real annotation files of "
                  f"{annotation_dir.name}/ (CC BY-NC 4.0, copied unchanged), seed {seed}; "
                  "the images are synthetic, only the keypoints are real.")
        return _Plan(params, f"from-annotations-{digest[:12]}-seed{seed}",
                     [a.folder for a in anns], detail, seed, files=files, anns=anns)
    n = int(studies) if studies is not None else DEFAULT_STUDIES
    if n < 1:
        raise ValueError(f"studies={n}: use at least 1")
    params = {"format": _FORMAT, "code": cache_key(), "mode": "synthetic", "seed": seed,
              "studies": n}
    name = f"synthetic-seed{seed}"
    if image_size != 512:
        params["image_size"] = int(image_size)
        name += f"-{int(image_size)}px"
    detail = (f"{n} fully synthetic studies, seed {seed}; the expert readings are the true "
              "keypoints plus the real readers' noise (about 0.5 mm per axis, measured on the "
              "v2 annotations).")
    return _Plan(params, name, [f"SYNTH{seed:04d}-{i + 1:03d}_PHANTOM" for i in range(n)],
                 detail, seed, size=int(image_size))


def _wanted(plan: _Plan, only: int | None) -> list[str]:
    return plan.folders if only is None else plan.folders[:max(int(only), 1)]


def _lock(out: Path):
    """One builder per dataset folder (a file lock in the cache); a no-op when the cache
    cannot hold one."""
    from filelock import FileLock

    key = hashlib.sha256(str(out.absolute()).encode()).hexdigest()[:16]
    try:
        folder = cache_dir() / "locks"
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return contextlib.nullcontext()
    return FileLock(folder / f"{out.name}-{key}.lock")


def _study_damage(root: Path, rec: dict) -> list[str]:
    """One line per series of a manifest record whose file count changed since it was written."""
    counts = rec.get("files") if isinstance(rec, dict) else None
    if not isinstance(counts, dict):
        return []
    study = root / "dicom" / str(rec.get("folder"))
    problems = []
    for series, expected in sorted(counts.items()):
        try:
            found = sum(1 for p in (study / series).iterdir() if p.is_file())
        except OSError:
            found = 0
        if found != expected:
            problems.append(f"{study.name}/{series}: {found} of {expected} files")
    return problems


def damage(root: str | os.PathLike) -> list[str]:
    """What a demo dataset lost since it was written (file counts against ``manifest.json``):
    one line per damaged series."""
    root = Path(root)
    try:
        studies = read_manifest(root / _MANIFEST).get("studies", [])
    except (DatasetExistsError, OSError):
        return []
    return [line for rec in studies for line in _study_damage(root, rec)]


def missing_studies(root: str | os.PathLike, *, only: int | None = None, **params) -> list[str]:
    """The study folders :func:`build_dataset` with these parameters would still write at
    ``root`` (intact ones are not listed; all of them when ``root`` holds no such build)."""
    plan = _plan(params.get("studies"), params.get("seed", 0), params.get("annotation_dir"),
                 params.get("image_size", 512))
    wanted = _wanted(plan, only)
    try:
        manifest = read_manifest(Path(root) / _MANIFEST)
    except (DatasetExistsError, FileNotFoundError):
        return wanted
    if manifest["parameters"] != plan.params:
        return wanted
    records = {r.get("folder"): r for r in manifest.get("studies", []) if isinstance(r, dict)}
    return [f for f in wanted if f not in records or _study_damage(Path(root), records[f])]


def _manifest(plan: _Plan, records: dict[str, dict]) -> dict:
    return {"synthetic": True, "generator": f"vfs_utils.phantom ({_FORMAT})",
            "parameters": plan.params, "folders": plan.folders,
            "studies": [records[f] for f in plan.folders if f in records]}


def _write_manifest(root: Path, manifest: dict) -> None:
    write_text_atomic(root / _MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))


def build_dataset(out: str | os.PathLike | None = None, *, studies: int | None = None,
                  seed: int = 0, annotation_dir: str | os.PathLike | None = None,
                  image_size: int = 512, replace_stale: bool = False, only: int | None = None,
                  progress=None) -> Path:
    """Build the phantom dataset on demand (idempotent): ``dicom/``, ``annotation/``,
    ``annotation_v2/``; each study is written once, whole, and reused.

    Parameters
    ----------
    out : path-like, optional
        Dataset root; default a :func:`vfs_utils.data.demo_dir` named by the parameters.
    studies : int, optional
        Default :data:`DEFAULT_STUDIES`; with ``annotation_dir`` every file, else the first N.
    seed : int
        Random seed; the same seed and inputs give byte-identical files.
    annotation_dir : path-like, optional
        Real v1 or v2 annotation files: one study per file that matches it, files copied.
    image_size : int
        Rows and columns of fully synthetic series (real annotations get 512 x 512).
    replace_stale : bool
        Replace a phantom build with other parameters instead of raising; a folder that is
        not this package's build (:func:`read_manifest`) is never touched.
    only : int, optional
        Write only the first ``only`` studies now (the others on a later call); default all.
    progress : callable, optional
        Called as ``progress(k, n, folder, out)`` before the k-th (0-based) of the n studies
        this call writes, and as ``progress(n, n, "", out)`` after the last.

    Returns
    -------
    Path
        The dataset root. Concurrent calls on one root are serialised (a file lock): the
        second waits, then reuses. A failed or interrupted call removes the study it was
        writing, and the whole root when this call created it.

    Raises
    ------
    DatasetExistsError
        ``out`` is not empty and not a phantom build with these parameters.
    DataNotFoundError
        ``annotation_dir`` holds no ``*.json`` file.
    """
    plan = _plan(studies, seed, annotation_dir, image_size)
    out = Path(out) if out is not None else demo_dir(plan.name)
    wanted = _wanted(plan, only)
    _check_target(out, plan.params, replace_stale)     # refuse before any lock or write
    with _lock(out):
        existed = out.is_dir()                        # an empty folder given: kept, emptied
        created, records = _open(out, plan, replace_stale)
        lost = {f: _study_damage(out, records[f]) for f in wanted if f in records}
        lost = {f: lines for f, lines in lost.items() if lines}
        if lost:
            lines = [line for ls in lost.values() for line in ls]
            warnings.warn(f"{out}: the demo dataset lost files since it was written "
                          f"({'; '.join(lines[:3])}{' ...' if len(lines) > 3 else ''}); "
                          "writing it again.", stacklevel=2)
        todo = [f for f in wanted if f not in records or f in lost]
        try:
            for k, folder in enumerate(todo):
                check_stop()
                if progress is not None:
                    progress(k, len(todo), folder, out)
                log.info("rendering study %d/%d (%s)", k + 1, len(todo), folder)
                records.pop(folder, None)
                study = out / "dicom" / folder
                if study.exists():    # ours: not (or no longer) a complete study of the manifest
                    _write_manifest(out, _manifest(plan, records))
                    shutil.rmtree(study)
                rec = plan.write(out, plan.folders.index(folder))
                rec["files"] = _count_files(study)
                records[folder] = rec
                _write_manifest(out, _manifest(plan, records))
        except BaseException:
            if created:          # this call made the root: nothing of it is left
                shutil.rmtree(out, ignore_errors=True)
                if existed:
                    out.mkdir(exist_ok=True)
            raise
    if todo:
        if progress is not None:
            progress(len(todo), len(todo), "", out)
        log.info("phantom dataset written to %s", out)
    return out


def _check_target(out: Path, params: dict, replace_stale: bool) -> None:
    if not out.exists():
        return
    manifest = out / _MANIFEST
    if manifest.exists() or manifest.is_symlink():
        previous = read_manifest(manifest)["parameters"]   # refuses a foreign manifest
        if previous != params and not replace_stale:
            raise DatasetExistsError(
                f"{out}: holds a phantom dataset built with other parameters ({previous}); "
                "pass another --out or delete that folder.")
    elif not out.is_dir() or any(out.iterdir()):
        raise DatasetExistsError(
            f"{out}: exists and is not a phantom dataset (no {_MANIFEST}); it is left "
            "untouched. Pass another --out or an empty folder.")


def _open(out: Path, plan: _Plan, replace_stale: bool) -> tuple[bool, dict[str, dict]]:
    """(created by this call, records of the complete studies) of the build at ``out``, made
    (empty, with its README and manifest) when missing; an older build of ours replaced."""
    _check_target(out, plan.params, replace_stale)      # again, under the lock
    if (out / _MANIFEST).exists():
        manifest = read_manifest(out / _MANIFEST)
        if manifest["parameters"] == plan.params:
            return False, {r["folder"]: r for r in manifest.get("studies", [])
                           if isinstance(r, dict) and "folder" in r}
        trash = partial_name(out.parent / f"{out.name}.stale")  # our own older build
        remove_stale_partials(out.parent / f"{out.name}.stale")
        os.rename(out, trash)
        shutil.rmtree(trash, ignore_errors=True)
    with atomic_folder(out) as tmp:
        (tmp / "dicom").mkdir()
        (tmp / "README.md").write_text(_README.format(mode=plan.params["mode"],
                                                      detail=plan.detail), encoding="utf-8")
        _write_manifest(tmp, _manifest(plan, {}))
    return True, {}


def _count_files(study: Path) -> dict[str, int]:
    """Files per series folder of a written study (the manifest's record of what was written)."""
    return {p.name: sum(1 for q in p.iterdir() if q.is_file())
            for p in sorted(study.iterdir()) if p.is_dir()}
