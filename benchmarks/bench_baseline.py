"""Benchmark: the default pipeline of lessons 06 and 07 against its time and memory targets.

Runs, in one process (so that the peak resident memory is the pipeline's own):

(a) the default pipeline of ``notebooks/06_classifier_evaluation.ipynb`` and
    ``notebooks/07_classifier_baselines.ipynb``: ``load_studies`` on
    the lesson's data source (phantom mode: all 100 real v2 annotation files, each
    rendered from one expert's reading), ``dataset_features`` on a two-process pool
    with patches, ``annotator_baseline`` (all turns and the image's annotator),
    ``evaluate`` (5-fold GroupKFold, 3 models, 2 targets, 1000 bootstrap
    replicates) and ``leakage`` (KFold vs GroupKFold, logistic, primary target,
    1000 paired replicates), timed end to end;
(b) a baseline measured in the same run: rendering the **full** phantom volume of
    one study (what writing 100 phantom series would cost per study) against
    rendering the thin slab the features need, for the same study; the ratio is
    the slab's saving.

Targets: (a) at most 120 s and at most 2 GB peak memory (this process plus, as an
upper bound, the largest worker once per worker), at least 40 studies and 500
vertebrae (T4-L4, labelled). Prints the numbers and ratios; asserts nothing.

Run: ``python benchmarks/bench_baseline.py [--workers 2] [--repeats 3]``
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from vfs_utils import baseline, phantom
from vfs_utils.tutorial import setup

TIME_TARGET_S = 120.0
MEMORY_TARGET_MB = 2048.0


def peak_mb(who: int) -> float:
    """Peak resident set size in MB (Linux reports ru_maxrss in kB)."""
    return resource.getrusage(who).ru_maxrss / 1024.0


def pipeline(source, workers: int) -> tuple[int, int]:
    import pandas as pd

    studies = baseline.load_studies(source)
    with ProcessPoolExecutor(max_workers=workers) as executor:
        features, _patches = baseline.dataset_features(studies, executor=executor,
                                                       return_patches=True)
    annotator = pd.concat([baseline.annotator_baseline(studies),
                           baseline.annotator_baseline(studies, turns="image").assign(
                               model="image's annotator vs others")])
    targets = list(baseline.TARGETS)
    result = baseline.evaluate(features, features[targets], features["folder"], n_boot=1000,
                               seed=0, extra_predictions=annotator)
    leak = baseline.leakage(features, features[baseline.PRIMARY_TARGET], features["folder"],
                            baseline.make_models()["logistic"], n_boot=1000, seed=0)
    s = result.summary
    for target in targets:
        for level in ("vertebra", "patient"):
            for model in ("logistic", baseline.ANNOTATOR, "image's annotator vs others"):
                r = s[(s.model == model) & (s.target == target) & (s.level == level)].iloc[0]
                print(f"    {target:>14} {level:>8} {model:>28}: ROC AUC {r.roc_auc:.3f} "
                      f"[{r.roc_auc_lo:.3f}, {r.roc_auc_hi:.3f}], {r.positives}/{r.n} positive")
    for r in leak.summary.itertuples():
        print(f"    leakage {r.level:>8} {r.split:>24}: {r.roc_auc:+.3f} "
              f"[{r.roc_auc_lo:+.3f}, {r.roc_auc_hi:+.3f}]")
    return features["folder"].nunique(), len(features)


def render_times(study: baseline.Study, repeats: int) -> tuple[float, float, int, int]:
    truth = study.truth
    full, slab = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        vol = phantom.render_volume(truth, rng=np.random.default_rng(0))
        full.append(time.perf_counter() - t0)
        full_bytes = vol.nbytes
        del vol
        t0 = time.perf_counter()
        part = phantom.render_volume(truth, rng=np.random.default_rng(0),
                                     box=baseline.studies.slab_box(truth))
        slab.append(time.perf_counter() - t0)
        slab_bytes = part.nbytes
        del part
    return statistics.median(full), statistics.median(slab), full_bytes, slab_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    source = setup()
    print(f"data mode: {source.mode}")
    t0 = time.perf_counter()
    n_studies, n_vertebrae = pipeline(source, args.workers)
    elapsed = time.perf_counter() - t0
    # the workers run side by side: count the largest one once per worker (an upper bound)
    mem = peak_mb(resource.RUSAGE_SELF) + args.workers * peak_mb(resource.RUSAGE_CHILDREN)
    print(f"(a) default pipeline: {n_studies} studies, {n_vertebrae} vertebrae "
          f"(targets >= 40, >= 500)")
    print(f"    time {elapsed:.1f} s = {elapsed / TIME_TARGET_S:.2f} x the 120 s target")
    print(f"    peak memory {mem:.0f} MB (main + workers x largest worker) = "
          f"{mem / MEMORY_TARGET_MB:.2f} x the 2 GB target")

    studies = baseline.load_studies(source, limit=1)
    study = studies[0]
    if study.truth is None:      # real or synthetic mode: render the phantom of the annotation
        study = baseline.load_studies(study.annotation.path)[0]
    full_s, slab_s, full_b, slab_b = render_times(study, args.repeats)
    print(f"(b) one study ({study.folder}): full volume {full_s:.2f} s, {full_b / 2**20:.0f} MB; "
          f"slab {slab_s:.2f} s, {slab_b / 2**20:.1f} MB")
    print(f"    slab saves {full_s / slab_s:.1f} x time and {full_b / slab_b:.0f} x memory; "
          f"100 full volumes would take about {100 * full_s:.0f} s of rendering alone")


if __name__ == "__main__":
    main()
