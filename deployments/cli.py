"""The ``followup`` console script: the core commands plus those that need Prefect or the stack."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from followup.cli import app

__all__ = ["app", "main"]


@app.command()
def demo(
    once: Annotated[
        bool, typer.Option("--once", help="Exit when the loop ends (0 on success).")
    ] = False,
    alert: Annotated[
        Path | None, typer.Option("--alert", help="Replay this alert file instead.")
    ] = None,
    summary_json: Annotated[
        Path | None, typer.Option("--summary-json", help="Also write JSON.")
    ] = None,
    approve: Annotated[
        str, typer.Option(help="auto: approve through the API; ui: you do.")
    ] = "auto",
    port: Annotated[int, typer.Option(help="Port of the Prefect API and UI.")] = 4200,
) -> None:
    """Run the whole loop on a real-format LVK alert against the sandbox."""
    from deployments.demo import run_demo

    raise typer.Exit(
        run_demo(
            root=Path.cwd(),
            once=once,
            alert_path=alert,
            summary_json=summary_json,
            approve=approve,
            ui_port=port,
        )
    )


@app.command()
def listen(
    listener_settings: Annotated[str, typer.Option(help="ListenerSettings document.")] = "default",
    name: Annotated[str, typer.Option(help="Name in heartbeat events.")] = "default",
) -> None:
    """Run the alert listener until Ctrl-C (needs PREFECT_API_URL and the blocks)."""
    from deployments.listener import main as listener_main

    listener_main(["--listener-settings", listener_settings, "--name", name])


@app.command()
def serve(
    settings: Annotated[str, typer.Option(help="FollowupSettings document.")] = "default",
    listener_settings: Annotated[str, typer.Option(help="ListenerSettings document.")] = "default",
) -> None:
    """Serve every deployment in this process (small setups)."""
    from deployments.serve import main as serve_main

    serve_main(["--settings", settings, "--listener-settings", listener_settings])


@app.command()
def sandbox(
    host: Annotated[str, typer.Option(help="Interface every stand-in binds.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="First port: portal, archive, HERMES, TNS, GCN, ...")
    ] = 8500,
    token: Annotated[
        str, typer.Option(help="Token the LCO stand-ins accept.")
    ] = "sandbox-lco-token",
) -> None:
    """Run the stand-ins for LCO, HERMES, TNS, GCN and Vizier alone (drills, other clients)."""
    from sandbox.server import SandboxConfig, SandboxServer

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with SandboxServer(SandboxConfig(host=host, base_port=port, lco_token=token)) as server:
        assert server.urls is not None
        typer.echo(server.urls.model_dump_json(indent=2))
        stop.wait()


def main() -> None:
    """Entry point of the ``followup`` console script."""
    app()
