"""Faults through the sandbox and the processes, bad input through the listener, secrets kept.

One local stack (Prefect server, Tansu, the sandbox, serve, the listener with two warm workers)
runs the whole loop while things go wrong:

* the sandbox's stand-ins fail on purpose (portal 5xx, 429 with Retry-After, slow answers and an
  answer lost after the group was stored; archive 503 and truncated downloads; TNS's 429, a hang
  past the client's timeout, "200 but nothing stored" and 404 for a report that exists; HERMES
  503 and a hang past the client's timeout; TNS's "504 after storing" is tested against the
  stand-in in tests/reporting);
* the archive stores one event's frames broken (truncated, without a WCS);
* the Kafka broker is stopped and restarted while the listener reads;
* the Prefect server is stopped and started again while a run waits for approval;
* the worker process running a follow-up is killed while it waits for LCO, and the run is retried
  as the UI's Retry button does;
* fuzzed, truncated, huge and out-of-range alerts and alerts with broken sky maps are published.

After each: no alert lost (the ledger holds every message once), no request or report duplicated
(the stand-ins' own records agree with the ledger), every run ends in a state that says what
happened. Last, the logs, artifacts, run parameters and events of all of it are searched for the
distinctive tokens the stack's Blocks hold.

An :class:`Operator` thread stands in for the on-call astronomer and the sky: it approves paused
runs and completes pending LCO requests, except for events it is told to hold.
"""

from __future__ import annotations

import contextvars
import json
import random
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import psutil
import pytest

from deployments.demo import TRANSIENT_OFFSET_DEG, DemoAlert, approve_paused_runs, make_demo_alert
from deployments.stack import DEMO_STRATEGIES, LocalStack, StackOptions
from followup.http import client_settings
from followup.models import utcnow
from followup.summary import event_summary
from sandbox.server import SandboxConfig
from sandbox.specs import Transient
from tests.stack_support import answer_form, patient, serving, wait_for

pytestmark = pytest.mark.slow

SECRETS = {
    "lco_token": f"lco-{uuid.uuid4().hex}",
    "hermes_token": f"hermes-{uuid.uuid4().hex}",
    "tns_api_key": f"tns-{uuid.uuid4().hex}",
    "gcn_token": f"gcn-{uuid.uuid4().hex}",
    "treasuremap_token": f"treasuremap-{uuid.uuid4().hex}",
}
"""Distinctive credentials: the sandbox accepts them and the stack saves them in its Blocks."""

# Every request waits for a person (more than 0 h of telescope time), so the operator decides
# when a run goes on; one field and two filters keep each loop short.
STRATEGIES = DEMO_STRATEGIES.replace("max_hours: 12", "max_hours: 0").replace(
    "max_targets: 3", "max_targets: 1"
)
assert STRATEGIES.count("max_targets: 1") == 2 and "max_hours: 0" in STRATEGIES
REVIEWER = "fault suite operator"
HTTP_TIMEOUT_S = 2.0
"""HERMES and TNS client timeout in this stack, so that a hang becomes a timeout quickly."""
RETRY_DELAY_SCALE = 0.1
"""Factor of the service tasks' retry delays in this stack (:func:`tasks.retry.delay_scale`)."""


# ------------------------------------------------------------------ helpers


def runs_named(fragment: str) -> list[Any]:
    """Flow runs whose name contains ``fragment`` (an event id names all of its runs)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=fragment))
        )


def read_run(run_id: Any) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        return client.read_flow_run(run_id)


def final_run(run_id: Any, timeout: float) -> Any:
    run = wait_for(lambda: (r := read_run(run_id)).state and r.state.is_final() and r, timeout)
    assert run, f"flow run {run_id} is not final after {timeout} s: {read_run(run_id).state}"
    return run


def sandbox_get(url: str) -> Any:
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    return response.json()


def inject(url: str, **fault: Any) -> None:
    """Queue one fault on a stand-in (``POST /sandbox/faults``)."""
    response = httpx.post(f"{url}/sandbox/faults", json=fault, timeout=10)
    assert response.status_code == 201, response.text


def groups_of(stack: LocalStack, event_id: str) -> list[dict[str, Any]]:
    """The LCO request groups the portal stand-in holds for an event."""
    assert stack.urls is not None
    groups = sandbox_get(f"{stack.urls.portal}/sandbox/requests")["results"]
    return [g for g in groups if g["name"].startswith(f"{event_id}_")]


def first_field(demo: DemoAlert) -> tuple[float, float]:
    """Centre of the field the flows will choose first for the alert (same planner, same rules)."""
    from followup.alerts import parse_message
    from followup.targeting import plan_targets

    plan = plan_targets(
        parse_message(demo.raw),
        instrument_type="1M0-SCICAM-SINISTRO",
        max_targets=1,
        start=utcnow(),
        span_hours=24.0,
        max_airmass=2.0,
        allow_empty=True,
    )
    assert plan.targets, "the demo alert has no observable field now"
    return plan.targets[0].ra, plan.targets[0].dec


class Operator(threading.Thread):
    """The on-call astronomer and the sky: approves paused runs, completes pending requests.

    Runs and request groups whose name contains a held event id are left alone.
    """

    def __init__(self, portal: str, archive: str) -> None:
        super().__init__(daemon=True, name="operator")
        self.portal = portal
        self.held: set[str] = set()
        self.approved: list[str] = []
        self.completed: list[int] = []
        self.stop = threading.Event()
        self._context = contextvars.copy_context()  # the test's Prefect settings

    def run(self) -> None:
        self._context.run(self._loop)

    def _held(self, name: str) -> bool:
        return any(event in name for event in self.held)

    def _loop(self) -> None:
        from prefect.client.orchestration import get_client

        while not self.stop.wait(0.5):
            try:
                with get_client(sync_client=True, httpx_settings=client_settings()) as client:
                    for name in approve_paused_runs(client, REVIEWER, "", skip=self._held):
                        self.approved.append(name)
                groups = httpx.get(f"{self.portal}/sandbox/requests", timeout=5).json()
                for group in groups["results"]:
                    if self._held(group["name"]):
                        continue
                    for request in group["requests"]:
                        if request["state"] == "PENDING":
                            httpx.post(
                                f"{self.portal}/sandbox/requests/{request['id']}/complete",
                                timeout=5,
                            ).raise_for_status()
                            self.completed.append(request["id"])
            except Exception:  # the server may be restarting (on purpose): try again
                continue


# ------------------------------------------------------------------ the stack
# The broker and bad-input tests run while alert A's run meets the service faults; alert B's
# run (server restart, killed worker) starts once A's has ended, so one worker is busy at a time.


@pytest.fixture(scope="module")
def alert_a() -> DemoAlert:
    """The alert of the service-fault run; its transient sits 1' from its first field's centre."""
    demo = make_demo_alert()
    ra, dec = first_field(demo)
    demo.transient = demo.transient.model_copy(update={"ra": ra + 0.015, "dec": dec - 0.012})
    return demo


@pytest.fixture(scope="module")
def alert_b(alert_a: DemoAlert) -> DemoAlert:
    """The alert of the server-restart and killed-worker run, two degrees north of A."""
    ra = alert_a.transient.ra - TRANSIENT_OFFSET_DEG[0]
    dec = alert_a.transient.dec - TRANSIENT_OFFSET_DEG[1] + 2.0
    return make_demo_alert(position=(ra % 360.0, dec))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, alert_a: DemoAlert) -> Iterator[LocalStack]:
    from deployments.processes import free_port

    root = tmp_path_factory.mktemp("faults")
    port = free_port()
    transient: Transient = alert_a.transient
    options = StackOptions(
        root=root,
        ui_port=port,
        sandbox=SandboxConfig(
            completion_delay_s=3600.0,  # the operator completes requests
            frame_shape=(2048, 2048),
            transients=[transient],
            # Faults are under test, not the sky: the plain sky's catalogue-matched candidates
            # keep this module's minutes bounded (the realistic sky's difference search is
            # tested in test_transients, test_candidate_flow and test_tns_form).
            sky="plain",
            **SECRETS,
        ),
        settings_overrides={
            "strategies_yaml": STRATEGIES,
            "max_targets": 1,
            "poll_interval_s": 1.0,
        },
        listener_workers=2,
        # Saved with the Blocks: the listener's workers load the settings before the first run.
        reporting_timeout_s=HTTP_TIMEOUT_S,
        # The stand-ins' faults pass after a count, not a time: a tenth of each retry delay
        # (0.2 s, 0.5 s, 1 s...) meets the same faults; a Retry-After is still waited for.
        retry_delay_scale=RETRY_DELAY_SCALE,
    )
    with serving(LocalStack(options)) as stack:
        yield stack


@pytest.fixture(scope="module")
def operator(stack: LocalStack) -> Iterator[Operator]:
    assert stack.urls is not None
    op = Operator(stack.urls.portal, stack.urls.archive)
    op.start()
    yield op
    op.stop.set()
    op.join(10)


@pytest.fixture(scope="module")
def faulty_run(stack: LocalStack, operator: Operator, alert_a: DemoAlert) -> dict[str, Any]:
    """Alert A published after every stand-in was told to fail; returns the faults queued."""
    assert stack.urls is not None
    u = stack.urls
    faults: dict[str, list[dict[str, Any]]] = {
        u.portal: [
            # validate is idempotent: the client retries a 503 itself.
            {"endpoint": r"^POST /api/requestgroups/validate/$", "status": 503},
            # A throttled submission was not processed: sent again after Retry-After.
            {"endpoint": r"^POST /api/requestgroups/$", "status": 429, "retry_after": 1},
            # Stored, then the answer is lost: found by name, never sent twice.
            {"endpoint": r"^POST /api/requestgroups/$", "status": 504, "after_store": True},
            # The look-up by name after that fails twice, then answers slowly (GETs are retried).
            {"endpoint": r"^GET /api/requestgroups/$", "status": 502, "count": 2},
            {"endpoint": r"^GET /api/requestgroups/$", "delay_s": 1.5},
        ],
        u.archive: [
            {"endpoint": r"^GET /frames/$", "status": 503},
            {"endpoint": r"^GET /download/", "truncate_bytes": 200_000, "count": 2},
        ],
        u.tns: [
            {"kind": "rate_limit", "endpoint": "search", "reset_s": 1},
            {"kind": "hang", "endpoint": "search", "delay_s": HTTP_TIMEOUT_S + 1.5},
            # 200 and nothing stored: sent once more; then 404 for the report that now exists.
            {"kind": "stored_nothing", "endpoint": "bulk-report"},
            {"kind": "reply_404", "endpoint": "bulk-report-reply"},
        ],
        u.hermes: [
            {"kind": "status", "endpoint": "submit", "status": 503},
            # Stored after the client gave up: unconfirmed, and never sent again.
            {"kind": "hang", "endpoint": "submit", "delay_s": HTTP_TIMEOUT_S + 1.5},
        ],
    }
    for url, queued in faults.items():
        for fault in queued:
            inject(url, **fault)
    stack.publish(alert_a.raw)
    run_id = stack.wait_for_run(alert_a.event_id, timeout=patient(120))
    assert run_id, "the listener started no follow-up run for alert A"
    return {"run_id": run_id, "faults": faults}


def stored_messages(stack: LocalStack) -> dict[str, Any]:
    """Every message the ledger holds, by hop ``_id``."""
    from sqlalchemy import select

    from followup.ledger import MessageRow

    ledger = stack.ledger()
    try:
        with ledger.session() as session:
            rows = session.scalars(select(MessageRow)).all()
            session.expunge_all()
        return {row.message_uuid: row for row in rows}
    finally:
        ledger.dispose()


def finished(stack: LocalStack, hop_ids: Iterable[str]) -> dict[str, Any] | None:
    """The ledger's messages once every one of ``hop_ids`` is stored and judged, else None."""
    messages = stored_messages(stack)
    done = all(h in messages and messages[h].status != "received" for h in hop_ids)
    return messages if done else None


def test_broker_restart_while_the_listener_reads(stack, faulty_run) -> None:
    """Tansu comes back empty on the same port; the listener reads on and loses nothing."""
    from followup.alerts.mock import make_lvk_alert

    def quiet_alert(tag: str) -> bytes:  # valid, and rejected by the rules: starts no run
        return make_lvk_alert(f"MS{tag}", "PRELIMINARY", far=1e-3, significant=False)

    before = [stack.publish(quiet_alert(f"991231{c}")) for c in ("ba", "bb")]
    assert wait_for(lambda: set(before) <= stored_messages(stack).keys(), 60)
    stack.broker.restart(down_s=2.0)
    after = [stack.publish(quiet_alert(f"991231{c}")) for c in ("bc", "bd")]
    stored = wait_for(lambda: finished(stack, before + after), 90)
    assert stored, "messages published after the broker restart were not stored"
    for hop_id in before + after:
        row = stored[hop_id]
        assert row.status == "rejected" and "significant" in (row.reason or ""), row.reason
    listener = next(p for p in stack.processes if p.name == "listener")
    assert listener.running, listener.tail()
    assert stack.broker.restarts == 1


def _zero_skymap() -> bytes:
    import io

    import numpy as np
    from astropy.io import fits

    hdu = fits.BinTableHDU.from_columns(
        [
            fits.Column("UNIQ", "K", array=np.arange(4, 16)),
            fits.Column("PROBDENSITY", "D", array=np.zeros(12)),
        ]
    )
    hdu.header["ORDERING"] = "NUNIQ"
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buffer)
    return buffer.getvalue()


# ------------------------------------------------------------------ 4. bad input


def test_bad_input_through_the_listener_is_kept_with_a_clear_reason(stack, faulty_run) -> None:
    """Fuzzed, truncated, huge and out-of-range messages and broken sky maps: all kept, each said why."""
    from followup.alerts.mock import make_gcn_notice, make_lvk_alert

    rng = random.Random(8)
    good = make_lvk_alert("MS991231ca", "PRELIMINARY", far=3e-10, significant=True)
    # (raw bytes, ledger status, words the reason must contain)
    cases: dict[str, tuple[bytes, str, str]] = {
        **{
            f"random-{i}": (rng.randbytes(rng.randint(1, 3000)), "quarantined", "")
            for i in range(5)
        },
        **{
            f"truncated-{i}": (good[: rng.randint(1, len(good) - 1)], "quarantined", "")
            for i in range(4)
        },
        "huge": (
            b'{"superevent_id": "MS991231cb", "pad": "' + b"x" * 6_000_000 + b'"}',
            "quarantined",
            "unknown-format",
        ),
        "dec-120": (
            make_gcn_notice(event_id="991231001", dec=120.0),
            "quarantined",
            "out of range",
        ),
        "ra-400": (make_gcn_notice(event_id="991231002", ra=400.0), "quarantined", "out of range"),
        "dec-nan": (
            make_gcn_notice(event_id="991231003", dec=float("nan")),
            "quarantined",
            "not finite",
        ),
        "skymap-garbage": (
            make_lvk_alert("MS991231cc", "PRELIMINARY", skymap=b"not a FITS file", far=3e-10),
            "rejected",
            "invalid-skymap",
        ),
        "skymap-empty": (
            make_lvk_alert("MS991231cd", "PRELIMINARY", skymap=b"", far=3e-10),
            "rejected",
            "invalid-skymap",
        ),
    }
    zero = make_lvk_alert(
        "MS991231ce", "PRELIMINARY", skymap=_zero_skymap(), far=3e-10, significant=True
    )
    published = {label: stack.publish(raw) for label, (raw, _, _) in cases.items()}
    published["skymap-all-zero"] = stack.publish(zero)
    stored = wait_for(lambda: finished(stack, published.values()), 90)
    assert stored, {
        k: getattr(stored_messages(stack).get(h), "status", None) for k, h in published.items()
    }

    ledger = stack.ledger()
    try:
        quarantine = {q.message_id: q for q in ledger.alerts.quarantined(limit=1000)}
    finally:
        ledger.dispose()
    for label, (raw, status, words) in cases.items():
        row = stored[published[label]]
        assert row.raw == raw, f"{label}: the bytes kept differ from the bytes sent"
        assert row.status == status, (label, row.status, row.reason)
        said = row.reason or ""
        if status == "quarantined":
            said += f" {quarantine[row.id].reason}: {quarantine[row.id].detail}"
        assert row.reason and words in said, (label, said)

    # A map that parses but holds no probability is accepted (no rule needed its area); the
    # follow-up run then fails, saying why, and the alert stays in the ledger.
    assert stored[published["skymap-all-zero"]].status == "accepted"
    run_id = stack.wait_for_run("MS991231ce", timeout=patient(60))
    assert run_id
    run = final_run(run_id, timeout=120)
    assert run.state.is_failed(), run.state
    (targets_run,) = runs_named("select-targets-MS991231ce")
    assert targets_run.state.is_failed()
    assert "all zero" in (targets_run.state.message or "") + (run.state.message or ""), (
        targets_run.state.message,
        run.state.message,
    )
    listener = next(p for p in stack.processes if p.name == "listener")
    assert listener.running, listener.tail()


# ------------------------------------------------------------------ 3. service faults


def test_service_faults_lose_and_duplicate_nothing(stack, faulty_run, alert_a) -> None:
    event = alert_a.event_id
    run = final_run(faulty_run["run_id"], timeout=300)
    assert run.state.is_completed(), run.state

    # Every fault was met (none is still queued), so each was survived, not skipped.
    for url in faulty_run["faults"]:
        assert sandbox_get(f"{url}/sandbox/faults") == [], url

    # Exactly one request group at the portal, and it is the ledger's.
    ledger = stack.ledger()
    try:
        (group,) = groups_of(stack, event)
        (request,) = ledger.requests.for_event(event)
        assert (
            request.local_status == "submitted" and request.request_id == group["requests"][0]["id"]
        )
        assert group["state"] == "COMPLETED"

        summary = event_summary(ledger, event)
        assert len(summary.frames) == 2  # gp and rp, each downloaded whole despite the cuts
        detections = [m for m in summary.measurements if m.mag is not None]
        assert {m.band for m in detections} == {"gp", "rp"}, summary.measurements

        # One TNS report stored, one object. The HERMES send whose answer never came is
        # "unconfirmed" in the ledger and is not sent again: HERMES offers no look-up, so a
        # person resolves it (the stand-in hung before reading it, so it stored nothing).
        assert stack.urls is not None
        u = stack.urls
        reports = {r.destination: r for r in ledger.reports.for_event(event)}
        tns_reports = sandbox_get(f"{u.tns}/sandbox/reports")
        assert len(tns_reports) == 1, tns_reports
        assert reports["tns"].status == "confirmed"
        assert [o["objname"] for o in sandbox_get(f"{u.tns}/sandbox/objects")] == [
            reports["tns"].remote_id
        ]
        assert len(sandbox_get(f"{u.hermes}/sandbox/messages")) <= 1
        assert reports["hermes"].status == "unconfirmed"
        assert "ReadTimeout" in reports["hermes"].payload.get("error", ""), reports["hermes"]
    finally:
        ledger.dispose()

    # Every run of the event ended, and ended Completed.
    runs = runs_named(event)
    assert runs and all(r.state.is_completed() for r in runs), [
        (r.name, r.state.name) for r in runs
    ]


# ------------------------------------------------------------------ 3. processes


@pytest.fixture(scope="module")
def held_run(stack, operator, alert_b, faulty_run) -> str:
    """Alert B, whose approval and requests the operator leaves alone; the parent run's id."""
    final_run(faulty_run["run_id"], timeout=300)  # one busy worker at a time from here on
    operator.held.add(alert_b.event_id)
    # B's frames reach the archive broken: its gp frame cut short, its rp frame without a WCS.
    assert stack.urls is not None
    for kind, band in (("truncated", "gp"), ("no_wcs", "rp")):
        damage = {"kind": kind, "group": f"{alert_b.event_id}_", "filter": band}
        response = httpx.post(f"{stack.urls.archive}/sandbox/damage", json=damage, timeout=10)
        assert response.status_code == 201, response.text
    stack.publish(alert_b.raw)
    run_id = stack.wait_for_run(alert_b.event_id, timeout=patient(120))
    assert run_id, "the listener started no follow-up run for alert B"
    return run_id


def test_prefect_server_restart_while_a_run_waits_for_approval(stack, held_run, alert_b) -> None:

    event = alert_b.event_id
    name = f"approve-requests:{event}:preliminary"
    paused = wait_for(lambda: [r for r in runs_named(name) if r.state.is_paused()], 120)
    assert paused, f"no paused {name} run: {[(r.name, r.state) for r in runs_named(name)]}"
    (approval,) = paused

    stack.server.stop()
    assert not stack.server.healthy()
    time.sleep(3.0)  # longer than the pause's poll interval: the waiting run sees the outage
    stack.server.start()
    time.sleep(5.0)
    assert read_run(approval.id).state.is_paused(), read_run(approval.id).state
    for process in stack.processes:
        assert process.running, f"{process.name} died with the server:\n{process.tail()}"

    answer_form(approval.id, {"approved": True, "reviewer": REVIEWER, "comment": "restart"})
    done = final_run(approval.id, timeout=60)
    assert done.state.is_completed(), done.state
    assert wait_for(lambda: groups_of(stack, event), 60), "nothing submitted after the approval"
    ledger = stack.ledger()
    try:
        (decision,) = ledger.approvals.for_subject(f"requests:{event}:preliminary")
        assert decision.approved and decision.decided_by == REVIEWER
    finally:
        ledger.dispose()


def _worker_talking_to(stack: LocalStack, port: int) -> psutil.Process | None:
    """The listener's worker process with a connection open to ``port`` (the portal).

    Open means ``ESTABLISHED``: a worker whose run used the portal earlier keeps its kept-alive
    connection in ``CLOSE_WAIT`` once the portal has closed it for idleness. Killing that idle
    worker instead broke the pool, whose other workers, the held run's among them, then got
    SIGTERM: the run crashed by its own hand ("aborted by a termination signal"), not as a
    dead worker's.
    """
    listener = next(p for p in stack.processes if p.name == "listener")
    assert listener.pid is not None
    for child in psutil.Process(listener.pid).children(recursive=True):
        try:
            if any(
                c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
                for c in child.net_connections("tcp")
            ):
                return child
        except psutil.Error:
            continue
    return None


def test_a_worker_killed_mid_flow_crashes_its_runs_and_the_rerun_completes(
    stack, held_run, alert_b, operator
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import AwaitingRetry

    event = alert_b.event_id
    assert stack.urls is not None
    portal_port = httpx.URL(stack.urls.portal).port
    wait_name = f"wait-{event}"
    assert wait_for(lambda: [r for r in runs_named(wait_name) if r.state.is_running()], 60)
    worker = wait_for(lambda: _worker_talking_to(stack, portal_port), 30, interval=0.2)
    assert worker is not None, "no worker is polling the portal"
    worker.kill()

    crashed = final_run(held_run, timeout=60)
    assert crashed.state.is_crashed() and "worker process failed" in crashed.state.message
    first_attempt = runs_named(event)
    assert all(r.state.is_final() for r in first_attempt), [
        (r.name, r.state.name) for r in first_attempt
    ]
    assert read_run(next(r.id for r in first_attempt if r.name == wait_name)).state.is_crashed()

    # The rerun: the UI's Retry button; the served deployment's runner picks it up.
    operator.held.discard(event)
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        client.set_flow_run_state(
            held_run, AwaitingRetry(message="retry after a crash"), force=True
        )
    rerun = final_run(held_run, timeout=240)
    assert rerun.state.is_completed(), rerun.state

    (group,) = groups_of(stack, event)  # not submitted a second time
    ledger = stack.ledger()
    try:
        (request,) = ledger.requests.for_event(event)
        assert request.request_id == group["requests"][0]["id"] and request.state == "COMPLETED"
        assert len(ledger.approvals.for_subject(f"requests:{event}:preliminary")) == 1  # asked once
        # Nothing was measured on B's (damaged) frames: nothing to report, and nothing sent.
        assert ledger.reports.for_event(event) == []
    finally:
        ledger.dispose()
    messages = sandbox_get(f"{stack.urls.hermes}/sandbox/messages")
    assert not [m for m in messages if event in str(m)], messages
    runs = runs_named(event)
    assert all(r.state.is_final() for r in runs), [(r.name, r.state.name) for r in runs]
    assert len([r for r in runs if r.name.startswith("approve-requests:")]) == 1


def test_damaged_frames_are_set_aside_with_their_reason(stack, held_run, alert_b) -> None:
    """B's frames came truncated and without a WCS: kept, each with its reason; the run says so."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from tasks.artifacts import artifact_key

    event = alert_b.event_id
    assert stack.urls is not None
    assert sandbox_get(f"{stack.urls.archive}/sandbox/damage") == []  # both frames were damaged
    ledger = stack.ledger()
    try:
        frames = {f["filter"]: f for f in event_summary(ledger, event).frames}
    finally:
        ledger.dispose()
    assert set(frames) == {"gp", "rp"}
    assert "truncated" in frames["gp"]["error"], frames["gp"]
    assert "no celestial WCS" in frames["rp"]["error"], frames["rp"]
    # Processed by the refresh-requests schedule when the request completed, and by the rerun.
    runs = runs_named(f"process-frames-{event}")
    assert runs and all(r.state.is_completed() for r in runs), runs
    assert all("2 frame(s) set aside" in (r.state.message or "") for r in runs), runs
    key = artifact_key("frame-errors", event)
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        (table,) = client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    assert len(table.data if isinstance(table.data, list) else json.loads(table.data)) == 2


# ------------------------------------------------------------------ 5. secrets


def _every_log_line() -> list[str]:
    from prefect.client.orchestration import get_client

    lines: list[str] = []
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        while True:
            page = client.read_logs(limit=200, offset=len(lines))
            lines += [f"{log.name} {log.message}" for log in page]
            if len(page) < 200:
                return lines


def _every_event() -> list[str]:
    from prefect.client.orchestration import get_client

    found: list[str] = []
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        page = client.read_events(limit=50)
        while True:
            found += [event.model_dump_json() for event in page.events]
            if not page.next_page:
                return found
            page = client.read_events_page(page.next_page)


def test_secrets_never_leak_into_logs_artifacts_parameters_or_events(stack, held_run) -> None:
    """Searched after every fault above ran, failed, retried and crashed with these tokens."""
    from prefect.client.orchestration import get_client

    logs = sorted(stack.options.log_dir.glob("*.log"))
    assert {p.name for p in logs} >= {"prefect-server.log", "listener.log", "serve.log"}
    places: dict[str, str] = {p.name: p.read_text(errors="replace") for p in logs}
    places["flow run logs (API)"] = "\n".join(_every_log_line())
    places["events (API)"] = "\n".join(_every_event())
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        runs = client.read_flow_runs(limit=200)
        artifacts = client.read_artifacts(limit=200)
        documents = client.read_block_documents(include_secrets=False)
    places["flow run parameters"] = "\n".join(
        f"{r.name} {r.parameters} {r.state.message if r.state else ''}" for r in runs
    )
    places["artifacts"] = "\n".join(f"{a.key} {a.description} {a.data}" for a in artifacts)
    places["block documents read without secrets"] = "\n".join(str(d.data) for d in documents)

    assert len(places["flow run logs (API)"]) > 10_000 and places["events (API)"]
    assert artifacts and len(runs) > 10
    for secret_name, secret in SECRETS.items():
        for where, text in places.items():
            assert secret not in text, f"{secret_name} appears in {where}"


def test_blocks_store_credentials_as_secrets(stack) -> None:
    from prefect.client.orchestration import get_client

    from blocks import (
        FollowupSettings,
        GcnCredentials,
        GcnKafkaCredentials,
        HermesCredentials,
        HopCredentials,
        LcoCredentials,
        TnsCredentials,
        TreasureMapCredentials,
    )

    expected = {
        LcoCredentials: {"api_token"},
        HermesCredentials: {"api_token"},
        TnsCredentials: {"api_key"},
        GcnCredentials: {"access_token"},
        TreasureMapCredentials: {"api_token"},
        HopCredentials: {"password"},
        GcnKafkaCredentials: {"client_secret"},
        FollowupSettings: {
            "ledger_url",
            "lco.api_token",
            "hermes.api_token",
            "tns.api_key",
            "gcn.access_token",
            "treasuremap.api_token",
        },
    }
    for block, fields in expected.items():
        assert set(block.model_json_schema()["secret_fields"]) == fields, block.__name__
    name = stack.options.settings_name
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        for block, field in (
            (LcoCredentials, "api_token"),
            (HermesCredentials, "api_token"),
            (TnsCredentials, "api_key"),
            (GcnCredentials, "access_token"),
            (TreasureMapCredentials, "api_token"),
        ):
            slug = block.get_block_type_slug()
            stored = client.read_block_document_by_name(name, slug, include_secrets=False)
            assert stored.data[field] != "" and set(str(stored.data[field])) == {"*"}, slug
            # The server holds the real value, and the loaded Block keeps it wrapped.
            loaded = block.load(name)
            assert repr(getattr(loaded, field)) == "SecretStr('**********')"
            assert getattr(loaded, field).get_secret_value() in SECRETS.values()
