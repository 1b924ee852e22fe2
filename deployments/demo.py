"""``followup demo``: the whole loop on a real-format LVK alert, against the sandbox.

Starts the local stack, publishes an LVK PRELIMINARY alert with an embedded multi-order sky map
to the local ``igwn.gwalert`` topic with hop-client, waits for the follow-up run the listener
starts, and prints what happened beside the sandbox's truth. Public reports wait for approval: the
demo answers those forms through Prefect's resume API on behalf of the on-call astronomer
(``--approve ui`` leaves them to you in the UI), and says so.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from deployments.stack import DEMO_STRATEGIES, LocalStack, StackOptions
from followup.alerts.mock import make_mock_bns_alert
from followup.http import client_settings
from followup.models import Alert
from followup.reporting.findings import Coverage
from followup.summary import EventSummary, event_summary
from sandbox.server import SandboxConfig, sandbox_seed
from sandbox.specs import HostGalaxy, Transient

__all__ = [
    "AutoApprover",
    "DemoAlert",
    "approve_paused_runs",
    "artifact_records",
    "conclude",
    "demo_strategies",
    "make_demo_alert",
    "print_stop_times",
    "run_demo",
]

DEMO_FIELDS = int(yaml.safe_load(DEMO_STRATEGIES)["strategies"]["demo-gw"]["max_targets"])
"""Fields the demo observes by default (its strategy's ``max_targets``)."""
SCENARIOS = ("kilonova", "empty", "update")
"""``kilonova``: the sandbox's sky holds one near the map's peak; ``empty``: nothing new;
``update``: a PRELIMINARY then an UPDATE with a moved map (:mod:`deployments.demo_update`)."""
TRANSIENT_OFFSET_DEG = (0.03, -0.02)  # from the sky map's peak: inside the first field
KILONOVA_PEAK_MAG = {"gp": 19.3, "rp": 19.0, "ip": 18.9, "zs": 18.9}
DEMO_HOST = HostGalaxy(
    offset_arcsec=(1.0, 0.8),
    r_mag=15.5,
    sersic_n=2.0,
    r_eff_arcsec=4.0,
    axis_ratio=0.6,
    position_angle_deg=35.0,
    distance_mpc=115.0,
)
"""The kilonova's host: 3.5 mag brighter, its nucleus 1.3 arcsec away (rendered on the realistic
sky, listed in the sandbox's GLADE+), at a distance the alert's map agrees with (120 ± 25 Mpc
along that line of sight), as the vetting's host check asks."""


@dataclass
class DemoAlert:
    """A demo alert and the transient the sandbox puts in its sky."""

    raw: bytes
    event_id: str
    transient: Transient


def make_demo_alert(
    now: datetime | None = None,
    *,
    event_id: str | None = None,
    position: tuple[float, float] | None = None,
) -> DemoAlert:
    """A mock LVK PRELIMINARY BNS alert and the kilonova the sandbox puts near its peak.

    The alert is :func:`followup.alerts.mock.make_mock_bns_alert`'s (the drill's alert); the
    arguments are passed to it.
    """
    mock = make_mock_bns_alert(now, event_id=event_id, position=position)
    transient = Transient(
        name=f"{mock.event_id}-kilonova",
        ra=(mock.ra + TRANSIENT_OFFSET_DEG[0]) % 360.0,
        dec=mock.dec + TRANSIENT_OFFSET_DEG[1],
        peak_mag=KILONOVA_PEAK_MAG,
        peak_time=mock.event_time,
        decline_mag_per_day=0.5,
        host=DEMO_HOST,
    )
    return DemoAlert(raw=mock.raw, event_id=mock.event_id, transient=transient)


def demo_strategies(fields: int = DEMO_FIELDS) -> str:
    """The demo's strategies observing at most ``fields`` fields of a GW map.

    The kilonova lies in the first field (the map's most probable); each further field is two
    more frames, each searched against the references that cover it.

    Raises:
        ValueError: ``fields`` is below 1.
    """
    if fields < 1:
        raise ValueError(f"the demo observes at least one field, not {fields}")
    book = yaml.safe_load(DEMO_STRATEGIES)
    book["strategies"]["demo-gw"]["max_targets"] = fields
    return yaml.safe_dump(book, sort_keys=False)


def _transient_for(alert: Alert) -> Transient:
    """A transient near the peak (or position) of someone else's alert file."""
    from followup.skymap import read_skymap

    if alert.skymap:
        ra, dec, _ = read_skymap(alert.skymap).peak
    elif alert.position:
        ra, dec = alert.position.ra, alert.position.dec
    else:
        raise ValueError(f"{alert.event_id} has neither a sky map nor a position")
    return Transient(
        name=f"{alert.event_id}-transient",
        ra=(ra + TRANSIENT_OFFSET_DEG[0]) % 360.0,
        dec=max(-89.9, min(89.9, dec + TRANSIENT_OFFSET_DEG[1])),
        peak_mag=KILONOVA_PEAK_MAG,
        peak_time=alert.event_time or alert.issued_at,
        decline_mag_per_day=0.5,
    )


class AutoApprover(threading.Thread):
    """Answers every paused run's form with "approved", as an on-call astronomer would in the UI.

    Uses Prefect's resume API (the same call the UI's Resume button makes). Every answer is
    recorded in :attr:`approved` and printed in the demo's summary.
    """

    REVIEWER = "followup demo (auto-approval on behalf of the on-call astronomer)"

    def __init__(self) -> None:
        super().__init__(daemon=True, name="auto-approver")
        self.stop = threading.Event()
        self.approved: list[str] = []

    def run(self) -> None:
        """Resume paused runs every second until :attr:`stop` is set."""
        from prefect.client.orchestration import get_client

        while not self.stop.wait(1.0):
            try:
                with get_client(sync_client=True, httpx_settings=client_settings()) as client:
                    for name in approve_paused_runs(client, self.REVIEWER, "approved by the demo"):
                        self.approved.append(name)
            except Exception:  # the server may be busy; try again next second
                continue


def approve_paused_runs(
    client: Any, reviewer: str, comment: str, *, skip: Callable[[str], bool] | None = None
) -> Iterator[str]:
    """Answer every paused run's form with "approved" through Prefect's resume API.

    Args:
        client: A synchronous Prefect client.
        reviewer: The name recorded as the decision's author.
        comment: The answer's comment.
        skip: Leaves alone the runs whose name it returns True for.

    Yields:
        The name of each run, once it is resumed.
    """
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    paused = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
    )
    for run in client.read_flow_runs(flow_run_filter=paused):
        if skip is not None and skip(run.name):
            continue
        result = client.resume_flow_run(
            run.id, run_input={"approved": True, "reviewer": reviewer, "comment": comment}
        )
        # Prefect pauses a run before it saves the form, and refuses an answer in between: the
        # run stays paused, and is answered on a later pass.
        if result.status.value == "ACCEPT":
            yield run.name


def _truth(control_url: str, summary: EventSummary) -> dict[int, dict[str, Any]]:
    """The sandbox's true magnitude beside each measurement (matched by position and time)."""
    targets = {t["name"]: t for t in summary.targets}
    truth: dict[int, dict[str, Any]] = {}
    for index, m in enumerate(summary.measurements):
        mid = datetime(1858, 11, 17, tzinfo=UTC) + timedelta(days=m.mjd)
        rows = httpx.get(
            f"{control_url}/sandbox/truth",
            params={"band": m.band, "time": mid.isoformat()},
            timeout=10,
        ).json()
        target = targets.get(m.target_name)
        for row in rows if target else []:
            separation = (
                3600 * ((row["ra"] - target["ra"]) ** 2 + (row["dec"] - target["dec"]) ** 2) ** 0.5
            )
            if separation < 3.0:
                truth[index] = {"name": row["name"], "mag": row["mag"]}
    return truth


def sandbox_records(stack: LocalStack) -> dict[str, Any]:
    """What the stand-ins themselves stored: requests, messages, reports, objects, circulars."""
    assert stack.urls is not None
    u = stack.urls

    def get(url: str) -> Any:
        return httpx.get(url, timeout=10).json()

    requests = get(f"{u.portal}/sandbox/requests")["results"]
    return {
        "lco_request_groups": [
            {"name": g["name"], "state": g["state"], "requests": [r["id"] for r in g["requests"]]}
            for g in requests
        ],
        "hermes_messages": [m.get("uuid") for m in get(f"{u.hermes}/sandbox/messages")],
        "tns_reports": [r["report_id"] for r in get(f"{u.tns}/sandbox/reports")],
        "tns_objects": [o["objname"] for o in get(f"{u.tns}/sandbox/objects")],
        "gcn_circulars": [c.get("circularId") for c in get(f"{u.gcn}/sandbox/circulars")],
        "treasuremap_pointings": [
            {k: p.get(k) for k in ("id", "status", "position", "band", "depth", "time")}
            for p in (get(f"{u.treasuremap}/sandbox/pointings") if u.treasuremap else [])
        ],
    }


def artifact_records(event_id: str) -> list[dict[str, Any]]:
    """What the event's runs showed in the UI: each artifact (latest version per key), in short.

    Each record has ``key``, ``type``, ``description``, ``flow_run`` (the name of the run that
    made it), and for tables ``columns``, ``rows`` and the ``links`` found in them, for markdown
    ``png`` (True when it embeds a PNG) and ``chars``.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from tasks.artifacts import artifact_key

    suffix = artifact_key("", event_id).strip("-")
    records = []
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        artifacts = client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_=suffix))
        )
        names: dict[Any, str] = {}
        for artifact in sorted(artifacts, key=lambda a: str(a.key)):
            run_id = artifact.latest_id and artifact.flow_run_id
            if run_id and run_id not in names:
                names[run_id] = client.read_flow_run(run_id).name
            record: dict[str, Any] = {
                "key": artifact.key,
                "type": artifact.type,
                "description": artifact.description,
                "flow_run": names.get(run_id),
            }
            data = artifact.data
            if artifact.type == "table":
                rows = json.loads(data) if isinstance(data, str) else data
                record["columns"] = sorted({c for row in rows for c in row})
                record["rows"] = len(rows)
                record["links"] = [
                    v for row in rows for v in row.values() if str(v).startswith("http")
                ]
            else:
                text = str(data)
                record["png"] = "data:image/png;base64," in text or artifact.type == "image"
                record["chars"] = len(text)
            records.append(record)
    return records


def _flow_run(flow_run_id: str) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        return client.read_flow_run(flow_run_id)


def flow_run_names(flow_run_id: str) -> list[str]:
    """Names of a run and of every subflow run under it (depth first)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    names: list[str] = []
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        pending = [client.read_flow_run(flow_run_id)]
        while pending:
            run = pending.pop(0)
            names.append(run.name)
            pending.extend(
                client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])
                    )
                )
            )
    return names


def _wait_final(flow_run_id: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        run = _flow_run(flow_run_id)
        if run.state is not None and run.state.is_final():
            return run
        if time.monotonic() > deadline:
            return run
        time.sleep(1.0)


def coverage_rows(coverage: Coverage | None) -> list[dict[str, Any]]:
    """The coverage table: one row per observed field and band."""
    if coverage is None:
        return []
    return [
        {
            "field": f.name,
            "ra": f.ra,
            "dec": f.dec,
            "band": f.band,
            "depth_ab_5sigma": f.depth,
            "probability": f.probability,
            "date_obs": f.date_obs.isoformat(),
            "telescope": f"{f.telescope} {f.camera}",
        }
        for f in sorted(coverage.fields, key=lambda f: (f.name, f.band))
    ]


def build_summary(
    stack: LocalStack,
    event_id: str,
    flow_run: Any,
    approvals: list[str],
    wall_s: float,
    scenario: str = "kilonova",
) -> dict[str, Any]:
    """The demo's summary as a JSON-able dict."""
    from flows.pointings import event_coverage, pointing_rows

    ledger = stack.ledger()
    summary = event_summary(ledger, event_id)
    coverage = event_coverage(ledger, event_id)
    pointings = pointing_rows(ledger.pointings.for_event(event_id))
    ledger.dispose()
    assert stack.urls is not None
    truth = _truth(stack.urls.control, summary)
    measurements = []
    for index, m in enumerate(summary.measurements):
        row = m.model_dump(mode="json")
        true = truth.get(index)
        row["true_mag"] = true["mag"] if true else None
        if true and m.mag is not None and m.mag_err:
            row["sigma_from_truth"] = (m.mag - true["mag"]) / m.mag_err
        measurements.append(row)
    state = flow_run.state
    return {
        "event_id": event_id,
        "scenario": scenario,
        "sandbox_seed": stack.options.sandbox.seed,
        "flow_run_id": str(flow_run.id),
        "flow_run_name": flow_run.name,
        "flow_run_url": stack.server.flow_run_url(str(flow_run.id)),
        "state": state.name if state else None,
        "succeeded": bool(state and state.is_completed()),
        "targets": summary.targets,
        "requests": summary.requests,
        "frames": summary.frames,
        "measurements": measurements,
        "reports": summary.reports,
        "coverage": coverage_rows(coverage),
        "probability_covered": round(coverage.covered, 4) if coverage else 0.0,
        "pointings": pointings,
        "approvals": approvals,
        "sandbox": sandbox_records(stack),
        "artifacts": artifact_records(event_id),
        "flow_runs": flow_run_names(str(flow_run.id)),
        "wall_time_s": round(wall_s, 1),
        "stack_startup_s": round(stack.startup_s, 1),
    }


def print_summary(data: dict[str, Any]) -> None:
    """The summary for people."""
    line = "-" * 78
    print(line)
    print(f"followup demo: {data['event_id']}  ({data['flow_run_name']}: {data['state']})")
    print(f"Prefect UI: {data['flow_run_url']}")
    print(line)
    print(f"Targets ({len(data['targets'])}):")
    for t in data["targets"]:
        print(
            f"  {t['rank']:>2}  {t['name']:<22} {t['kind']:<9} RA {t['ra']:9.4f}  Dec {t['dec']:+8.4f}"
            f"  P={t['probability']:.3f}"
        )
    print(f"LCO requests ({len(data['requests'])}):")
    for r in data["requests"]:
        print(
            f"  {r['group_name']:<48} request {r['request_id']}  {r['local_status']}/{r['state']}"
        )
    print(f"Frames ({len(data['frames'])}):")
    for f in data["frames"]:
        print(f"  {f['basename']}  {f['filter']}  {f['observation_date']}")
    print(f"Measurements ({len(data['measurements'])}), AB magnitudes beside the sandbox's truth:")
    for m in data["measurements"]:
        measured = (
            f"{m['mag']:.3f} ± {m['mag_err']:.3f}"
            if m["mag"] is not None
            else f"> {m['limit_mag_5sigma']:.2f} (5σ limit)"
        )
        true = f"{m['true_mag']:.3f}" if m["true_mag"] is not None else "-"
        pull = f"  ({m['sigma_from_truth']:+.1f}σ)" if m.get("sigma_from_truth") is not None else ""
        print(
            f"  {m['target_name']:<22} {m['band']}  MJD {m['mjd']:.5f}  measured {measured}"
            f"  true {true}{pull}"
        )
    print(f"Reports ({len(data['reports'])}):")
    for r in data["reports"]:
        print(
            f"  {r['destination']:<7} {r['target'] or '-':<22} {r['status']:<10} {r['remote_id'] or ''}"
            f"  {r['url'] or ''}"
        )
    coverage = data.get("coverage", [])
    covered = data.get("probability_covered", 0.0)
    print(
        f"Coverage ({len(coverage)} field/band(s); sky-map probability covered {covered:.3f}, "
        f"{min(covered / 0.9, 1.0) * 100:.0f}% of the 90% credible region):"
    )
    for c in coverage:
        print(
            f"  {c['field']:<22} {c['band']:<3} RA {c['ra']:9.4f}  Dec {c['dec']:+8.4f}"
            f"  P={c['probability']:.3f}  depth {c['depth_ab_5sigma']:.2f} (AB, 5σ)  {c['date_obs']}"
        )
    pointings = data.get("pointings", [])
    print(f"Treasure Map pointings ({len(pointings)}):")
    for p in pointings:
        depth = f"  depth {p['depth (AB, 5 sigma)']:.2f}" if p["depth (AB, 5 sigma)"] else ""
        error = f"  ({p['error']})" if p["error"] else ""
        print(
            f"  {p['field']:<22} {p['band']:<3} {p['status']:<10} id {p['treasure map id']}"
            f"{depth}{error}"
        )
    for r in data["reports"]:
        if r.get("text"):
            print(line)
            print(f"{r['destination']} report ({r['status']}): {r.get('subject') or ''}")
            print(r["text"].rstrip())
    print(line)
    box = data["sandbox"]
    print(
        f"The sandbox holds {len(box['lco_request_groups'])} LCO request group(s), "
        f"{len(box['hermes_messages'])} HERMES message(s), {len(box['tns_reports'])} TNS report(s) "
        f"(objects {', '.join(box['tns_objects']) or 'none'}), {len(box['gcn_circulars'])} GCN Circular(s), "
        f"{len(box.get('treasuremap_pointings', []))} Treasure Map pointing(s)."
    )
    if data["approvals"]:
        print(
            f"Approved through the resume API by {AutoApprover.REVIEWER}: {', '.join(data['approvals'])}"
        )
    print(line)
    print(f"wall time {data['wall_time_s']} s (stack start-up {data['stack_startup_s']} s)")
    print(
        f"sandbox seed {data['sandbox_seed']} (followup demo --seed {data['sandbox_seed']} replays this sky)"
    )


def run_demo(
    *,
    root: Path,
    once: bool,
    alert_path: Path | None = None,
    summary_json: Path | None = None,
    approve: str = "auto",
    ui_port: int = 4200,
    timeout_s: float = 1200.0,
    seed: int | None = None,
    scenario: str = "kilonova",
    sky: str = "realistic",
    fields: int = DEMO_FIELDS,
) -> int:
    """Run the demo; return the exit code (0 when the follow-up run completed).

    ``seed`` is the sandbox's seed (see :class:`sandbox.server.SandboxConfig`); None takes
    ``FOLLOWUP_SANDBOX_SEED`` from the environment, else the fixed default. ``sky`` is the
    sandbox's sky (``plain`` or ``realistic``). ``scenario`` is ``kilonova`` (a kilonova near
    the map's peak), ``empty`` (nothing new in the fields: the run ends with the coverage, the
    Treasure Map pointings and the no-counterpart Circular) or ``update`` (a PRELIMINARY then an
    UPDATE with a moved map: both plan versions, the cancellations and the new submissions).
    ``fields`` is the most fields of a GW map observed (:func:`demo_strategies`); the update
    scenario keeps its own.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}, not {scenario!r}")
    overrides = (
        {"strategies_yaml": demo_strategies(fields), "max_targets": fields}
        if fields != DEMO_FIELDS
        else {}
    )
    if scenario == "update":
        if alert_path is not None:
            raise ValueError("--scenario update makes its own two alerts: leave out --alert")
        if overrides:
            raise ValueError("--scenario update plans its own fields: leave out --fields")
        from deployments.demo_update import run_update_demo

        return run_update_demo(
            root=root,
            once=once,
            summary_json=summary_json,
            approve=approve,
            ui_port=ui_port,
            timeout_s=timeout_s,
            seed=seed,
            sky=sky,
        )
    from followup.alerts import parse_message

    started = time.monotonic()
    seed = sandbox_seed() if seed is None else seed
    if alert_path is not None:
        raw = alert_path.read_bytes()
        alert = parse_message(raw)
        event_id, transient = alert.event_id, _transient_for(alert)
    else:
        demo = make_demo_alert()
        raw, event_id, transient = demo.raw, demo.event_id, demo.transient
    transients = [] if scenario == "empty" else [transient]
    stack = demo_stack(
        StackOptions(
            root=root,
            ui_port=ui_port,
            sandbox=SandboxConfig(
                completion_delay_s=15.0,
                transients=transients,
                seed=seed,
                sky=sky,  # type: ignore[arg-type]
            ),
            settings_overrides=overrides,
        )
    )
    try:
        with stack:
            print(
                f"stack up in {stack.startup_s:.0f} s; publishing {event_id} PRELIMINARY to igwn.gwalert",
                flush=True,
            )
            approver = AutoApprover()
            if approve == "auto":
                approver.start()
            stack.publish(raw)
            flow_run_id = stack.wait_for_run(event_id, timeout=120)
            if flow_run_id is None:
                print(
                    f"the listener started no follow-up run for {event_id}; see {stack.options.log_dir}"
                )
                return 1
            print(f"follow-up run: {stack.server.flow_run_url(flow_run_id)}", flush=True)
            run = _wait_final(flow_run_id, timeout_s)
            approver.stop.set()
            data = build_summary(
                stack, event_id, run, approver.approved, time.monotonic() - started, scenario
            )
            return conclude(data, print_summary, summary_json, once=once)
    finally:
        print_stop_times(stack)


def demo_stack(options: StackOptions) -> LocalStack:
    """The demo's local stack (not started yet), announced with its UI port and sandbox seed."""
    print(
        f"starting the stack (Prefect UI on http://127.0.0.1:{options.ui_port}), "
        f"sandbox seed {options.sandbox.seed} ...",
        flush=True,
    )
    return LocalStack(options)


def conclude(
    data: dict[str, Any],
    show: Callable[[dict[str, Any]], None],
    summary_json: Path | None,
    *,
    once: bool,
) -> int:
    """Print a demo's summary (and write it as JSON), keep the stack up unless ``once``.

    Returns:
        The demo's exit code: 0 when it succeeded.
    """
    show(data)
    if summary_json is not None:
        summary_json.write_text(json.dumps(data, indent=2, default=str))
    if not once:
        print("the stack stays up; press Ctrl-C to stop it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0 if data["succeeded"] else 1


def print_stop_times(stack: LocalStack) -> None:
    """How long the stack and each of its parts took to stop, once it has stopped."""
    if stack.stop_s is not None:
        times = ", ".join(f"{name} {s:.1f} s" for name, s in stack.stop_times.items())
        print(f"stack stopped in {stack.stop_s:.1f} s ({times})", flush=True)
