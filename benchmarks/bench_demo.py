"""Benchmark: one demo study built on demand, against ``load_series`` of the same study.

In a temporary folder (its own VFS_CACHE_DIR), a child process builds the first study of
the lessons' phantom dataset (the real v2 annotations when VFS_ANNOTATION_DIR_V2 points at
them, else the synthetic one) with ``build_dataset(only=1)``; a second child reads that
study's thin series with ``load_series``; a third asks for the same study again (reuse).
Each child reports its wall time and peak resident memory (``ru_maxrss``). Prints the
numbers and the ratios build/load_series (time, memory) and reuse/load_series (time).
Targets (issue 28): one study <= 2 s and <= 300 MB on one core (run under ``taskset -c 0``).

Run: ``python benchmarks/bench_demo.py``
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

_CHILD = r"""
import json, os, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
from vfs_utils import phantom
from vfs_utils.dicom import load_series
what, root = sys.argv[1], Path(sys.argv[2])
v2 = os.environ.get("VFS_ANNOTATION_DIR_V2")
params = {"studies": 4, "annotation_dir": v2} if v2 else {"seed": 0}
t_import = time.perf_counter() - t0
t0 = time.perf_counter()
if what == "load":
    manifest = json.loads((root / "manifest.json").read_text())
    rec = manifest["studies"][0]
    volume = load_series(root / "dicom" / rec["folder"], rec["series"]["thin"], index=False)
    extra = {"shape": list(volume.shape)}
else:
    phantom.build_dataset(root, only=1, **params)
    extra = {}
print(json.dumps({"seconds": time.perf_counter() - t0, "import_s": t_import,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra}))
"""


def _child(what: str, root: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, what, root], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "VFS_CACHE_DIR": os.path.join(tmp, "cache")}
        root = os.path.join(tmp, "demo")
        build = _child("build", root, env)
        load = _child("load", root, env)
        again = _child("build", root, env)
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
    print(f"build one study : {build['seconds']:6.2f} s  peak {build['peak_mb']:6.0f} MB  "
          f"({size / 1e6:.0f} MB written)")
    print(f"load_series     : {load['seconds']:6.2f} s  peak {load['peak_mb']:6.0f} MB  "
          f"(thin series {load['shape']})")
    print(f"reuse (built)   : {again['seconds']:6.2f} s  peak {again['peak_mb']:6.0f} MB")
    print(f"ratios build/load_series: time {build['seconds'] / load['seconds']:.2f}, "
          f"memory {build['peak_mb'] / load['peak_mb']:.2f}; reuse/load_series time "
          f"{again['seconds'] / load['seconds']:.3f}")


if __name__ == "__main__":
    main()
