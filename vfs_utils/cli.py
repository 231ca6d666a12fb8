"""The ``vfs`` command line: fetch, prepare, demo-data, scan, inventory, morphometry, predict.

This is the only module that prints; the library reports through return
values, exceptions, warnings and logging.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .errors import VfsError

__all__ = ["main"]


def _print_frame(frame, fmt: str) -> None:
    if fmt == "csv":
        frame.to_csv(sys.stdout, index=False)
    else:
        import pandas as pd

        with pd.option_context("display.max_rows", None, "display.max_columns", None,
                               "display.width", 200):
            print(frame.to_string(index=False))


def _cmd_fetch(args: argparse.Namespace) -> int:
    from .data import fetch

    for version, path in fetch(args.version).items():
        print(f"{version}: {path}")
    return 0


def _cmd_demo_data(args: argparse.Namespace) -> int:
    from .phantom import build_dataset

    root = build_dataset(args.out, studies=args.studies, seed=args.seed,
                         annotation_dir=args.from_annotations)
    print(root)
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from .tutorial import setup

    print(setup(args.mode))
    return 0


def _cmd_scan(args: argparse.Namespace) -> int:
    from .dicom import scan

    table = scan(args.path)
    _print_frame(table, args.format)
    skipped = table.attrs.get("skipped_files", 0)
    if skipped:
        print(f"({skipped} non-DICOM files skipped)", file=sys.stderr)
    return 0


def _cmd_index(args: argparse.Namespace) -> int:
    from concurrent.futures import ProcessPoolExecutor

    from .dicom.index import build_index, count_folders, index_path, progress_bar

    workers = args.workers or min(4, os.cpu_count() or 1)
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        with progress_bar(count_folders(args.root) if args.root.is_dir() else 0) as bar:
            table = build_index(args.root, executor=pool, progress=bar)
    finally:
        if pool is not None:
            pool.shutdown()
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


def _cmd_predict(args: argparse.Namespace) -> int:
    from .baseline import predict_study

    table = predict_study(args.root, args.annotation, model=args.model)
    _print_frame(table, args.format)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``vfs`` command."""
    parser = argparse.ArgumentParser(prog="vfs", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch", help="download the pinned annotation sets into the cache")
    p.add_argument("--version", choices=["v1", "v2", "all"], default="all")
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser("demo-data", help="write the synthetic phantom dataset (idempotent)")
    p.add_argument("--out", type=Path, default=None,
                   help="dataset root to write (default: the demo folder in the cache)")
    p.add_argument("--studies", type=int, default=None, help="number of studies")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    p.add_argument("--from-annotations", type=Path, default=None, metavar="DIR",
                   help="render studies that match these real annotation files (v1 or v2)")
    p.set_defaults(func=_cmd_demo_data)

    p = sub.add_parser("prepare", help="find or build the data the lessons use (idempotent)")
    p.add_argument("--mode", choices=["real", "phantom", "synthetic"], default=None,
                   help="force a data mode (default: the first available)")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("scan", help="list the DICOM series under a study folder or dataset root")
    p.add_argument("path", type=Path)
    p.add_argument("--format", choices=["table", "csv"], default="table")
    p.set_defaults(func=_cmd_scan)

    p = sub.add_parser("index", help="read every study's headers into the series index now")
    p.add_argument("root", type=Path, help="dataset root holding dicom/<Folder>/...")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: the cores, at most 4)")
    p.add_argument("--format", choices=["table", "csv"], default="table")
    p.set_defaults(func=_cmd_index)

    p = sub.add_parser("inventory", help="match every annotation file to its series")
    p.add_argument("root", type=Path, help="dataset root holding dicom/<Folder>/...")
    p.add_argument("--annotation-dir", type=Path, default=None,
                   help="annotation folder (default: ROOT/annotation, else the configured v1 set)")
    p.add_argument("--format", choices=["table", "csv"], default="table")
    p.set_defaults(func=_cmd_inventory)

    p = sub.add_parser("morphometry", help="heights, ratios and Genant grades per vertebra reading")
    p.add_argument("--annotation-dir", type=Path, required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--root", type=Path, help="dataset root: spacing from each series' headers")
    g.add_argument("--spacing", type=float, nargs=3, metavar=("ROW", "COL", "SLICE"),
                   help="one voxel spacing in mm for every series")
    p.add_argument("--format", choices=["table", "csv"], default="table")
    p.set_defaults(func=_cmd_morphometry)

    p = sub.add_parser("predict", help="per-vertebra fracture probabilities for one study")
    p.add_argument("--root", type=Path, required=True, help="dataset root")
    p.add_argument("--annotation", type=Path, required=True, help="the study's annotation file")
    p.add_argument("--model", type=Path, default=None, help="a model saved with skops")
    p.add_argument("--format", choices=["table", "csv"], default="table")
    p.set_defaults(func=_cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``vfs`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", force=True)
    from .dicom import quiet_uid_warnings
    quiet_uid_warnings()
    try:
        return args.func(args)
    except VfsError as exc:
        print(f"vfs {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `vfs ... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
