"""The ``followup`` console script: the core commands plus those that need Prefect or the stack."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from followup.cli import app

__all__ = ["STOP_DEADLINE_S", "app", "main"]

STOP_DEADLINE_S = 9.0
"""Seconds after SIGTERM or Ctrl-C when ``demo`` exits, whatever still runs (normally it has
stopped everything well before)."""


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
    seed: Annotated[
        int | None,
        typer.Option(
            help="Sandbox seed; replays a run's sky. Default: $FOLLOWUP_SANDBOX_SEED, else fixed."
        ),
    ] = None,
    scenario: Annotated[
        str,
        typer.Option(
            help="kilonova: one near the map's peak; empty: no counterpart in the fields "
            "(ends with the coverage, Treasure Map pointings and no-counterpart Circular); "
            "update: a PRELIMINARY then an UPDATE with a moved map (both plan versions, the "
            "cancelled requests and the new submissions)."
        ),
    ] = "kilonova",
    sky: Annotated[
        str,
        typer.Option(
            help="Sandbox sky: realistic (galaxies, faint stars, a shallow reference catalogue: "
            "candidates come from differences) or plain (stars only, catalogue matching)."
        ),
    ] = "realistic",
    timeout: Annotated[
        float,
        typer.Option(help="Seconds the follow-up run may take before the demo gives up on it."),
    ] = 1200.0,
    fields: Annotated[
        int,
        typer.Option(
            min=1,
            help="Most fields of the map observed (the kilonova is in the first); each is two "
            "more frames to search against their references.",
        ),
    ] = 3,
) -> None:
    """Run the whole loop on a real-format LVK alert against the sandbox.

    SIGTERM or Ctrl-C, at any moment, stops every process the demo started.
    """
    from deployments.demo import run_demo
    from deployments.processes import stop_on_signals, stop_with_make

    stop_with_make()  # ``make demo``: make does not pass SIGTERM on
    with stop_on_signals(deadline_s=STOP_DEADLINE_S):
        code = run_demo(
            root=Path.cwd(),
            once=once,
            alert_path=alert,
            summary_json=summary_json,
            approve=approve,
            ui_port=port,
            seed=seed,
            scenario=scenario,
            sky=sky,
            timeout_s=timeout,
            fields=fields,
        )
    raise typer.Exit(code)


@app.command()
def listen(
    listener_settings: Annotated[str, typer.Option(help="ListenerSettings document.")] = "default",
    name: Annotated[str, typer.Option(help="Name in heartbeat events.")] = "default",
) -> None:
    """Run the alert listener until Ctrl-C or SIGTERM (needs PREFECT_API_URL and the blocks).

    It stops within seconds: the offsets of every message it stored are committed, follow-up runs
    still running get a few seconds, then their processes are stopped (their runs end Crashed).
    """
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
    seed: Annotated[
        int | None,
        typer.Option(help="Sandbox seed. Default: $FOLLOWUP_SANDBOX_SEED, else fixed."),
    ] = None,
    sky: Annotated[
        str, typer.Option(help="Sandbox sky: plain (stars only) or realistic (galaxies...).")
    ] = "plain",
) -> None:
    """Run the stand-ins for LCO, HERMES, TNS, GCN, Vizier, SkyBoT, IRSA and PS1 alone."""
    from sandbox.server import SandboxConfig, SandboxServer, sandbox_seed

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    config = SandboxConfig(
        host=host,
        base_port=port,
        lco_token=token,
        seed=sandbox_seed() if seed is None else seed,
        sky=sky,  # type: ignore[arg-type]
    )
    with SandboxServer(config) as server:
        assert server.urls is not None
        typer.echo(server.urls.model_dump_json(indent=2))
        stop.wait()


# --------------------------------------------------------------------------------------------
# ops: alarms (automations calling a webhook)
# --------------------------------------------------------------------------------------------


@app.command()
def automations(
    webhook_url: Annotated[
        str | None,
        typer.Option(
            envvar="FOLLOWUP_ALARM_WEBHOOK_URL",
            help="Save this URL (a secret) in the Webhook block first; else use the saved block.",
        ),
    ] = None,
    webhook_block: Annotated[
        str, typer.Option(help="Name of the Webhook block the alarms call.")
    ] = "followup-alarms",
    heartbeat_within: Annotated[
        float, typer.Option(help="Alarm after this many seconds without a listener heartbeat.")
    ] = 120.0,
    listener: Annotated[str, typer.Option(help="Listener name to watch; * for any.")] = "*",
    remove: Annotated[bool, typer.Option("--remove", help="Delete the alarms instead.")] = False,
) -> None:
    """Create (or replace) the alarms: listener silent, follow-up failed, approval waiting."""
    from deployments.automations import (
        AlarmOptions,
        apply_automations,
        remove_automations,
        save_alarm_webhook,
    )

    options = AlarmOptions(heartbeat_within_s=heartbeat_within, listener=listener)
    if remove:
        for name in remove_automations(options):
            typer.echo(f"deleted automation {name}")
        return
    if webhook_url:
        save_alarm_webhook(webhook_url, webhook_block)
        typer.echo(f"saved Webhook block {webhook_block!r} (the URL is stored as a secret)")
    try:
        created = apply_automations(webhook_block, options)
    except ValueError as exc:
        typer.echo(f"error: {exc}; give --webhook-url to create the block", err=True)
        raise typer.Exit(2) from exc
    for automation in created:
        typer.echo(f"automation {automation.name}: {automation.id}")


def main() -> None:
    """Entry point of the ``followup`` console script."""
    app()
