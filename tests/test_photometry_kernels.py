"""The fast kernels under photometry, against the plain computation they stand for."""

from __future__ import annotations

import numpy as np
from astropy.io import fits

from followup.photometry.background import annulus_stats
from followup.photometry.frame import PreparedFrame, gaussian_pixels
from followup.photometry.psf import _StarFit
from followup.reduction import BPM_BAD


def _frame(rng: np.random.Generator, shape: tuple[int, int] = (120, 140)) -> PreparedFrame:
    data = rng.normal(100.0, 5.0, shape).astype(np.float32)
    data[rng.random(shape) < 0.01] += 500.0  # outliers for the clip to remove
    flags = np.zeros(shape, np.uint8)
    flags[rng.random(shape) < 0.02] = BPM_BAD
    err = rng.uniform(4.0, 6.0, shape).astype(np.float32)
    return PreparedFrame(
        data=data,
        err=err,
        flags=flags,
        header=fits.Header(),
        wcs=None,
        band="rp",
        exptime=60.0,
        fwhm=3.0,
        saturate=None,
        name="kernels",
        catalog=None,
    )


def _clipped_reference(frame: PreparedFrame, x: float, y: float, r_in: float, r_out: float):
    """Every pixel of the image tested by its centre, then the same 3-sigma clip, one annulus."""
    yy, xx = np.mgrid[0 : frame.shape[0], 0 : frame.shape[1]]
    d2 = (xx - x) ** 2 + (yy - y) ** 2
    use = (d2 >= r_in**2) & (d2 <= r_out**2) & ~frame.mask
    values = frame.data[use].astype(np.float64)
    for _ in range(10):
        keep = np.abs(values - np.median(values)) <= 3.0 * np.std(values)
        if keep.all():
            break
        values = values[keep]
    return np.median(values), values.size


def test_annulus_stats_takes_every_pixel_of_each_annulus_and_clips_it() -> None:
    rng = np.random.default_rng(4)
    frame = _frame(rng)
    # Sub-pixel positions of every kind, some with annuli running off the image.
    xy = np.column_stack([rng.uniform(-3, 143, 60), rng.uniform(-3, 123, 60)])
    r_in, r_out = 9.3, 15.6
    stats = annulus_stats(frame, xy, r_in, r_out, chunk=16)
    for k, (x, y) in enumerate(xy):
        median, count = _clipped_reference(frame, x, y, r_in, r_out)
        assert stats.count[k] == count, (k, x, y)
        assert np.isclose(stats.median[k], median, rtol=0, atol=1e-4), (k, x, y)


def test_the_star_fit_derivatives_are_those_of_its_residuals() -> None:
    rng = np.random.default_rng(5)
    stamp = rng.normal(0.0, 1.0, (15, 17))
    weight = rng.uniform(0.5, 1.5, (15, 17))
    fit = _StarFit(stamp, weight, x0=40, y0=70)
    for p in (np.array([48.3, 76.8, 900.0, 1.9]), np.array([47.6, 77.4, 300.0, -2.4])):
        model = gaussian_pixels(p[0], p[1], abs(p[3]), 40, 57, 70, 85)
        assert np.allclose(fit.residual(p), ((stamp - p[2] * model) * weight).ravel())
        step = 1e-6 * np.maximum(1.0, np.abs(p))
        numeric = np.column_stack(
            [
                (
                    fit.residual(p + np.eye(4)[i] * step[i])
                    - fit.residual(p - np.eye(4)[i] * step[i])
                )
                / (2 * step[i])
                for i in range(4)
            ]
        )
        assert np.allclose(fit.jacobian(p), numeric, rtol=1e-5, atol=1e-6)
