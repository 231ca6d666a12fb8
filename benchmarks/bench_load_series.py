"""Benchmark: ``load_series`` and ``scan``, cold and warm, against baselines run alongside.

Builds, in a temporary folder, one study with three series written by
``write_series``: a thin series (300 slices of 512x512 by default), a 5 mm
series and a one-slice scout, the files moved into nested folders under
random names unrelated to slice order. Then times, as the median of
``--repeats`` runs after one warm-up (so every approach reads from the page
cache):

(a) bare byte read: ``open().read()`` of the thin series' files, a floor;
(b) upstream read-everything: ``pydicom.dcmread`` of every file with its pixel
    data, keep the series, sort by InstanceNumber, stack, rescale;
(c) SimpleITK: GDCM file-name discovery (recursive) plus ``ImageSeriesReader``;
(d) ``load_series`` cold: no index (``index=False``): every header is parsed;
(e) ``load_series`` warm: the series index is present;
and, on a dataset root of ``--studies`` small studies (three series each):
(f) ``scan`` cold (``index=False``) and (g) warm (index present).

Targets: e/a <= 3 (warm within 3x the bytes), d/c <= 0.8 (cold faster than
SimpleITK), g < 0.5 s. Prints the numbers and ratios; asserts nothing
but that every approach gives the same volume.

Run: ``python benchmarks/bench_load_series.py [--slices 300] [--size 512] [--repeats 5]``
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom

STUDY_UID = "1.2.826.0.1.3680043.8.498.900"
FOR_UID = "1.2.826.0.1.3680043.8.498.901"
THIN_UID = "1.2.826.0.1.3680043.8.498.911"


def build_study(folder: Path, slices: int, size: int, seed: int = 0,
                study_uid: str = STUDY_UID, thin_uid: str = THIN_UID) -> None:
    """Write the three series of a study into `folder`; scatter the files under random names."""
    from vfs_utils.dicom import write_series

    rng = np.random.default_rng(seed)
    base = rng.integers(-1024, 1500, size=(size, size, 1), dtype=np.int16)
    noise = rng.integers(-20, 20, size=(1, 1, slices), dtype=np.int16)
    thin = base + noise
    common = dict(study_uid=study_uid, frame_of_reference_uid=FOR_UID)
    staging = folder.parent / f".{folder.name}-staging"
    write_series(staging / "a", thin, spacing=(0.7, 0.7, 1.0), series_uid=thin_uid,
                 series_number=1, series_description="thin", **common)
    write_series(staging / "b", thin[:, :, : max(1, slices // 5)], spacing=(0.7, 0.7, 5.0),
                 series_uid=thin_uid[:-1] + "2", series_number=2, series_description="5 mm",
                 **common)
    write_series(staging / "c", thin[:, :, :1], spacing=(1.0, 1.0, 1.0),
                 series_uid=thin_uid[:-1] + "3", series_number=3, series_description="scout",
                 image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), **common)
    files = sorted(staging.rglob("*.dcm"))
    names = rng.permutation(len(files))
    for path, k in zip(files, names):
        sub = folder / f"D{k % 7:02d}" / f"S{(k * 31) % 5:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        path.rename(sub / f"{(k * 2654435761) % 2**32:08X}")
    for d in sorted(staging.rglob("*"), reverse=True):
        d.rmdir()
    staging.rmdir()


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


def read_sitk(folder: Path, uid: str) -> np.ndarray:
    """SimpleITK: GDCM finds the series' files (recursively), ImageSeriesReader reads them."""
    import SimpleITK as sitk

    names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid, False, True)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(names)
    return sitk.GetArrayFromImage(reader.Execute())  # (slices, rows, cols), sorted by position


def read_bytes(paths: list[Path]) -> int:
    """Read every file's bytes; return the total."""
    total = 0
    for path in paths:
        with open(path, "rb") as fh:
            total += len(fh.read())
    return total


def median_time(func, repeats: int, before=None) -> float:
    """Median seconds of `func` over `repeats` runs after a warm-up; `before` runs untimed."""
    if before is not None:
        before()
    func()
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300, help="slices of the thin series")
    parser.add_argument("--size", type=int, default=512, help="rows = cols")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--studies", type=int, default=50, help="studies of the scan dataset")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vfs-bench-") as tmp:
        os.environ["VFS_CACHE_DIR"] = str(Path(tmp) / "cache")  # a private, empty index
        os.environ.pop("VFS_NO_INDEX", None)
        from vfs_utils.dicom import load_series, quiet_uid_warnings, scan
        from vfs_utils.dicom.index import index_path

        quiet_uid_warnings()
        study = Path(tmp) / "study"
        start = time.perf_counter()
        build_study(study, args.slices, args.size)
        files = [p for p in study.rglob("*") if p.is_file()]
        thin_files = [p for p in files if pydicom.dcmread(p, stop_before_pixels=True,
                                                          specific_tags=["SeriesInstanceUID"]
                                                          ).SeriesInstanceUID == THIN_UID]
        mib = sum(p.stat().st_size for p in thin_files) / 2**20
        print(f"study: {len(files)} files in 3 series under nested folders, random names; thin "
              f"series {len(thin_files)} x {args.size}x{args.size} ({mib:.0f} MiB); built in "
              f"{time.perf_counter() - start:.1f} s")

        reference = read_everything(study, THIN_UID)
        np.testing.assert_array_equal(load_series(study, THIN_UID, index=False).array, reference)
        np.testing.assert_array_equal(load_series(study, THIN_UID).array, reference)
        sitk = read_sitk(study, THIN_UID)  # sorted by position: head first, ours by instance
        np.testing.assert_array_equal(np.sort(sitk.ravel()), np.sort(reference.ravel()))

        def drop_index() -> None:
            shutil.rmtree(index_path(), ignore_errors=True)

        t_bytes = median_time(lambda: read_bytes(thin_files), args.repeats)
        t_all = median_time(lambda: read_everything(study, THIN_UID), args.repeats)
        t_sitk = median_time(lambda: read_sitk(study, THIN_UID), args.repeats)
        t_cold = median_time(lambda: load_series(study, THIN_UID, index=False), args.repeats)
        t_build = median_time(lambda: load_series(study, THIN_UID), args.repeats,
                              before=drop_index)
        load_series(study, THIN_UID)
        t_warm = median_time(lambda: load_series(study, THIN_UID), args.repeats)

        root = Path(tmp) / "root"
        start = time.perf_counter()
        for k in range(args.studies):
            build_study(root / "dicom" / f"STUDY-{k:03d}", 24, 64, seed=k,
                        study_uid=f"{STUDY_UID}.{k + 1}", thin_uid=f"{THIN_UID}{k + 1}1")
        n_root = sum(1 for p in root.rglob("*") if p.is_file())
        print(f"dataset root: {args.studies} studies, {n_root} files (3 series of 64x64 each); "
              f"built in {time.perf_counter() - start:.1f} s")
        table = scan(root, index=False)
        assert len(table) == 3 * args.studies
        t_scan_cold = median_time(lambda: scan(root, index=False), args.repeats)
        scan(root)
        t_scan_warm = median_time(lambda: scan(root), args.repeats)
        import pandas as pd

        pd.testing.assert_frame_equal(scan(root), table)

    ms = 1000
    print(f"median of {args.repeats} runs after one warm-up (page cache warm):")
    print(f"  (a) bare byte read of the thin series:               {t_bytes * ms:8.1f} ms")
    print(f"  (b) upstream read-everything (dcmread all, stack):   {t_all * ms:8.1f} ms")
    print(f"  (c) SimpleITK (GDCM file-name discovery + read):     {t_sitk * ms:8.1f} ms")
    print(f"  (d) load_series cold (index=False):                  {t_cold * ms:8.1f} ms")
    print(f"  (d') load_series building the index (none on disk):  {t_build * ms:8.1f} ms")
    print(f"  (e) load_series warm (index present):                {t_warm * ms:8.1f} ms")
    print(f"  (f) scan of {args.studies} studies cold (index=False):        "
          f"{t_scan_cold * ms:8.1f} ms")
    print(f"  (g) scan of {args.studies} studies warm (index present):      "
          f"{t_scan_warm * ms:8.1f} ms")
    print("ratios:")
    print(f"  e/a = {t_warm / t_bytes:5.2f}  (target <= 3: warm load within 3x the bytes)")
    print(f"  d/c = {t_cold / t_sitk:5.2f}  (target <= 0.8: cold load faster than SimpleITK)")
    print(f"  b/e = {t_all / t_warm:5.1f}  c/e = {t_sitk / t_warm:5.1f}  (warm load vs the "
          "baselines)")
    print(f"  g   = {t_scan_warm:5.3f} s (target < 0.5 s); f/g = {t_scan_cold / t_scan_warm:5.1f}")


if __name__ == "__main__":
    main()
