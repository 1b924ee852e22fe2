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
