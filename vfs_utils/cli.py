"""vfs: fetch, prepare, doctor, demo-data, scan, index, inventory, morphometry, predict.

The only module that prints. Every failure ends as one line on stderr: status 2 for a bad
argument, a project exception or an OS error on a path; Ctrl-C and SIGTERM (raised as an
exception, so that writers remove their temporary folders) give 130 and 143.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import re
import signal
import sys
import warnings
from pathlib import Path

from .errors import ModelFileError, VfsError

__all__ = ["main"]


def _full_table(frame) -> str:
    import pandas as pd

    with pd.option_context("display.max_rows", None, "display.max_columns", None,
                           "display.width", 200):
        return frame.to_string(index=False)


def _print_frame(frame, fmt: str) -> None:
    if fmt == "csv":
        frame.to_csv(sys.stdout, index=False)
    else:
        print(_full_table(frame))


_SCAN_WIDTH = 100     # the table of `vfs scan` fits this many columns (csv has every column)


def _mm(value) -> str:
    return f"{float(value):.3g}"


def _scan_view(table):
    """The short table of ``vfs scan``: one line per series, about 100 columns wide."""
    import pandas as pd

    def spacing(row) -> str:
        parts = [_mm(v) for v in (row.get("pixel_spacing") or ())]
        slice_mm = row.get("slice_spacing")
        if slice_mm is not None and pd.notna(slice_mm):
            parts.append(_mm(slice_mm))
        return "x".join(parts)

    def kind(value) -> str:
        return str(value).replace("\\", "/").split("/")[-1] if pd.notna(value) else ""

    def short(value, width: int) -> str:
        text = "" if value is None or (isinstance(value, float) and math.isnan(value)) \
            else str(value)
        return text if len(text) <= width else text[:width - 3] + "..."

    return pd.DataFrame({
        "folder": table["folder"].to_numpy(),
        "#": table.get("series_number", pd.Series([""] * len(table))).to_numpy(),
        "slices": table["n_slices"].to_numpy(),
        "description": [short(v, 40) for v in table.get("description", [""] * len(table))],
        "type": [kind(v) for v in table.get("image_type", [""] * len(table))],
        "spacing_mm": [spacing(r) for _, r in table.iterrows()],
        "size": [f"{r}x{c}" for r, c in zip(table["rows"], table["cols"])],
    })


def _print_grouped(view) -> None:
    """The view with each study folder's name on a line above its rows (in a column, the
    long names would double the width)."""
    lines = _full_table(view.drop(columns="folder")).splitlines()
    print(lines[0])
    previous = None
    for folder, line in zip(view["folder"], lines[1:]):
        if folder != previous:
            print(f"{folder}/")
            previous = folder
        print(line)


# --------------------------------------------------------------------------- argument types
def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0 or value > 1e3:
        raise argparse.ArgumentTypeError(f"{text!r}: a voxel spacing is a positive finite number "
                                         "of mm (at most 1000)")
    return value


def _int_in(low: int, high: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r}: {what} must be between {low} and "
                                             f"{high}")
        return value
    parse.__name__ = what   # argparse names the type in "invalid <name> value"
    return parse


def _existing_folder(text: str) -> Path:
    path = Path(text)
    if path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is a file; pass a folder")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such folder")
    return path


def _output_folder(text: str) -> Path:
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder; pass a new or an "
                                         "empty folder")
    parent = next((p for p in (path.absolute(), *path.absolute().parents) if p.exists()), None)
    if parent is not None and not (parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)):
        raise argparse.ArgumentTypeError(f"{text}: {parent} is not a writable folder")
    return path


def _existing_file(text: str) -> Path:
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; pass a file")
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a regular file")
    return path


_STUDY_GB = 0.24     # disk per study rendered from a real annotation (512 x 512, ~300 slices)


# --------------------------------------------------------------------------- commands
def _cmd_fetch(args: argparse.Namespace) -> int:
    from .data import fetch

    if args.real_ct:
        from .realct import real_ct_path

        print(f"real-ct: {real_ct_path()}")
        return 0
    for version, path in fetch(args.schema).items():
        print(f"{version}: {path}")
    return 0


def _remove_dead_partials(folder: Path) -> None:
    """Remove ``.<name>.partial-<pid>`` folders in ``folder`` left by killed processes."""
    from ._fs import remove_stale_partials

    with contextlib.suppress(OSError):
        for p in list(folder.iterdir()):
            m = re.fullmatch(r"\.(.+)\.partial-\d+", p.name)
            if m:
                remove_stale_partials(folder / m.group(1))


def _cmd_demo_data(args: argparse.Namespace) -> int:
    from .data import demo_dir
    from .phantom import build_dataset
    from .tutorial import Progress, lesson_demo_name

    out, replace = args.out, False
    if args.from_annotations is not None:
        files = sorted(args.from_annotations.glob("*.json"))
        n = len(files) if args.studies is None else min(args.studies, len(files))
        if args.studies is None and n > 4:
            print(f"vfs demo-data: rendering all {n} studies of {args.from_annotations} "
                  f"(about {n * _STUDY_GB:.0f} GB); pass --studies N for fewer",
                  file=sys.stderr)
    elif out is None:
        # the lessons' parameters: their own folder, not a second identical copy
        name = lesson_demo_name(studies=args.studies, seed=args.seed)
        if name is not None:
            out, replace = demo_dir(name), True
    parent = out.absolute().parent if out is not None else demo_dir("x").parent
    _remove_dead_partials(parent)
    parent.mkdir(parents=True, exist_ok=True)     # an unusable folder: one line, no progress

    with Progress() as bar:
        root = build_dataset(out, studies=args.studies, seed=args.seed,
                             annotation_dir=args.from_annotations, replace_stale=replace,
                             progress=bar)
    print(root)
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from .tutorial import setup

    print(setup(args.mode))
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import run

    checks = run()
    for c in checks:
        print(f"{'ok' if c.ok else 'FAIL':<5} {c.name}: {c.detail}")
        if not c.ok:
            print(f"      fix: {c.fix}")
    problems = sum(not c.ok for c in checks)
    if problems:
        print(f"vfs doctor: {problems} problem{'s' if problems > 1 else ''}; each FAIL line "
              "has its fix", file=sys.stderr)
        return 2
    print("vfs doctor: ready for the lessons")
    return 0


def _cmd_scan(args: argparse.Namespace) -> int:
    from .dicom import scan
    from .errors import DataNotFoundError

    table = scan(args.path)
    skipped = table.attrs.get("skipped_files", 0)
    if table.empty:
        raise DataNotFoundError(f"{args.path}: no DICOM series found"
                                + (f" ({skipped} non-DICOM files skipped)" if skipped else "")
                                + "; pass a study folder or a dataset root holding DICOM files.")
    if args.format == "csv":
        _print_frame(table, "csv")
    else:
        _print_grouped(_scan_view(table))
        print("(every column, with study folders and SeriesInstanceUIDs: --format csv)",
              file=sys.stderr)
    if skipped:
        print(f"({skipped} non-DICOM files skipped)", file=sys.stderr)
    return 0


def _cmd_index(args: argparse.Namespace) -> int:
    from concurrent.futures import ProcessPoolExecutor

    from .dicom.index import build_index, count_folders, index_path, progress_bar

    workers = args.workers or min(4, os.cpu_count() or 1)
    pool = ProcessPoolExecutor(workers) if workers > 1 else contextlib.nullcontext()
    with pool as executor, progress_bar(count_folders(args.root) if args.root.is_dir()
                                        else 0) as bar:
        table = build_index(args.root, executor=executor, progress=bar)
    _print_frame(table, args.format)
    print(f"indexed {len(table)} study folder(s), {int(table['images'].sum())} images, into "
          f"{index_path()}", file=sys.stderr)
    return 0


def _cmd_inventory(args: argparse.Namespace) -> int:
    from .matching import inventory

    table = inventory(args.root, args.annotation_dir)
    _print_frame(table, args.format)
    ok = int(table["ok"].sum())
    print(f"{ok} of {len(table)} annotation files match a series with every point inside",
          file=sys.stderr)
    return 0 if ok == len(table) else 1


def _cmd_morphometry(args: argparse.Namespace) -> int:
    from .annotation import read_annotations
    from .morphometry import morphometry_table

    frame = read_annotations(args.annotation_dir)
    spacing = tuple(args.spacing) if args.spacing else None
    table = morphometry_table(frame, root=args.root, spacing=spacing)
    _print_frame(table, args.format)
    return 0


def _load_classifier(path):
    """(estimator, description, trained_now) of ``vfs predict``'s deformity score."""
    from .baseline.models import _DEFAULT_MODEL_FILE, default_model, load_model
    from .data import cache_dir

    where = path if path is not None else "the cached default model"
    trained_now = path is None and not (cache_dir() / "models" / _DEFAULT_MODEL_FILE).is_file()
    try:
        model = load_model(path) if path is not None else default_model()
    except ModelFileError as exc:
        if path is not None:
            raise
        raise ModelFileError(f"{exc} It is the cached default model: delete it to have it "
                             "trained again.") from None
    except VfsError:
        raise
    except Exception as exc:  # skops/zipfile/pickle errors of a damaged file: one line
        hint = ("delete it to have it trained again" if path is None
                else "save models with vfs_utils.baseline.save_model()")
        raise ModelFileError(f"{where}: cannot be loaded as a skops model ({type(exc).__name__}: "
                             f"{str(exc)[:120]}); {hint}.") from None
    if path is None:
        what = ("deformity score: the default image-feature classifier (logistic regression on "
                "sampled phantom spines, cached in the cache's models/ folder); target: "
                "consensus QM grade >= 1 at the vertebra (a morphometric deformity, not a "
                "fracture diagnosis)")
    else:
        what = (f"deformity score: the classifier in {path}; its target is the one it was "
                "trained on")
    return model, what + (" [trained just now]" if trained_now else ""), trained_now


def _carried_levels(ann_path: Path, root: Path, table) -> list:
    """Level names for a v1 file's vertebrae: carried from the v2 reading of the same study
    (as the lessons do), else None."""
    from .annotation import load_annotation, read_annotations
    from .data import annotation_dir
    from .errors import DataNotFoundError
    from .readings import carry_levels

    candidates = [root / "annotation_v2" / ann_path.name]
    try:
        candidates.append(annotation_dir("v2", download=False) / ann_path.name)
    except DataNotFoundError:
        pass
    v2 = next((c for c in candidates if c.is_file()), None)
    if v2 is None:
        return list(table["level"])
    carried = carry_levels(read_annotations(ann_path), read_annotations(load_annotation(v2)))
    carried = carried[carried["level"].notna()]
    if carried.empty:
        return list(table["level"])
    import numpy as np

    c_slice = carried[[f"slice{i}" for i in range(6)]].mean(axis=1).to_numpy()
    out = []
    for z in table["centre_slice"].to_numpy(float):
        k = int(np.argmin(np.abs(c_slice - z)))
        out.append(carried["level"].iloc[k] if abs(c_slice[k] - z) < 10 else None)
    return out


def _cmd_predict(args: argparse.Namespace) -> int:
    from .baseline import predict_study

    if args.annotation is None:
        return _predict_from_image(args)
    model, what, _ = _load_classifier(args.model)
    table = predict_study(args.root, args.annotation, model=model)
    from .annotation import load_annotation

    if load_annotation(args.annotation).version == "v1":
        table["level"] = _carried_levels(Path(args.annotation), Path(args.root), table)
    _say(args, f"keypoints: the experts' ({args.annotation}); {what}")
    _print_frame(table, args.format)
    return 0


def _say(args, text: str) -> None:
    """Model and target lines: on stdout before a table, on stderr before CSV."""
    print(text, file=sys.stderr if args.format == "csv" else sys.stdout)


#: What ``vfs predict`` needs of a series: CT, axial within this angle, spacings up to this many
#: mm, and this much coverage along the spine (a vertebral body and its neighbours' endplates).
_AXIAL_DEGREES = 10.0
_MAX_SPACING_MM = 10.0
_MIN_COVERAGE_MM = 40.0


def _predict_series(args: argparse.Namespace):
    """The scan row of the series ``vfs predict`` reads; unusable files are named."""
    from .dicom import scan
    from .errors import SeriesError
    from .keypoints.predict import thin_series

    try:
        return thin_series(args.root, args.folder, args.series)
    except SeriesError as exc:
        study = Path(args.root) / "dicom" / args.folder
        problems = scan(study).attrs["problems"]
        if not problems:
            raise
        more = f" ({len(problems) - 1} more file(s) unusable)" if len(problems) > 1 else ""
        raise SeriesError(f"{problems[0]}{more}; without the unusable files {study} has no "
                          "series vfs predict can read.") from exc


def _check_predict_input(series, vol) -> None:
    """Refuse, naming the file and tag, a series the keypoint model cannot read: not CT, not
    axial, an absurd spacing or too few slices to hold a vertebra."""
    import numpy as np

    from .errors import SeriesError

    where = f"{vol.headers.paths[0]}: series {series['series_uid']}"
    if series["modality"] != "CT":
        raise SeriesError(f"{where}: Modality (0008,0060) is {series['modality']!r}; vfs predict "
                          "reads CT only. Pass --series with a CT series.")
    iop = np.asarray(series["orientation"], dtype=float)
    tilt = float(np.degrees(np.arccos(min(1.0, abs(np.cross(iop[:3], iop[3:])[2])))))
    if tilt > _AXIAL_DEGREES:
        raise SeriesError(f"{where}: ImageOrientationPatient (0020,0037) "
                          f"[{', '.join(f'{v:g}' for v in iop)}] is "
                          f"{tilt:.0f} degrees from axial (at most {_AXIAL_DEGREES:.0f}); vfs "
                          "predict reads axial slices. Pass --series with an axial series.")
    n = vol.array.shape[2]
    spacings = [("PixelSpacing (0028,0030)", max(vol.spacing[:2]))]
    if n > 1:
        spacings.append(("the slice spacing (from ImagePositionPatient (0020,0032))",
                         vol.spacing[2]))
    for tag, mm in spacings:
        if not 0 < mm <= _MAX_SPACING_MM:
            raise SeriesError(f"{where}: {tag} is {mm:g} mm, outside (0, {_MAX_SPACING_MM:g}] "
                              "mm; check the headers.")
    coverage = n * vol.spacing[2] if n > 1 else 0.0
    if coverage < _MIN_COVERAGE_MM:
        raise SeriesError(f"{where}: {n} slice(s) cover {coverage:.0f} mm along the spine; vfs "
                          f"predict needs at least {_MIN_COVERAGE_MM:g} mm (a vertebra and its "
                          "neighbours). Pass --series with a longer series.")


def _predict_from_image(args: argparse.Namespace) -> int:
    import numpy as np

    from ._fs import atomic_file
    from .annotation import write_annotation
    from .baseline import predict_study
    from .dicom import load_series
    from .errors import UsageError
    from .keypoints import MODEL_FILE, detect, model_metadata
    from .morphometry import morphometry_table

    if args.folder is None or args.out is None:
        raise UsageError("vfs predict: without --annotation, give --folder FOLDER (the study "
                         "under ROOT/dicom) and --out FILE (where the model's keypoints are "
                         "written as a v2 annotation file).")
    if args.out.is_dir():
        raise UsageError(f"--out {args.out} is a folder; pass a file name (a .json file).")
    series = _predict_series(args)
    vol = load_series(series["study_folder"], series["series_uid"])
    _check_predict_input(series, vol)
    model, what, _ = _load_classifier(args.model)
    det = detect(vol, folder=args.folder, series_uid=series["series_uid"])
    if not det.annotation.experts["model"]:
        cut = f" ({len(det.partial)} cut by the field of view)" if det.partial else ""
        raise VfsError(f"{series['study_folder']}: the keypoint model found no whole vertebra"
                       f"{cut} in series {series['series_uid']}; is it a CT of the chest or "
                       "spine?")
    meta = model_metadata()
    morph = morphometry_table(det.frame, spacing=vol.spacing)
    del vol
    with atomic_file(args.out) as tmp:      # --out is replaced only when the whole run succeeds
        write_annotation(det.annotation, tmp, version=det.annotation.version)
        scores = predict_study(args.root, tmp, model=model)
    table = morph[["ha", "hm", "hp", "height_loss", "grade"]].copy()
    table.insert(0, "level", [v.level or "?" for v in det.annotation.experts["model"]])
    for c in ("ha", "hm", "hp"):
        table[c] = table[c].round(1)
    table["height_loss"] = table["height_loss"].round(3)
    order = np.argsort(scores["centre_slice"].to_numpy(float), kind="stable")
    table["deformity_score"] = scores["probability"].to_numpy(float)[order].round(3)
    table.insert(1, "detection", np.round(det.scores, 3))
    table.insert(2, "status", "graded")
    table["centre_slice"] = [float(v.points[:, 2].mean()) for v in det.annotation.experts["model"]]
    if det.partial:
        import pandas as pd

        cut = pd.DataFrame({"level": [v.level or "?" for v in det.partial],
                            "detection": np.round(det.partial_scores, 3),
                            "status": "partial, not graded",
                            "centre_slice": [float(v.points[:, 2].mean()) for v in det.partial]})
        table = pd.concat([table, cut], ignore_index=True)
    table = table.sort_values("centre_slice", kind="stable").drop(columns="centre_slice")
    if args.format == "table" and det.partial:      # blank, not NaN, in the partial rows
        table = table.astype(object).where(table.notna(), "")
    lo, hi = det.expected
    _say(args, f"keypoints: {MODEL_FILE.name} (ONNX, {meta.get('licence', '?')}); target: "
               f"{meta.get('target', '?')}; written to {args.out}")
    _say(args, f"this study: {len(det.annotation.experts['model'])} whole vertebrae and "
               f"{len(det.partial)} cut by the field of view; bone column {det.span_mm:.0f} mm "
               f"(holds {lo}-{hi} vertebrae at 25-30 mm each); levels named by: "
               f"{det.level_source}")
    _say(args, what)
    for w in det.warnings:
        print(f"vfs predict: warning: {w}", file=sys.stderr)
    _print_frame(table.reset_index(drop=True), args.format)
    _say(args, "columns: detection = the keypoint network's centre probability; ha/hm/hp, "
               "height_loss, grade = QM morphometric grade from the keypoint heights; "
               "deformity_score = the classifier's probability from image features")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``vfs`` command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="vfs", description=__doc__.splitlines()[0],
        epilog="`vfs COMMAND -h` explains a command. Data settings (VFS_CACHE_DIR, "
               "VFS_ANNOTATION_DIR, VFS_OFFLINE, ...) are described in the README.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    parser.add_argument("-V", "--version", action="version",
                        version=f"vfs (vfs-tutorials) {__version__}",
                        help="print the program's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = {"choices": ["table", "csv"], "default": "table",
           "help": "table: aligned columns for reading (default); csv: every column, for "
                   "spreadsheets and pandas"}

    p = sub.add_parser("fetch", help="download the pinned annotation sets into the cache")
    p.add_argument("--schema", choices=["v1", "v2", "all"], default="all",
                   help="which annotation set: v1 (vertebral-fractures-severity), v2 "
                        "(anchor-free-genant) or all (default)")
    p.add_argument("--real-ct", action="store_true",
                   help="instead: the pinned real example CT of TotalSegmentator (Apache-2.0, "
                        "2 MB; VFS_REAL_CT points at a local copy)")
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser("demo-data", help="write the synthetic phantom dataset (idempotent)")
    p.add_argument("--out", type=_output_folder, default=None,
                   help="dataset root to write (default: a folder under demo/ in the cache; "
                        "the lessons' own demo/synthetic for the default --studies and --seed)")
    p.add_argument("--studies", type=_int_in(1, 10_000, "studies"), default=None,
                   help="number of studies (with --from-annotations: the first N files)")
    p.add_argument("--seed", type=_int_in(0, 2**32 - 1, "seed"), default=0,
                   help="random seed (same seed, same bytes)")
    p.add_argument("--from-annotations", type=_existing_folder, default=None, metavar="DIR",
                   help="render studies that match these real annotation files (v1 or v2)")
    p.set_defaults(func=_cmd_demo_data)

    p = sub.add_parser("prepare", help="find or build the data the lessons use (idempotent)")
    p.add_argument("--mode", choices=["real", "phantom", "synthetic"], default=None,
                   help="force a data mode (default: the first available)")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("doctor", help="check this machine for the lessons: versions, data mode, "
                       "disk, memory, the keypoint model (exit 2 with a fix per problem)")
    p.set_defaults(func=_cmd_doctor)

    p = sub.add_parser("scan", help="list the DICOM series under a study folder or dataset root")
    p.add_argument("path", type=_existing_folder, help="a study folder or a dataset root")
    p.add_argument("--format", **fmt)
    p.set_defaults(func=_cmd_scan)

    p = sub.add_parser("index", help="read every study's headers into the series index now")
    p.add_argument("root", type=Path, help="dataset root holding dicom/<Folder>/...")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: the cores, at most 4)")
    p.add_argument("--format", **fmt)
    p.set_defaults(func=_cmd_index)

    p = sub.add_parser("inventory", help="match every annotation file to its series")
    p.add_argument("root", type=_existing_folder, help="dataset root holding dicom/<Folder>/...")
    p.add_argument("--annotation-dir", type=_existing_folder, default=None, metavar="DIR",
                   help="annotation folder (default: ROOT/annotation, else the configured v1 set)")
    p.add_argument("--format", **fmt)
    p.set_defaults(func=_cmd_inventory)

    p = sub.add_parser("morphometry", help="heights, ratios and Genant grades per vertebra reading")
    p.add_argument("--annotation-dir", type=_existing_folder, required=True, metavar="DIR",
                   help="folder of annotation files (v1 or v2), e.g. the one `vfs fetch` "
                        "prints")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--root", type=_existing_folder,
                   help="dataset root: spacing from each series' headers")
    g.add_argument("--spacing", type=_positive_float, nargs=3, metavar=("ROW", "COL", "SLICE"),
                   help="one voxel spacing in mm for every series")
    p.add_argument("--format", **fmt)
    p.set_defaults(func=_cmd_morphometry)

    p = sub.add_parser("predict", help="keypoints, heights, QM grades and deformity scores of "
                       "one study (from the image, or from an annotation file)")
    p.add_argument("--root", type=_existing_folder, required=True, help="dataset root")
    p.add_argument("--annotation", type=_existing_file, default=None,
                   help="the study's annotation file (default: find the keypoints in the image "
                        "with the shipped keypoint model)")
    p.add_argument("--folder", default=None,
                   help="without --annotation: the study folder under ROOT/dicom (an axial CT "
                        f"series: within {_AXIAL_DEGREES:g} degrees, spacings up to "
                        f"{_MAX_SPACING_MM:g} mm, at least {_MIN_COVERAGE_MM:g} mm long)")
    p.add_argument("--series", default=None,
                   help="without --annotation: the SeriesInstanceUID (default: the thin series)")
    p.add_argument("--out", type=Path, default=None,
                   help="without --annotation: write the model's keypoints here (v2 JSON; "
                        "replaced only when the whole run succeeds)")
    p.add_argument("--model", type=_existing_file, default=None,
                   help="a deformity classifier saved with skops")
    p.add_argument("--format", **fmt)
    p.set_defaults(func=_cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``vfs`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", force=True)
    if args.command != "doctor":     # the doctor must run on a broken install too
        from .dicom import quiet_uid_warnings
        quiet_uid_warnings()

    def one_line_warning(message, category, filename, lineno, file=None, line=None):
        print(f"vfs {args.command}: warning: {_one_line(message)}", file=sys.stderr)

    shown, warnings.showwarning = warnings.showwarning, one_line_warning
    from ._fs import Terminated, _stop, request_stop

    previous = {}
    with contextlib.suppress(ValueError):     # only the main thread may set handlers
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, request_stop)
    try:
        return args.func(args)
    except VfsError as exc:
        print(f"vfs {args.command}: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `vfs ... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:   # an unwritable output/cache folder, a full disk: one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"vfs {args.command}: {type(exc).__name__}: {where}{exc.strerror or exc}. Check "
              "the folder (and VFS_CACHE_DIR) is writable and has space.", file=sys.stderr)
        return 2
    except Terminated:
        print(f"vfs {args.command}: terminated (SIGTERM); partial output removed",
              file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"vfs {args.command}: interrupted; partial output removed", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _stop.clear()            # a later main() in this process starts afresh


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
