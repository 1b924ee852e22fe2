"""The fixed defects of the synthetic cameras: bias pattern, dark current, dead columns, flats."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sandbox.sky.model import mix_seed

__all__ = ["Instrument", "make_flat", "make_instrument"]


@dataclass
class Instrument:
    """The fixed defects of one camera: bias pattern, dark current, bad columns, flats per filter."""

    bias: np.ndarray  # ADU, float32
    bias_level: float
    dark: np.ndarray  # e-/s, float32
    hot: np.ndarray  # bool, pixels with high dark current
    bad_columns: list[tuple[int, int]]  # (column, first bad row)
    bad: np.ndarray  # bool
    flats: dict[str, np.ndarray] = field(default_factory=dict)


def make_instrument(seed: int, instrument_id: str, shape: tuple[int, int]) -> Instrument:
    """A camera's fixed defects, drawn from the sky's seed and the camera id."""
    ny, nx = shape
    rng = np.random.default_rng(mix_seed(seed, "instrument", instrument_id))
    # Bias: four amplifiers with their own level, a fixed column pattern and a gentle ramp.
    level = float(rng.uniform(480.0, 520.0))
    bias = np.empty(shape, np.float32)
    hy, hx = ny // 2, nx // 2
    for qy, qx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        sy = slice(qy * hy, ny if qy else hy)
        sx = slice(qx * hx, nx if qx else hx)
        columns = rng.normal(0.0, 1.5, sx.stop - sx.start).astype(np.float32)
        bias[sy, sx] = level + rng.uniform(-8.0, 8.0) + columns[None, :]
    bias += np.linspace(-1.5, 1.5, ny, dtype=np.float32)[:, None]
    # Dark current: tiny everywhere, a few hot pixels.
    dark = np.full(shape, 0.002, np.float32)
    hot = rng.random(shape, dtype=np.float32) < 2e-4
    dark[hot] = rng.lognormal(math.log(0.5), 1.2, int(hot.sum())).astype(np.float32)
    # Dead columns from some row to the top (a few on a full frame).
    n_cols = max(1, round(3 * nx / 4096))
    bad_columns = [
        (int(rng.integers(10, nx - 10)), int(rng.integers(0, ny // 2))) for _ in range(n_cols)
    ]
    bad = np.zeros(shape, bool)
    for col, row in bad_columns:
        bad[row:, col] = True
    return Instrument(
        bias=bias, bias_level=level, dark=dark, hot=hot, bad_columns=bad_columns, bad=bad
    )


def make_flat(seed: int, inst: Instrument, instrument_id: str, band: str) -> np.ndarray:
    """A camera's flat field in one band (vignetting, pixel response, dust donuts, dead columns)."""
    shape = inst.bias.shape
    ny, nx = shape
    rng = np.random.default_rng(mix_seed(seed, "flat", instrument_id, band))
    y = (np.arange(ny, dtype=np.float32) - ny / 2) / (4096 / 2)
    x = (np.arange(nx, dtype=np.float32) - nx / 2) / (4096 / 2)
    r2 = y[:, None] ** 2 + x[None, :] ** 2
    flat = (1.0 - 0.06 * r2).astype(np.float32)  # vignetting, ~12 % at the corners
    flat *= 1.0 + rng.normal(0.0, 0.006, shape).astype(np.float32)  # pixel response
    # Dust donuts (out-of-focus shadows), a few percent deep.
    for _ in range(max(1, round(6 * nx * ny / 4096**2))):
        cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)
        radius = rng.uniform(15, 45)
        depth = rng.uniform(0.01, 0.04)
        y0, y1 = int(max(cy - 2 * radius, 0)), int(min(cy + 2 * radius, ny))
        x0, x1 = int(max(cx - 2 * radius, 0)), int(min(cx + 2 * radius, nx))
        yy, xx = np.mgrid[y0:y1, x0:x1]
        rr = np.hypot(yy - cy, xx - cx)
        ring = np.exp(-(((rr - 0.7 * radius) / (0.3 * radius)) ** 2))
        flat[y0:y1, x0:x1] *= (1.0 - depth * ring).astype(np.float32)
    flat[inst.bad] *= 0.05  # dead columns barely respond
    flat /= np.float32(np.median(flat[:: max(1, ny // 512), :: max(1, nx // 512)]))
    return flat
