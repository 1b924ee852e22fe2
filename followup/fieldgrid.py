"""Plan what can be observed: fields of a fixed sky grid, ranked by observable probability.

Each instrument has one fixed grid of field centres on the sky (:func:`grid_fields`): rows of
constant declination one field high, and along each row as many fields as cover it where it is
widest. A new map of the same event therefore reuses the same fields instead of near-copies of
them. The map's probability is first binned into the grid's cells (a partition of the sphere,
so the cell probabilities add up to one); the cells whose centre can be observed in the window
(:class:`followup.visibility.VisibilityCalculator`: airmass, twilight, the Moon, the telescope
class's pointing limits) make up the *observable* probability, and the best of them are then
integrated exactly over their field's rectangle, counting every part of a pixel that falls
inside (:func:`field_probability`). Fields below the strategy's minimum probability are
not requested, and the plan says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import astropy_healpix as ah
import numpy as np
from astropy import units as u

from followup.skymap import SR_PER_DEG2, SkyMap
from followup.tiling import InstrumentField, _centres, _order_for, field_name, get_instrument_field
from followup.visibility import VisibilityCalculator

__all__ = [
    "FieldChoice",
    "ObservablePlan",
    "field_probability",
    "grid_cell",
    "grid_fields",
    "plan_observable_fields",
]

_SAMPLES = 48
"""Sample points per field side for the exact integration (48 x 48 per field)."""

_SCREEN_ORDER = 6
"""Observability is screened on HEALPix pixels of this order (0.9 deg) holding cell centres."""

_MAX_RANKING_PIXELS = 1 << 19
"""At most this many pixels rank the cells coarsely. A small field on a wide map would need millions
at half the field's width (MUSCAT on a 1,200 deg2 map: 1.2 million, a quarter of a second for their
centres alone); coarser pixels rank as well, since the best cells are integrated exactly after."""


def _rows(inst: InstrumentField) -> tuple[int, float]:
    """Number of declination rows and their height in degrees."""
    n = math.ceil(180.0 / inst.height_deg)
    return n, 180.0 / n


def _row_columns(inst: InstrumentField, dec_lo: np.ndarray, height: float) -> np.ndarray:
    """Fields in each row: enough to cover the row along its widest (equatorward) edge."""
    hi = dec_lo + height
    widest = np.where(
        (dec_lo <= 0) & (hi >= 0),
        1.0,
        np.maximum(np.cos(np.radians(dec_lo)), np.cos(np.radians(hi))),
    )
    return np.maximum(1, np.ceil(360.0 * widest / inst.width_deg)).astype(np.int64)


def _row_col(inst: InstrumentField, ra: Any, dec: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row and column of the grid cell holding each position, and the columns of every row."""
    n_rows, height = _rows(inst)
    row_columns = _row_columns(inst, -90.0 + np.arange(n_rows) * height, height)
    dec_arr = np.asarray(dec, dtype=float)
    row = np.clip(np.floor((dec_arr + 90.0) / height).astype(np.int64), 0, n_rows - 1)
    cols = row_columns[row]
    col = np.floor(np.mod(np.asarray(ra, dtype=float), 360.0) / (360.0 / cols)).astype(np.int64)
    return row, np.minimum(col, cols - 1), row_columns


def grid_cell(inst: str | InstrumentField, ra: Any, dec: Any) -> np.ndarray:
    """The grid field (as one integer key, row * 2**32 + column) whose cell holds each position."""
    row, col, _ = _row_col(get_instrument_field(inst), ra, dec)
    return row * 2**32 + col


_DENSE_CELLS = 1 << 24
"""Grids with up to this many cells are indexed with a flat array rather than a sort."""


def _cells(inst: InstrumentField, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(grid_cell(inst, ra, dec), return_inverse=True)``, without a sort.

    Cells are numbered row by row (the order of their keys), so the cells present are the
    non-zero entries of a flat array over the grid.
    """
    row, col, row_columns = _row_col(inst, ra, dec)
    first = np.concatenate([[0], np.cumsum(row_columns)])
    if first[-1] > _DENSE_CELLS:
        return np.unique(row * 2**32 + col, return_inverse=True)
    flat = first[row] + col
    present = np.zeros(int(first[-1]), dtype=bool)
    present[flat] = True
    number = np.cumsum(present) - 1
    cells = np.flatnonzero(present)
    rows = np.searchsorted(first, cells, side="right") - 1
    return rows * 2**32 + (cells - first[rows]), number[flat]


def grid_fields(inst: str | InstrumentField, keys: Any) -> tuple[np.ndarray, np.ndarray]:
    """Centres (RA, Dec in degrees) of grid fields given by their :func:`grid_cell` keys."""
    inst = get_instrument_field(inst)
    _, height = _rows(inst)
    keys = np.asarray(keys, dtype=np.int64)
    row, col = keys // 2**32, keys % 2**32
    dec_lo = -90.0 + row * height
    cols = _row_columns(inst, dec_lo, height)
    return (col + 0.5) * (360.0 / cols), dec_lo + height / 2


def field_probability(
    sky: SkyMap, inst: str | InstrumentField, ra: Any, dec: Any, *, samples: int = _SAMPLES
) -> np.ndarray:
    """Probability inside each field's rectangle, integrated on a fine grid of sample points.

    The rectangle is the field in the gnomonic projection at its centre; points sit at the
    middles of ``samples x samples`` equal cells of the projection plane, each weighted by the
    solid angle its cell subtends, so a map pixel counts in the share of it inside the field.
    """
    inst = get_instrument_field(inst)
    ra0 = np.radians(np.atleast_1d(np.asarray(ra, dtype=float)))[:, None]
    dec0 = np.radians(np.atleast_1d(np.asarray(dec, dtype=float)))[:, None]
    tw = math.tan(math.radians(inst.width_deg) / 2)
    th = math.tan(math.radians(inst.height_deg) / 2)
    grid = (np.arange(samples) + 0.5) / samples * 2 - 1
    xi, eta = np.meshgrid(grid * tw, grid * th)
    xi, eta = xi.ravel()[None, :], eta.ravel()[None, :]
    # Inverse gnomonic projection.
    rho = np.hypot(xi, eta)
    c = np.arctan(rho)
    with np.errstate(invalid="ignore", divide="ignore"):
        sin_dec = np.cos(c) * np.sin(dec0) + np.where(
            rho > 0, eta * np.sin(c) * np.cos(dec0) / rho, 0.0
        )
        dra = np.arctan2(
            xi * np.sin(c), rho * np.cos(dec0) * np.cos(c) - eta * np.sin(dec0) * np.sin(c)
        )
    pt_dec = np.degrees(np.arcsin(np.clip(sin_dec, -1, 1)))
    pt_ra = np.degrees(ra0 + dra) % 360.0
    # Solid angle of each cell: dxi deta / (1 + xi^2 + eta^2)^(3/2).
    cell = (2 * tw / samples) * (2 * th / samples) / (1 + xi**2 + eta**2) ** 1.5
    density_deg2 = np.asarray(sky.density(pt_ra.ravel(), pt_dec.ravel())).reshape(pt_ra.shape)
    return (density_deg2 / SR_PER_DEG2 * cell).sum(axis=1)


@dataclass
class FieldChoice:
    """One grid field considered by the planner.

    Attributes:
        name: Stable field name.
        ra: Centre RA in degrees.
        dec: Centre Dec in degrees.
        probability: Probability inside the field (exact integration).
        requested: Chosen to be requested.
        reason: Why it is not requested (empty when requested).
    """

    name: str
    ra: float
    dec: float
    probability: float
    requested: bool
    reason: str = ""


@dataclass
class ObservablePlan:
    """The observable part of a map and the grid fields chosen in it.

    Attributes:
        instrument: The instrument's field.
        fields: Requested fields best first, then the ones left out with their reasons.
        observable_probability: Probability in grid cells observable in the window.
        covered_probability: Probability inside the requested fields.
        total_cells: Grid cells holding probability.
        observable_cells: Of those, the ones observable in the window.
        fields_for_observable: Fields it would take to cover all the observable probability
            down to the minimum probability per field.
        unobservable: Fields holding more than the last requested one (the best when none is
            requested) that cannot be observed in the window, best first.
    """

    instrument: InstrumentField
    fields: list[FieldChoice] = field(default_factory=list)
    observable_probability: float = 0.0
    covered_probability: float = 0.0
    total_cells: int = 0
    observable_cells: int = 0
    fields_for_observable: int = 0
    unobservable: list[FieldChoice] = field(default_factory=list)

    @property
    def requested(self) -> list[FieldChoice]:
        """The fields to request, best first."""
        return [f for f in self.fields if f.requested]


def _observable(
    calc: VisibilityCalculator, ra: np.ndarray, dec: np.ndarray, minutes: float
) -> np.ndarray:
    step_min = float(calc.t[1] - calc.t[0]) / 60.0
    need = max(1, math.ceil(minutes / step_min))
    out = np.zeros(ra.size, dtype=bool)
    for i in range(0, ra.size, 4096):
        _, ok = calc.observable_grid(ra[i : i + 4096], dec[i : i + 4096])
        out[i : i + 4096] = (ok.sum(axis=2) >= need).any(axis=1)
    return out


def plan_observable_fields(
    sky: SkyMap,
    instrument: str | InstrumentField,
    calc: VisibilityCalculator,
    *,
    max_fields: int,
    min_probability: float = 0.0,
    min_window_minutes: float = 10.0,
    level: float = 0.999,
) -> ObservablePlan:
    """Choose the grid fields holding the most observable probability.

    Args:
        sky: The sky map.
        instrument: LCO instrument type or field.
        calc: Visibility in the strategy's window (its Moon, airmass and pointing rules).
        max_fields: At most this many fields are requested.
        min_probability: Fields holding less are not requested.
        min_window_minutes: A field must be observable for this long in a row.
        level: Credible level of the part of the map considered.

    Returns:
        The plan of fields.
    """
    inst = get_instrument_field(instrument)
    # Pixels half a field wide: every cell holds a few pixel centres for the coarse ranking
    # (coarser where that would be too many: _MAX_RANKING_PIXELS).
    order = _order_for(min(inst.width_deg, inst.height_deg) / 2, high=11)
    pixels = sky.credible_pixels(level, order=order)
    while pixels.size > _MAX_RANKING_PIXELS and order > _SCREEN_ORDER:
        order -= 1
        pixels = sky.credible_pixels(level, order=order)
    prob = sky.probability_in_pixels(order, pixels)
    pra, pdec = _centres(pixels, order)
    keys, inverse = _cells(inst, pra, pdec)
    cell_prob = np.bincount(inverse, weights=prob, minlength=keys.size)
    cra, cdec = grid_fields(inst, keys)
    # Observability changes slowly across the sky: screen the coarse pixels holding the cells.
    screen = np.asarray(
        ah.lonlat_to_healpix(cra * u.deg, cdec * u.deg, 2**_SCREEN_ORDER, order="nested")
    )
    coarse, where = np.unique(screen, return_inverse=True)
    sra, sdec = _centres(coarse, _SCREEN_ORDER)
    observable = _observable(calc, sra, sdec, min_window_minutes)[where]
    out = ObservablePlan(
        instrument=inst,
        observable_probability=float(cell_prob[observable].sum()),
        total_cells=int(keys.size),
        observable_cells=int(observable.sum()),
    )
    # The best observable cells, integrated exactly (a margin for the coarse ranking).
    order_obs = np.flatnonzero(observable)[np.argsort(-cell_prob[observable], kind="stable")]
    out.fields_for_observable = int(np.sum(cell_prob[order_obs] >= max(min_probability, 1e-12)))
    # The coarse screen decides near a pixel's centre: check the best cells' own centres.
    best = order_obs[: 4 * max_fields + 20]
    if best.size:
        exact_ok = _observable(calc, cra[best], cdec[best], min_window_minutes)
        observable[best[~exact_ok]] = False
        best = best[exact_ok][: 2 * max_fields + 10]
    exact = field_probability(sky, inst, cra[best], cdec[best]) if best.size else np.zeros(0)
    rank = np.argsort(-exact, kind="stable")
    for i in rank:
        j = int(best[i])
        p = float(exact[i])
        choice = FieldChoice(field_name(cra[j], cdec[j]), float(cra[j]), float(cdec[j]), p, False)
        if p < min_probability:
            choice.reason = f"holds p = {p:.2g}, below the strategy's minimum {min_probability:g}"
        elif len(out.requested) >= max_fields:
            choice.reason = f"beyond the strategy's {max_fields} fields"
        else:
            choice.requested = True
        out.fields.append(choice)
    out.fields.sort(key=lambda f: (not f.requested, -f.probability))
    out.covered_probability = float(sum(f.probability for f in out.requested))
    # The better fields that cannot be observed, for the plan to say why.
    floor = min((f.probability for f in out.requested), default=0.0)
    hidden = np.flatnonzero(~observable & (cell_prob > floor))
    hidden = hidden[np.argsort(-cell_prob[hidden], kind="stable")][:max_fields]
    if hidden.size:
        exact = field_probability(sky, inst, cra[hidden], cdec[hidden])
        out.unobservable = [
            FieldChoice(field_name(cra[j], cdec[j]), float(cra[j]), float(cdec[j]), float(p), False)
            for j, p in zip(hidden, exact, strict=True)
        ]
    return out
