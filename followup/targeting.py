"""Target selection: an alert in, a ranked plan of LCO targets with visibility windows out.

:func:`plan_targets` is the single entry point the follow-up flow calls. It picks a strategy:

* ``galaxies``: the sky map has distances, a galaxy catalog is configured and the credible
  volume holds few enough galaxies for the facility (:class:`GalaxyRule`);
* ``tiling``: otherwise, fields of the chosen instrument cover the credible region, best first
  (:func:`followup.tiling.tile_skymap`); also used for error circles larger than a field;
* ``point``: a well-localised source (GRB, neutrino, X-ray or optical transient) whose error
  circle fits in one field.

Only targets observable from an LCO site in the span (airmass and Sun limits) are kept; the
others are listed in :attr:`Plan.dropped` with the reason, never silently left out.
"""

from __future__ import annotations

import io
import math
import re
import time
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
from astropy import units as u
from astropy.table import QTable
from pydantic import BaseModel, ConfigDict, Field

from followup.exceptions import CatalogError, ServiceUnavailable, TargetingError
from followup.fieldgrid import FieldChoice, plan_observable_fields
from followup.galaxies import GalaxyCatalog, WeightMode, rank_galaxies, region_cone
from followup.models import (
    Alert,
    SkyPosition,
    Target,
    TargetKind,
    UtcDatetime,
    VisibilityWindow,
    utcnow,
)
from followup.sites import Site
from followup.skymap import SkyMap, gaussian_skymap
from followup.tiling import (
    InstrumentField,
    field_name,
    get_instrument_field,
    in_field,
)
from followup.visibility import VisibilityCalculator

__all__ = [
    "DroppedTarget",
    "GalaxyRule",
    "Plan",
    "error_region_skymap",
    "pack_galaxies",
    "plan_targets",
    "plot_plan",
]

Strategy = Literal["tiling", "galaxies", "point"]


class DroppedTarget(BaseModel):
    """A target the plan would have taken but cannot observe, with the reason.

    Attributes:
        name: The target name it would have had.
        ra: Right ascension, ICRS, degrees.
        dec: Declination, ICRS, degrees.
        reason: Why it was dropped (for example never below airmass 1.6 from any site).
        kind: Field, galaxy or point.
        probability: The probability it would have added, when known.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    ra: float
    dec: float
    reason: str
    kind: TargetKind = TargetKind.FIELD
    probability: float | None = None


class GalaxyRule(BaseModel):
    """When to target galaxies instead of tiling the sky map.

    Galaxies are targeted when the map has distance layers, a catalog is given, the credible
    area is at most ``max_area_deg2``, the mean distance at most ``max_distance_mpc`` (the
    catalog's completeness) and the credible volume holds between ``min_galaxies`` and
    ``max_galaxies`` catalogued galaxies (what the facility can visit).

    Attributes:
        enabled: Switch galaxy targeting off entirely.
        level: Credible level of the region and volume.
        max_galaxies: With more galaxies in the volume, the top this many of the 3-D ranking
            are targeted (packed into fields when more than the plan's targets).
        min_galaxies: At least this many.
        max_area_deg2: Larger regions are tiled without querying the catalog.
        max_distance_mpc: Farther events are tiled (catalog incompleteness).
        weight: Galaxy weight (see :func:`followup.galaxies.rank_galaxies`).
        distance_margin_sigma: The catalog is queried to ``DISTMEAN + this * DISTSTD``.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    level: float = Field(default=0.9, gt=0, le=1)
    max_galaxies: int = Field(default=150, ge=1)
    min_galaxies: int = Field(default=1, ge=1)
    max_area_deg2: float = Field(default=400.0, gt=0)
    max_distance_mpc: float = Field(default=300.0, gt=0)
    weight: WeightMode = "auto"
    distance_margin_sigma: float = Field(default=4.0, gt=0)


class Plan(BaseModel):
    """Ranked targets for one alert, with their visibility windows.

    Attributes:
        event_id: The alert's event.
        alert_type: The alert's type (PRELIMINARY, INITIAL...).
        strategy: ``tiling``, ``galaxies`` or ``point``.
        strategy_reason: Why that strategy was chosen.
        instrument_type: LCO instrument the plan is for.
        targets: Observable targets, best first (rank 1..n), each with windows.
        dropped: Targets that would have been taken but cannot be observed, with reasons.
        level: Credible level used for the region.
        area50_deg2: 50% credible area of the map in deg2 (None without a map).
        area90_deg2: 90% credible area in deg2.
        covered_probability: Probability covered by the targets: 2-D for fields, the share
            of the galaxies' 3-D probability for galaxies, 1 for a point source.
        n_galaxies_in_volume: Catalogued galaxies in the credible volume, when counted.
        catalog: The galaxy catalog consulted, if any.
        skymap_summary: :meth:`followup.skymap.SkyMap.summary` of the map used.
        start: Start of the visibility span.
        end: End of the visibility span.
        max_airmass: Airmass limit used.
        sun_alt_max_deg: Sun altitude limit used.
        min_window_minutes: Shortest window kept.
        sites: Site codes considered.
        planning_seconds: Wall time spent planning.
        observable_probability: Probability of the map observable in the window (fields of
            the instrument's grid that can be observed), for tiling plans.
        fields_for_observable: Grid fields it would take to cover all of it.
        min_moon_distance_deg: Moon distance rule used (0: none).
    """

    model_config = ConfigDict(extra="forbid")

    event_id: str
    alert_type: str | None = None
    strategy: Strategy
    strategy_reason: str = ""
    instrument_type: str
    targets: list[Target] = Field(default_factory=list)
    dropped: list[DroppedTarget] = Field(default_factory=list)
    level: float = 0.9
    area50_deg2: float | None = None
    area90_deg2: float | None = None
    covered_probability: float = 0.0
    n_galaxies_in_volume: int | None = None
    catalog: str | None = None
    skymap_summary: dict[str, Any] | None = None
    start: UtcDatetime
    end: UtcDatetime
    max_airmass: float
    sun_alt_max_deg: float
    min_window_minutes: float
    sites: list[str] = Field(default_factory=list)
    planning_seconds: float = 0.0
    observable_probability: float | None = None
    fields_for_observable: int | None = None
    min_moon_distance_deg: float = 0.0

    def to_table(self) -> QTable:
        """The targets as a table for an artifact or a notebook.

        Columns: ``rank``, ``name``, ``kind``, ``ra`` [deg], ``dec`` [deg], ``probability``,
        ``cumulative_probability``, ``distance`` [Mpc] (NaN unless a galaxy), ``n_windows``,
        ``sites`` (comma-separated codes), ``first_start``, ``first_end`` (ISO UTC, empty
        without a window), ``observable_hours`` [h] (summed over sites, so it can exceed the
        span), ``best_airmass``.
        """
        table = QTable()
        rows = self.targets
        table["rank"] = np.array([t.rank for t in rows], dtype=int)
        table["name"] = np.array([t.name for t in rows], dtype=str)
        table["kind"] = np.array([t.kind.value for t in rows], dtype=str)
        table["ra"] = np.array([t.ra for t in rows], dtype=float) * u.deg
        table["dec"] = np.array([t.dec for t in rows], dtype=float) * u.deg
        table["probability"] = np.array([t.probability for t in rows], dtype=float)
        table["cumulative_probability"] = np.array(
            [
                np.nan if t.cumulative_probability is None else t.cumulative_probability
                for t in rows
            ],
            dtype=float,
        )
        table["distance"] = (
            np.array([np.nan if t.distance_mpc is None else t.distance_mpc for t in rows], float)
            * u.Mpc
        )
        table["n_windows"] = np.array([len(t.windows) for t in rows], dtype=int)
        table["sites"] = np.array(
            [",".join(sorted({w.site for w in t.windows})) for t in rows], dtype=str
        )
        table["first_start"] = np.array(
            [t.windows[0].start.isoformat() if t.windows else "" for t in rows], dtype=str
        )
        table["first_end"] = np.array(
            [t.windows[0].end.isoformat() if t.windows else "" for t in rows], dtype=str
        )
        table["observable_hours"] = (
            np.array([_window_hours(t.windows) for t in rows], dtype=float) * u.h
        )
        table["best_airmass"] = np.array(
            [
                min((w.min_airmass or np.inf) for w in t.windows) if t.windows else np.nan
                for t in rows
            ],
            dtype=float,
        )
        table.meta.update(
            event_id=self.event_id,
            strategy=self.strategy,
            instrument_type=self.instrument_type,
            area90_deg2=self.area90_deg2,
            covered_probability=self.covered_probability,
        )
        return table

    def dropped_table(self) -> QTable:
        """The dropped targets as a table.

        Columns: ``name``, ``kind``, ``ra`` [deg], ``dec`` [deg], ``probability``, ``reason``.
        """
        table = QTable()
        table["name"] = np.array([d.name for d in self.dropped], dtype=str)
        table["kind"] = np.array([d.kind.value for d in self.dropped], dtype=str)
        table["ra"] = np.array([d.ra for d in self.dropped], dtype=float) * u.deg
        table["dec"] = np.array([d.dec for d in self.dropped], dtype=float) * u.deg
        table["probability"] = np.array(
            [np.nan if d.probability is None else d.probability for d in self.dropped], float
        )
        table["reason"] = np.array([d.reason for d in self.dropped], dtype=str)
        return table


def _window_hours(windows: list[VisibilityWindow]) -> float:
    return sum((w.end - w.start).total_seconds() for w in windows) / 3600.0


def error_region_skymap(position: SkyPosition, *, max_order: int | None = None) -> SkyMap:
    """A Gaussian sky map matching an error circle or ellipse (its containment at its radius).

    Raises:
        TargetingError: The position has no error region or a zero radius.
    """
    error = position.error
    if error is None or not error.radius_deg > 0:
        raise TargetingError("the position has no error region to build a sky map from")
    containment = min(error.containment, 0.9999)
    scale = math.sqrt(-2 * math.log(1 - containment))
    minor = error.semi_minor_deg if error.semi_minor_deg else error.radius_deg
    return gaussian_skymap(
        position.ra,
        position.dec,
        error.radius_deg / scale,
        sigma_minor_deg=minor / scale,
        position_angle_deg=error.position_angle_deg or 0.0,
        max_order=max_order,
        object_name="error-region",
    )


_NAME_OK = re.compile(r"[^A-Za-z0-9+\-_.]")


def _target_name(raw: str, ra: float, dec: float, prefix: str) -> str:
    """A clean name (<= 30 chars, some letters) or a position-based one."""
    text = _NAME_OK.sub("_", raw.strip()).strip("_")
    if text and len(text) <= 30 and re.search(r"[A-Za-z]", text):
        return text
    return field_name(ra, dec, prefix=prefix)


def _accept_screen(calc: VisibilityCalculator, min_window_minutes: float):
    """Candidate filter: observable on at least enough consecutive-ish grid points."""
    step_min = float(calc.t[1] - calc.t[0]) / 60.0
    need = max(1, math.ceil(min_window_minutes / step_min))

    def accept(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        out = np.zeros(ra.size, dtype=bool)
        for i in range(0, ra.size, 4096):
            _, ok = calc.observable_grid(ra[i : i + 4096], dec[i : i + 4096])
            out[i : i + 4096] = (ok.sum(axis=2) >= need).any(axis=1)
        return out

    return accept


def plan_targets(
    alert: Alert,
    *,
    instrument_type: str = "1M0-SCICAM-SINISTRO",
    max_targets: int = 5,
    start: datetime | None = None,
    span_hours: float = 24.0,
    max_airmass: float = 1.6,
    sun_alt_max_deg: float = -12.0,
    catalog: GalaxyCatalog | None = None,
    galaxy_rule: GalaxyRule | None = None,
    skymap: SkyMap | None = None,
    level: float = 0.9,
    min_window_minutes: float = 10.0,
    sites: list[Site] | None = None,
    allow_empty: bool = False,
    use_combined_skymap: bool = True,
    min_moon_distance_deg: float = 0.0,
    max_moon_illumination: float = 1.0,
    min_probability: float = 0.0,
) -> Plan:
    """Plan the targets of one alert: choose a strategy, rank targets, keep the observable ones.

    Args:
        alert: The normalised alert (its ``skymap`` bytes or ``position`` are used).
        instrument_type: LCO imager to tile for (see :data:`followup.tiling.INSTRUMENT_FIELDS`).
        max_targets: At most this many targets.
        start: Start of the visibility span (default: now).
        span_hours: Length of the span in hours.
        max_airmass: Airmass limit.
        sun_alt_max_deg: The Sun must be below this altitude.
        catalog: Galaxy catalog (for example :class:`followup.galaxies.LocalGalaxyCatalog` or
            :class:`followup.galaxies.VizierGladeCatalog`); None disables galaxy targeting.
        galaxy_rule: When galaxies are targeted (default :class:`GalaxyRule`).
        skymap: An already decoded sky map of the alert (saves decoding it again).
        level: Credible level of the region to cover.
        min_window_minutes: Windows shorter than this do not count.
        sites: Sites to consider (default: all six LCO sites).
        allow_empty: Return a plan without targets instead of raising.
        use_combined_skymap: Prefer ``alert.external_coinc.combined_skymap`` (LVK + GRB) over
            ``alert.skymap`` when both are present (and no ``skymap`` is passed).
        min_moon_distance_deg: Targets closer to the Moon are not observable (0: no rule).
        max_moon_illumination: No site counts while its Moon is up and brighter than this.
        min_probability: Fields holding less probability are not requested.

    Returns:
        The plan.

    Raises:
        TargetingError: A retraction, an alert with neither map nor position, or (unless
            ``allow_empty``) no observable target.
        SkymapError: The embedded sky map is unusable.
        ValueError: Bad arguments (unknown instrument, ``max_targets < 1``...).
    """
    t0 = time.perf_counter()
    if max_targets < 1:
        raise ValueError(f"max_targets must be >= 1, got {max_targets}")
    if alert.is_retraction:
        raise TargetingError(f"{alert.event_id} was retracted: nothing to observe")
    inst = get_instrument_field(instrument_type)
    rule = galaxy_rule or GalaxyRule()
    start = start or utcnow()
    calc = VisibilityCalculator(
        start,
        span_hours=span_hours,
        sites=sites,
        max_airmass=max_airmass,
        sun_alt_max_deg=sun_alt_max_deg,
        min_moon_distance_deg=min_moon_distance_deg,
        max_moon_illumination=max_moon_illumination,
        telescope_class=inst.telescope_class,
    )
    common: dict[str, Any] = {
        "event_id": alert.event_id,
        "alert_type": alert.alert_type.value,
        "instrument_type": inst.instrument_type,
        "level": level,
        "start": calc.start_datetime,
        "end": calc.start_datetime + timedelta(seconds=calc.span_s),
        "max_airmass": max_airmass,
        "sun_alt_max_deg": sun_alt_max_deg,
        "min_window_minutes": min_window_minutes,
        "sites": [s.code for s in calc.sites],
        "min_moon_distance_deg": min_moon_distance_deg,
    }

    sky = skymap
    note = ""
    combined = alert.external_coinc.combined_skymap if alert.external_coinc else None
    if sky is None and combined and use_combined_skymap:
        # LVK's map combined with a coincident GRB's localisation is the better one.
        sky = SkyMap.from_fits(combined)
        observatory = alert.external_coinc.observatory or "the external"
        note = f"sky map combined with {observatory} localisation; "
    if sky is None and alert.skymap:
        sky = SkyMap.from_fits(alert.skymap)
    if sky is not None:
        plan = _plan_skymap(
            sky, inst, calc, rule, catalog, max_targets, level, min_window_minutes, min_probability
        )
        plan["strategy_reason"] = note + plan["strategy_reason"]
        plan = Plan(**common, **plan)
    elif alert.position is not None:
        plan = Plan(
            **common,
            **_plan_position(alert, inst, calc, max_targets, level, min_window_minutes),
        )
    else:
        where = f" (sky map at {alert.skymap_url}: fetch it first)" if alert.skymap_url else ""
        raise TargetingError(f"{alert.event_id} has neither a sky map nor a position{where}")
    plan.planning_seconds = round(time.perf_counter() - t0, 4)
    if not plan.targets and not allow_empty:
        reasons = "; ".join(sorted({d.reason for d in plan.dropped})) or "no candidate target"
        raise TargetingError(f"no observable target for {alert.event_id}: {reasons}")
    return plan


def _plan_skymap(
    sky: SkyMap,
    inst: InstrumentField,
    calc: VisibilityCalculator,
    rule: GalaxyRule,
    catalog: GalaxyCatalog | None,
    max_targets: int,
    level: float,
    min_window_minutes: float,
    min_probability: float = 0.0,
) -> dict[str, Any]:
    summary = sky.summary()
    base = {
        "area50_deg2": summary["area50_deg2"],
        "area90_deg2": summary["area90_deg2"],
        "skymap_summary": summary,
    }
    galaxy_plan, reason, n_in, catalog_name = _maybe_galaxies(
        sky,
        calc,
        rule,
        catalog,
        max_targets,
        min_window_minutes,
        inst=inst,
        min_probability=min_probability,
    )
    if galaxy_plan is not None:
        return {
            **base,
            **galaxy_plan,
            "strategy_reason": reason,
            "n_galaxies_in_volume": n_in,
            "catalog": catalog_name,
        }
    tiled = _plan_tiling(sky, inst, calc, max_targets, level, min_window_minutes, min_probability)
    return {
        **base,
        **tiled,
        "strategy_reason": reason,
        "n_galaxies_in_volume": n_in,
        "catalog": catalog_name,
    }


def _maybe_galaxies(
    sky: SkyMap,
    calc: VisibilityCalculator,
    rule: GalaxyRule,
    catalog: GalaxyCatalog | None,
    max_targets: int,
    min_window_minutes: float,
    *,
    inst: InstrumentField | None = None,
    min_probability: float = 0.0,
) -> tuple[dict[str, Any] | None, str, int | None, str | None]:
    """Galaxy targets when the rule allows, else ``None`` with the reason for tiling."""
    if not rule.enabled:
        return None, "galaxy targeting disabled", None, None
    if catalog is None:
        return None, "no galaxy catalog configured", None, None
    name = getattr(catalog, "name", type(catalog).__name__)
    if not sky.has_distance or sky.distance_mean is None:
        return None, "the sky map has no distance information", None, name
    area = sky.area(rule.level)
    if area > rule.max_area_deg2:
        return (
            None,
            f"{rule.level:.0%} area {area:.0f} deg2 > {rule.max_area_deg2:g} deg2 for galaxies",
            None,
            name,
        )
    mean, std = sky.distance_mean, sky.distance_std or 0.0
    if mean > rule.max_distance_mpc:
        return (
            None,
            f"distance {mean:.0f} Mpc beyond the catalog limit {rule.max_distance_mpc:g} Mpc",
            None,
            name,
        )
    ra0, dec0, radius = region_cone(sky, rule.level)
    try:
        galaxies = catalog.query(
            ra=ra0,
            dec=dec0,
            radius_deg=radius,
            max_distance_mpc=mean + rule.distance_margin_sigma * std,
        )
    except (CatalogError, ServiceUnavailable) as exc:
        return None, f"galaxy catalog unavailable ({exc}); tiling instead", None, name
    ranked = rank_galaxies(sky, galaxies, level=rule.level, weight=rule.weight)
    members = ranked[ranked["in_volume"]]
    n_in = len(members)
    if n_in < rule.min_galaxies:
        return None, f"{n_in} catalogued galaxies in the {rule.level:.0%} volume", n_in, name
    reason = f"{n_in} catalogued galaxies in the {rule.level:.0%} volume"
    if n_in > rule.max_galaxies:
        # More than the facility can visit: the best of the 3-D ranking, not tiling instead.
        members = members[: rule.max_galaxies]
        reason += f" (> {rule.max_galaxies}: the top {rule.max_galaxies} of the 3-D ranking)"
    else:
        reason += f" (<= {rule.max_galaxies})"
    reason += f", weight {ranked.meta['weight_mode']}"
    ra = members["ra"].to_value(u.deg)
    dec = members["dec"].to_value(u.deg)
    prob = np.clip(np.asarray(members["probability"], dtype=float), 0.0, None)
    if len(members) > max_targets and inst is not None:
        groups = pack_galaxies(ra, dec, prob, inst)
        reason += f", packed into {len(groups)} {inst.instrument_type} field(s)"
    else:
        groups = [[i] for i in range(len(members))]
    leads = [g[0] for g in groups]
    vis = calc.windows(ra[leads], dec[leads], min_window_minutes=min_window_minutes)
    targets: list[Target] = []
    dropped: list[DroppedTarget] = []
    used: set[str] = set()
    cumulative = 0.0
    for group, windows, why in zip(groups, vis.windows, vis.reasons, strict=True):
        if len(targets) >= max_targets:
            break
        i = group[0]
        tname = _target_name(str(members["name"][i]), ra[i], dec[i], "G")
        if tname in used:
            tname = field_name(ra[i], dec[i], prefix="G")
        used.add(tname)
        p = float(prob[group].sum())
        if p < min_probability:
            why = f"holds p = {p:.2g}, below the strategy's minimum {min_probability:g}"
            windows = []
        if not windows:
            dropped.append(
                DroppedTarget(
                    name=tname,
                    ra=float(ra[i]),
                    dec=float(dec[i]),
                    reason=why,
                    kind=TargetKind.GALAXY,
                    probability=p,
                )
            )
            continue
        cumulative += p
        dist = float(members["distance"][i].to_value(u.Mpc))
        targets.append(
            Target(
                name=tname,
                ra=float(ra[i]) % 360.0,
                dec=float(dec[i]),
                kind=TargetKind.GALAXY,
                rank=len(targets) + 1,
                probability=min(max(p, 0.0), 1.0),
                cumulative_probability=min(cumulative, 1.0),
                distance_mpc=dist if math.isfinite(dist) else None,
                instrument_type=inst.instrument_type if len(group) > 1 and inst else None,
                windows=windows,
            )
        )
    return (
        {
            "strategy": "galaxies",
            "targets": targets,
            "dropped": dropped,
            "covered_probability": min(cumulative, 1.0),
        },
        reason,
        n_in,
        name,
    )


def pack_galaxies(
    ra: np.ndarray, dec: np.ndarray, probability: np.ndarray, inst: InstrumentField
) -> list[list[int]]:
    """Galaxies packed into fields of the instrument, best field first.

    Each field is centred on the best galaxy not yet in a field and takes every other such galaxy
    inside it (a 5% margin within the field's edges for the pointing); fields are ordered by the
    summed probability of their galaxies.

    Args:
        ra: Galaxy RA in degrees, best of the 3-D ranking first.
        dec: Galaxy Dec in degrees.
        probability: Each galaxy's probability.
        inst: The instrument's field.

    Returns:
        Indices of the galaxies of each field, its central galaxy first.
    """
    n = len(ra)
    taken = np.zeros(n, dtype=bool)
    groups: list[list[int]] = []
    width, height = 0.95 * inst.width_deg, 0.95 * inst.height_deg
    for i in range(n):
        if taken[i]:
            continue
        inside = in_field(ra[i], dec[i], ra, dec, width, height) & ~taken
        inside[i] = True
        members = [i, *(int(j) for j in np.flatnonzero(inside) if j != i)]
        taken[members] = True
        groups.append(members)
    return sorted(groups, key=lambda g: -float(np.sum(probability[g])))


def _dropped_field(choice: FieldChoice, reason: str) -> DroppedTarget:
    """A grid field the plan leaves out, with the reason."""
    return DroppedTarget(
        name=choice.name,
        ra=choice.ra,
        dec=choice.dec,
        reason=reason,
        probability=choice.probability,
    )


def _plan_tiling(
    sky: SkyMap,
    inst: InstrumentField,
    calc: VisibilityCalculator,
    max_targets: int,
    level: float,
    min_window_minutes: float,
    min_probability: float = 0.0,
) -> dict[str, Any]:
    """Fields of the instrument's fixed grid holding the most observable probability."""
    grid = plan_observable_fields(
        sky,
        inst,
        calc,
        max_fields=max_targets,
        min_probability=min_probability,
        min_window_minutes=min_window_minutes,
        level=max(level, 0.99),
    )
    chosen = grid.requested
    vis = calc.windows(
        [f.ra for f in chosen], [f.dec for f in chosen], min_window_minutes=min_window_minutes
    )
    targets: list[Target] = []
    dropped: list[DroppedTarget] = []
    cumulative = 0.0
    for choice, windows, reason in zip(chosen, vis.windows, vis.reasons, strict=True):
        if not windows:  # screened on a coarse grid: the exact windows have the last word
            dropped.append(_dropped_field(choice, reason))
            continue
        cumulative += choice.probability
        targets.append(
            Target(
                name=choice.name,
                ra=choice.ra % 360.0,
                dec=choice.dec,
                kind=TargetKind.FIELD,
                rank=len(targets) + 1,
                probability=min(max(choice.probability, 0.0), 1.0),
                cumulative_probability=min(cumulative, 1.0),
                instrument_type=inst.instrument_type,
                windows=windows,
            )
        )
    for choice in grid.fields:
        if not choice.requested and choice.probability < min_probability:
            dropped.append(_dropped_field(choice, choice.reason))
    if grid.unobservable:
        hidden = calc.windows(
            [f.ra for f in grid.unobservable],
            [f.dec for f in grid.unobservable],
            min_window_minutes=min_window_minutes,
        )
        for choice, reason in zip(grid.unobservable, hidden.reasons, strict=True):
            dropped.append(
                _dropped_field(
                    choice, reason or f"observable for less than {min_window_minutes:g} min"
                )
            )
    return {
        "strategy": "tiling",
        "targets": targets,
        "dropped": dropped,
        "covered_probability": min(cumulative, 1.0),
        "observable_probability": round(grid.observable_probability, 6),
        "fields_for_observable": grid.fields_for_observable,
    }


def _plan_position(
    alert: Alert,
    inst: InstrumentField,
    calc: VisibilityCalculator,
    max_targets: int,
    level: float,
    min_window_minutes: float,
) -> dict[str, Any]:
    position = alert.position
    assert position is not None
    error = position.error
    radius = error.radius_deg if error is not None else 0.0
    # The circle fits when it stays inside the field even with a pointing offset of 10%.
    fits = radius <= 0.4 * min(inst.width_deg, inst.height_deg)
    if not fits:
        sky = error_region_skymap(position)
        tiled = _plan_tiling(sky, inst, calc, max_targets, level, min_window_minutes)
        summary = sky.summary()
        return {
            **tiled,
            "strategy_reason": (
                f"error radius {radius:.3g} deg is larger than the {inst.instrument_type} field"
            ),
            "area50_deg2": summary["area50_deg2"],
            "area90_deg2": summary["area90_deg2"],
            "skymap_summary": summary,
        }
    raw = alert.event_id
    if not re.search(r"[A-Za-z]", raw):  # a bare trigger number: say whose it is
        raw = f"{alert.source}-{raw}"
    name = _target_name(raw, position.ra, position.dec, "P")
    vis = calc.windows(position.ra, position.dec, min_window_minutes=min_window_minutes)
    targets: list[Target] = []
    dropped: list[DroppedTarget] = []
    if vis.windows[0]:
        targets.append(
            Target(
                name=name,
                ra=position.ra,
                dec=position.dec,
                kind=TargetKind.POINT,
                rank=1,
                probability=1.0,
                cumulative_probability=1.0,
                windows=vis.windows[0],
            )
        )
    else:
        dropped.append(
            DroppedTarget(
                name=name,
                ra=position.ra,
                dec=position.dec,
                reason=vis.reasons[0],
                kind=TargetKind.POINT,
                probability=1.0,
            )
        )
    area = math.pi * radius**2 if radius else 0.0
    return {
        "strategy": "point",
        "strategy_reason": (
            f"error radius {radius:.3g} deg fits in one {inst.instrument_type} field"
            if radius
            else "position without an error region"
        ),
        "targets": targets,
        "dropped": dropped,
        "covered_probability": 1.0 if targets else 0.0,
        "area90_deg2": round(area, 6) if error is not None else None,
    }


# --------------------------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------------------------


def _field_outline(
    ra0: float, dec0: float, width: float, height: float, n: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """RA/Dec (deg) of a field's outline: the tangent-plane rectangle, de-projected."""
    tx, ty = math.tan(math.radians(width) / 2), math.tan(math.radians(height) / 2)
    side = np.linspace(-1, 1, n)
    xi = np.concatenate([side * tx, np.full(n, tx), -side * tx, np.full(n, -tx)])
    eta = np.concatenate([np.full(n, -ty), side * ty, np.full(n, ty), -side * ty])
    d0, a0 = math.radians(dec0), math.radians(ra0)
    rho = np.hypot(xi, eta)
    c = np.arctan(rho)
    with np.errstate(invalid="ignore", divide="ignore"):
        dec = np.arcsin(
            np.cos(c) * math.sin(d0) + np.where(rho > 0, eta * np.sin(c) * math.cos(d0) / rho, 0)
        )
        ra = a0 + np.arctan2(
            xi * np.sin(c), rho * math.cos(d0) * np.cos(c) - eta * math.sin(d0) * np.sin(c)
        )
    return np.degrees(ra), np.degrees(dec)


def plot_plan(skymap: SkyMap | None, plan: Plan, *, dpi: int = 100) -> bytes:
    """A PNG of the plan: the map, its 50%/90% contours and the chosen fields or galaxies.

    Left: the whole sky (Mollweide, RA increasing to the left). Right: a zoom on the targets.
    Dropped targets are drawn in grey. Uses matplotlib's Agg canvas (no display needed).

    Args:
        skymap: The map the plan came from (None for a point source without a map).
        plan: The plan.
        dpi: Resolution of the PNG.

    Returns:
        PNG bytes.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 5.6))
    FigureCanvasAgg(fig)
    ax_sky = fig.add_subplot(1, 2, 1, projection="mollweide")
    ax_zoom = fig.add_subplot(1, 2, 2)
    title = f"{plan.event_id} {plan.alert_type or ''}: {plan.strategy}, {len(plan.targets)} targets"
    if plan.area90_deg2 is not None:
        title += f", 90% area {plan.area90_deg2:.1f} deg2"
    title += f", covered {plan.covered_probability:.1%}"
    fig.suptitle(title)

    inst = get_instrument_field(plan.instrument_type)
    pts_ra = np.array([t.ra for t in plan.targets] + [d.ra for d in plan.dropped], dtype=float)
    pts_dec = np.array([t.dec for t in plan.targets] + [d.dec for d in plan.dropped], dtype=float)
    if skymap is not None:
        peak_ra, peak_dec, _ = skymap.peak
        centre_ra, centre_dec = peak_ra, peak_dec
    elif pts_ra.size:
        centre_ra, centre_dec = float(pts_ra[0]), float(pts_dec[0])
    else:
        centre_ra, centre_dec = 0.0, 0.0

    # Whole sky.
    if skymap is not None:
        lon = np.linspace(0, 360, 361)
        lat = np.linspace(-90, 90, 181)
        glon, glat = np.meshgrid(lon, lat)
        dens = np.asarray(skymap.density(glon.ravel(), glat.ravel())).reshape(glon.shape)
        x = np.radians(180 - glon)  # RA to the left, 180 deg at the left edge
        ax_sky.pcolormesh(x, np.radians(glat), dens, cmap="viridis", shading="auto")
        levels = np.asarray(skymap.searched_probability(glon.ravel(), glat.ravel())).reshape(
            glon.shape
        )
        ax_sky.contour(
            x, np.radians(glat), levels, levels=[0.5, 0.9], colors=["w", "w"], linewidths=[0.6, 1.0]
        )
    if pts_ra.size:
        ax_sky.plot(np.radians(180 - pts_ra), np.radians(pts_dec), "r+", ms=6)
    ax_sky.set_xticks(np.radians([150, 120, 90, 60, 30, 0, -30, -60, -90, -120, -150]))
    ax_sky.set_xticklabels(
        ["30", "60", "90", "120", "150", "180", "210", "240", "270", "300", "330"]
    )
    ax_sky.grid(True, alpha=0.3)
    ax_sky.set_title("whole sky (RA, Dec in deg)")

    # Zoom: RA offsets folded around the centre, x inverted (east left).
    def xoff(ra: np.ndarray | float) -> np.ndarray:
        return centre_ra + ((np.asarray(ra) - centre_ra + 180) % 360 - 180)

    half = 2.0
    if pts_ra.size:
        half = max(half, float(np.max(np.abs(pts_dec - centre_dec))) + 2 * inst.height_deg)
        cosd = max(math.cos(math.radians(centre_dec)), 0.05)
        half = max(
            half, float(np.max(np.abs(xoff(pts_ra) - centre_ra))) * cosd + 2 * inst.width_deg
        )
    if skymap is not None:
        half = max(half, min(math.sqrt(skymap.area(0.9)) * 0.8, 40.0))
    half = min(half, 60.0)
    cosd = max(math.cos(math.radians(centre_dec)), 0.05)
    ra_lo, ra_hi = centre_ra - half / cosd, centre_ra + half / cosd
    dec_lo, dec_hi = max(centre_dec - half, -90), min(centre_dec + half, 90)
    if skymap is not None:
        zr = np.linspace(ra_lo, ra_hi, 300)
        zd = np.linspace(dec_lo, dec_hi, 240)
        gr, gd = np.meshgrid(zr, zd)
        dens = np.asarray(skymap.density(np.mod(gr.ravel(), 360), gd.ravel())).reshape(gr.shape)
        ax_zoom.pcolormesh(gr, gd, dens, cmap="viridis", shading="auto")
        lv = np.asarray(skymap.searched_probability(np.mod(gr.ravel(), 360), gd.ravel())).reshape(
            gr.shape
        )
        ax_zoom.contour(gr, gd, lv, levels=[0.5, 0.9], colors=["w", "w"], linewidths=[0.6, 1.2])
    for t in plan.targets:
        if t.kind is TargetKind.FIELD:
            fr, fd = _field_outline(t.ra, t.dec, inst.width_deg, inst.height_deg)
            ax_zoom.plot(xoff(fr), fd, "r-", lw=0.9)
            ax_zoom.annotate(
                str(t.rank),
                (float(xoff(t.ra)), t.dec),
                color="r",
                fontsize=7,
                ha="center",
                va="center",
            )
        elif t.kind is TargetKind.GALAXY:
            ax_zoom.plot(
                xoff(t.ra), t.dec, "o", mfc="none", mec="r", ms=4 + 30 * math.sqrt(t.probability)
            )
        else:
            ax_zoom.plot(xoff(t.ra), t.dec, "r*", ms=12)
            fr, fd = _field_outline(t.ra, t.dec, inst.width_deg, inst.height_deg)
            ax_zoom.plot(xoff(fr), fd, "r--", lw=0.8)
    for d in plan.dropped:
        if d.kind is TargetKind.FIELD:
            fr, fd = _field_outline(d.ra, d.dec, inst.width_deg, inst.height_deg)
            ax_zoom.plot(xoff(fr), fd, "-", color="0.6", lw=0.8)
        else:
            ax_zoom.plot(xoff(d.ra), d.dec, "x", color="0.6")
    ax_zoom.set_xlim(ra_hi, ra_lo)
    ax_zoom.set_ylim(dec_lo, dec_hi)
    ax_zoom.set_aspect(1 / cosd)
    ax_zoom.set_xlabel("RA (deg)")
    ax_zoom.set_ylabel("Dec (deg)")
    ax_zoom.set_title("targets (red), not observable (grey), 50%/90% contours")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
