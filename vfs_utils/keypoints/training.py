"""The keypoint network in PyTorch, its training and its export to ONNX.

Imported only where torch is installed (the ``train`` extra): the package itself runs the
shipped ONNX file with onnxruntime. Training is deterministic: fixed seeds, two threads,
``torch.use_deterministic_algorithms(True)``, a fixed number of steps.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from ._decode import OFFSET_SCALE, STRIDE, cell_centres

__all__ = ["KeypointNet", "augment", "batch", "export_onnx", "focal_loss", "offset_loss",
           "targets", "train"]

CROP = (96, 128)           # training crops (rows = the whole input height, columns along)
SIGMA_CELLS = 0.8          # width of the centre heatmap's Gaussian (cells)


def _block(cin, cout, stride=1, dilation=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation,
                                   bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class KeypointNet(nn.Module):
    """Two stride-2 stages, then dilated convolutions at stride 4 (receptive field about
    130 px); a 1x1 head gives the centre logit and the 12 offsets."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.body = nn.Sequential(
            _block(1, 16, 2), _block(16, 24), _block(24, width, 2),
            _block(width, width, dilation=2), _block(width, width, dilation=4),
            _block(width, width, dilation=8), _block(width, width, dilation=2),
        )
        self.head = nn.Conv2d(width, 13, 1)
        with torch.no_grad():
            self.head.bias[0] = -4.0     # start with a low centre probability (CenterNet)

    def forward(self, x):
        return self.head(self.body(x))


def targets(points: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Heatmap (H, W), offsets (12, H, W) and offset weights (H, W) for one crop.

    ``points`` (n, 6, 2) in the crop's pixels; ``shape`` the crop's (rows, cols).
    """
    h, w = shape[0] // STRIDE, shape[1] // STRIDE
    heat = np.zeros((h, w), np.float32)
    off = np.zeros((12, h, w), np.float32)
    wts = np.zeros((h, w), np.float32)
    centres = cell_centres((h, w))
    for p in points:
        c = p.mean(axis=0) / STRIDE - (STRIDE - 1) / (2.0 * STRIDE)   # in cell units
        if not (-0.5 <= c[0] < h - 0.5 and -0.5 <= c[1] < w - 0.5):
            continue
        ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        g = np.exp(-((ii - c[0]) ** 2 + (jj - c[1]) ** 2) / (2 * SIGMA_CELLS ** 2))
        heat = np.maximum(heat, g.astype(np.float32))
        ci, cj = int(round(c[0])), int(round(c[1]))
        heat[ci, cj] = 1.0
        for i in range(max(ci - 1, 0), min(ci + 2, h)):
            for j in range(max(cj - 1, 0), min(cj + 2, w)):
                if g[i, j] > wts[i, j]:
                    wts[i, j] = g[i, j]
                    off[:, i, j] = ((p - centres[:, i, j]) / OFFSET_SCALE).reshape(-1)
    return heat, off, wts


def focal_loss(logit, heat):
    """CenterNet's focal loss of the centre logits against the Gaussian heatmap targets."""
    p = torch.sigmoid(logit).clamp(1e-4, 1 - 1e-4)
    pos = heat.eq(1).float()
    neg = 1 - pos
    lp = -torch.log(p) * (1 - p) ** 2 * pos
    ln = -torch.log(1 - p) * p ** 2 * (1 - heat) ** 4 * neg
    return (lp.sum() + ln.sum()) / pos.sum().clamp(min=1)


def _deformed(ex) -> np.ndarray:
    """Indices of an example's vertebrae with a height loss >= 0.2 (min of Ha, Hm over Hp)."""
    sp = np.asarray(ex.sag.spacing, float)
    mm = np.asarray(ex.voxels, float) * sp
    h = np.linalg.norm(mm[:, 1::2] - mm[:, 0::2], axis=2)          # (n, 3): Ha, Hm, Hp
    loss = 1 - np.minimum(h[:, 0], h[:, 1]) / np.maximum(h[:, 2], 1e-6)
    return np.nonzero(loss >= 0.2)[0]


def augment(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Appearance a scanner could give the same anatomy (applied to the normalised input):
    thicker slices or coarser pixels (a Gaussian blur along either axis), a contrast and
    offset change (+-0.2 is +-80 HU), extra noise; each drawn per crop."""
    if rng.random() < 0.6:
        crop = ndimage.gaussian_filter(crop, (rng.uniform(0, 1.2), rng.uniform(0, 1.5)),
                                       truncate=2.5)
    crop = crop * np.float32(rng.uniform(0.8, 1.25)) + np.float32(rng.uniform(-0.2, 0.2))
    if rng.random() < 0.5:
        crop = crop + rng.normal(0, rng.uniform(0, 0.08), crop.shape).astype(np.float32)
    return crop.astype(np.float32)


def offset_loss(pred, target, weight):
    """Smooth-L1 loss of the twelve offsets, weighted around each vertebra's centre cell."""
    per_cell = torch.nn.functional.smooth_l1_loss(pred, target, reduction="none", beta=0.05)
    return (per_cell.mean(dim=1) * weight).sum() / weight.sum().clamp(min=1)


def batch(examples, rng, size, deformed=None):
    """``size`` augmented training crops (:func:`augment`) of ``examples`` and their targets
    (:func:`targets`): ``(images, heatmaps, offsets, offset weights)`` as tensors. Half the
    crops are centred near a deformed vertebra (``deformed``: per example, the indices of
    its vertebrae with a height loss >= 0.2; default: computed)."""
    if deformed is None:
        deformed = [_deformed(ex) for ex in examples]
    xs, hs, os_, ws = [], [], [], []
    with_deformed = [k for k, d in enumerate(deformed) if len(d)]
    for _ in range(size):
        # deformed vertebrae oversampled: half the crops are centred near one of them
        focus = with_deformed and rng.random() < 0.5
        k = with_deformed[rng.integers(len(with_deformed))] if focus \
            else int(rng.integers(len(examples)))
        ex = examples[k]
        img = ex.sag.image
        n = img.shape[1]
        if focus:
            d = deformed[k][rng.integers(len(deformed[k]))]
            j_c = float(ex.points[d, :, 1].mean())
            j0 = int(np.clip(j_c - rng.uniform(24, CROP[1] - 24), 0, max(n - CROP[1], 0)))
        else:
            j0 = int(rng.integers(0, max(n - CROP[1], 0) + 1))
        crop = np.full(CROP, img.min(), np.float32)
        part = img[:CROP[0], j0:j0 + CROP[1]]
        crop[:part.shape[0], :part.shape[1]] = part
        crop = augment(crop, rng)
        pts = ex.points - np.array([0.0, j0])
        h, o, w = targets(pts, CROP)
        xs.append(crop[None])
        hs.append(h)
        os_.append(o)
        ws.append(w)
    return (torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(hs)),
            torch.from_numpy(np.stack(os_)), torch.from_numpy(np.stack(ws)))


def train(examples, *, steps: int = 1500, batch_size: int = 16, lr: float = 3e-3, seed: int = 0,
          threads: int = 2, log_every: int = 0, width: int = 32) -> tuple[KeypointNet, dict]:
    """Train a :class:`KeypointNet` on rendered examples; returns it (in eval mode) and a
    record (steps, seconds, final losses)."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(seed)
    net = KeypointNet(width)
    deformed = [_deformed(ex) for ex in examples]
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                                pct_start=0.15)
    t0 = time.perf_counter()
    net.train()
    hist = []
    for step in range(steps):
        x, h, o, w = batch(examples, rng, batch_size, deformed)
        out = net(x)
        lh = focal_loss(out[:, 0], h)
        lo = offset_loss(out[:, 1:], o, w)
        loss = lh + 4.0 * lo
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        hist.append((float(lh.detach()), float(lo.detach())))
        if log_every and (step + 1) % log_every == 0:
            m = np.mean(hist[-log_every:], axis=0)
            print(f"step {step + 1}: heat {m[0]:.3f} offsets {m[1]:.4f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    net.eval()
    tail = np.mean(hist[-50:], axis=0)
    return net, {"steps": steps, "batch": batch_size, "lr": lr, "seed": seed, "threads": threads,
                 "seconds": round(time.perf_counter() - t0, 1),
                 "final_heat_loss": round(float(tail[0]), 4),
                 "final_offset_loss": round(float(tail[1]), 5),
                 "parameters": int(sum(p.numel() for p in net.parameters()))}


def predict_torch(net: KeypointNet, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(heat, offsets) of one input image with the torch model."""
    x = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None, None]
    with torch.no_grad():
        out = net(x)[0].numpy()
    return 1 / (1 + np.exp(-out[0])), out[1:]


def save_weights(net: KeypointNet, path) -> None:
    """The torch weights as ``.npz`` (no pickle), for checking the ONNX file against torch."""
    np.savez_compressed(path, **{k: v.detach().numpy() for k, v in net.state_dict().items()})


def load_weights(path, width: int = 32) -> KeypointNet:
    """A :class:`KeypointNet` (eval mode) with the weights :func:`save_weights` wrote."""
    net = KeypointNet(width)
    with np.load(path, allow_pickle=False) as z:
        net.load_state_dict({k: torch.from_numpy(z[k]) for k in z.files})
    return net.eval()


def export_onnx(net: KeypointNet, path) -> None:
    """Write ``net`` as ONNX (opset 17; the column axis is dynamic)."""
    net.eval()
    x = torch.zeros(1, 1, CROP[0], CROP[1])
    torch.onnx.export(net, x, str(path), input_names=["image"], output_names=["output"],
                      dynamic_axes={"image": {3: "along"}, "output": {3: "along_cells"}},
                      opset_version=17, dynamo=False)
