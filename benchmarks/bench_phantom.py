"""Benchmark of vfs_utils.phantom against its size budget (prints numbers, no asserts).

Targets: the default `vfs demo-data` (fully synthetic) builds in <= 60 s and takes
<= 1 GB on disk; one full-size study (512 x 512 x ~350) renders in <= 10 s; peak memory
<= 2 GB. The render is also compared with a baseline measured in the same run: one
numpy pass that only fills a volume of the same size with Gaussian noise.
"""
from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from vfs_utils import phantom


def disk_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main() -> None:
    rng = np.random.default_rng(5)
    truth = phantom.sample_spine(rng, n_vertebrae=15)
    shape = truth.geometry.shape
    t0 = time.perf_counter()
    phantom.render_volume(truth, rng=np.random.default_rng(0))
    t_render = time.perf_counter() - t0
    t0 = time.perf_counter()
    np.random.default_rng(0).standard_normal(shape[::-1], dtype=np.float32).astype(np.int16)
    t_base = time.perf_counter() - t0
    print(f"render one study {shape} : {t_render:6.2f} s  (target <= 10 s; "
          f"{t_render / t_base:.1f}x a bare noise fill of the same size, {t_base:.2f} s)")

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
    main()
