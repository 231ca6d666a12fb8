"""`make model`: render the training data, train the network, export ONNX + metadata.

    python -m vfs_utils.keypoints._build [--steps N] [--out DIR]

Deterministic: the split, the rendered images (seeded), the training (seeds, two
threads, deterministic algorithms, fixed steps) and the export are fixed, so the same
code gives the same model file.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import resource
import time
from pathlib import Path

from ..data import annotation_dir
from . import _data
from ._decode import MIN_DIST_PX, OFFSET_SCALE, STRIDE, THRESHOLD
from ._input import GRID_MM, HALF_ROWS_MM, SEARCH_HALF_MM
from ._onnx import MODEL_FILE

STEPS = 6000
BATCH = 8
SEED = 19


def build_model(out: Path = MODEL_FILE, *, steps: int = STEPS, mode: str = "phantom",
                workers: int = 2, log_every: int = 100) -> dict:
    """Train and export; returns the metadata written beside the model."""
    from . import training as _train  # torch is an optional extra: imported only to train

    t0 = time.perf_counter()
    train = _data.cached_examples(mode, "train", workers=workers)
    t_data = time.perf_counter() - t0
    net, record = _train.train(train, steps=steps, batch_size=BATCH, seed=SEED, threads=2,
                               log_every=log_every)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _train.export_onnx(net, out)
    _train.save_weights(net, out.with_name(out.stem + "-weights.npz"))
    files = sorted(annotation_dir("v2").glob("*.json")) if mode == "phantom" else []
    parts = _data.split([f.stem for f in files]) if files else {}
    meta = {
        "model": out.name,
        "task": "vertebra centre heatmap + offsets to the six keypoints (CenterNet-like)",
        "target": "six keypoints per vertebral body (anterior, middle, posterior height "
                  "pairs) on a straightened sagittal image; levels are counted from the "
                  "ribs (the lowest rib-bearing vertebra is Th12), not predicted",
        "input": {"grid_mm": GRID_MM, "rows_mm": [-HALF_ROWS_MM, HALF_ROWS_MM],
                  "search_half_mm": SEARCH_HALF_MM, "hu_scale": "(clip(HU,-300,1200)-200)/400"},
        "output": {"stride": STRIDE, "offset_scale_px": OFFSET_SCALE,
                   "threshold": THRESHOLD, "min_dist_px": MIN_DIST_PX},
        "training_data": (
            "phantom CT rendered from each expert's reading of the v2 annotations "
            "(neuro-ml/anchor-free-genant, CC BY-NC 4.0) of the training patients, plus "
            f"{_data.SYNTH_TRAIN} sampled synthetic spines (seed {_data.SYNTH_SEED})"
            if mode == "phantom" else
            f"{_data.SYNTH_TRAIN} sampled synthetic spines (seed {_data.SYNTH_SEED}) only"),
        "split": {"rule": f"held out: the {_data.HELDOUT_COUNT} folders with the largest "
                          f"sha256(Folder); validation: the next {_data.VALIDATION_COUNT}; "
                          "train: the rest",
                  "counts": {k: len(v) for k, v in parts.items()},
                  "heldout_sha256": hashlib.sha256("\n".join(parts.get("heldout", []))
                                                   .encode()).hexdigest()},
        "training_images": len(train),
        "training_variants": {
            "per_spine": _data.VARIANTS, "pixel_mm": list(_data.PIXEL_MM),
            "slice_mm": list(_data.SLICE_MM),
            "appearance": "vfs_utils.phantom.random_appearance (SynthSeg-style)",
            "skipped": len(_data._jobs(mode, "train", files)) - len(train)},
        "training": record,
        "data_seconds": round(t_data, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "licence": "CC BY-NC 4.0 (trained on CC BY-NC 4.0 annotations); the code is MIT",
        "reproduce": "make model",
    }
    from .evaluation import report  # after the export: the file the package ships is judged
    t1 = time.perf_counter()
    meta["heldout"] = report(mode, model=out, workers=workers)
    meta["heldout_seconds"] = round(time.perf_counter() - t1, 1)
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--out", type=Path, default=MODEL_FILE)
    ap.add_argument("--mode", choices=["phantom", "synthetic"], default="phantom")
    args = ap.parse_args(argv)
    meta = build_model(args.out, steps=args.steps, mode=args.mode)
    print(json.dumps({k: meta[k] for k in ("model", "training_images", "training",
                                           "peak_rss_mb")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
