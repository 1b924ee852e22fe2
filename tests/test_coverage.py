"""Frame depths from empty apertures, the coverage table and the sky plot of observed fields."""

from __future__ import annotations

import numpy as np
import pytest

from followup.coverage import (
    FieldDepth,
    FrameDepth,
    coverage_rows,
    covered_probability,
    plot_coverage,
)
from followup.photometry import frame_depth
from sandbox.sky import SyntheticSky
from tests.frames_support import DEC, RA, spec


@pytest.fixture(scope="module")
def sky() -> SyntheticSky:
    return SyntheticSky(seed=31, shape=(1024, 1024))


@pytest.mark.parametrize("number", [700, 701, 702])
def test_frame_depth_is_the_true_depth(sky: SyntheticSky, number: int) -> None:
    s = spec(number, exptime=120.0 * (number - 699))
    truth = sky.frame_truth(s)
    refcat = sky.reference_catalog(RA, DEC, 0.15)
    depth = frame_depth(sky.render(s), catalog=refcat, frame_name=s.basename)
    print(f"{s.basename}: depth {depth.depth_5sigma:.3f} truth {truth.depth_5sigma:.3f}")
    assert depth.depth_5sigma == pytest.approx(truth.depth_5sigma, abs=0.12)
    assert depth.band == "rp" and depth.frame == s.basename
    assert depth.n_apertures >= 300
    assert len(depth.footprint) == 4
    ras = [c[0] for c in depth.footprint]
    assert min(ras) < depth.ra < max(ras)
    # A 1024-pixel frame of 0.389" pixels is 6.6' across.
    assert (max(ras) - min(ras)) * np.cos(np.radians(DEC)) == pytest.approx(
        1024 * 0.389 / 3600, rel=0.02
    )


def test_frame_depth_without_a_catalogue_uses_the_header(sky: SyntheticSky) -> None:
    s = spec(710)
    depth = frame_depth(sky.render(s))
    assert depth.depth_5sigma == pytest.approx(sky.frame_truth(s).depth_5sigma, abs=0.2)


def _depth(frame: str, band: str, value: float, mjd: float = 60000.0) -> FrameDepth:
    return FrameDepth(
        frame=frame, band=band, mjd=mjd, ra=10.0, dec=-5.0, depth_5sigma=value, zero_point=23.0,
        n_apertures=500,
        footprint=[(9.9, -5.1), (10.1, -5.1), (10.1, -4.9), (9.9, -4.9)],
    )  # fmt: skip


def test_coverage_rows_per_field_and_band() -> None:
    depths = [
        FieldDepth("S1-field02", 10.0, -5.0, 0.05, _depth("a", "rp", 20.5, 60000.1)),
        FieldDepth("S1-field02", 10.0, -5.0, 0.05, _depth("b", "rp", 21.0, 60000.2)),
        FieldDepth("S1-field02", 10.0, -5.0, 0.05, _depth("c", "gp", 20.8, 60000.3)),
        FieldDepth("S1-field01", 11.0, -5.0, 0.20, _depth("d", "rp", 20.0, 60000.4)),
        FieldDepth("S1-field01", 11.0, -5.0, 0.20, _depth("e", "rp", float("nan"))),
    ]
    rows = coverage_rows(depths)
    assert [(r.field, r.band) for r in rows] == [
        ("S1-field01", "rp"),
        ("S1-field02", "gp"),
        ("S1-field02", "rp"),
    ]
    r = rows[2]
    assert (r.frames, r.depth_5sigma, r.median_depth_5sigma) == (2, 21.0, 20.75)
    assert (r.first_mjd, r.last_mjd) == (60000.1, 60000.2)
    assert rows[0].frames == 1  # the frame without a depth is left out
    assert covered_probability(rows) == pytest.approx(0.25)


def test_coverage_plot_is_a_png_across_zero_hours() -> None:
    near_zero = _depth("z", "rp", 20.0).model_copy(
        update={"ra": 0.05, "footprint": [(359.9, -5.1), (0.1, -5.1), (0.1, -4.9), (359.9, -4.9)]}
    )
    png = plot_coverage(
        [FieldDepth("f1", 10.0, -5.0, 0.1, _depth("a", "rp", 20.5)), FieldDepth("f2", 0.0, -5.0, 0.1, near_zero)],
        planned=[("f3", 12.0, -4.0)],
        title="S1",
    )  # fmt: skip
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 5000
