"""The observable-probability planner: a fixed sky grid, exact field probabilities, big maps."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from followup.fieldgrid import field_probability, grid_cell, grid_fields, plan_observable_fields
from followup.models import Alert, AlertKind, AlertType
from followup.skymap import SR_PER_DEG2, SkyMap, gaussian_skymap, read_skymap
from followup.targeting import plan_targets
from followup.tiling import INSTRUMENT_FIELDS, in_field
from followup.visibility import VisibilityCalculator

SINISTRO = INSTRUMENT_FIELDS["1M0-SCICAM-SINISTRO"]


def test_the_grid_is_fixed_and_its_cells_hold_their_centres():
    rng = np.random.default_rng(1)
    ra, dec = rng.uniform(0, 360, 5000), np.degrees(np.arcsin(rng.uniform(-1, 1, 5000)))
    keys = grid_cell(SINISTRO, ra, dec)
    cra, cdec = grid_fields(SINISTRO, keys)
    # Every position is within its cell's field (the field covers the cell), ...
    assert np.all(np.abs(cdec - dec) <= SINISTRO.height_deg / 2 + 1e-9)
    dra = (ra - cra + 180) % 360 - 180
    assert np.all(np.abs(dra) * np.cos(np.radians(dec)) <= SINISTRO.width_deg / 2 + 0.01)
    # ... and the centre of a cell is in that cell: the grid is the same for every map.
    assert np.array_equal(grid_cell(SINISTRO, cra, cdec), keys)


@pytest.mark.parametrize("instrument", sorted(INSTRUMENT_FIELDS))
def test_cells_of_positions_equal_a_unique_of_their_keys(instrument, monkeypatch):
    from followup import fieldgrid

    inst = INSTRUMENT_FIELDS[instrument]
    rng = np.random.default_rng(2)
    ra = np.concatenate([rng.uniform(-400, 800, 20000), [0.0, 360.0, -1e-12, 359.9999999]])
    dec = np.concatenate([np.degrees(np.arcsin(rng.uniform(-1, 1, 20000))), [90, -90, 0, 89.99]])
    want_keys, want_index = np.unique(grid_cell(inst, ra, dec), return_inverse=True)
    for dense_limit in (fieldgrid._DENSE_CELLS, 0):  # flat array, then the np.unique fallback
        monkeypatch.setattr(fieldgrid, "_DENSE_CELLS", dense_limit)
        keys, index = fieldgrid._cells(inst, ra, dec)
        np.testing.assert_array_equal(keys, want_keys)
        np.testing.assert_array_equal(index, want_index)
        assert keys.dtype == np.int64


@pytest.mark.parametrize("instrument", sorted(INSTRUMENT_FIELDS))
def test_field_probabilities_agree_with_a_fine_grid_integration(instrument):
    inst = INSTRUMENT_FIELDS[instrument]
    sky = gaussian_skymap(150.0, 20.0, 3 * inst.height_deg, max_order=11)
    keys = np.unique(grid_cell(inst, 150.0 + np.linspace(-2, 2, 9) * inst.width_deg, 20.0))
    ra, dec = grid_fields(inst, keys)
    ours = field_probability(sky, inst, ra, dec)
    for r, d, p in zip(ra, dec, ours, strict=True):
        fine = fine_grid_integral(sky, inst, r, d)
        assert p == pytest.approx(fine, rel=0.01), (r, d)


def fine_grid_integral(sky, inst, ra0, dec0, n=700):
    """Integrate the map over a field on a fine RA/Dec grid around it (area-weighted cells)."""
    half = inst.half_diagonal_deg * 1.05
    dec_edges = np.linspace(dec0 - half, dec0 + half, n + 1)
    half_ra = half / math.cos(math.radians(abs(dec0) + half))
    ra_edges = np.linspace(ra0 - half_ra, ra0 + half_ra, n + 1)
    dec_mid = (dec_edges[1:] + dec_edges[:-1]) / 2
    ra_mid = (ra_edges[1:] + ra_edges[:-1]) / 2
    band = np.diff(np.sin(np.radians(dec_edges)))  # sr per radian of RA
    ra_g, dec_g = np.meshgrid(ra_mid, dec_mid)
    weight = np.radians(np.diff(ra_edges))[None, :] * band[:, None]
    inside = in_field(ra0, dec0, ra_g, dec_g, inst.width_deg, inst.height_deg)
    density = np.asarray(sky.density(ra_g.ravel() % 360, dec_g.ravel())).reshape(ra_g.shape)
    return float(np.sum(density / SR_PER_DEG2 * weight * inside))


def test_a_uniform_map_gives_the_field_solid_angle():
    sky = SkyMap(np.arange(4 * 4**1, 4 * 4**1 + 48), np.full(48, 1 / (4 * math.pi)))
    a, b = math.radians(SINISTRO.width_deg / 2), math.radians(SINISTRO.height_deg / 2)
    exact = 4 * math.asin(math.sin(a) * math.sin(b)) / (4 * math.pi)
    assert field_probability(sky, SINISTRO, [33.0], [-60.0])[0] == pytest.approx(exact, rel=1e-4)


def test_fields_below_the_minimum_are_not_requested_and_say_why():
    sky = gaussian_skymap(60.0, -30.0, 2.0, max_order=10)
    calc = VisibilityCalculator(datetime(2026, 12, 6, tzinfo=UTC), max_airmass=2.0)
    plan = plan_observable_fields(sky, SINISTRO, calc, max_fields=40, min_probability=0.004)
    assert plan.requested
    assert all(f.probability >= 0.004 for f in plan.requested)
    below = [f for f in plan.fields if not f.requested and f.probability < 0.004]
    assert below and all("below the strategy's minimum" in f.reason for f in below)
    # Grid fields do not overlap: the covered probability is their sum, under the total.
    assert plan.covered_probability == pytest.approx(sum(f.probability for f in plan.requested))
    assert plan.covered_probability <= plan.observable_probability + 1e-6


S190425Z = "skyportal/bayestar.fits.gz"  # GW190425's BAYESTAR map, 10,183 deg2


@pytest.mark.parametrize(
    "start", [datetime(2026, 12, 6, tzinfo=UTC), datetime(2027, 4, 1, tzinfo=UTC)]
)
def test_s190425z_gets_its_observable_part(samples, start):
    path = samples / S190425Z
    if not path.exists():
        pytest.skip("S190425z sample absent")
    sky = read_skymap(path)
    alert = Alert(
        source="LVK",
        kind=AlertKind.GW,
        format="lvk-json",
        event_id="S190425z",
        alert_type=AlertType.PRELIMINARY,
        issued_at=start,
    )
    plan = plan_targets(
        alert,
        skymap=sky,
        start=start,
        max_targets=10,
        max_airmass=2.0,
        min_moon_distance_deg=20.0,
        allow_empty=True,
    )
    assert len(plan.targets) >= 5
    assert plan.observable_probability is not None and 0.2 < plan.observable_probability < 1.0
    assert 0 < plan.covered_probability <= plan.observable_probability
    assert plan.fields_for_observable > len(plan.targets)
    # No window of a target is near the Moon (the strategy's 20 deg).
    calc = VisibilityCalculator(start, max_airmass=2.0, min_moon_distance_deg=20.0)
    for target in plan.targets:
        ra_c, dec_c = calc.to_cirs(target.ra, target.dec)
        for window in target.windows:
            mid = window.start + (window.end - window.start) / 2
            t = np.array([(mid - calc.start_datetime).total_seconds()])
            assert calc.moon_clear(ra_c, dec_c, t).all(), (target.name, window)


def test_a_wide_map_is_ranked_on_coarser_pixels_and_plans_as_well(monkeypatch):
    # MUSCAT's 9' field on a 1,200 deg2 map would rank 1.2 million pixels; the planner caps the
    # count by taking coarser ones. Forced here on a small map: the same fields' worth of
    # probability comes out, and the cap really changed the pixels the ranking used.
    from followup import fieldgrid

    sky = gaussian_skymap(60.0, -30.0, 2.0, max_order=10)
    calc = VisibilityCalculator(datetime(2026, 12, 6, tzinfo=UTC), max_airmass=2.0)
    fine = plan_observable_fields(sky, SINISTRO, calc, max_fields=10)
    orders: list[int] = []
    credible = SkyMap.credible_pixels

    def spy(self, level, order=None):
        orders.append(order)
        return credible(self, level, order=order)

    monkeypatch.setattr(SkyMap, "credible_pixels", spy)
    monkeypatch.setattr(fieldgrid, "_MAX_RANKING_PIXELS", 2_000)
    coarse = plan_observable_fields(sky, SINISTRO, calc, max_fields=10)
    assert len(orders) > 1 and orders[-1] < orders[0]
    assert len(coarse.requested) == len(fine.requested) == 10
    assert coarse.covered_probability == pytest.approx(fine.covered_probability, rel=0.03)
    assert coarse.observable_probability == pytest.approx(fine.observable_probability, rel=1e-3)
