"""Command-line tools of the domain core (no Prefect): inspect alerts, sky maps, plans and frames.

The console script ``followup`` (``deployments.cli``) adds the commands that need Prefect or the
local stack (``demo``, ``listen``, ``sandbox``...) to this Typer app.
"""

from __future__ import annotations

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
    skymap: str | None = typer.Option(None, "--skymap", help="Sky map FITS file."),
    ra: float | None = typer.Option(None, "--ra", help="Source RA in degrees."),
    dec: float | None = typer.Option(None, "--dec", help="Source Dec in degrees."),
    radius: float = typer.Option(0.0, "--radius", help="Error radius (90%) in degrees."),
    catalog: str | None = typer.Option(None, "--catalog", help="Galaxy catalog file."),
    instrument: str = typer.Option("1M0-SCICAM-SINISTRO", "--instrument", help="LCO imager."),
    max_targets: int = typer.Option(5, "--max-targets", min=1, help="At most this many targets."),
    start: str | None = typer.Option(None, "--start", help="Span start, ISO UTC (default now)."),
    span_hours: float = typer.Option(24.0, "--span-hours", help="Visibility span in hours."),
    max_airmass: float = typer.Option(1.6, "--max-airmass", help="Airmass limit."),
    event_id: str | None = typer.Option(None, "--event-id", help="Name for the event."),
    plot: str | None = typer.Option(None, "--plot", help="Write a PNG of the plan here."),
    json_output: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Plan LCO targets for a sky map or a position: ranked, with windows and sites."""
    from datetime import UTC, datetime
    from pathlib import Path

    from followup.exceptions import FollowupError
    from followup.galaxies import LocalGalaxyCatalog
    from followup.models import Alert, AlertKind, AlertType, ErrorRegion, SkyPosition
    from followup.skymap import read_skymap
    from followup.targeting import plan_targets, plot_plan

    if (skymap is None) == (ra is None or dec is None):
        raise _fail("give either --skymap FILE or --ra and --dec (with --radius)")
    when = datetime.now(UTC)
    if start:
        try:
            when = datetime.fromisoformat(start.replace("Z", "+00:00"))
        except ValueError as exc:
            raise _fail(f"--start {start!r} is not an ISO date") from exc
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
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
