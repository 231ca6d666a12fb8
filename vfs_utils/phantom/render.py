"""The phantom renderer: :func:`render_volume` (a volume or a sub-box) and
:func:`render_sagittal_slab`. A torso (skin, fat, chest-wall and paraspinal muscle), ribs
articulating with Th1 down to ``lowest_rib`` (cortex, marrow, costal cartilage), lungs with
vessels down to a domed diaphragm at ``lung_base``, liver, heart, aorta (arch and
descending), trachea, sternum, and a spine (kidney-shaped bodies: cortical shell over
textured cancellous bone; discs, canal, posterior elements, non-fracture deformities) in
:data:`~vfs_utils.phantom.spine.HU` or ``tissue_hu``, then the acquisition (blur, bias field,
offset, noise). Edges have partial volume, so heights measured back from the image agree
with the keypoints.

The module is one piece: the spine, the ribs (which start at its costovertebral joints)
and the torso share one per-study frame and one partial-volume rule, and a sub-box must
render exactly as the same box of the full volume.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..annotation import LEVELS
from ..errors import UsageError
from .spine import HU, Geometry, SpineTruth, draw_acquisition, draw_patient, level_index

__all__ = ["render_sagittal_slab", "render_volume", "with_acquisition"]

_CORTEX_MM = 1.0
_DELTA_MM = 1.2     # the body extends this far beyond the anterior/posterior keypoints
_SPUR_HU = 600.0    # osteophytes: dense bone
_SPUR_ANGLE = math.radians(35)   # a spur points anteriorly and this far towards the disc
_SCLEROSIS_HU = 450.0            # the rim around a Schmorl node


def _ramp(d: np.ndarray, width: float) -> np.ndarray:
    """Partial-volume occupancy of a signed distance ``d`` (mm, > 0 inside)."""
    r = np.multiply(d, np.float32(1.0 / width), dtype=np.float32)
    r += np.float32(0.5)
    np.maximum(r, 0.0, out=r)
    return np.minimum(r, 1.0, out=r)


def _paint(target: np.ndarray, occ: np.ndarray, value) -> None:
    """``target = target * (1 - occ) + value * occ`` in place."""
    target += occ * (value - target)


@dataclass
class _Frame:
    """Local sagittal frame of one vertebra: a (anterior -> posterior), b (head -> feet), mm."""

    origin: np.ndarray   # (y, z) mm
    eu: np.ndarray
    ev: np.ndarray
    col_mm: float

    def local(self, y, z):
        dy, dz = y - self.origin[0], z - self.origin[1]
        return dy * self.eu[0] + dz * self.eu[1], dy * self.ev[0] + dz * self.ev[1]

    def world(self, a, b):
        return (self.origin[0] + a * self.eu[0] + b * self.ev[0],
                self.origin[1] + a * self.eu[1] + b * self.ev[1])


def _frame(p_mm: np.ndarray) -> _Frame:
    """Frame of a vertebra from its six points in mm (y=row, x=col, z=slice)."""
    yz = p_mm[:, [0, 2]]
    ant, post = yz[0:2].mean(0), yz[4:6].mean(0)
    eu = post - ant
    eu = eu / (np.linalg.norm(eu) or 1.0)
    ev = np.array([-eu[1], eu[0]])
    if ev[1] < 0:
        ev = -ev
    return _Frame(yz.mean(0), eu, ev, float(p_mm[:, 1].mean()))


def _quadratic(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Coefficients of b(a) through three points (linear when two coincide)."""
    if np.min(np.abs(np.diff(np.sort(a)))) < 1e-3:
        c = np.polyfit(a, b, 1)
        return np.array([0.0, *c])
    return np.polyfit(a, b, 2)


class _Body:
    """Signed distances (mm) to the faces of a vertebral body (or a disc)."""

    def __init__(self, upper: np.ndarray, lower: np.ndarray, frame: _Frame, delta: float,
                 width: float | None = None):
        self.f = frame
        ua, ub = frame.local(upper[:, 0], upper[:, 1])
        la, lb = frame.local(lower[:, 0], lower[:, 1])
        self.qu, self.ql = _quadratic(ua, ub), _quadratic(la, lb)
        self.delta = delta
        # walls: lines through (upper[0], lower[0]) and (upper[2], lower[2]), in (a, b)
        self.walls = []
        for k, sign in ((0, 1.0), (2, -1.0)):
            d = np.array([la[k] - ua[k], lb[k] - ub[k]])
            d /= np.linalg.norm(d) or 1.0
            nrm = np.array([d[1], -d[0]])
            if nrm[0] * sign < 0:
                nrm = -nrm
            self.walls.append((np.array([ua[k], ub[k]]), nrm))
        depth = 0.5 * (abs(ua[2] - ua[0]) + abs(la[2] - la[0]))
        self.half_width = 0.5 * (width if width is not None else 1.3 * depth)
        # kidney-shaped section: the posterior wall concave towards the canal
        self.kidney = 0.0 if width is not None else 0.12 * depth
        self.a_range = (min(ua[0], la[0]) - delta, max(ua[2], la[2]) + delta)
        self.b_range = (min(ub.min(), lb.min()), max(ub.max(), lb.max()))

    def distances(self, a, b, x):
        """Distances to upper, lower, anterior, posterior and lateral faces (> 0 inside)."""
        du = np.polyval(self.qu, a)
        dl = np.polyval(self.ql, a)
        su = np.polyval(np.polyder(self.qu), a)
        sl = np.polyval(np.polyder(self.ql), a)
        d_up = (b - du) / np.sqrt(1 + su * su)
        d_lo = (dl - b) / np.sqrt(1 + sl * sl)
        (p0, n0), (p1, n1) = self.walls
        d_ant = (a - p0[0]) * n0[0] + (b - p0[1]) * n0[1] + self.delta
        d_post = (a - p1[0]) * n1[0] + (b - p1[1]) * n1[1] + self.delta
        u = np.clip(d_ant / np.maximum(d_ant + d_post, 1e-3), 0.0, 1.0)
        p = 2.2 if not self.kidney else np.where(u > 0.5, 4.0, 2.2)   # square posterior corners
        half = self.half_width * np.power(np.clip(1 - np.abs(2 * u - 1) ** p, 0, 1), 1 / p)
        d_lat = half - np.abs(x)
        if self.kidney:
            d_post = d_post + self.kidney * np.minimum((x / self.half_width) ** 2, 1.0)
        return d_up, d_lo, d_ant, d_post, d_lat


def _box_grid(geom: Geometry, box, lo_mm, hi_mm):
    """Index ranges (rows, cols, slices) of a mm bounding box, clipped to ``box``; or None."""
    sp = np.asarray(geom.spacing)
    lo = np.floor(np.asarray(lo_mm) / sp).astype(int)
    hi = np.ceil(np.asarray(hi_mm) / sp).astype(int) + 1
    lo = np.maximum(lo, [b[0] for b in box])
    hi = np.minimum(hi, [b[1] for b in box])
    if np.any(hi <= lo):
        return None
    return [(int(a), int(b)) for a, b in zip(lo, hi)]


def _local_grids(geom: Geometry, rng_idx, frame: _Frame):
    """(a, b, x) local coordinates of a sub-box, each broadcastable to (slices, rows, cols)."""
    sp = geom.spacing
    (r0, r1), (c0, c1), (s0, s1) = rng_idx
    y = (np.arange(r0, r1, dtype=np.float32) * sp[0])[None, :, None]
    z = (np.arange(s0, s1, dtype=np.float32) * sp[2])[:, None, None]
    x = (np.arange(c0, c1, dtype=np.float32) * sp[1] - frame.col_mm)[None, None, :]
    a, b = frame.local(y, z)
    return a, b, x


def _view(vol: np.ndarray, box, rng_idx):
    """The (slices, rows, cols) view of ``vol`` (which covers ``box``) for ``rng_idx``."""
    (r0, r1), (c0, c1), (s0, s1) = rng_idx
    return vol[s0 - box[2][0]:s1 - box[2][0], r0 - box[0][0]:r1 - box[0][0],
               c0 - box[1][0]:c1 - box[1][0]]


def _corners_box(frame: _Frame, a_lim, b_lim, x_half):
    aa = np.array([a_lim[0], a_lim[0], a_lim[1], a_lim[1]])
    bb = np.array([b_lim[0], b_lim[1], b_lim[0], b_lim[1]])
    y, z = frame.world(aa, bb)
    lo = (y.min(), frame.col_mm - x_half, z.min())
    hi = (y.max(), frame.col_mm + x_half, z.max())
    return lo, hi


def _render_spine(vol: np.ndarray, truth: SpineTruth, box, hu) -> None:
    geom = truth.geometry
    sp = np.asarray(geom.spacing)
    w = float(max(sp[2], sp[0]))          # partial-volume ramp width (mm): the slice profile
    verts = [v.points * sp for v in truth.vertebrae]
    frames = [_frame(p) for p in verts]
    bodies = [_Body(p[0::2][:, [0, 2]], p[1::2][:, [0, 2]], f, _DELTA_MM)
              for p, f in zip(verts, frames)]

    # discs: between the lower endplate of one body and the upper endplate of the next
    for i in range(len(verts) - 1):
        up, low = verts[i][1::2][:, [0, 2]], verts[i + 1][0::2][:, [0, 2]]
        f = _Frame(0.5 * (frames[i].origin + frames[i + 1].origin),
                   frames[i].eu + frames[i + 1].eu, frames[i].ev + frames[i + 1].ev,
                   0.5 * (frames[i].col_mm + frames[i + 1].col_mm))
        f.eu /= np.linalg.norm(f.eu)
        f.ev /= np.linalg.norm(f.ev)
        width = bodies[i].half_width + bodies[i + 1].half_width
        disc = _Body(up, low, f, _DELTA_MM - 0.3, width=width)
        lo, hi = _corners_box(f, disc.a_range, (disc.b_range[0] - 2, disc.b_range[1] + 2),
                              disc.half_width + 2)
        idx = _box_grid(geom, box, lo, hi)
        if idx is None:
            continue
        a, b, x = _local_grids(geom, idx, f)
        occ = np.ones(np.broadcast_shapes(a.shape, x.shape), np.float32)
        for d in disc.distances(a, b, x):
            occ *= _ramp(d + 0.5 * w, w)   # overlap the bodies slightly; bone paints over it
        _paint(_view(vol, box, idx), occ, hu["disc"])

    # trabecular texture: a band-limited field, coarser and weaker in osteoporotic bone
    trab = _texture([_study_seed(truth), 2], 32, 1.4 if truth.osteoporotic else 1.0)
    amp = float(np.clip(0.22 * hu["cancellous"], 30, 80)) / (2.0 if truth.osteoporotic else 1.6)
    n_t = trab.shape[0]
    trab *= np.float32(amp)
    trab += np.float32(hu["cancellous"])
    # wrapped copies, so that any vertebra's box is one contiguous window
    trab = np.pad(trab, [(0, 96), (0, 192), (0, 160)], mode="wrap")
    for v, body, f in zip(truth.vertebrae, bodies, frames):
        a_post = body.walls[1][0][0]
        height = body.b_range[1] - body.b_range[0]
        depth = body.a_range[1] - body.a_range[0]
        rc = 0.22 * depth + 1.5           # canal AP radius (mm)
        rcx = 1.25 * rc
        a_c = a_post + _DELTA_MM + rc + 0.5
        sp_len = 1.1 * depth + 6
        tilt = math.tan(math.radians(40))
        spur = max(v.detail.get("upper_mm", 0.0), v.detail.get("lower_mm", 0.0)) \
            if v.deformity == "osteophyte" else 0.0
        a_lim = (body.a_range[0] - 2 - spur, a_c + rc + sp_len + 6)
        b_lim = (body.b_range[0] - 6, body.b_range[1] + sp_len * tilt + 6)
        lo, hi = _corners_box(f, a_lim, b_lim, max(body.half_width, rcx + 26) + 3)
        idx = _box_grid(geom, box, lo, hi)
        if idx is None:
            continue
        a, b, x = _local_grids(geom, idx, f)
        view = _view(vol, box, idx)
        b_mid = 0.5 * (body.b_range[0] + body.b_range[1])
        bb = b - b_mid
        hb = height / 2
        # spinal canal, continuous over the disc above and below
        r_canal = np.sqrt(((a - a_c) / rc) ** 2 + (x / rcx) ** 2)
        in_b = _ramp(hb + 4.5 - np.abs(bb), w)
        canal = _ramp((1 - r_canal) * rc, w) * in_b
        # neural arch: pedicles and laminae around the canal, upper two thirds of the body
        ring = _ramp((r_canal - 1) * rc, w) * _ramp((1.45 - r_canal) * rc, w)
        arch_b = _ramp(np.minimum(bb + 0.9 * hb, 0.45 * hb - bb), w)
        arch = ring * arch_b * _ramp(a - a_post - 0.5, w)
        # spinous process: a bar pointing posteriorly and caudally
        s = a - (a_c + rc)
        along = _ramp(np.minimum(s + 3, sp_len - s), w)
        centre_b = -0.1 * hb + np.clip(s, 0, None) * tilt
        spin = along * _ramp(3.5 - np.abs(bb - centre_b), w) * _ramp(3.2 - np.abs(x), w)
        # transverse processes
        trans = (_ramp(4.5 - np.abs(a - a_c - 0.3 * rc), w) * _ramp(np.minimum(bb + 0.6 * hb,
                 0.2 * hb - bb), w) * _ramp(np.minimum(np.abs(x) - rcx, rcx + 24 - np.abs(x)), w))
        posterior = np.maximum(np.maximum(arch, spin), trans)
        _paint(view, np.broadcast_to(canal, view.shape), hu["csf"])
        _paint(view, posterior, hu["arch"])
        # vertebral body: cortical shell around cancellous bone
        dists = body.distances(a, b, x)
        occ = np.ones(view.shape, np.float32)
        inner = np.ones(view.shape, np.float32)
        for d in dists:
            occ *= _ramp(d, w)
            inner *= _ramp(d - _CORTEX_MM, w)
        (r0, r1), (c0, c1), (s0, s1) = idx
        o = (s0 % n_t, r0 % n_t, c0 % n_t)
        if all(o[i] + view.shape[i] <= trab.shape[i] for i in range(3)):
            tex = trab[o[0]:o[0] + view.shape[0], o[1]:o[1] + view.shape[1],
                       o[2]:o[2] + view.shape[2]]
        else:   # a box larger than the wrapped copies
            tex = trab[np.ix_(np.arange(s0, s1) % n_t, np.arange(r0, r1) % n_t,
                              np.arange(c0, c1) % n_t)]
        occ_body = occ.copy() if v.deformity == "schmorl_node" else None
        view *= 1 - occ
        occ -= inner
        occ *= np.float32(hu["cortical"])
        view += occ
        inner *= tex
        view += inner
        if v.deformity == "schmorl_node":
            _schmorl_node(view, body, v.detail, a, b, x, occ_body, w, hu)
        elif v.deformity == "osteophyte":
            _osteophytes(view, body, v.detail, a, b, x, w)


def _schmorl_node(view, body: _Body, detail, a, b, x, occ, w: float, hu) -> None:
    """An endplate pit (disc HU, a sclerotic rim) kept clear of the keypoint lines."""
    (p0, _), (p1, _) = body.walls
    a_ant, a_post = p0[0], p1[0]
    half = 0.5 * (a_post - a_ant)
    a_mid = a_ant + half
    r = min(float(detail.get("radius_mm", 2.5)), max(0.5 * (half - 2.0), 1.0))
    a0 = a_ant + float(detail.get("position", 0.6)) * (a_post - a_ant)
    side = 1.0 if a0 >= a_mid else -1.0
    lo, hi = r + 1.0, half - r - 1.0        # clear of the middle and the wall keypoints
    a0 = a_mid + side * float(np.clip(abs(a0 - a_mid), lo, max(hi, lo)))
    upper = detail.get("endplate", "lower") == "upper"
    b0 = float(np.polyval(body.qu if upper else body.ql, a0))
    depth = float(detail.get("depth_mm", 3.0))
    x0 = float(detail.get("offset_mm", 0.0))
    da, dx, db = (a - a0) / r, (x - x0) / r, (b - b0) / depth
    rho = np.sqrt(da * da + dx * dx + db * db)
    rim = _ramp((1.0 + 0.7 / r - rho) * r, w) * occ
    pit = _ramp((1.0 - rho) * min(r, depth), w) * occ
    _paint(view, rim, _SCLEROSIS_HU)
    _paint(view, pit, hu["disc"])


def _osteophytes(view, body: _Body, detail, a, b, x, w: float) -> None:
    """Bony spurs from the anterior endplate corners, outside the anterior wall."""
    (p0, n0), _ = body.walls
    d_out = -((a - p0[0]) * n0[0] + (b - p0[1]) * n0[1] + body.delta)   # > 0 anterior to the wall
    a_c = p0[0] - body.delta
    lateral = _ramp(0.6 * body.half_width - np.abs(x), w)
    for key, coef, sign in (("upper_mm", body.qu, -1.0), ("lower_mm", body.ql, 1.0)):
        length = float(detail.get(key, 0.0))
        if length <= 0:
            continue
        c0 = np.array([a_c, float(np.polyval(coef, a_c))])
        u = np.array([-math.cos(_SPUR_ANGLE), sign * math.sin(_SPUR_ANGLE)])
        s = np.clip((a - c0[0]) * u[0] + (b - c0[1]) * u[1], 0.0, length)
        dist = np.sqrt((a - c0[0] - s * u[0]) ** 2 + (b - c0[1] - s * u[1]) ** 2)
        radius = 1.6 * (1 - s / length) + 0.4
        occ = _ramp(radius - dist, w) * _ramp(d_out + 0.3, w) * lateral
        _paint(view, occ, _SPUR_HU)


def _texture(seed, n: int, sigma: float) -> np.ndarray:
    """A periodic (n, n, n) band-limited random field of SD 1 (features of ``sigma`` voxels)."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(n)
    k2 = f[:, None, None] ** 2 + f[None, :, None] ** 2 + f[None, None, :] ** 2
    k0 = 1.0 / (2 * math.pi * sigma)
    band = np.exp(-0.5 * k2 / k0 ** 2) * (1 - np.exp(-0.5 * k2 / (0.3 * k0) ** 2))
    field = np.fft.ifftn(np.fft.fftn(rng.standard_normal((n, n, n))) * band).real
    return (field / (field.std() or 1.0)).astype(np.float32)


def _study_seed(truth: SpineTruth) -> int:
    """A per-study seed for the textures (the same for every box of the study)."""
    key = f"{truth.folder}|{truth.series_uid}|{truth.vertebrae[0].points.sum():.4f}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")


def _torso_fields(truth: SpineTruth, box):
    """Per-slice spine centre (row mm) and the z-profiles of the thoracic organs."""
    geom = truth.geometry
    sp = np.asarray(geom.spacing)
    centres = np.stack([v.points.mean(axis=0) for v in truth.vertebrae]) * sp
    z = np.arange(box[2][0], box[2][1]) * sp[2]
    order = np.argsort(centres[:, 2])
    y_s = np.interp(z, centres[order, 2], centres[order, 0])
    # the mean over the whole volume (not the box), so a sub-box renders the same anatomy
    y_all = np.interp(np.arange(geom.shape[2]) * sp[2], centres[order, 2], centres[order, 0])
    y_mean = float(y_all.mean())
    x_s = float(np.median(centres[:, 1]))
    zc = {v.level: c[2] for v, c in zip(truth.vertebrae, centres) if v.level}
    step = float(np.median(np.diff(centres[order, 2]))) if len(centres) > 1 else 25.0
    first = truth.vertebrae[int(order[0])]
    k0 = level_index(first.level, LEVELS.index("Th1") + (1 if not first.annotated else 0))

    def level_z(name):
        if name in zc:
            return zc[name]
        return centres[order[0], 2] + (LEVELS.index(name) - k0) * step

    return z, y_s, y_mean, x_s, step, level_z, (centres[order], order)


def _crop(mask: np.ndarray) -> tuple[slice, slice]:
    """Bounding rectangle of the non-zero part of a 2D field (empty slices when none)."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return slice(0, 0), slice(0, 0)
    return slice(int(rows.min()), int(rows.max()) + 1), slice(int(cols.min()), int(cols.max()) + 1)


def _superellipse(theta, a, b_post, b_ant, yc, power=2.4):
    """Points (x, y) mm of a superellipse; theta 0 at the back, pi at the front."""
    e = 2.0 / power
    s, c = np.sin(theta), np.cos(theta)
    x = a * np.sign(s) * np.abs(s) ** e
    y = yc + np.where(c > 0, b_post, b_ant) * np.sign(c) * np.abs(c) ** e
    return x, y


_RIB_R = (3.0, 5.0)   # rib half-thickness in the axial plane and half-height (mm)


def _rib_paths(truth: SpineTruth, fields, s_ts: float, lung_scale):
    """Per rib: centreline points (x, y, z) mm in the torso frame (y from the spine's mean
    row, x from its column) and a flag for costal cartilage; Th1 down to ``lowest_rib``."""
    _, _, y_mean, _, step, level_z, (centres, order) = fields
    sp = np.asarray(truth.geometry.spacing)
    depth = np.array([np.linalg.norm((truth.vertebrae[i].points[4:6].mean(0)
                                      - truth.vertebrae[i].points[0:2].mean(0)) * sp)
                      for i in order])
    last = level_index(truth.lowest_rib, LEVELS.index("Th12"))
    levels = LEVELS[LEVELS.index("Th1"):last + 1]
    a_out, yc = 160.0 * s_ts - 20.0, -30.0 * s_ts
    paths = []
    for n, level in enumerate(levels, start=1):
        z_j = level_z(level) - 0.2 * step
        # the spine's row in the torso frame (which follows a third of the spine's curve)
        y_b = 0.65 * (float(np.interp(z_j, centres[:, 2], centres[:, 0])) - y_mean)
        d = float(np.interp(z_j, centres[:, 2], depth))
        floating = n > len(levels) - 2
        # as wide as the lungs where the rib runs (narrower towards the apex)
        f = float(np.clip((78 + 62 * lung_scale(z_j + 0.5 * step) + 6) / 160, 0.55, 1.0))
        a, b_post, b_ant = a_out * f, 75.0 * s_ts * (0.6 + 0.4 * f), (115.0 * s_ts - 20) * f
        rc = 0.22 * (d + 2.4) + 1.5
        head = (0.55 * d + 2.0, y_b + 0.35 * d)
        tub = (1.25 * rc + 21.0, y_b + 0.72 * d + 2.7)
        x_a = tub[0] + 18.0
        th_a = math.asin(min((x_a / a) ** (1 / 0.83), 0.95))
        th_end = (1.45 if n == len(levels) else 1.9) if floating else (2.95 if n <= 7 else 2.75)
        drop = step * (2.2 if n == 1 else 3.0 if n == 2 else 3.8) \
            * ((0.5 if n == len(levels) else 0.6) if floating else 1.0)
        th = np.arange(th_a, th_end, 0.4 / a)
        xa, ya = _superellipse(th, a, b_post, b_ant, yc)
        start = np.array([head, tub, (xa[0], ya[0])])
        seg = [np.linspace(start[i], start[i + 1], max(int(np.linalg.norm(
            start[i + 1] - start[i]) / 0.4), 2), endpoint=False) for i in range(2)]
        xy = np.concatenate(seg + [np.column_stack([xa, ya])])
        u = np.concatenate([np.full(len(seg[0]) + len(seg[1]), th_a), th]) / math.pi
        zz = z_j + drop * (u - th_a / math.pi)
        cart = np.concatenate([np.zeros(len(xy) - len(th), bool),
                               (th > 2.35) & (not floating)])
        for side in (1.0, -1.0):
            paths.append((np.column_stack([side * xy[:, 0], xy[:, 1]]), zz, cart))
    return paths


def _rib_pixels(paths, sp, x_s: float):
    """Per rib: pixels (j: row lattice index of the torso frame, c: column) near its
    centreline with their in-plane distance, the centreline z and the cartilage flag,
    sorted by that z."""
    out = []
    reach = _RIB_R[0] + 1.5
    for xy, zz, cart in paths:
        jj = np.round(xy[:, 1] / sp[0]).astype(int)
        cc = np.round((xy[:, 0] + x_s) / sp[1]).astype(int)
        pad = int(math.ceil(reach / min(sp[0], sp[1]))) + 1
        j0, c0 = jj.min() - pad, cc.min() - pad
        shape = (jj.max() + pad + 1 - j0, cc.max() + pad + 1 - c0)
        index = np.full(shape, -1, np.int64)
        index[jj - j0, cc - c0] = np.arange(len(xy))
        dist, (nj, nc) = ndimage.distance_transform_edt(index < 0, sampling=sp[:2],
                                                        return_indices=True)
        sel = np.nonzero(dist < reach)
        k = index[nj[sel], nc[sel]]
        py, px = (sel[0] + j0) * sp[0], (sel[1] + c0) * sp[1] - x_s
        e = np.hypot(py - xy[k, 1], px - xy[k, 0]).astype(np.float32)
        o = np.argsort(zz[k], kind="stable")
        out.append((sel[0][o] + j0, sel[1][o] + c0, e[o], zz[k][o].astype(np.float32),
                    cart[k][o]))
    return out


def _render_background(vol: np.ndarray, truth: SpineTruth, box, blur: float, hu) -> None:
    """Torso, ribs, lungs, diaphragm and mediastinum, slice by slice: row-shifted views of
    2D fields computed once, so the torso follows the spine's sagittal curve."""
    geom = truth.geometry
    sp = np.asarray(geom.spacing)
    fields = _torso_fields(truth, box)
    z, y_s, y_mean, x_s, step, level_z, _ = fields
    s_ts = truth.torso_scale
    (r0, r1), (c0, c1), _ = box
    n_rows = r1 - r0
    w, wz = float(sp[0]), float(max(sp[2], sp[0]))
    # the torso follows a third of the spine's curve, the aorta and trachea all of it
    y_t = y_mean + 0.35 * (y_s - y_mean)
    X = (np.arange(c0, c1, dtype=np.float32) * sp[1] - x_s)[None, :]

    def grid(y_ref):
        shift = np.round(y_ref / sp[0]).astype(int)
        kmin, kmax = int(shift.min()), int(shift.max())
        Y = (np.arange(r0 - kmax, r1 - kmin, dtype=np.float32) * sp[0])[:, None]
        return Y, kmax - shift, shift

    Y, off_t, shift_t = grid(y_t)       # torso frame: mm from the torso's reference row
    Ys, off_s, _ = grid(y_s)            # mm from the spine's row on each slice
    ay, ax, yc = 115.0 * s_ts, 160.0 * s_ts, -30.0 * s_ts
    rho = (np.abs(X / ax) ** 2.4 + np.abs((Y - yc) / ay) ** 2.4) ** (1 / 2.4)
    d_skin = (1 - rho) * ay
    base2d = np.full(rho.shape, hu["air"], np.float32)
    _paint(base2d, _ramp(d_skin, w), hu["soft"])                 # skin
    _paint(base2d, _ramp(d_skin - 2, w), hu["fat"])
    _paint(base2d, _ramp(d_skin - 12 * s_ts, w), hu["muscle"])
    # the rib cage's interior: a superellipse inside the ribs, less the paravertebral gutter
    r_cage = np.where(Y - yc > 0, 71.0 * s_ts, 115.0 * s_ts - 24)
    cage = (np.abs(X / (ax - 24)) ** 2.4 + np.abs((Y - yc) / r_cage) ** 2.4)
    cavity = _ramp((1 - cage) * 60, w) * _ramp(10 + np.maximum(np.abs(X) - 18, 0) - Y, w)
    _paint(base2d, cavity, hu["soft"])
    # mediastinal fat anterior to the spine, around the heart and great vessels
    medi = np.sqrt((X / (45 * s_ts)) ** 2 + ((Y + 62 * s_ts) / (50 * s_ts)) ** 2)
    _paint(base2d, _ramp((1 - medi) * 40, w) * cavity, hu["fat"] + 20)
    if blur > 0:
        ndimage.gaussian_filter(base2d, blur, output=base2d, truncate=2.5)
    # diaphragm: the height (mm above the posterior recess) of the dome over each pixel
    z_base = level_z(truth.lung_base) + 0.25 * step
    front = np.clip((30 * s_ts - Y) / (130 * s_ts), 0, 1) ** 0.6   # 0 at the posterior recess
    rise = step * front * (1.0 + 0.8 * np.exp(-((np.abs(X) - 65 * s_ts) / (50 * s_ts)) ** 2)
                           + 0.5 / (1 + np.exp(X / 12)))     # the right dome is higher
    z_dia = (z_base - rise).astype(np.float32)
    apex = level_z("Th1") - 1.2 * step
    z_taper = apex + 2.5 * step
    lung_rho = np.sqrt(((np.abs(X) - 78 * s_ts) / (62 * s_ts)) ** 2
                       + ((Y + 25 * s_ts) / (88 * s_ts)) ** 2)
    lung_box = _crop((lung_rho < 1.05) & (cavity > 0))
    heart_rho = np.sqrt(((X - 28 * s_ts) / (58 * s_ts)) ** 2 + ((Y + 72 * s_ts) / (44 * s_ts)) ** 2)
    lung_rho, lung_dia = lung_rho[lung_box], z_dia[lung_box]
    lung_cav = cavity[lung_box] * _ramp((heart_rho[lung_box] - 1) * 40, w)
    lung_vess = np.clip(1.2 - lung_rho, 0, None)     # more vessels towards the hila
    heart_box = _crop(heart_rho < 1.05)
    heart_rho = heart_rho[heart_box]
    aorta = _ramp(11.0 - np.sqrt((X - 24) ** 2 + (Ys + 22) ** 2), w)
    Ysr = Ys
    aorta_box = _crop(aorta > 0)
    aorta = aorta[aorta_box]
    asc = _ramp(14.0 - np.sqrt((X + 4) ** 2 + (Ysr + 68) ** 2), w)
    asc_box = _crop(asc > 0)
    asc = asc[asc_box]
    # the arch: the band between the ascending and descending aorta
    t = np.clip(((X + 4) * 28 + (Ysr + 68) * 46) / (28 ** 2 + 46 ** 2), 0, 1)
    arch = _ramp(11.0 - np.hypot(X + 4 - 28 * t, Ysr + 68 - 46 * t), w)
    arch_box = _crop(arch > 0)
    arch = arch[arch_box]
    trachea_r = np.sqrt(X ** 2 + (Ysr + 38) ** 2)
    trachea_box = _crop(trachea_r < 12)
    trachea = _ramp(8.0 - trachea_r, w)[trachea_box]
    trachea_wall = _ramp(10.5 - trachea_r, w)[trachea_box]
    sternum = (_ramp(14 - np.abs(X), w) * _ramp(-Y, w)
               * _ramp(np.minimum(d_skin - 12, 24 - d_skin), w))
    sternum_box = _crop(sternum > 0)
    sternum = sternum[sternum_box]
    below_box = _crop(cavity > 0)
    below_dia, below_cav = z_dia[below_box], cavity[below_box]
    liver = below_cav * _ramp((1 - np.sqrt(((X + 50 * s_ts) / (90 * s_ts)) ** 2
                                           + ((Y + 35 * s_ts) / (80 * s_ts)) ** 2)) * 40,
                              w)[below_box]
    dome_top = z_base - 2.4 * step         # above the highest point of the domes
    abdomen2d = base2d.copy()              # a slice wholly below the diaphragm
    _paint(abdomen2d[below_box], below_cav, hu["abdomen"])
    _paint(abdomen2d[below_box], liver, hu["liver"])
    heart_lo, heart_hi = level_z("Th5"), min(level_z("Th10") + 0.5 * step, z_base - 1.4 * step)
    arch_z = level_z("Th4") - 0.3 * step
    carina = level_z("Th5")
    st_lo, st_hi = level_z("Th2"), level_z("Th9")
    # textures (absolute voxel indices, so a sub-box renders the same)
    seed = _study_seed(truth)
    vessels = _texture([seed, 1], 48, 1.6)
    n_t = vessels.shape[0]
    def lung_scale(zz):
        """The lungs' in-plane scale at ``zz`` (tapered towards the apex)."""
        if zz >= z_taper:
            return 1.0
        return math.sqrt(max(0.0, 1 - ((zz - z_taper) / (z_taper - apex)) ** 2))

    ribs = _rib_pixels(_rib_paths(truth, fields, s_ts, lung_scale), sp, x_s)
    ribs = [(rj, rc_, e, zr, cart) for rj, rc_, e, zr, cart in ribs
            if ((rc_ >= c0) & (rc_ < c1)).any()]
    ra, rz = _RIB_R
    for rj, rc_, *_ in ribs:
        keep = (rc_ >= c0) & (rc_ < c1)
        rj[...] = np.where(keep, rj, -10 ** 6)

    def sub(field_box, offset):
        rs, cs = field_box
        lo, hi = max(rs.start - offset, 0), min(rs.stop - offset, n_rows)
        if hi <= lo:
            return None, None
        return (slice(lo, hi), cs), (slice(lo + offset - rs.start, hi + offset - rs.start),
                                     slice(0, cs.stop - cs.start))

    for k in range(len(z)):
        ot, os_ = int(off_t[k]), int(off_s[k])
        img = vol[k]
        zz = z[k]
        sk = box[2][0] + k
        img[...] = (abdomen2d if zz > z_base + wz else base2d)[ot:ot + n_rows]
        if dome_top - wz < zz <= z_base + wz:   # abdomen (liver on the right) under the domes
            dst, src = sub(below_box, ot)
            if dst is not None:
                under = _ramp(zz - below_dia[src], wz)
                _paint(img[dst], under * below_cav[src], hu["abdomen"])
                _paint(img[dst], under * liver[src], hu["liver"])
        if apex < zz < z_base + wz:
            s_l = lung_scale(zz)
            dst, src = sub(lung_box, ot)
            if dst is not None and s_l > 0:
                occ = _ramp((s_l - lung_rho[src]) * 60, w)
                occ *= lung_cav[src]
                if zz > dome_top - wz:
                    occ *= _ramp(lung_dia[src] - zz, wz)
                vt = vessels[sk % n_t]
                rows_i = (np.arange(dst[0].start, dst[0].stop) + r0) % n_t
                cols_i = (np.arange(dst[1].start, dst[1].stop) + c0) % n_t
                vess = vt.take(rows_i, axis=0).take(cols_i, axis=1)
                vess -= 1.3
                np.clip(vess, 0, 0.7, out=vess)
                vess *= lung_vess[src]
                vess *= hu["blood"] - hu["lung"]
                vess += hu["lung"]
                _paint(img[dst], occ, vess)
        if heart_lo < zz < heart_hi:
            s_h = math.sqrt(max(0.0, 1 - ((zz - 0.5 * (heart_lo + heart_hi))
                                          / (0.5 * (heart_hi - heart_lo))) ** 2))
            dst, src = sub(heart_box, ot)
            if dst is not None:
                _paint(img[dst], _ramp((s_h - heart_rho[src]) * 45, w), hu["blood"])
        for fbox, field, lo, hi in ((aorta_box, aorta, arch_z, math.inf),
                                    (asc_box, asc, arch_z, heart_lo + 0.3 * step),
                                    (arch_box, arch, arch_z - 9, arch_z + 9)):
            if lo < zz < hi:
                dst, src = sub(fbox, os_)
                if dst is not None:
                    _paint(img[dst], field[src], hu["blood"])
        if zz < carina:
            dst, src = sub(trachea_box, os_)
            if dst is not None:
                _paint(img[dst], trachea_wall[src], hu["soft"])
                _paint(img[dst], trachea[src], hu["air"])
        if st_lo < zz < st_hi:
            dst, src = sub(sternum_box, ot)
            if dst is not None:
                _paint(img[dst], sternum[src], hu["sternum"])
        for rj, rc_, e, zr, cart in ribs:
            if not zr[0] - rz - wz < zz < zr[-1] + rz + wz:
                continue
            i0, i1 = np.searchsorted(zr, [zz - rz - wz, zz + rz + wz])
            if i1 <= i0:
                continue
            rows_k = rj[i0:i1] + shift_t[k] - r0
            ok = (rows_k >= 0) & (rows_k < n_rows)
            if not ok.any():
                continue
            rows_k, cols_k = rows_k[ok], rc_[i0:i1][ok] - c0
            ee, dz, cc_ = e[i0:i1][ok], zz - zr[i0:i1][ok], cart[i0:i1][ok]
            q = np.sqrt((ee / ra) ** 2 + (dz / rz) ** 2)
            qi = np.sqrt((ee / (ra - 1.0)) ** 2 + (dz / (rz - 1.2)) ** 2)
            occ = np.clip(0.5 + (1 - q) * ra / w, 0, 1)
            inner = np.clip(0.5 + (1 - qi) * (ra - 1.0) / w, 0, 1)
            value = np.where(cc_, hu["cartilage"],
                             hu["rib"] * (1 - inner / np.maximum(occ, 1e-3))
                             + hu["cancellous"] * inner / np.maximum(occ, 1e-3))
            cur = img[rows_k, cols_k]
            img[rows_k, cols_k] = cur + occ * (value - cur)


def _bias_field(geom: Geometry, box, rng: np.random.Generator, amplitude: float):
    """Slice ``k`` of the box -> a smooth additive field (HU, within +-``amplitude``):
    random weights on a 4 x 4 x 4 grid of Gaussian bumps over the whole volume."""
    weights = rng.uniform(-amplitude, amplitude, (4, 4, 4)).astype(np.float32)

    def basis(lo, hi, n):
        t = (np.arange(lo, hi) + 0.5) / n * 3.0
        b = np.exp(-0.5 * ((t[:, None] - np.arange(4)[None, :]) / 0.8) ** 2)
        return (b / b.sum(axis=1, keepdims=True)).astype(np.float32)

    (r0, r1), (c0, c1), (s0, s1) = box
    br, bc, bs = (basis(lo, hi, n) for (lo, hi), n in zip(box, geom.shape))

    def field(k):
        return br @ np.tensordot(bs[k], weights, axes=(0, 2)) @ bc.T

    return field


def render_volume(truth: SpineTruth, geometry: Geometry | None = None,
                  rng: np.random.Generator | None = None, *, box=None,
                  noise: float | None = None, blur: float | None = None,
                  hu_offset: float | None = None, tissue_hu: Mapping[str, float] | None = None,
                  bias_hu: float = 0.0) -> np.ndarray:
    """Render the phantom CT in HU.

    Parameters
    ----------
    truth : SpineTruth
        Keypoints in voxel indices of ``geometry``.
    geometry : Geometry, optional
        Default: ``truth.geometry``.
    rng : numpy.random.Generator, optional
        Source of the noise (default: ``default_rng(0)``).
    box : ((r0, r1), (c0, c1), (s0, s1)), optional
        Render only this sub-box (half-open voxel ranges); it equals the same box of the
        full volume up to noise.
    noise, blur, hu_offset : float, optional
        Noise SD (HU), in-plane blur (pixels), HU offset; default the ``truth`` fields.
    tissue_hu : mapping, optional
        Tissue name (a key of :data:`~vfs_utils.phantom.spine.HU`) -> mean HU, overriding
        the defaults and the study's own values (``bone_hu`` as "cancellous",
        ``blood_hu`` as "blood") for this render (see :func:`random_appearance`).
    bias_hu : float
        Amplitude (HU) of a smooth random additive bias field drawn from ``rng``.

    Returns
    -------
    ndarray, int16, shape (rows, cols, slices)
        HU; a view of a (slices, rows, cols) C-ordered array (``array[:, :, k]`` is contiguous).
    """
    if geometry is not None and geometry != truth.geometry:
        truth = dataclasses.replace(truth, geometry=geometry)
    noise = float(truth.noise_hu if noise is None else noise)
    blur = float(truth.blur_px if blur is None else blur)
    hu_offset = float(truth.hu_offset if hu_offset is None else hu_offset)
    geom = truth.geometry
    rng = rng if rng is not None else np.random.default_rng(0)
    unknown = sorted(set(tissue_hu or {}) - set(HU))
    if unknown:
        raise UsageError(f"render_volume: tissue_hu names unknown tissues {unknown}; use "
                         f"names of vfs_utils.phantom.HU ({sorted(HU)}).")
    hu = {**HU, "cancellous": truth.bone_hu, "blood": truth.blood_hu,
          **{k: float(v) for k, v in (tissue_hu or {}).items()}}
    full = tuple((0, n) for n in geom.shape)
    if box is None:
        box = full
    box = tuple((max(int(lo), f[0]), min(int(hi), f[1])) for (lo, hi), f in zip(box, full))
    if any(hi <= lo for lo, hi in box):
        raise ValueError(f"box {box} is empty inside the volume of shape {geom.shape}")
    n_r, n_c, n_s = (hi - lo for lo, hi in box)
    vol = np.empty((n_s, n_r, n_c), np.float32)
    _render_background(vol, truth, box, blur, hu)
    _render_spine(vol, truth, box, hu)
    if blur > 0:   # the background was blurred in 2D; blur the spine's column band here
        sp = np.asarray(geom.spacing)
        cols = np.concatenate([v.points[:, 1] for v in truth.vertebrae])
        pad = 45.0 / sp[1]
        b0 = max(int(cols.min() - pad) - box[1][0], 0)
        b1 = min(int(cols.max() + pad) + 1 - box[1][0], n_c)
        if b1 > b0:
            band = vol[:, :, b0:b1]
            for k0 in range(0, n_s, 64):
                part = band[k0:k0 + 64]
                part[...] = ndimage.gaussian_filter(part, (0, blur, blur), truncate=2.5)
    out = np.empty((n_s, n_r, n_c), np.int16)
    if noise > 0:
        # a bank of noise images, each slice a randomly shifted window of one of them
        pad = 48
        bank = rng.standard_normal((8, n_r + pad, n_c + pad), dtype=np.float32)
        bank *= np.float32(noise)
        picks = rng.integers(0, [8, pad, pad], size=(n_s, 3))
    bias = _bias_field(geom, box, rng, float(bias_hu)) if bias_hu else None
    for k in range(n_s):
        img = vol[k]
        if hu_offset:
            img += np.float32(hu_offset)
        if noise > 0:
            j, dr, dc = picks[k]
            img += bank[j, dr:dr + n_r, dc:dc + n_c]
        if bias is not None:
            img += bias(k)
        np.rint(img, out=img)
        np.clip(img, -1024, 3071, out=img)
        out[k] = img
    return out.transpose(1, 2, 0)


def render_sagittal_slab(truth: SpineTruth, half_width_mm: float = 12.0,
                         rng: np.random.Generator | None = None,
                         **kwargs) -> tuple[np.ndarray, tuple]:
    """Render only a sagittal slab ``half_width_mm`` either side of the spine's columns.

    ``rng`` and ``**kwargs`` (``noise``, ``blur``, ``hu_offset``, ``tissue_hu``,
    ``bias_hu``) go to :func:`render_volume`.

    Returns
    -------
    slab : ndarray int16 (rows, n_cols, slices)
    box : ((r0, r1), (c0, c1), (s0, s1))
        Point ``[row, col, slice]`` sits at ``[row, col - c0, slice]`` in the slab.
    """
    cols = np.concatenate([v.points[:, 1] for v in truth.vertebrae])
    half = half_width_mm / truth.geometry.spacing[1]
    c0 = int(math.floor(cols.min() - half))
    c1 = int(math.ceil(cols.max() + half)) + 1
    rows, ncols, slices = truth.geometry.shape
    box = ((0, rows), (max(c0, 0), min(c1, ncols)), (0, slices))
    return render_volume(truth, rng=rng, box=box, **kwargs), box


def with_acquisition(truth: SpineTruth, rng: np.random.Generator) -> SpineTruth:
    """``truth`` with a per-study acquisition, contrast, lung base and lowest rib drawn as
    :func:`sample_spine` draws them."""
    return dataclasses.replace(truth, **draw_acquisition(rng), **draw_patient(rng))
