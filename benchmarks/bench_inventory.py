"""Time ``vfs_utils.matching.inventory`` serially and on a dask.distributed LocalCluster.

Usage::

    python benchmarks/bench_inventory.py [--repeat 3] [--workers 1 2]

Runs on the lessons' dataset (``vfs_utils.tutorial.setup()``: built on first use).
The serial run is the baseline measured in the same process; each cluster run is
reported as a ratio to it (< 1 is faster). Cluster start-up is not timed, and every
configuration gets one untimed warm-up call (imports on the workers, file cache).
"""
from __future__ import annotations

import argparse
import functools
import time
import warnings


def _quiet() -> None:
    """Silence pydicom's warnings on UIDs with a trailing dot (common in the real headers)."""
    warnings.filterwarnings("ignore", message="Invalid value for VR UI")


def _best_of(repeat: int, func) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per setting (best kept)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="LocalCluster sizes to time")
    args = parser.parse_args()

    from dask.distributed import Client, LocalCluster

    from vfs_utils.matching import inventory
    from vfs_utils.tutorial import setup

    _quiet()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = setup()
    root, annotations = source.root, source.annotation_dir
    print(f"data: {source.mode}; {len(source.studies)} study folders under {root}; "
          f"{len(list(annotations.glob('*.json')))} annotation files in {annotations}")

    def run(executor=None):
        return inventory(root, annotations, executor=executor)

    run()  # warm-up: file cache
    baseline, table = _best_of(args.repeat, run)
    print(f"serial        {baseline:8.3f} s  ({len(table)} files, {int(table['ok'].sum())} ok)  "
          f"ratio 1.00")
    for n in args.workers:
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            # a Client's own map returns futures; its executor view yields results
            executor = client.get_executor()
            client.run(_quiet)
            run(executor)  # warm-up: imports on the workers
            seconds, parallel = _best_of(args.repeat, functools.partial(run, executor))
        same = parallel.reset_index(drop=True).equals(table.reset_index(drop=True))
        print(f"{n} worker{'s' if n > 1 else ' '}     {seconds:8.3f} s  ratio "
              f"{seconds / baseline:5.2f}  (same table as serial: {same})")


if __name__ == "__main__":
    main()
