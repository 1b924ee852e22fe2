"""Cover a sky map's credible region with instrument fields, best fields first.

Fields are rectangles in the tangent plane at their centre, aligned with north. Candidate
centres lie on a fine HEALPix grid (about a third of a field apart) over the region; the map is
resampled to pixels about a fifth of a field wide, and the probability each candidate encloses
is the sum over the pixels whose centres fall inside it. Fields are then chosen greedily: each
next field is the candidate adding the most probability not yet covered. That beats a fixed
grid, which cannot shift its fields onto the densest parts of the map.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import astropy_healpix as ah
import numpy as np
from astropy import units as u
from astropy.table import QTable
from scipy import sparse
from scipy.spatial import cKDTree

from followup.skymap import SkyMap

__all__ = [
    "INSTRUMENT_FIELDS",
    "InstrumentField",
    "Tiling",
    "field_name",
    "fields_probability",
    "get_instrument_field",
    "in_field",
    "tile_skymap",
]


@dataclass(frozen=True)
class InstrumentField:
    """The field of view of an LCO imager.

    Attributes:
        instrument_type: LCO instrument type, e.g. ``1M0-SCICAM-SINISTRO``.
        width_deg: Extent along right ascension (east-west) in degrees.
        height_deg: Extent along declination (north-south) in degrees.
        telescope_class: LCO telescope class (``0m4``, ``1m0``, ``2m0``).
        note: Where the numbers come from.
    """

    instrument_type: str
    width_deg: float
    height_deg: float
    telescope_class: str
    note: str = ""

    @property
    def area_deg2(self) -> float:
        """Field area in square degrees (small-field approximation)."""
        return self.width_deg * self.height_deg

    @property
    def half_diagonal_deg(self) -> float:
        """Angular distance from the centre to a corner, in degrees."""
        return math.hypot(self.width_deg, self.height_deg) / 2


INSTRUMENT_FIELDS: dict[str, InstrumentField] = {
    f.instrument_type: f
    for f in (
        InstrumentField(
            "1M0-SCICAM-SINISTRO",
            26.5 / 60,
            26.5 / 60,
            "1m0",
            "4k x 4k, 0.389 arcsec/pixel: 26.5 arcmin square",
        ),
        InstrumentField(
            "0M4-SCICAM-QHY600",
            1.9,
            1.3,
            "0m4",
            "9576 x 6388, 0.73 arcsec/pixel: about 1.9 x 1.3 deg, long side east-west",
        ),
        InstrumentField(
            "2M0-SCICAM-MUSCAT",
            9.1 / 60,
            9.1 / 60,
            "2m0",
            "four simultaneous channels, 9.1 arcmin square each",
        ),
    )
}
"""Field sizes of the LCO imagers targets can be tiled for, keyed by instrument type."""


def get_instrument_field(instrument: str | InstrumentField) -> InstrumentField:
    """Look up an instrument's field (case-insensitive), or pass one through.

    Raises:
        ValueError: An instrument without a known field of view.
    """
    if isinstance(instrument, InstrumentField):
        return instrument
    key = instrument.strip().upper()
    if key not in INSTRUMENT_FIELDS:
        raise ValueError(
            f"no field of view known for instrument {instrument!r}; known: "
            f"{', '.join(INSTRUMENT_FIELDS)}"
        )
    return INSTRUMENT_FIELDS[key]


def field_name(ra: float, dec: float, prefix: str = "F") -> str:
    """A stable target name for a field centre, e.g. ``F194.3042-17.8569`` (18 characters).

    The same centre always gives the same name, so the same sky map gives the same request
    names, and a later map that picks the same pointing reuses it.
    """
    return f"{prefix}{ra % 360:08.4f}{dec:+08.4f}"


def in_field(
    ra0: Any, dec0: Any, ra: Any, dec: Any, width_deg: float, height_deg: float
) -> np.ndarray:
    """True where positions fall inside fields centred at ``(ra0, dec0)`` (all broadcast).

    The field is the rectangle ``|xi| <= tan(width/2)``, ``|eta| <= tan(height/2)`` in the
    gnomonic (tangent-plane) projection at its centre, with eta towards north.
    """
    a0, d0 = np.radians(ra0), np.radians(dec0)
    a, d = np.radians(ra), np.radians(dec)
    cos_d = np.cos(d)
    cos_c = np.sin(d0) * np.sin(d) + np.cos(d0) * cos_d * np.cos(a - a0)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = cos_d * np.sin(a - a0) / cos_c
        eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * cos_d * np.cos(a - a0)) / cos_c
    return (
        (cos_c > 0)
        & (np.abs(xi) <= math.tan(math.radians(width_deg) / 2))
        & (np.abs(eta) <= math.tan(math.radians(height_deg) / 2))
    )


def _order_for(resolution_deg: float, *, low: int = 2, high: int = 13) -> int:
    """The shallowest HEALPix order whose pixels are at most ``resolution_deg`` wide."""
    order = math.ceil(math.log2(math.sqrt(math.pi / 3) * 180 / math.pi / resolution_deg))
    return int(min(max(order, low), high))


def _unit_vectors(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    a, d = np.radians(ra), np.radians(dec)
    return np.column_stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)])


def _centres(ipix: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    lon, lat = ah.healpix_to_lonlat(ipix, 2**order, order="nested")
    return lon.to_value(u.deg), lat.to_value(u.deg)


def _dilate(pixels: np.ndarray, order: int, rings: int) -> np.ndarray:
    """Grow a set of nested pixels by ``rings`` rings of neighbours."""
    nside = 2**order
    result = np.unique(pixels)
    frontier = result
    for _ in range(rings):
        if frontier.size == 0:
            break
        nb = np.asarray(ah.neighbours(frontier, nside, order="nested")).ravel()
        nb = np.unique(nb[nb >= 0])
        frontier = np.setdiff1d(nb, result, assume_unique=True)
        result = np.union1d(result, frontier)
    return result


@dataclass
class Tiling:
    """Fields covering a credible region, best first.

    Attributes:
        instrument: The instrument's field.
        ra: Field centre RA in degrees, in rank order.
        dec: Field centre Dec in degrees.
        probability: Probability each field adds to those ranked before it.
        cumulative_probability: Probability covered by this field and all before it.
        level: The credible level of the region tiled.
        region_area_deg2: Area of that region in deg2.
        complete: True when the fields (with the rejected ones) cover the whole region.
        rejected: Fields the greedy search would have taken but ``accept`` refused, as
            ``(ra, dec, probability)`` tuples in the order they were met.
        candidates: Number of candidate centres considered.
        pixel_order: HEALPix order the map was resampled to.
    """

    instrument: InstrumentField
    ra: np.ndarray
    dec: np.ndarray
    probability: np.ndarray
    cumulative_probability: np.ndarray
    level: float
    region_area_deg2: float
    complete: bool
    rejected: list[tuple[float, float, float]] = field(default_factory=list)
    candidates: int = 0
    pixel_order: int = 0

    def __len__(self) -> int:
        return int(self.ra.size)

    @property
    def names(self) -> list[str]:
        """Stable field names (see :func:`field_name`)."""
        return [field_name(r, d) for r, d in zip(self.ra, self.dec, strict=True)]

    @property
    def covered_probability(self) -> float:
        """Probability covered by all the fields together."""
        return float(self.cumulative_probability[-1]) if self.ra.size else 0.0

    def to_table(self) -> QTable:
        """The fields as a table.

        Columns: ``rank``, ``name``, ``ra`` [deg], ``dec`` [deg], ``probability``,
        ``cumulative_probability``.
        """
        table = QTable()
        table["rank"] = np.arange(1, self.ra.size + 1)
        table["name"] = self.names
        table["ra"] = self.ra * u.deg
        table["dec"] = self.dec * u.deg
        table["probability"] = self.probability
        table["cumulative_probability"] = self.cumulative_probability
        table.meta.update(
            instrument_type=self.instrument.instrument_type,
            level=self.level,
            region_area_deg2=self.region_area_deg2,
            complete=self.complete,
        )
        return table


def tile_skymap(
    skymap: SkyMap,
    instrument: str | InstrumentField = "1M0-SCICAM-SINISTRO",
    *,
    level: float = 0.9,
    max_fields: int | None = None,
    accept: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    max_rejected: int | None = None,
    pixel_order: int | None = None,
    candidate_order: int | None = None,
) -> Tiling:
    """Choose fields covering the ``level`` credible region, ranked by enclosed probability.

    Args:
        skymap: The sky map.
        instrument: LCO instrument type (see :data:`INSTRUMENT_FIELDS`) or a field.
        level: Credible level of the region to cover.
        max_fields: Stop after this many accepted fields (None: cover the whole region). With
            a limit, candidates are first drawn from the densest part of the region that can
            hold four times the fields wanted, and from the whole region if that falls short.
        accept: Called once with all candidate RAs and Decs (degrees); returns True for those
            that may be chosen (for example those observable tonight). Refused fields are
            recorded in ``rejected`` and their pixels are not offered again.
        max_rejected: Stop after this many refused fields (default ``2 * max_fields + 10``).
        pixel_order: HEALPix order of the resampled map (default: pixels <= field/5).
        candidate_order: HEALPix order of the candidate centres (default: <= field/3 apart).

    Returns:
        The tiling.

    Raises:
        ValueError: Bad level, instrument or limits.
    """
    inst = get_instrument_field(instrument)
    if not 0 < level <= 1:
        raise ValueError(f"level must be in (0, 1], got {level}")
    if max_fields is not None and max_fields < 1:
        raise ValueError(f"max_fields must be >= 1, got {max_fields}")
    small = min(inst.width_deg, inst.height_deg)
    f_order = pixel_order if pixel_order is not None else _order_for(small / 5)
    c_order = candidate_order if candidate_order is not None else _order_for(small / 3)
    if max_rejected is None:
        max_rejected = 2 * max_fields + 10 if max_fields is not None else 10**9
    region_area = skymap.area(level)

    # With a field limit, search the densest part of the region first (room for a few times
    # the fields wanted), widening it eightfold while too few fields are found.
    levels = [level]
    if max_fields is not None:
        extra = min(max_rejected, max_fields) if accept is not None else 0
        want = 6 * (max_fields + extra) * inst.area_deg2
        levels = []
        while want < region_area:
            domain_level = skymap.level_for_area(want)
            if domain_level >= level:
                break
            if not levels or domain_level > levels[-1]:
                levels.append(domain_level)
            want *= 8
        levels.append(level)
    result: Tiling | None = None
    for domain_level in levels:
        result = _greedy(
            skymap,
            inst,
            level=level,
            domain_level=domain_level,
            f_order=f_order,
            c_order=c_order,
            max_fields=max_fields,
            accept=accept,
            max_rejected=max_rejected,
            region_area=region_area,
        )
        if max_fields is None or len(result) >= max_fields or result.complete:
            break
        if len(result.rejected) >= max_rejected:
            break
    assert result is not None
    return result


def _greedy(
    skymap: SkyMap,
    inst: InstrumentField,
    *,
    level: float,
    domain_level: float,
    f_order: int,
    c_order: int,
    max_fields: int | None,
    accept: Callable[[np.ndarray, np.ndarray], np.ndarray] | None,
    max_rejected: int,
    region_area: float,
) -> Tiling:
    domain_fine = skymap.credible_pixels(domain_level, order=f_order)
    res_f = float(ah.nside_to_pixel_resolution(2**f_order).to_value(u.deg))
    rings = math.ceil(inst.half_diagonal_deg / res_f) + 1
    pixels = _dilate(domain_fine, f_order, rings)
    p0 = skymap.probability_in_pixels(f_order, pixels)
    pix_ra, pix_dec = _centres(pixels, f_order)
    in_region = np.asarray(skymap.searched_probability(pix_ra, pix_dec)) <= level

    cand = skymap.credible_pixels(domain_level, order=c_order)
    cand_ra, cand_dec = _centres(cand, c_order)
    pix_vec = _unit_vectors(pix_ra, pix_dec)
    tree_p = cKDTree(pix_vec)
    tan_w = math.tan(math.radians(inst.width_deg) / 2)
    tan_h = math.tan(math.radians(inst.height_deg) / 2)

    def membership(ra: np.ndarray, dec: np.ndarray) -> sparse.csr_matrix:
        """Which pixels each candidate field holds: KD-tree pairs, then the rectangle test."""
        chord = 2 * math.sin(math.radians(inst.half_diagonal_deg) / 2)
        pairs = cKDTree(_unit_vectors(ra, dec)).sparse_distance_matrix(
            tree_p, chord, output_type="ndarray"
        )
        ci = pairs["i"].astype(np.int64)
        pj = pairs["j"].astype(np.int64)
        # The rectangle test with unit vectors (no trigonometry per pair): tangent-plane
        # coordinates are xi = p.e / p.c and eta = p.n / p.c for the centre c, east e, north n.
        a, d = np.radians(ra), np.radians(dec)
        centre = _unit_vectors(ra, dec)
        east = np.column_stack([-np.sin(a), np.cos(a), np.zeros_like(a)])
        north = np.column_stack([-np.sin(d) * np.cos(a), -np.sin(d) * np.sin(a), np.cos(d)])
        pv = pix_vec[pj]
        cos_c = np.einsum("ij,ij->i", pv, centre[ci])
        with np.errstate(divide="ignore", invalid="ignore"):
            xi = np.einsum("ij,ij->i", pv, east[ci]) / cos_c
            eta = np.einsum("ij,ij->i", pv, north[ci]) / cos_c
        inside = (cos_c > 0) & (np.abs(xi) <= tan_w) & (np.abs(eta) <= tan_h)
        return sparse.csr_matrix(
            (np.ones(int(inside.sum())), (ci[inside], pj[inside])),
            shape=(ra.size, pixels.size),
            dtype=np.float64,
        )

    member = membership(cand_ra, cand_dec)
    # Fields on HEALPix centres cannot abut exactly; add grids of abutting fields anchored at
    # the best single field (and offset by half a field), so neighbours can pack without gaps.
    if cand.size:
        anchor = int(np.argmax(member @ p0))
        grid_ra, grid_dec = _anchored_grids(
            float(cand_ra[anchor]), float(cand_dec[anchor]), pix_dec, pix_ra, inst
        )
        keep = np.isin(
            np.asarray(
                ah.lonlat_to_healpix(grid_ra * u.deg, grid_dec * u.deg, 2**f_order, order="nested")
            ),
            domain_fine,
        )
        grid_ra, grid_dec = grid_ra[keep], grid_dec[keep]
        if grid_ra.size:
            cand_ra = np.concatenate([cand_ra, grid_ra])
            cand_dec = np.concatenate([cand_dec, grid_dec])
            member = sparse.vstack([member, membership(grid_ra, grid_dec)], format="csr")
    n_c = cand_ra.size
    member.sort_indices()
    member_csc = member.tocsc()

    allowed = (
        np.ones(n_c, dtype=bool)
        if accept is None
        else np.asarray(accept(cand_ra, cand_dec), dtype=bool).reshape(n_c)
    )
    p = p0.copy()
    scores = member @ p
    active = np.ones(n_c, dtype=bool)
    region_left = int(in_region.sum())
    chosen: list[int] = []
    rejected: list[tuple[float, float, float]] = []
    floor = 1e-12
    while active.any():
        masked = np.where(active, scores, -np.inf)
        j = int(np.argmax(masked))
        if not masked[j] > floor:
            break
        row = member.indices[member.indptr[j] : member.indptr[j + 1]]
        live = row[p[row] > 0]
        active[j] = False
        if allowed[j]:
            chosen.append(j)
        else:
            rejected.append((float(cand_ra[j]), float(cand_dec[j]), float(scores[j])))
        if live.size:
            scores -= member_csc[:, live] @ p[live]
            p[live] = 0.0
            region_left -= int(in_region[live].sum())
        if max_fields is not None and len(chosen) >= max_fields:
            break
        if len(rejected) >= max_rejected:
            break
        if max_fields is None and region_left <= 0:
            break

    # Exact probabilities of the accepted fields in rank order (refused fields cover nothing).
    covered = np.zeros(pixels.size, dtype=bool)
    probs = []
    for j in chosen:
        row = member.indices[member.indptr[j] : member.indptr[j + 1]]
        new = row[~covered[row]]
        probs.append(float(p0[new].sum()))
        covered[new] = True
    probability = np.array(probs, dtype=float)
    idx = np.array(chosen, dtype=np.int64)
    return Tiling(
        instrument=inst,
        ra=cand_ra[idx],
        dec=cand_dec[idx],
        probability=probability,
        cumulative_probability=np.cumsum(probability),
        level=level,
        region_area_deg2=region_area,
        complete=region_left <= 0 and domain_level >= level,
        rejected=rejected,
        candidates=n_c,
        pixel_order=f_order,
    )


def _anchored_grids(
    ra0: float, dec0: float, pix_dec: np.ndarray, pix_ra: np.ndarray, inst: InstrumentField
) -> tuple[np.ndarray, np.ndarray]:
    """Centres of four field grids (offsets 0 and 1/2 field) anchored at ``(ra0, dec0)``.

    Rows are one field height apart in Dec; along a row, fields are one field width apart
    (``width / cos(dec)`` in RA). Only rows and RA ranges that reach the given pixels are made.
    """
    w, h = inst.width_deg, inst.height_deg
    out_ra: list[np.ndarray] = []
    out_dec: list[np.ndarray] = []
    rel_ra = (pix_ra - ra0 + 180.0) % 360.0 - 180.0
    lo_k = math.floor((float(pix_dec.min()) - dec0) / h) - 1
    hi_k = math.ceil((float(pix_dec.max()) - dec0) / h) + 1
    for oy in (0.0, 0.5):
        for k in range(lo_k, hi_k + 1):
            d = dec0 + (k + oy) * h
            if abs(d) >= 89.0:
                continue
            band = np.abs(pix_dec - d) <= h
            if not band.any():
                continue
            step = w / math.cos(math.radians(d))
            j_lo = math.floor(float(rel_ra[band].min()) / step) - 1
            j_hi = math.ceil(float(rel_ra[band].max()) / step) + 1
            for ox in (0.0, 0.5):
                j = np.arange(j_lo, j_hi + 1) + ox
                out_ra.append((ra0 + j * step) % 360.0)
                out_dec.append(np.full(j.size, d))
    if not out_ra:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(out_ra), np.concatenate(out_dec)


def fields_probability(
    skymap: SkyMap,
    ra: Any,
    dec: Any,
    instrument: str | InstrumentField = "1M0-SCICAM-SINISTRO",
    *,
    pixel_order: int | None = None,
) -> float:
    """Probability covered by the union of fields at the given centres.

    An evaluator independent of :func:`tile_skymap`'s search: each field's pixels are found by
    a cone search and the rectangle test, at the same default resolution.

    Args:
        skymap: The sky map.
        ra: Field centre RA(s) in degrees.
        dec: Field centre Dec(s) in degrees.
        instrument: Instrument type or field.
        pixel_order: HEALPix order of the resampled map (default: pixels <= field/5).
    """
    inst = get_instrument_field(instrument)
    order = (
        pixel_order
        if pixel_order is not None
        else _order_for(min(inst.width_deg, inst.height_deg) / 5)
    )
    hp = ah.HEALPix(nside=2**order, order="nested")
    found = []
    for r, d in zip(np.atleast_1d(ra), np.atleast_1d(dec), strict=True):
        cone = np.asarray(
            hp.cone_search_lonlat(r * u.deg, d * u.deg, radius=inst.half_diagonal_deg * u.deg),
            dtype=np.int64,
        )
        if cone.size == 0:
            continue
        cra, cdec = _centres(cone, order)
        found.append(cone[in_field(r, d, cra, cdec, inst.width_deg, inst.height_deg)])
    if not found:
        return 0.0
    union = np.unique(np.concatenate(found))
    return float(skymap.probability_in_pixels(order, union).sum())
