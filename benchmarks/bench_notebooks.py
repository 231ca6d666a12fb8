"""Wall time and peak memory of each lesson, against the 60 s / 2 GB budget.

Each notebook runs in a fresh child process (``nbclient``, not saved) with
its own kernel. The kernel is a child of that process and is waited for at
shutdown, so the child's ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` is the
kernel's peak resident memory. The same is measured for an empty notebook
in the same run: the baseline (kernel start-up and shutdown), and every
notebook is reported as a ratio to it as well as against the limits.

Run from the repository root (``make bench`` sets the data environment):

    python benchmarks/bench_notebooks.py [notebooks/01_loading.ipynb ...]

The demo data are built first (``vfs_utils.tutorial.setup()``), outside the
timings. Exits with status 1 when a notebook fails or exceeds a limit.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
LIMIT_SECONDS = 60.0
#: Lessons with a larger time budget: the classifier lessons train and cross-validate models,
#: the keypoint lesson trains a network.
LIMIT_SECONDS_FOR = {"06_classifier_evaluation": 120.0, "07_classifier_baselines": 120.0,
                     "08_keypoints": 120.0}
LIMIT_MB = 2048.0

# Runs in the child: execute one notebook, report the kernel's peak RSS (kB on Linux).
_RUNNER = r"""
import json, resource, sys
from pathlib import Path
import nbformat
from nbclient import NotebookClient

path = Path(sys.argv[1])
nb = nbformat.read(path, as_version=4)
NotebookClient(nb, timeout=600, kernel_name="python3",
               resources={"metadata": {"path": str(path.parent)}}).execute()
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"kernel_maxrss_kb": usage.ru_maxrss}))
"""


def _run(path: Path) -> tuple[float, float]:
    """(seconds, kernel peak MB) of executing one notebook in a child process."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _RUNNER, str(path)], cwd=ROOT,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}"
                           f" failed:\n{tail}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return seconds, report["kernel_maxrss_kb"] / 1024.0


def _empty_notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("pass")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = folder / "empty.ipynb"
    nbformat.write(nb, path)
    return path


def main(argv: list[str]) -> int:
    notebooks = ([Path(a).resolve() for a in argv]
                 or sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")))
    if not notebooks:
        print("no notebooks to run")
        return 0
    # build the demo data once, outside the timings
    subprocess.run([sys.executable, "-c", "from vfs_utils.tutorial import setup; setup()"],
                   cwd=ROOT, check=True, capture_output=True)
    with tempfile.TemporaryDirectory() as tmp:
        base_s, base_mb = _run(_empty_notebook(Path(tmp)))
    print(f"baseline (empty notebook): {base_s:.1f} s, kernel peak {base_mb:.0f} MB")
    longer = ", ".join(LIMIT_SECONDS_FOR)
    print(f"limits: {LIMIT_SECONDS:.0f} s ({longer}: 120 s) and {LIMIT_MB:.0f} MB per "
          "notebook\n")
    header = (f"{'notebook':32} {'seconds':>8} {'x base':>7} {'peak MB':>8} {'x base':>7}"
              "  within limits")
    print(header)
    print("-" * len(header))
    failed = False
    for path in notebooks:
        try:
            seconds, mb = _run(path)
        except RuntimeError as exc:
            print(f"{path.name:32} FAILED\n{exc}")
            failed = True
            continue
        ok = seconds <= LIMIT_SECONDS_FOR.get(path.stem, LIMIT_SECONDS) and mb <= LIMIT_MB
        failed |= not ok
        print(f"{path.name:32} {seconds:8.1f} {seconds / base_s:7.1f} {mb:8.0f} "
              f"{mb / base_mb:7.1f}  {'yes' if ok else 'NO'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
