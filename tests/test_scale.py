"""The production profile under a burst: alerts at once, every one handled exactly once.

One production stack (Prefect server on PostgreSQL with two API processes sharing Redis, the
ledger on PostgreSQL, two process workers of a work pool, a local Dask cluster for the per-frame
work) takes a burst of LVK alerts published together. Each goes the whole loop: trigger, targets,
one LCO request, frames on Dask, report. The frames are small and the strategy asks for one field
per alert; the wall time is printed, not asserted.

The burst is ``FOLLOWUP_SCALE_BURST`` alerts (default 4), and each worker takes at most half of
them, as each took 10 of the 20 before: both workers run two follow-ups at once against two API
processes, and per-frame work of several runs meets on the Dask cluster, so a duplicate run, a
lost alert, a second request for a target or a locked database still shows. Every follow-up is a
process of its own on two shared cores, so 20 alerts took about four minutes of the suite and 8
about two (173 CPU-s, the third most of any module); ``FOLLOWUP_SCALE_BURST=20`` runs issue 8's
burst here, and ``benchmarks/scale.py`` measures alerts per minute on 20.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from deployments.demo import make_demo_alert
from deployments.production import (
    BurstResult,
    ProductionOptions,
    ProductionStack,
    dask_task_counts,
    run_burst,
)
from deployments.stack import DEMO_STRATEGIES
from followup.summary import event_summary
from sandbox.server import SandboxConfig
from tests.stack_support import serving

# The burst takes minutes on two cores: more than the suite's default timeout per test.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

BURST = int(os.environ.get("FOLLOWUP_SCALE_BURST", "4"))
assert BURST >= 4, "a burst of fewer than 4 alerts leaves a worker or an API process idle"
PG = "postgres@127.0.0.1:5432"
# One field per alert, so one request and two frames (gp, rp) per alert.
ONE_FIELD = DEMO_STRATEGIES.replace("max_targets: 3", "max_targets: 1")
assert ONE_FIELD != DEMO_STRATEGIES


@pytest.fixture(scope="module")
def burst(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProductionStack, Any]]:
    from deployments.processes import free_port

    root = tmp_path_factory.mktemp("scale")
    port = free_port()
    tag = uuid.uuid4().hex[:10]
    alerts = [make_demo_alert() for _ in range(BURST)]
    options = ProductionOptions(
        root=root,
        ui_port=port,
        prefect_database_url=f"postgresql+asyncpg://{PG}/followup_scale_prefect_{tag}",
        ledger_url=f"postgresql+psycopg2://{PG}/followup_scale_ledger_{tag}",
        api_processes=2,
        workers=2,
        worker_limit=(BURST + 1) // 2,  # both workers take a share of the burst
        dask_workers=2,
        dask_threads=4,
        refresh_interval_s=600.0,
        sandbox=SandboxConfig(
            completion_delay_s=2.0,
            frame_shape=(512, 512),
            transients=[a.transient for a in alerts],
            # Throughput is under test: 512-pixel frames hold too few stars to PSF-match a
            # difference, so the burst's frames are searched on the plain sky by catalogue.
            sky="plain",
        ),
        settings_overrides={
            "strategies_yaml": ONE_FIELD,
            "poll_interval_s": 1.0,
            "max_wait_s": 120.0,
        },
        alarms=False,
        drop_databases=True,
    )
    with serving(ProductionStack(options)) as stack:
        result = run_burst(stack, alerts, timeout=900)
        print(
            f"\n{BURST} alerts through the production profile: {result.wall_s:.1f} s wall "
            f"({result.alerts_per_minute:.1f} alerts/min; stack start-up {stack.startup_s:.0f} s)"
        )
        yield stack, result


def test_every_alert_has_exactly_one_completed_run(burst: tuple[ProductionStack, Any]) -> None:
    _, result = burst
    assert isinstance(result, BurstResult)
    assert not result.timed_out, {e: [str(r.state) for r in rs] for e, rs in result.runs.items()}
    assert set(result.runs) == set(result.event_ids), "a run for an event never published"
    for event_id in result.event_ids:
        runs = result.runs[event_id]
        assert len(runs) == 1, f"{event_id}: {len(runs)} follow-up runs"
        assert runs[0].state.is_completed(), (event_id, runs[0].state)
        assert runs[0].name == f"followup-{event_id}-preliminary"
    assert result.completed == BURST


def test_one_request_per_target_in_the_sandbox(burst: tuple[ProductionStack, Any]) -> None:
    stack, result = burst
    assert stack.urls is not None
    groups = httpx.get(f"{stack.urls.portal}/sandbox/requests", timeout=30).json()["results"]
    ledger = stack.ledger()
    try:
        for event_id in result.event_ids:
            alerts = ledger.alerts.for_event(event_id)
            assert [a.decision for a in alerts] == ["accepted"], event_id
            fields = [t for t in ledger.events.targets(event_id) if t.kind == "field"]
            assert len(fields) == 1, event_id
            rows = ledger.requests.for_event(event_id)
            assert [r.local_status for r in rows] == ["submitted"], event_id
            at_portal = [g for g in groups if g["name"].startswith(f"{event_id}_")]
            assert [g["name"] for g in at_portal] == [rows[0].group_name], event_id
            assert len(at_portal[0]["requests"]) == 1
            assert at_portal[0]["state"] == "COMPLETED"
            assert len(event_summary(ledger, event_id).frames) == 2, event_id  # gp and rp
    finally:
        ledger.dispose()
    assert len(groups) == BURST


def test_frames_were_processed_on_the_dask_cluster(burst: tuple[ProductionStack, Any]) -> None:
    stack, _ = burst
    counts = dask_task_counts(stack.dask_address)
    for name in ("list_request_frames", "download_frame", "find_frame_candidates"):
        assert counts.get(name, 0) >= BURST, counts


def test_no_database_is_locked_in_any_log(burst: tuple[ProductionStack, Any]) -> None:
    stack, _ = burst
    logs = stack.logs()
    assert {"prefect-server.log", "prefect-services.log", "worker-0.log", "worker-1.log"} <= set(
        logs
    )
    for name, text in logs.items():
        assert "database is locked" not in text, name
    assert "Starting server with 2 worker processes" in logs["prefect-server.log"]


def test_the_server_runs_two_api_processes_and_a_services_process(
    burst: tuple[ProductionStack, Any],
) -> None:
    import psutil

    stack, _ = burst
    server = psutil.Process(stack.server.process.pid)
    api = [p for p in server.children(recursive=True) if "python" in p.name().lower()]
    assert len(api) >= 2, api
    assert stack.server.services.running
