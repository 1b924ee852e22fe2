"""Alert-to-telescope latency: from ``hop publish`` of an LVK alert to LCO receiving the request.

Starts the whole local stack (Prefect server, Tansu broker, sandbox, served deployments, the
listener with its warm dispatcher), then publishes LVK PRELIMINARY alerts with an embedded
multi-order sky map (``deployments.demo.make_demo_alert``, a new event id each) to
``igwn.gwalert`` with hop-client, one after another. Each sample is the wall-clock time from just
before the publish call to the sandbox portal receiving the first ``POST /api/requestgroups/`` of
that event (the portal records each POST's arrival, ``received_at`` in ``/sandbox/requests``).
The next alert is published once the previous follow-up run has finished, so samples never
overlap. The demo strategy needs no approval (NORMAL, 12 h), and the runs do not wait for LCO
(``max_wait_s`` 0): the refresh schedule would follow the requests.

One alert is published first to warm the stack and is reported apart. Each sample is split into
stages from the ledger and the Prefect API: listener (publish to the message stored), dispatch
(stored to the follow-up run created), flow start (created to the run's start), select-targets
(run start to the end of its ``select-targets`` subflow), observe start (to the start of the
``observe`` subflow), plan+claim (to the first request claimed in the ledger), validate+post (to
the portal receiving the POST).

Usage: ``python benchmarks/latency.py [--quick] [--alerts N] [--postgres]``

``--postgres`` puts the Prefect server and the ledger on fresh PostgreSQL databases (dropped
afterwards) instead of SQLite. Targets on 2 cores: p50 <= 1 s, p95 <= 2 s.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from deployments.demo import DemoAlert, make_demo_alert
from deployments.stack import ALERT_TOPIC, LocalStack, StackOptions
from followup.lco import group_name_prefix
from sandbox.server import SandboxConfig

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("FOLLOWUP_BENCH_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432")
STAGES = ("listener", "dispatch", "flow start", "select-targets", "observe start", "plan+claim",
          "validate+post")  # fmt: skip


@contextmanager
def fresh_pg_database(prefix: str):
    """A new empty PostgreSQL database; yields its name and drops it afterwards."""
    import sqlalchemy as sa

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(f"{PG_ADMIN_URL}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def percentile(values: list[float], q: float) -> float:
    """The ``q`` percentile (0-100) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def unique_alerts(n: int) -> list[DemoAlert]:
    """``n`` demo alerts with distinct event ids (made before any clock starts)."""
    alerts: list[DemoAlert] = []
    seen: set[str] = set()
    while len(alerts) < n:
        alert = make_demo_alert()
        if alert.event_id not in seen:
            seen.add(alert.event_id)
            alerts.append(alert)
    return alerts


def first_post(portal: str, event_id: str) -> float | None:
    """Wall-clock arrival of the event's first stored request group at the portal, if any."""
    prefix = group_name_prefix(event_id)
    groups = httpx.get(f"{portal}/sandbox/requests", timeout=10).json()["results"]
    times = [g["received_at"] for g in groups if g["name"].startswith(prefix)]
    return min(times) if times else None


def _epoch(when: datetime | None) -> float | None:
    return when.timestamp() if when is not None else None


def _flow_run(client: Any, name: str) -> Any:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
    return runs[0] if runs else None


def stages(stack: LocalStack, event_id: str, published: float, posted: float) -> dict[str, float]:
    """Split one sample into the stages of the path (seconds each)."""
    from prefect.client.orchestration import get_client

    from followup.ledger import MessageRow

    ledger = stack.ledger()
    try:
        (alert,) = ledger.alerts.for_event(event_id)
        with ledger.session() as s:
            message = s.get(MessageRow, alert.message_id)
            stored = message.received_at.timestamp()
        run_id = alert.flow_run_id
        claims = [r.created_at for r in ledger.requests.for_event(event_id)]
        claimed = min(claims).timestamp() if claims else None
    finally:
        ledger.dispose()
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        targets = _flow_run(client, f"select-targets-{event_id}")
        observe = _flow_run(client, f"observe-{event_id}")
    created = _epoch(run.created)
    started = _epoch(run.start_time)
    selected = _epoch(targets.end_time) if targets is not None else None
    observing = _epoch(observe.start_time) if observe is not None else None
    marks = [published, stored, created, started, selected, observing, claimed, posted]
    if any(m is None for m in marks):
        return {}
    return {name: marks[i + 1] - marks[i] for i, name in enumerate(STAGES)}


def wait_final(flow_run_id: str, timeout: float) -> str:
    """Wait for the run to end; return its state name."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.is_final():
                return str(run.state.name)
            if time.monotonic() > deadline:
                return f"still {run.state.name if run.state else 'unknown'}"
            time.sleep(0.2)


def measure(stack: LocalStack, alert: DemoAlert, publisher: Any, timeout: float) -> dict[str, Any]:
    """Publish one alert; wait for its first POST and for its follow-up run to end."""
    assert stack.urls is not None
    published = time.time()
    publisher.send(alert.raw, topic=ALERT_TOPIC)
    publisher.flush()
    deadline = time.monotonic() + timeout
    posted = None
    while posted is None and time.monotonic() < deadline:
        posted = first_post(stack.urls.portal, alert.event_id)
        if posted is None:
            time.sleep(0.02)
    if posted is None:
        raise RuntimeError(f"no POST for {alert.event_id} within {timeout:.0f} s")
    run_id = stack.wait_for_run(alert.event_id, timeout=timeout)
    state = wait_final(run_id, timeout) if run_id else "no run"
    return {
        "event_id": alert.event_id,
        "latency_s": posted - published,
        "stages": stages(stack, alert.event_id, published, posted),
        "run_state": state,
    }


def describe(sample: dict[str, Any]) -> str:
    parts = ", ".join(f"{k} {v:.3f}" for k, v in sample["stages"].items())
    return f"{sample['event_id']}: {sample['latency_s']:.3f} s ({parts}); run {sample['run_state']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 alerts instead of 20")
    parser.add_argument("--alerts", type=int, help="number of measured alerts")
    parser.add_argument("--postgres", action="store_true", help="Prefect and ledger on PostgreSQL")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per alert")
    parser.add_argument("--workers", type=int, default=2, help="listener dispatcher workers")
    args = parser.parse_args(argv)
    n = args.alerts or (5 if args.quick else 20)
    # The stack's processes (sandbox, serve, listener and its workers) run this checkout's code.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )

    from followup.stream import Publisher

    alerts = unique_alerts(n + 1)
    with ExitStack() as resources:
        root = Path(resources.enter_context(tempfile.TemporaryDirectory(prefix="latency-")))
        prefect_db = ledger_url = None
        if args.postgres:
            prefect_db = resources.enter_context(fresh_pg_database("followup_bench_prefect"))
            ledger_db = resources.enter_context(fresh_pg_database("followup_bench_ledger"))
            base = PG_ADMIN_URL.split("://", 1)[1]
            prefect_db = f"postgresql+asyncpg://{base}/{prefect_db}"
            ledger_url = f"{PG_ADMIN_URL}/{ledger_db}"
        options = StackOptions(
            root=root,
            ui_port=0,
            sandbox=SandboxConfig(
                completion_delay_s=86_400.0,
                renderer="header-only",
            ),
            ledger_url=ledger_url,
            prefect_database_url=prefect_db,
            refresh_interval_s=3600.0,
            listener_workers=args.workers,
            settings_overrides={"max_wait_s": 0.0},
            alarms=False,
        )
        started = time.monotonic()
        stack = resources.enter_context(LocalStack(options))
        print(f"stack up in {time.monotonic() - started:.1f} s", flush=True)
        publisher = resources.enter_context(Publisher(f"kafka://{stack.broker.bootstrap}"))
        warm = measure(stack, alerts[0], publisher, args.timeout)
        samples = []
        for i, alert in enumerate(alerts[1:], 1):
            sample = measure(stack, alert, publisher, args.timeout)
            samples.append(sample)
            print(f"  {i:2d} {describe(sample)}", flush=True)

    latencies = [s["latency_s"] for s in samples]
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"latency benchmark: hop publish -> LCO portal POST, {n} LVK PRELIMINARY alerts with "
        f"sky maps, sequential (Prefect server and ledger on {backend}, {os.cpu_count()} cores, "
        f"{args.workers} dispatcher workers)"
    )
    print(f"  warm-up alert (not counted): {describe(warm)}")
    print(f"  samples (s): {', '.join(f'{x:.3f}' for x in latencies)}")
    print(
        f"  p50 {p50:.3f} s, p95 {p95:.3f} s, mean {statistics.fmean(latencies):.3f} s, "
        f"min {min(latencies):.3f} s, max {max(latencies):.3f} s"
    )
    split = [s["stages"] for s in samples if s["stages"]]
    if split:
        medians = ", ".join(f"{k} {statistics.median(d[k] for d in split):.3f}" for k in STAGES)
        print(f"  median per stage (s): {medians}")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"  load average at the end (1, 5, 15 min): {load}")
    ok = p50 <= 1.0 and p95 <= 2.0
    print(f"  targets: p50 <= 1 s, p95 <= 2 s; {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
