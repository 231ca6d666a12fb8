"""Run the shipped keypoint network with onnxruntime (no torch needed)."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ModelFileError

__all__ = ["MODEL_FILE", "METADATA_FILE", "model_metadata", "run_model"]

_HERE = Path(__file__).resolve().parent / "model"
#: The shipped ONNX model (CC BY-NC 4.0: trained on the CC BY-NC annotations).
MODEL_FILE = _HERE / "keypoints.onnx"
#: Its metadata sidecar: training data, split, steps, seed, target, licence.
METADATA_FILE = _HERE / "keypoints.json"


@lru_cache(maxsize=4)
def _session(path: str):
    try:
        import onnxruntime as ort
    except ImportError as exc:     # a base dependency; a broken install says so in one line
        raise ModelFileError(f"{path}: onnxruntime is not importable ({exc}); "
                             "reinstall the package (pip install vfs-tutorials).") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:   # a missing or damaged file: one line with the fix
        raise ModelFileError(f"{path}: cannot be loaded as an ONNX model "
                             f"({type(exc).__name__}: {str(exc)[:120]}); reinstall the package "
                             "or rebuild it with `make model`.") from None


def model_metadata(path: str | Path | None = None) -> dict:
    """The metadata sidecar of a model file (``<name>.json`` beside ``<name>.onnx``)."""
    meta = Path(path).with_suffix(".json") if path is not None else METADATA_FILE
    try:
        return json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{meta}: cannot read the model's metadata ({exc}); reinstall "
                             "the package or rebuild it with `make model`.") from None


def run_model(image: np.ndarray, path: str | Path | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """(heat (H, W) probabilities, offsets (12, H, W)) of one 2D input image."""
    sess = _session(str(path if path is not None else MODEL_FILE))
    x = np.ascontiguousarray(image, np.float32)[None, None]
    out = sess.run(None, {"image": x})[0][0]
    return 1.0 / (1.0 + np.exp(-out[0].astype(np.float64))), out[1:].astype(np.float64)
