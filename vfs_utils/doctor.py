"""``vfs doctor``: is this machine ready for the lessons? One check per line, a fix per problem.

Reads only: it never downloads, builds or writes (the lessons' setup cell and ``vfs prepare``
do that).
"""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from importlib import import_module, metadata
from pathlib import Path

from . import data
from .errors import DataNotFoundError, VfsError

__all__ = ["Check", "MIN_MEMORY_GB", "PACKAGES", "SPARE_GB", "run"]

#: Import name -> distribution name of what the lessons import (the base install and a kernel).
PACKAGES = {"numpy": "numpy", "pandas": "pandas", "scipy": "scipy", "sklearn": "scikit-learn",
            "matplotlib": "matplotlib", "pydicom": "pydicom", "onnxruntime": "onnxruntime",
            "dask": "dask", "ipywidgets": "ipywidgets", "ipykernel": "ipykernel"}
#: Memory the heaviest lesson needs (08_keypoints: kernel peak 926 MB, CONTRIBUTING.md).
MIN_MEMORY_GB = 1.0
#: Disk the lessons write besides a demo dataset (series index, features, model caches).
SPARE_GB = 0.5


@dataclass(frozen=True)
class Check:
    """One line of the report: ``name``, ``ok``, what was found, and the ``fix`` when not ok."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def _packages() -> Check:
    found, missing = [], []
    for module, dist in PACKAGES.items():
        try:
            import_module(module)
        except ImportError:
            missing.append(dist)
            continue
        try:
            found.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            found.append(dist)
    if missing:
        return Check("packages", False, f"not importable: {', '.join(missing)}",
                     f'pip install "vfs-tutorials[notebooks]" in this environment (or pip '
                     f"install {' '.join(missing)})")
    return Check("packages", True, ", ".join(found))


def _annotations() -> tuple[dict[str, Path], str]:
    """The annotation folders at hand (no download) and where they came from; raises VfsError."""
    folders, where = {}, []
    shared = data.shared_dir()
    for version, source in data.SOURCES.items():
        folder = data.annotation_dir(version, download=False)
        folders[version] = folder
        if os.environ.get(source.env):
            where.append(source.env)
        elif shared is not None and folder == shared / "annotations" / version:
            where.append(f"{data.ENV_SHARED_DIR} ({shared})")
        else:
            where.append(f"the cache ({folder.parent})")
    return folders, ", ".join(dict.fromkeys(where))


def _demo(mode: str, v2: Path | None) -> tuple[Path | None, Path, bool]:
    """(the shared build the lessons would use or None, the cache folder, whether it is built)."""
    from .phantom import build_dataset
    from .tutorial import PHANTOM_STUDIES, damage

    params = {"studies": PHANTOM_STUDIES, "annotation_dir": v2} if v2 else {"seed": 0}

    def current(folder: Path | None) -> bool:
        """A complete, intact build with the lessons' parameters (checked without writing:
        ``build_dataset`` returns at once on a match and refuses a mismatch)."""
        if folder is None or not (folder / "manifest.json").is_file() or damage(folder):
            return False
        try:
            build_dataset(folder, replace_stale=False, **params)
        except VfsError:       # DatasetExistsError: built with other parameters
            return False
        return True

    shared = data.shared_demo_dir(mode)
    cached = data.demo_dir(mode)
    return (shared if current(shared) else None), cached, current(cached)


def _data(folders: dict[str, Path] | None) -> tuple[Check, float]:
    """Where the demo data is (shared, built in the cache, or not built yet), and the GB the
    lessons will write for it."""
    from .tutorial import PHANTOM_STUDIES, STUDY_GB

    mode = "phantom" if folders else "synthetic"
    shared, cached, built = _demo(mode, (folders or {}).get("v2"))
    if shared is not None:
        return Check("data", True, f"{shared} (shared, read-only: nothing to write)"), 0.0
    if built:
        return Check("data", True, f"{cached} (built, current)"), 0.0
    gb = PHANTOM_STUDIES * STUDY_GB
    state = "outdated" if (cached / "manifest.json").is_file() else "not built yet"
    return Check("data", True, f"{cached}: {state}; the first lesson (or `vfs prepare`) "
                 f"writes about {gb:.1f} GB there"), gb


def _existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _memory_gb() -> float | None:
    """Available memory in GB (Linux ``MemAvailable``), or None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024**2
    except (OSError, ValueError, IndexError):
        pass
    return None


def _model() -> Check:
    try:
        import numpy as np

        from .keypoints._onnx import MODEL_FILE, run_model

        run_model(np.zeros((96, 128), np.float32))   # 96 rows: 1 mm over +-48 mm
        version = metadata.version("onnxruntime")
    except ImportError as exc:
        return Check("keypoint model", False, f"cannot be checked ({exc})",
                     "install the missing packages (see the packages line)")
    except (VfsError, metadata.PackageNotFoundError) as exc:
        return Check("keypoint model", False, " ".join(str(exc).split()),
                     'pip install "vfs-tutorials[notebooks]" again (onnxruntime and the '
                     "shipped model come with it)")
    return Check("keypoint model", True, f"{MODEL_FILE.name} loads and runs (onnxruntime "
                 f"{version})")


def run() -> list[Check]:
    """Every check, in the order ``vfs doctor`` prints them."""
    from . import __version__

    py = sys.version_info
    checks = [Check("python", py >= (3, 10),
                    f"Python {py.major}.{py.minor}.{py.micro}, vfs-tutorials {__version__}",
                    "use Python 3.10 or newer")]
    checks.append(_packages())
    need_gb = SPARE_GB
    root = folders = None
    try:
        root = data.data_root()
    except VfsError as exc:
        checks.append(Check("data mode", False, f"real: {' '.join(str(exc).split())}",
                            f"fix {data.ENV_DATA_ROOT} (see above) or unset it"))
        return checks + [_model()]
    if root is None:
        try:
            folders, where = _annotations()
        except DataNotFoundError:
            places = ", ".join(s.env for s in data.SOURCES.values())
            shared = data.shared_dir()
            checks.append(Check("data mode", False, (
                f"synthetic: no annotation copy at hand (not in {places}, "
                + (f"{data.ENV_SHARED_DIR}={shared}, " if shared else "")
                + f"nor the cache {data.cache_dir() / 'annotations'}); a lesson would "
                "try a download, else use the synthetic dataset"), (
                f"set {data.ENV_SHARED_DIR} to the classroom folder, or run `vfs fetch` where "
                f"there is network, or set {data.ENV_ANNOTATION_DIR} and "
                f"{data.ENV_ANNOTATION_DIR_V2} to local copies")))
        except VfsError as exc:   # a copy that is not usable (swapped, damaged): its own fix
            checks.append(Check("data mode", False, " ".join(str(exc).split()),
                                "see the message: it names the variable or file at fault"))
    if root is not None:
        checks.append(Check("data mode", True, f"real: {data.ENV_DATA_ROOT} is set"))
        checks.append(Check("data", True, f"{root} (the CTLungCa-500 download)"))
    elif folders is not None:
        checks.append(Check("data mode", True, f"phantom: the real annotations from {where}"))
    if root is None:
        try:
            check, gb = _data(folders)
        except ImportError as exc:     # a broken install: the packages line says what to do
            check, gb = Check("data", False, f"cannot be checked ({exc})",
                              "install the missing packages (see the packages line)"), 0.0
        checks.append(check)
        need_gb += gb
    cache = data.cache_dir()
    free = shutil.disk_usage(_existing(cache)).free / 1024**3
    checks.append(Check("disk", free >= need_gb, f"{free:.1f} GB free for {cache} "
                        f"(the lessons need {need_gb:.1f} GB)",
                        f"free {need_gb - free:.1f} GB there, or point {data.ENV_CACHE_DIR} at "
                        f"a disk with space (or {data.ENV_SHARED_DIR} at a classroom folder)"))
    memory = _memory_gb()
    if memory is None:
        checks.append(Check("memory", True, "available memory unknown on this system"))
    else:
        checks.append(Check("memory", memory >= MIN_MEMORY_GB,
                            f"{memory:.1f} GB available (lesson 08 needs about "
                            f"{MIN_MEMORY_GB:.0f} GB)",
                            "close other programs or kernels, or use a machine with more memory"))
    checks.append(_model())
    return checks
