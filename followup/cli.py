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
    json_output: bool = typer.Option(False, "--json", help="Print the measurement as JSON."),
) -> None:
    """Forced photometry of one position on a calibrated frame: flux (uJy), AB mag or 5-sigma limit."""
    import json
    from pathlib import Path

    from followup.catalogs import LocalCatalog
    from followup.exceptions import CatalogError, PhotometryError, ReductionError
    from followup.photometry import describe_flags
    from followup.photometry import measure as measure_frame

    if method not in ("aperture", "psf"):
        typer.echo(f"error: --method must be aperture or psf, got {method!r}", err=True)
        raise typer.Exit(code=2)
    if not Path(frame).is_file():
        typer.echo(f"error: no such file: {frame}", err=True)
        raise typer.Exit(code=2)
    if catalog is not None and not Path(catalog).is_file():
        typer.echo(f"error: no such catalogue file: {catalog}", err=True)
        raise typer.Exit(code=2)
    reference = LocalCatalog(catalog) if catalog is not None else None
    try:
        result = measure_frame(
            frame,
            _angle_argument(ra),
            _angle_argument(dec),
            catalog=reference,
            method=method,  # type: ignore[arg-type]
            target_name=target_name,
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


def _angle_argument(text: str) -> float | str:
    """Degrees as a float when the text is a plain number, else the sexagesimal string."""
    try:
        return float(text)
    except ValueError:
        return text.strip()
