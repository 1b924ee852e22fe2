"""Command-line tools of the domain core (no Prefect): inspect alerts, sky maps, plans and frames.

The console script ``followup`` (``deployments.cli``) adds the commands that need Prefect or the
local stack (``demo``, ``listen``, ``sandbox``...) to this Typer app.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer

__all__ = ["app"]

app = typer.Typer(
    name="followup",
    help="Multi-messenger follow-up: alerts to LCO images to HERMES, TNS and GCN reports.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _group() -> None:
    """Multi-messenger follow-up: alerts to LCO images to HERMES, TNS and GCN reports."""


@app.command()
def version() -> None:
    """Print the followup version."""
    from followup import __version__

    typer.echo(__version__)


# ---------------------------------------------------------------------------------------------
# reporting (HERMES, TNS, GCN)
# ---------------------------------------------------------------------------------------------


@app.command("render-report")
def render_report(
    path: str = typer.Argument(
        ..., help="JSON file: a HERMES message, an AT report ({'at_report': ...}) or a Circular."
    ),
) -> None:
    """Print the markdown an approver would see for an outgoing report."""
    import json
    from pathlib import Path

    from followup.reporting.render import render_markdown

    try:
        payload = json.loads(Path(path).read_text())
        typer.echo(render_markdown(payload), nl=False)
    except (OSError, ValueError, TypeError) as exc:
        typer.echo(f"cannot render {path}: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command("gcn-subject")
def gcn_subject(subject: str = typer.Argument(..., help="A GCN Circular subject line.")) -> None:
    """Check a subject against GCN's rule (exit 1 when GCN would refuse it)."""
    from followup.reporting.gcn import parse_event_from_subject, subject_is_valid

    if subject_is_valid(subject):
        typer.echo(f"valid; GCN derives event id: {parse_event_from_subject(subject)}")
        return
    typer.echo(
        "invalid: GCN would refuse it (no known keyword or event name, or looks like an auto-reply)"
    )
    raise typer.Exit(1)


# --------------------------------------------------------------------------------------------
# targeting (area: targeting): sky maps and target plans
# --------------------------------------------------------------------------------------------


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _start_time(start: str | None) -> datetime:
    """The ``--start`` option as a UTC time (a naive one is read as UTC); now without it."""
    if not start:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(start.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _fail(f"--start {start!r} is not an ISO date") from exc
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@app.command("skymap")
def skymap_command(
    file: str = typer.Argument(..., help="Sky map FITS file (multi-order or flat, .gz ok)."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Summarise a sky map: 50%/90% areas, peak position and density, distance."""
    import json

    from followup.exceptions import SkymapError
    from followup.skymap import read_skymap

    try:
        summary = read_skymap(file).summary()
    except SkymapError as exc:
        raise _fail(str(exc)) from exc
    if json_output:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    typer.echo(f"object        {summary['object'] or '-'}")
    typer.echo(f"area50        {summary['area50_deg2']:.2f} deg2")
    typer.echo(f"area90        {summary['area90_deg2']:.2f} deg2")
    typer.echo(
        f"peak          RA {summary['peak_ra']:.4f}  Dec {summary['peak_dec']:+.4f}  "
        f"{summary['peak_density_deg2']:.6g} /deg2"
    )
    if summary["distance_mean_mpc"] is not None:
        typer.echo(
            f"distance      {summary['distance_mean_mpc']:.1f} +/- "
            f"{summary['distance_std_mpc']:.1f} Mpc"
        )
    else:
        typer.echo("distance      -")
    typer.echo(f"pixels        {summary['n_pixels']} (max order {summary['max_order']})")


@app.command("plan")
def plan_command(
    alert_file: str | None = typer.Argument(
        None, help="An alert in any format the listener takes: planned as the pipeline would."
    ),
    skymap: str | None = typer.Option(None, "--skymap", help="Sky map FITS file."),
    ra: float | None = typer.Option(None, "--ra", help="Source RA in degrees."),
    dec: float | None = typer.Option(None, "--dec", help="Source Dec in degrees."),
    radius: float = typer.Option(0.0, "--radius", help="Error radius (90%) in degrees."),
    catalog: str | None = typer.Option(None, "--catalog", help="Galaxy catalog file."),
    instrument: str = typer.Option("1M0-SCICAM-SINISTRO", "--instrument", help="LCO imager."),
    max_targets: int | None = typer.Option(
        None,
        "--max-targets",
        min=1,
        help="At most this many targets (default: the strategy's, else 5).",
    ),
    start: str | None = typer.Option(None, "--start", help="Span start, ISO UTC (default now)."),
    span_hours: float = typer.Option(24.0, "--span-hours", help="Visibility span in hours."),
    max_airmass: float | None = typer.Option(
        None, "--max-airmass", help="Airmass limit (default: the strategy's, else 1.6)."
    ),
    allow_hosts: str = typer.Option(
        "", "--allow-hosts", help="Also fetch sky maps from these hosts (comma-separated)."
    ),
    event_id: str | None = typer.Option(None, "--event-id", help="Name for the event."),
    plot: str | None = typer.Option(None, "--plot", help="Write a PNG of the plan here."),
    json_output: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Plan LCO targets for an alert, a sky map or a position: ranked, with windows and sites.

    With ALERT_FILE the alert is parsed as the listener parses it, its sky map fetched when it
    only carries a URL, and the strategy the pipeline would choose sets the instrument, airmass,
    Moon distance and number of targets.
    """
    from pathlib import Path

    from followup.exceptions import FollowupError
    from followup.galaxies import LocalGalaxyCatalog
    from followup.models import Alert, AlertKind, AlertType, ErrorRegion, SkyPosition
    from followup.skymap import read_skymap
    from followup.targeting import plan_targets, plot_plan

    if alert_file is not None:
        if skymap is not None or ra is not None:
            raise _fail("give an ALERT_FILE, or --skymap, or --ra and --dec: one of them")
        _plan_alert_file(
            alert_file,
            start,
            max_targets,
            max_airmass,
            [h.strip() for h in allow_hosts.split(",") if h.strip()],
            json_output,
        )
        return
    if (skymap is None) == (ra is None or dec is None):
        raise _fail("give either --skymap FILE or --ra and --dec (with --radius)")
    max_targets = max_targets or 5
    max_airmass = max_airmass or 1.6
    when = _start_time(start)
    try:
        sky = read_skymap(skymap) if skymap else None
        if sky is not None:
            alert = Alert(
                source="cli",
                kind=AlertKind.GW,
                format="fits",
                event_id=event_id or sky.object_name or Path(skymap or "skymap").stem,
                alert_type=AlertType.PRELIMINARY,
                issued_at=when,
            )
        else:
            position = SkyPosition(
                ra=float(ra) % 360.0,
                dec=float(dec),
                error=ErrorRegion(radius_deg=radius) if radius > 0 else None,
            )
            alert = Alert(
                source="cli",
                kind=AlertKind.OTHER,
                format="cli",
                event_id=event_id or "position",
                alert_type=AlertType.INITIAL,
                issued_at=when,
                position=position,
            )
        plan = plan_targets(
            alert,
            instrument_type=instrument,
            max_targets=max_targets,
            start=when,
            span_hours=span_hours,
            max_airmass=max_airmass,
            catalog=LocalGalaxyCatalog(catalog) if catalog else None,
            skymap=sky,
            allow_empty=True,
        )
        if plot:
            Path(plot).write_bytes(plot_plan(sky, plan))
    except (FollowupError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    if json_output:
        typer.echo(plan.model_dump_json(indent=2))
        return
    typer.echo(
        f"{plan.event_id}: {plan.strategy} ({plan.strategy_reason}); "
        f"{len(plan.targets)} targets, covered probability {plan.covered_probability:.3f}"
    )
    if plan.area90_deg2 is not None:
        typer.echo(f"area90 {plan.area90_deg2:.2f} deg2")
    for t in plan.targets:
        first = t.windows[0]
        sites = ",".join(sorted({w.site for w in t.windows}))
        extra = f" {t.distance_mpc:.0f} Mpc" if t.distance_mpc else ""
        typer.echo(
            f"{t.rank:3d} {t.name:30s} {t.ra:9.4f} {t.dec:+8.4f} p={t.probability:.4f}"
            f"{extra}  first {first.site} {first.start:%Y-%m-%d %H:%M}-{first.end:%H:%M} UTC"
            f"  sites {sites}"
        )
    for d in plan.dropped:
        typer.echo(f"  dropped {d.name} ({d.ra:.4f}, {d.dec:+.4f}): {d.reason}")


def _plan_alert_file(
    path: str,
    start: str | None,
    max_targets: int | None,
    max_airmass: float | None,
    allow_host: list[str],
    json_output: bool,
) -> None:
    """``followup plan ALERT_FILE``: the pipeline's strategy and planning for one alert."""
    import json
    from pathlib import Path

    from followup.alerts import parse_message
    from followup.exceptions import FollowupError
    from followup.skymap.fetch import SkymapFetcher, allowed_skymap_hosts, with_fetched_skymap
    from followup.strategies import choose_strategy, estimate_hours, load_strategies
    from followup.targeting import plan_targets

    when = _start_time(start)
    try:
        alert = parse_message(Path(path).read_bytes())
        if alert.skymap is None and alert.skymap_url:
            with SkymapFetcher(allowed_skymap_hosts(allow_host)) as fetcher:
                alert = with_fetched_skymap(alert, fetcher)
        strategy = choose_strategy(alert, load_strategies())
        plan = plan_targets(
            alert,
            instrument_type=strategy.instrument_type,
            max_targets=max_targets or strategy.max_targets,
            start=when,
            span_hours=strategy.window_hours,
            max_airmass=max_airmass or strategy.max_airmass,
            min_moon_distance_deg=strategy.min_lunar_distance_deg,
            min_probability=strategy.min_probability,
            allow_empty=True,
        )
    except (FollowupError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from exc
    hours = estimate_hours(strategy, n_requests=len(plan.targets) * strategy.epochs)
    if json_output:
        typer.echo(
            json.dumps(
                {
                    "strategy": strategy.model_dump(mode="json"),
                    "hours": round(hours, 3),
                    "plan": plan.model_dump(mode="json"),
                },
                indent=2,
            )
        )
        return
    typer.echo(
        f"{alert.event_id} {alert.alert_type.value} ({alert.source}, {alert.format}): "
        f"strategy {strategy.name}"
    )
    exposures = ", ".join(
        f"{f} {strategy.exposure_time_per_filter_s.get(f, strategy.exposure_time_s):g} s"
        for f in strategy.filters
    )
    typer.echo(
        f"  {strategy.instrument_type}: {exposures} x{strategy.exposure_count}; "
        f"{strategy.epochs} epoch(s) every {strategy.cadence_hours:g} h; "
        f"airmass <= {plan.max_airmass:g}, Moon >= {strategy.min_lunar_distance_deg:g} deg"
    )
    typer.echo(
        f"  {plan.strategy}: {len(plan.targets)} target(s), {hours:.2f} h of telescope time, "
        f"covering {100 * plan.covered_probability:.2f}% of the probability"
        + (
            f" ({100 * plan.observable_probability:.1f}% is observable in the next "
            f"{strategy.window_hours:g} h; {plan.fields_for_observable} fields would cover it)"
            if plan.observable_probability is not None
            else ""
        )
    )
    for t in plan.targets:
        first = t.windows[0]
        typer.echo(
            f"  {t.rank:3d} {t.name:24s} {t.ra:9.4f} {t.dec:+8.4f} p={t.probability:.4f}  "
            f"next observable {first.start:%Y-%m-%d %H:%M} UTC from {first.site}"
        )
    for d in plan.dropped:
        typer.echo(f"  not requested {d.name}: {d.reason}")


# ---------------------------------------------------------------------------------------------
# alerts (area: alerts): inspect and publish alerts
# ---------------------------------------------------------------------------------------------


def _read_file(path: str) -> bytes:
    """The bytes of ``path``; exit 2 with the reason when it cannot be read."""
    from pathlib import Path

    try:
        return Path(path).read_bytes()
    except OSError as exc:
        typer.echo(f"cannot read {path}: {exc}", err=True)
        raise typer.Exit(2) from exc


def _skymap_area90(data: bytes) -> tuple[float | None, str | None]:
    """The 90% credible area of sky-map bytes via followup.skymap, when that module exists."""
    import importlib

    try:
        skymap = importlib.import_module("followup.skymap")
    except ImportError:
        return None, "followup.skymap is not installed"
    try:
        reader = getattr(skymap, "read_skymap", None)
        sky = reader(data) if reader is not None else skymap.SkyMap.from_fits(data)
        return float(sky.area(0.9)), None
    except Exception as exc:  # a damaged map must not stop the inspection
        return None, f"{type(exc).__name__}: {exc}"


def _skymap_summary(data: bytes | None) -> dict[str, object] | None:
    from followup.alerts.fields import skymap_summary

    if data is None:
        return None
    summary = skymap_summary(data)
    area, note = _skymap_area90(data)
    summary["area90_deg2"] = area
    if note:
        summary["area_note"] = note
    return summary


def _alert_document(alert: object) -> dict[str, object]:
    from followup.models import Alert

    assert isinstance(alert, Alert)
    document = alert.model_dump(mode="json")
    document["skymap"] = _skymap_summary(alert.skymap)
    if alert.external_coinc is not None and isinstance(document.get("external_coinc"), dict):
        document["external_coinc"]["combined_skymap"] = _skymap_summary(  # type: ignore[index]
            alert.external_coinc.combined_skymap
        )
    return document


def _alert_text(document: dict[str, object]) -> str:
    def probabilities(values: object) -> str:
        if not isinstance(values, dict) or not values:
            return "-"
        return ", ".join(f"{k} {v:.3g}" for k, v in values.items())

    lines = [
        f"title:          {document.get('title') or '-'}",
        f"format:         {document['format']}",
        f"source:         {document['source']} ({document['kind']})",
        f"event:          {document['event_id']}  {document['alert_type']}",
        f"issued:         {document['issued_at']}",
        f"event time:     {document.get('event_time') or '-'}",
    ]
    if document.get("is_test"):
        reason = document.get("extra", {}).get("test_reason", "")  # type: ignore[union-attr]
        lines.append(f"test/drill:     yes {f'({reason})' if reason else ''}".rstrip())
    far = document.get("far_hz")
    if far is not None:
        per_year = f" (1 per {1 / (far * 3.15576e7):.3g} yr)" if far > 0 else ""
        lines.append(f"FAR:            {far:.3g} Hz{per_year}")
    if document.get("significant") is not None:
        lines.append(f"significant:    {'yes' if document['significant'] else 'no'}")
    if document.get("classification"):
        lines.append(f"classification: {probabilities(document['classification'])}")
    if document.get("properties"):
        lines.append(f"properties:     {probabilities(document['properties'])}")
    for key, label in (("group", "group"), ("pipeline", "pipeline"), ("search", "search")):
        if document.get(key):
            lines.append(f"{label + ':':<16}{document[key]}")
    if document.get("instruments"):
        lines.append(f"instruments:    {', '.join(document['instruments'])}")  # type: ignore[arg-type]
    position = document.get("position")
    if isinstance(position, dict):
        error = position.get("error")
        extent = ""
        if isinstance(error, dict):
            extent = f" ± {error['radius_deg']:.4g} deg ({error['containment']:.0%})"
        lines.append(f"position:       RA {position['ra']:.5f}  Dec {position['dec']:+.5f}{extent}")
    skymap = document.get("skymap")
    if isinstance(skymap, dict):
        area = skymap.get("area90_deg2")
        area_text = f"90% area {area:.4g} deg2" if area is not None else skymap.get("area_note")
        lines.append(f"sky map:        {skymap['bytes']} bytes; {area_text}")
    elif document.get("extra", {}).get("skymap_error"):  # type: ignore[union-attr]
        lines.append(f"sky map:        unusable: {document['extra']['skymap_error']}")  # type: ignore[index]
    if document.get("skymap_url"):
        lines.append(f"sky map URL:    {document['skymap_url']}")
    if document.get("distance_mpc") is not None:
        err = document.get("distance_err_mpc")
        spread = f" ± {err:.3g}" if err is not None else ""
        lines.append(f"distance:       {document['distance_mpc']:.4g}{spread} Mpc")
    coinc = document.get("external_coinc")
    if isinstance(coinc, dict):
        lines.append(
            f"external:       {coinc.get('observatory')} {coinc.get('search')}, "
            f"dt {coinc.get('time_difference_s')} s"
        )
    for name, url in (document.get("urls") or {}).items():  # type: ignore[union-attr]
        lines.append(f"url {name + ':':<11} {url}")
    notice_type = document.get("extra", {}).get("notice_type")  # type: ignore[union-attr]
    if notice_type:
        lines.append(f"notice type:    {notice_type}")
    return "\n".join(lines)


@app.command("parse")
def parse_alert(
    path: str = typer.Argument(..., help="An alert, notice, VOEvent or circular file."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the normalised alert as JSON (sky maps summarised)."
    ),
) -> None:
    """Parse an alert of any supported format and print it normalised (exit 2 when invalid)."""
    import json

    from followup.alerts import parse_message
    from followup.exceptions import AlertParseError

    raw = _read_file(path)
    try:
        alert = parse_message(raw)
    except AlertParseError as exc:
        if as_json:
            typer.echo(json.dumps({"error": exc.reason, "detail": exc.detail}, indent=2))
        typer.echo(f"{path}: not a valid alert: {exc}", err=True)
        raise typer.Exit(2) from exc
    document = _alert_document(alert)
    typer.echo(json.dumps(document, indent=2) if as_json else _alert_text(document))


@app.command("publish")
def publish_alert(
    path: str = typer.Argument(..., help="File whose bytes are published unchanged."),
    topic: str = typer.Option(..., "--topic", "-t", help="Kafka topic."),
    broker: str = typer.Option(
        "kafka://127.0.0.1:9092", "--broker", help="Broker URL (kafka://host:port)."
    ),
    test: bool = typer.Option(False, "--test", help="Mark it as a test message (hop _test)."),
    message_id: str | None = typer.Option(
        None, "--id", help="Use this hop _id (a UUID), e.g. to re-publish the same message."
    ),
    timeout_s: float = typer.Option(
        10.0, "--timeout", help="Seconds to wait for the broker to take the message."
    ),
) -> None:
    """Publish a file to a topic with hop-client (drills: the local broker, no credentials)."""
    from followup.alerts import detect_format
    from followup.exceptions import AlertParseError
    from followup.stream import Publisher

    raw = _read_file(path)
    try:
        fmt = detect_format(raw)
    except AlertParseError:
        fmt = None
    if fmt is None:
        typer.echo(
            f"note: {path} is not a recognised alert; a listener will quarantine it", err=True
        )
    try:
        with Publisher(broker, produce_timeout_s=timeout_s) as publisher:
            sent_id = publisher.send(raw, topic=topic, test=test, message_id=message_id)
    except Exception as exc:
        typer.echo(f"publishing to {broker} failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"published {len(raw)} bytes ({fmt or 'unknown format'}) to {topic}: _id {sent_id}")


# --------------------------------------------------------------------------------------------
# frames area: forced photometry of one frame
# --------------------------------------------------------------------------------------------


@app.command()
def measure(
    frame: str = typer.Argument(..., help="A reduced FITS frame (BANZAI e91 .fits/.fits.fz)."),
    ra: str = typer.Option(..., help="Right ascension: degrees, or HH:MM:SS.ss."),
    dec: str = typer.Option(..., help="Declination: degrees, or +DD:MM:SS.s."),
    catalog: str | None = typer.Option(
        None,
        help="Reference stars: CSV/ECSV with REFCAT2 Vizier columns (RA_ICRS, DE_ICRS, gmag, "
        "e_gmag, ...). Default: the frame's CAT and L1ZP.",
    ),
    method: str = typer.Option("aperture", help="aperture or psf."),
    target_name: str = typer.Option("target", help="Name recorded in the measurement."),
    reference: str | None = typer.Option(
        None,
        "--reference",
        help="A reduced frame of the field in the same band (any telescope, with a WCS): "
        "measure on the difference, without the host's light.",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the measurement as JSON."),
) -> None:
    """Forced photometry of one position on a calibrated frame: flux (uJy), AB mag or 5-sigma limit.

    With ``--reference`` the position is measured on the difference of the frame and the
    reference: the flux of what changed, its host galaxy left out.
    """
    import json
    from pathlib import Path

    from followup.catalogs import LocalCatalog
    from followup.exceptions import CatalogError, PhotometryError, ReductionError
    from followup.photometry import PhotometryOptions, describe_flags
    from followup.photometry import measure as measure_frame

    if method not in ("aperture", "psf"):
        typer.echo(f"error: --method must be aperture or psf, got {method!r}", err=True)
        raise typer.Exit(code=2)
    if not Path(frame).is_file():
        typer.echo(f"error: no such file: {frame}", err=True)
        raise typer.Exit(code=2)
    _check_files(frame, catalog, reference)
    stars = LocalCatalog(catalog) if catalog is not None else None
    options = PhotometryOptions(method=method)  # type: ignore[arg-type]
    try:
        if reference is None:
            result = measure_frame(
                frame,
                _angle_argument(ra),
                _angle_argument(dec),
                catalog=stars,
                target_name=target_name,
                options=options,
            )
        else:
            result = _measure_on_difference(
                frame, reference, ra, dec, target_name, catalog=stars, options=options
            )
    except (PhotometryError, ReductionError, CatalogError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    if json_output:
        typer.echo(json.dumps(result.model_dump(mode="json"), indent=2))
        return
    typer.echo(f"{result.target_name} on {result.frame_basename} ({result.band}, {result.method})")
    typer.echo(
        f"  flux      {result.flux_ujy:.3f} +- {result.flux_err_ujy:.3f} uJy (S/N {result.snr:.1f})"
    )
    if result.mag is not None:
        typer.echo(f"  AB mag    {result.mag:.3f} +- {result.mag_err:.3f}")
    else:
        typer.echo("  AB mag    not detected (S/N < 5)")
    typer.echo(f"  5σ limit  {result.limit_mag_5sigma:.2f}")
    typer.echo(
        f"  zero pt   {result.zero_point:.3f} +- {result.zero_point_err:.3f} ({result.n_ref_stars} stars)"
    )
    if result.flags:
        typer.echo(f"  flags     {', '.join(describe_flags(result.flags))}")


def _check_files(frame: str, catalog: str | None, reference: str | None) -> None:
    """Exit with code 2 when a file argument names no file."""
    from pathlib import Path

    for label, path in (("catalogue file", catalog), ("reference frame", reference)):
        if path is not None and not Path(path).is_file():
            typer.echo(f"error: no such {label}: {path}", err=True)
            raise typer.Exit(code=2)


def _measure_on_difference(
    frame: str,
    reference: str,
    ra: str,
    dec: str,
    target_name: str,
    *,
    catalog: object,
    options: object,
) -> Any:
    """The measurement of one position on the difference of ``frame`` and ``reference``."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    from followup.exceptions import PhotometryError
    from followup.photometry.transients import measure_difference

    ra_value, dec_value = _angle_argument(ra), _angle_argument(dec)
    unit = (
        u.hourangle if isinstance(ra_value, str) and (":" in ra_value or "h" in ra_value) else u.deg
    )
    try:
        position = SkyCoord(ra_value, dec_value, unit=(unit, u.deg))
    except ValueError as exc:
        raise PhotometryError(f"cannot understand the position {ra!r}, {dec!r}: {exc}") from exc
    found = measure_difference(
        frame,
        reference,
        [(target_name, float(position.ra.deg), float(position.dec.deg))],
        catalog=catalog,  # type: ignore[arg-type]
        options=options,  # type: ignore[arg-type]
        margin_px=0.0,
    )
    if not found:
        raise PhotometryError(f"{ra} {dec} is not on the frame {frame}")
    return found[0]


@app.command()
def find(
    frame: str = typer.Argument(..., help="A reduced FITS frame (BANZAI e91 .fits/.fits.fz)."),
    reference: str = typer.Option(
        ..., "--reference", help="A reduced frame of the field in the same band, with a WCS."
    ),
    catalog: str | None = typer.Option(
        None,
        help="Reference stars for the zero point and the star check: CSV/ECSV with REFCAT2 "
        "Vizier columns. Default: the frame's CAT and L1ZP.",
    ),
    snr_min: float = typer.Option(5.0, "--snr-min", help="Detection threshold on the difference."),
    all_sources: bool = typer.Option(
        False, "--all", help="List bogus sources too (with their score and reasons)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the candidates as JSON."),
) -> None:
    """Transient candidates on the difference of FRAME and its reference, scored and vetted.

    Each candidate has its host-subtracted flux (uJy), AB magnitude (S/N >= 5), real-bogus score
    and the reasons of its vetting (score, catalogued star at the position). Minor planets, host
    distances and credible levels need the event's map and services: the flows check them.
    """
    import json
    import math

    from followup.catalogs import LocalCatalog
    from followup.exceptions import CatalogError, PhotometryError, ReductionError
    from followup.photometry.transients import find_transients
    from followup.photometry.vetting import vet_candidates
    from followup.photometry.zeropoint import reference_table

    _check_files(frame, catalog, reference)
    stars = LocalCatalog(catalog) if catalog is not None else None
    try:
        table = find_transients(frame, reference, catalog=stars, snr_min=snr_min)
        star_table = None
        if stars is not None:
            from followup.photometry.frame import prepare_frame

            star_table, _, _ = reference_table(prepare_frame(frame), stars)
        vettings = vet_candidates(table, stars=star_table)
    except (PhotometryError, ReductionError, CatalogError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc

    def number(value: Any) -> float | None:
        v = float(value.value if hasattr(value, "value") else value)
        return v if math.isfinite(v) else None

    rows = []
    for row, vetting in zip(table, vettings, strict=True):
        if not (vetting.passed or all_sources):
            continue
        rows.append(
            {
                "ra": number(row["ra"]),
                "dec": number(row["dec"]),
                "flux_ujy": number(row["flux_ujy"]),
                "flux_err_ujy": number(row["flux_err_ujy"]),
                "mag": number(row["mag"]),
                "mag_err": number(row["mag_err"]),
                "snr": number(row["snr"]),
                "score": number(row["score"]),
                "passed": vetting.passed,
                "reasons": vetting.reasons,
            }
        )
    if json_output:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{len(rows)} candidate(s) on {frame} - {reference}")
    for r in rows:
        mag = f"{r['mag']:.3f} +- {r['mag_err']:.3f}" if r["mag"] is not None else "S/N < 5"
        typer.echo(
            f"  {r['ra']:.6f} {r['dec']:+.6f}  {r['flux_ujy']:.2f} +- {r['flux_err_ujy']:.2f} uJy"
            f"  {mag}  score {r['score']:.2f}  {'; '.join(r['reasons'])}"
        )


def _angle_argument(text: str) -> float | str:
    """Degrees as a float when the text is a plain number, else the sexagesimal string."""
    try:
        return float(text)
    except ValueError:
        return text.strip()
