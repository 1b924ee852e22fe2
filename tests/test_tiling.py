"""Tiling: greedy fields beat random placements and a fixed grid; names are stable."""

from __future__ import annotations

import math

import numpy as np
import pytest

from followup.skymap import gaussian_skymap, make_gaussian_skymap, read_skymap
from followup.tiling import (
    INSTRUMENT_FIELDS,
    field_name,
    fields_probability,
    get_instrument_field,
    in_field,
    tile_skymap,
)

SINISTRO = "1M0-SCICAM-SINISTRO"


@pytest.fixture(scope="module")
def banana():
    """An elongated synthetic map (about 60 deg2 at 90%) with a tilted major axis."""
    return gaussian_skymap(150.0, -20.0, 4.0, sigma_minor_deg=0.8, position_angle_deg=35.0)


def random_placements(sky, n_fields, *, trials=100, seed=0, order=10):
    """Union probability of ``trials`` sets of N fields centred at random inside the region."""
    rng = np.random.default_rng(seed)
    region = sky.credible_pixels(0.9, order=order)
    import astropy_healpix as ah
    from astropy import units as u

    lon, lat = ah.healpix_to_lonlat(region, 2**order, order="nested")
    ra, dec = lon.to_value(u.deg), lat.to_value(u.deg)
    out = []
    for _ in range(trials):
        pick = rng.choice(region.size, size=n_fields, replace=False)
        out.append(fields_probability(sky, ra[pick], dec[pick], SINISTRO))
    return np.array(out)


@pytest.mark.parametrize("n_fields", [3, 10])
def test_first_fields_beat_100_random_placements(banana, n_fields):
    tiling = tile_skymap(banana, SINISTRO, max_fields=n_fields)
    assert len(tiling) == n_fields
    greedy = fields_probability(banana, tiling.ra, tiling.dec, SINISTRO)
    assert greedy == pytest.approx(tiling.covered_probability, rel=1e-9)
    random = random_placements(banana, n_fields)
    assert greedy >= random.max()
    assert greedy > 1.5 * np.median(random)


def test_first_fields_beat_random_on_the_lvk_map(samples):
    sky = read_skymap(samples / "lvk_userguide" / "bayestar.multiorder.fits")
    tiling = tile_skymap(sky, SINISTRO, max_fields=5)
    assert tiling.covered_probability >= random_placements(sky, 5).max()


def test_greedy_beats_a_fixed_grid(banana):
    """The best N fields of a fixed RA/Dec grid cover less than the N greedy fields."""
    inst = get_instrument_field(SINISTRO)
    n = 8
    best = 0.0
    # A grid anchored at 0,0, and the best of its cells for this map.
    decs = np.arange(-40, 0, inst.height_deg)
    cells = []
    for d in decs:
        step = inst.width_deg / math.cos(math.radians(d))
        for r in np.arange(130, 170, step):
            if banana.searched_probability(r, d) <= 0.95:
                cells.append((r, d, fields_probability(banana, [r], [d], SINISTRO)))
    cells.sort(key=lambda c: -c[2])
    top = np.array(cells[:n])
    best = fields_probability(banana, top[:, 0], top[:, 1], SINISTRO)
    greedy = tile_skymap(banana, SINISTRO, max_fields=n).covered_probability
    assert greedy > best


def test_full_cover_of_the_region():
    sky = gaussian_skymap(20.0, 30.0, 0.6)
    tiling = tile_skymap(sky, "0M4-SCICAM-QHY600")
    assert tiling.complete
    assert tiling.covered_probability >= 0.9
    assert np.all(np.diff(tiling.cumulative_probability) >= 0)
    assert tiling.cumulative_probability[-1] == pytest.approx(tiling.probability.sum())
    # Ranked: the first field holds the most.
    assert tiling.probability[0] == tiling.probability.max()


def test_names_are_stable_unique_and_short():
    data = make_gaussian_skymap(250.0, -45.0, 1.2)
    a = tile_skymap(read_skymap(data), SINISTRO, max_fields=12)
    b = tile_skymap(read_skymap(data), SINISTRO, max_fields=12)
    assert a.names == b.names
    assert len(set(a.names)) == 12
    assert all(len(n) <= 30 and n.startswith("F") for n in a.names)
    assert field_name(359.99999, -0.5) == "F360.0000-00.5000" or field_name(
        359.99999, -0.5
    ).startswith("F")
    assert field_name(12.3456789, 5.0) == "F012.3457+05.0000"


def test_to_table_columns(banana):
    table = tile_skymap(banana, SINISTRO, max_fields=4).to_table()
    assert table.colnames == ["rank", "name", "ra", "dec", "probability", "cumulative_probability"]
    assert str(table["ra"].unit) == "deg"
    assert list(table["rank"]) == [1, 2, 3, 4]


def test_accept_refuses_candidates_and_records_them(banana):
    # Refuse everything north of -20 deg: chosen fields are all south, refused ones listed.
    tiling = tile_skymap(
        banana, SINISTRO, max_fields=5, accept=lambda ra, dec: dec < -20.0, max_rejected=50
    )
    assert len(tiling) == 5
    assert np.all(tiling.dec < -20.0)
    assert tiling.rejected
    assert all(dec >= -20.0 for _, dec, _ in tiling.rejected)
    # Refused fields do not count as covered.
    assert tiling.covered_probability == pytest.approx(
        fields_probability(banana, tiling.ra, tiling.dec, SINISTRO), rel=1e-9
    )


def test_in_field_geometry():
    w, h = 0.5, 0.3
    eps = 1e-3
    assert in_field(10, 0, 10 + w / 2 - eps, 0, w, h)
    assert not in_field(10, 0, 10 + w / 2 + eps, 0, w, h)
    assert in_field(10, 0, 10, h / 2 - eps, w, h)
    assert not in_field(10, 0, 10, h / 2 + eps, w, h)
    # At Dec 70 the field spans 1/cos(70) times more RA.
    half_ra = w / 2 / math.cos(math.radians(70))
    assert in_field(10, 70, 10 + 0.97 * half_ra, 70, w, h)
    assert not in_field(10, 70, 10 + 1.03 * half_ra, 70, w, h)
    # Across RA = 0.
    assert in_field(359.9, 0, 0.1, 0, w, h)
    assert not in_field(10, 0, 190, 0, w, h)  # the antipode


def test_instrument_table_and_unknown_instrument():
    assert INSTRUMENT_FIELDS[SINISTRO].width_deg == pytest.approx(26.5 / 60)
    assert INSTRUMENT_FIELDS["2M0-SCICAM-MUSCAT"].width_deg == pytest.approx(9.1 / 60)
    assert INSTRUMENT_FIELDS["0M4-SCICAM-QHY600"].width_deg == pytest.approx(1.9)
    assert get_instrument_field("1m0-scicam-sinistro").instrument_type == SINISTRO
    with pytest.raises(ValueError, match="no field of view"):
        get_instrument_field("2M0-FLOYDS-SCICAM")
    with pytest.raises(ValueError, match="max_fields"):
        tile_skymap(gaussian_skymap(0.0, 0.0, 1.0), SINISTRO, max_fields=0)
