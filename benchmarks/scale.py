"""Alerts per minute handled end to end: the production profile (PostgreSQL) against SQLite.

Usage: ``python benchmarks/scale.py [--quick] [--alerts N] [--profile both|sqlite|postgres]``

Each profile gets a fresh stack on this machine and a burst of LVK PRELIMINARY alerts published
together to the local Kafka topic; the clock runs from the first publish until every alert's
follow-up run is final. Every alert goes the whole loop (targets, one LCO request, frames,
photometry, report) with small sandbox frames and a short simulated exposure, the same settings
as ``tests/test_scale.py``. Printed per profile: alerts completed, wall time, alerts per minute,
stack start-up time.

* ``sqlite``: the embedded default (:class:`deployments.stack.LocalStack`): one Prefect server
  process on SQLite, deployments served from one process, follow-up runs started by the listener
  in its two warm worker processes, per-frame work on a thread pool.
* ``postgres``: the production profile (:class:`deployments.production.ProductionStack`):
  Prefect on PostgreSQL with two API processes sharing Redis and a services process, the ledger on
  PostgreSQL, runs started by the deployment trigger on two process workers, per-frame work on a
  local Dask cluster of two worker processes.

``--quick`` sends 5 alerts per profile instead of 20.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
# The stack's processes import this checkout too.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
)

PG = "postgres@127.0.0.1:5432"


def _lean(alerts: list[Any]) -> dict[str, Any]:
    """Stack options both profiles share: small frames, short exposures, one field per alert."""
    from deployments.stack import DEMO_STRATEGIES
    from sandbox.server import SandboxConfig

    return dict(
        sandbox=SandboxConfig(
            completion_delay_s=2.0,
            frame_shape=(512, 512),
            transients=[a.transient for a in alerts],
        ),
        settings_overrides={
            "strategies_yaml": DEMO_STRATEGIES.replace("max_targets: 3", "max_targets: 1"),
            "poll_interval_s": 1.0,
            "max_wait_s": 120.0,
        },
        alarms=False,
    )


def run_profile(profile: str, n_alerts: int, root: Path) -> dict[str, Any]:
    """Start a stack of ``profile``, send the burst, stop the stack; return the figures."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.demo import make_demo_alert
    from deployments.processes import free_port
    from deployments.production import ProductionOptions, ProductionStack, run_burst
    from deployments.stack import LocalStack, StackOptions

    alerts = [make_demo_alert() for _ in range(n_alerts)]
    port = free_port()
    if profile == "postgres":
        tag = uuid.uuid4().hex[:10]
        stack: LocalStack = ProductionStack(
            ProductionOptions(
                root=root,
                ui_port=port,
                prefect_database_url=f"postgresql+asyncpg://{PG}/followup_bench_prefect_{tag}",
                ledger_url=f"postgresql+psycopg2://{PG}/followup_bench_ledger_{tag}",
                drop_databases=True,
                **_lean(alerts),
            )
        )
    else:
        stack = LocalStack(StackOptions(root=root, ui_port=port, **_lean(alerts)))
    with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}), stack:
        result = run_burst(stack, alerts, timeout=1800)
        startup_s = stack.startup_s
        EventsWorker.drain_all()
        APILogWorker.drain_all()
    runs = [r for rs in result.runs.values() for r in rs]
    return {
        "profile": profile,
        "alerts": n_alerts,
        "completed": result.completed,
        "runs": len(runs),
        "timed_out": result.timed_out,
        "wall_s": result.wall_s,
        "alerts_per_min": result.alerts_per_minute,
        "startup_s": startup_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 alerts per profile")
    parser.add_argument("--alerts", type=int, help="alerts per profile (default 20)")
    parser.add_argument("--profile", choices=["both", "sqlite", "postgres"], default="both")
    args = parser.parse_args()
    n_alerts = args.alerts or (5 if args.quick else 20)
    profiles = ["sqlite", "postgres"] if args.profile == "both" else [args.profile]
    print(f"burst of {n_alerts} alerts per profile, whole loop each, on {os.cpu_count()} cores")
    results = []
    for profile in profiles:
        with tempfile.TemporaryDirectory(prefix=f"followup-scale-{profile}-") as tmp:
            started = time.monotonic()
            figures = run_profile(profile, n_alerts, Path(tmp))
            figures["total_s"] = time.monotonic() - started
            results.append(figures)
            print(
                f"  {profile:<8}: {figures['completed']}/{n_alerts} completed "
                f"({figures['runs']} follow-up runs{', TIMED OUT' if figures['timed_out'] else ''})"
                f" in {figures['wall_s']:.1f} s -> {figures['alerts_per_min']:.1f} alerts/min"
                f"  (stack start-up {figures['startup_s']:.0f} s)",
                flush=True,
            )
    print("alerts per minute, end to end (publish -> every follow-up run final):")
    for figures in results:
        print(f"  {figures['profile']:<8} {figures['alerts_per_min']:6.1f}")


if __name__ == "__main__":
    main()
