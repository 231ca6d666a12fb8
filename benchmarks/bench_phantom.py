"""Benchmark of vfs_utils.phantom against its budget (prints numbers, no asserts).

Targets: one default full-size study (512 x 512 x ~350) renders in <= 2 s on one core with
<= 300 MB of extra peak memory; the default `vfs demo-data` (fully synthetic) builds in
<= 60 s and takes <= 1 GB on disk. The render is compared with ``load_series`` of the same
study (written as DICOM), measured in the same run. ``--no-build`` skips the dataset build.
Run it with OMP_NUM_THREADS=1, and with another checkout first on PYTHONPATH to compare
renderers on one machine.
"""
from __future__ import annotations

import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from vfs_utils import dicom, phantom


def disk_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def best_of(n: int, fn) -> float:
    """The least CPU time (s) of ``n`` calls: on a shared machine, less noisy than wall time."""
    times = []
    for _ in range(n):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def main(argv: list[str]) -> None:
    truth = phantom.sample_spine(np.random.default_rng(5), n_vertebrae=15, series_uid="1.2.3.4",
                                 folder="BENCH")
    shape = truth.geometry.shape
    t_render = best_of(3, lambda: phantom.render_volume(truth, rng=np.random.default_rng(0)))
    tracemalloc.start()
    phantom.render_volume(truth, rng=np.random.default_rng(0))
    peak_render = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    with tempfile.TemporaryDirectory() as tmp:
        phantom.write_study(Path(tmp), truth, rng=np.random.default_rng(0))
        study = Path(tmp) / "dicom" / truth.folder
        t_load = best_of(3, lambda: dicom.load_series(study, truth.series_uid, index=False))
    print(f"render one study {shape} : {t_render:6.2f} s CPU (target <= 2 s; "
          f"{t_render / t_load:.2f}x load_series of the same study, {t_load:.2f} s)")
    print(f"  peak memory of one render  : {peak_render:6.0f} MB (numpy allocations; "
          f"the int16 result is {np.prod(shape) * 2 / 1e6:.0f} MB)")
    if "--no-build" in argv:
        return
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root = phantom.build_dataset(Path(tmp) / "demo", seed=0)
        t_build = time.perf_counter() - t0
        size = disk_size(root)
        t0 = time.perf_counter()
        phantom.build_dataset(root, seed=0)
        t_again = time.perf_counter() - t0
    print(f"default build_dataset ({phantom.DEFAULT_STUDIES} studies): {t_build:6.2f} s  "
          f"(target <= 60 s)")
    print(f"  disk size                   : {size / 1e9:6.3f} GB (target <= 1 GB)")
    print(f"  second call (already built) : {t_again * 1000:6.1f} ms")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2   # kB -> GB on Linux
    print(f"peak memory (ru_maxrss)       : {peak:6.3f} GB (target <= 2 GB)")


if __name__ == "__main__":
    main(sys.argv[1:])
