"""Benchmark: the keypoint network's training and inference against their targets.

Measured in one run, each beside ``load_series`` of the same study (the baseline every
study pays anyway):

(a) training: ``make model``'s training loop (fixed steps, batch, seeds, two threads) on
    the cached training examples, its wall time and the process's peak resident memory
    (targets: at most 240 s and 2 GB on 2 CPU cores); rendering the training phantoms is
    reported separately (it is cached after the first run);
(b) inference: ``keypoints.detect`` on one demo study's thin series (target: at most
    2 s per study on CPU), the median of ``--repeats`` runs;
(c) the baseline: ``dicom.load_series`` of that study, the median of ``--repeats`` runs.

Prints the numbers and the ratios; asserts nothing. Times on a shared machine are upper
bounds. Run: ``python benchmarks/bench_keypoints.py [--repeats 3] [--no-train]``
"""
from __future__ import annotations

import argparse
import importlib.util
import resource
import statistics
import time

from vfs_utils import dicom, keypoints, matching
from vfs_utils.annotation import load_annotation
from vfs_utils.tutorial import setup

TRAIN_TARGET_S = 240.0
MEMORY_TARGET_MB = 2048.0
INFER_TARGET_S = 2.0


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-train", action="store_true", help="skip the training measurement")
    args = ap.parse_args()
    source = setup()
    folder = source.studies[0]
    ann = load_annotation(source.annotation_dir / f"{folder}.json")
    series = matching.match(ann, source.root)

    loads, infers = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        vol = dicom.load_series(series["study_folder"], series["series_uid"])
        loads.append(time.perf_counter() - t)
        t = time.perf_counter()
        det = keypoints.detect(vol)
        infers.append(time.perf_counter() - t)
    load_s, infer_s = statistics.median(loads), statistics.median(infers)
    print(f"study {folder}: volume {vol.array.shape}, "
          f"{len(det.annotation.experts['model'])} vertebrae found")
    print(f"load_series        {load_s:7.2f} s (median of {args.repeats})")
    print(f"detect (inference) {infer_s:7.2f} s  ratio to load_series {infer_s / load_s:5.2f}  "
          f"target <= {INFER_TARGET_S:.0f} s: {'met' if infer_s <= INFER_TARGET_S else 'NOT met'}")

    if args.no_train or importlib.util.find_spec("torch") is None:
        print("training: skipped (--no-train or torch missing)")
        return
    from vfs_utils.keypoints import _build, _data
    from vfs_utils.keypoints import training as _train

    t = time.perf_counter()
    train = _data.cached_examples("phantom" if source.mode != "synthetic" else "synthetic",
                                  "train")
    data_s = time.perf_counter() - t
    _, record = _train.train(train, steps=_build.STEPS, batch_size=_build.BATCH, seed=_build.SEED)
    train_s = record["seconds"]
    mem = peak_mb()
    print(f"training data      {data_s:7.2f} s ({len(train)} images; cached after the first run)")
    print(f"training           {train_s:7.1f} s  ratio to load_series {train_s / load_s:7.1f}  "
          f"target <= {TRAIN_TARGET_S:.0f} s: {'met' if train_s <= TRAIN_TARGET_S else 'NOT met'}")
    print(f"peak memory        {mem:7.0f} MB  target <= {MEMORY_TARGET_MB:.0f} MB: "
          f"{'met' if mem <= MEMORY_TARGET_MB else 'NOT met'}")


if __name__ == "__main__":
    main()
