"""Benchmark: ``vfs_utils.dicom.load_series`` against two baselines measured in the same run.

Builds, in a temporary folder, one study folder with three series written by
``write_series``: the "annotated" thin series (300 slices of 512x512 by
default), a 5 mm series (60 slices) and a one-slice localizer. Then times,
after one warm-up run each (so every approach reads from the page cache):

(a) the read-everything approach: ``pydicom.dcmread`` of every file with its
    pixel data, keep the series, sort by InstanceNumber, stack
    ``pixel_array``, apply slope and intercept;
(b) ``load_series``;
(c) merely reading the bytes of the thin series' files (``open().read()``),
    a floor no reader can beat.

Targets: a/b >= 3 (faster than reading everything) and b/c <= 2 (close to the
cost of the bytes). Prints the medians and ratios; asserts nothing.

Run: ``python benchmarks/bench_load_series.py [--slices 300] [--size 512] [--repeats 5]``
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom

from vfs_utils.dicom import load_series, write_series

STUDY_UID = "1.2.826.0.1.3680043.8.498.900"
FOR_UID = "1.2.826.0.1.3680043.8.498.901"
THIN_UID = "1.2.826.0.1.3680043.8.498.911"


def build_study(folder: Path, slices: int, size: int) -> None:
    """Write the three series of the benchmark study into `folder`."""
    rng = np.random.default_rng(0)
    base = rng.integers(-1024, 1500, size=(size, size, 1), dtype=np.int16)
    noise = rng.integers(-20, 20, size=(1, 1, slices), dtype=np.int16)
    thin = base + noise
    common = dict(study_uid=STUDY_UID, frame_of_reference_uid=FOR_UID)
    write_series(folder / "series-001", thin, spacing=(0.7, 0.7, 1.0), series_uid=THIN_UID,
                 series_number=1, series_description="thin", **common)
    write_series(folder / "series-002", thin[:, :, : max(1, slices // 5)],
                 spacing=(0.7, 0.7, 5.0), series_uid=THIN_UID[:-1] + "2", series_number=2,
                 series_description="5 mm", **common)
    write_series(folder / "series-003", thin[:, :, :1], spacing=(1.0, 1.0, 1.0),
                 series_uid=THIN_UID[:-1] + "3", series_number=3, series_description="localizer",
                 image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), **common)


def read_everything(folder: Path, uid: str) -> np.ndarray:
    """The upstream recipe: read every file fully, keep the series, stack, rescale."""
    slices = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        ds = pydicom.dcmread(path)
        if ds.get("SeriesInstanceUID") == uid:
            slices.append(ds)
    slices.sort(key=lambda ds: int(ds.InstanceNumber))
    array = np.stack([ds.pixel_array for ds in slices], axis=-1)
    return array * float(slices[0].RescaleSlope) + float(slices[0].RescaleIntercept)


def read_bytes(paths: list[Path]) -> int:
    """Read every file's bytes; return the total."""
    total = 0
    for path in paths:
        with open(path, "rb") as fh:
            total += len(fh.read())
    return total


def median_time(func, repeats: int) -> float:
    func()  # warm the page cache and imports
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300, help="slices of the thin series")
    parser.add_argument("--size", type=int, default=512, help="rows = cols")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vfs-bench-") as tmp:
        study = Path(tmp) / "study"
        start = time.perf_counter()
        build_study(study, args.slices, args.size)
        thin_files = sorted((study / "series-001").glob("*.dcm"))
        n_files = sum(1 for p in study.rglob("*") if p.is_file())
        mib = sum(p.stat().st_size for p in thin_files) / 2**20
        print(f"study: {n_files} files in 3 series; thin series {len(thin_files)} x "
              f"{args.size}x{args.size} ({mib:.0f} MiB); built in {time.perf_counter() - start:.1f} s")

        check = load_series(study, THIN_UID).array
        np.testing.assert_array_equal(check, read_everything(study, THIN_UID))

        t_all = median_time(lambda: read_everything(study, THIN_UID), args.repeats)
        t_load = median_time(lambda: load_series(study, THIN_UID), args.repeats)
        t_bytes = median_time(lambda: read_bytes(thin_files), args.repeats)

    print(f"median of {args.repeats} runs after one warm-up:")
    print(f"  (a) read everything (dcmread all, stack, rescale): {t_all * 1000:8.1f} ms")
    print(f"  (b) load_series:                                   {t_load * 1000:8.1f} ms")
    print(f"  (c) read the thin series' bytes only:              {t_bytes * 1000:8.1f} ms")
    print(f"  a/b = {t_all / t_load:5.2f}   (target >= 3: load_series at least 3x faster)")
    print(f"  b/c = {t_load / t_bytes:5.2f}   (target <= 2: within 2x of reading the bytes)")


if __name__ == "__main__":
    main()
