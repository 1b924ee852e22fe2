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
