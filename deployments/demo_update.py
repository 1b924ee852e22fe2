"""``followup demo --scenario update``: a PRELIMINARY, then an UPDATE of the same event.

The LVK user guide's sequence: a PRELIMINARY alert, then an UPDATE whose sky map moved and
shrank. Each starts its own follow-up run through the listener. The first makes plan version 1
and submits its fields; the second makes version 2, diffed from the first: its fields that still
hold the strategy's minimum probability keep their pending requests, the requests of the ones it
dropped are cancelled at the sandbox portal with the reason, and its new top fields are
submitted. The demo prints both versions, the cancellations and the new submissions (also in
``--summary-json``).

The sandbox completes no request during the demo (its completion delay is an hour), so the
UPDATE finds the PRELIMINARY's requests pending, as it would at LCO minutes after the event.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from deployments.demo import (
    AutoApprover,
    _wait_final,
    conclude,
    demo_stack,
    print_stop_times,
    sandbox_records,
)
from deployments.processes import wait_until
from deployments.stack import DEMO_STRATEGIES, LocalStack, StackOptions
from followup.ledger import Ledger
from followup.models import LcoState, utcnow
from sandbox.server import SandboxConfig, sandbox_seed

__all__ = [
    "UPDATE_SHIFT_DEG",
    "UpdateAlerts",
    "make_update_alerts",
    "print_update_summary",
    "run_update_demo",
    "update_strategies",
]

UPDATE_SHIFT_DEG = (1.0, 0.5)
"""How far the UPDATE's map centre moved from the PRELIMINARY's (RA, Dec in degrees)."""
SIGMAS_DEG = (0.5, 0.4)
"""Widths of the PRELIMINARY's and the UPDATE's Gaussian maps."""
MIN_PROBABILITY = 0.02
"""The demo strategy's minimum probability per field: fields below it are dropped."""


@dataclass
class UpdateAlerts:
    """The two alerts of one mock event."""

    event_id: str
    preliminary: bytes
    update: bytes
    ra: float
    dec: float


def make_update_alerts(now: datetime | None = None, *, event_id: str | None = None) -> UpdateAlerts:
    """A mock LVK BNS PRELIMINARY and, ten minutes later, its UPDATE with a moved, smaller map."""
    import random
    import string

    from followup.alerts.mock import make_lvk_alert, observable_position
    from followup.skymap import make_gaussian_skymap

    now = now or utcnow()
    letters = "".join(random.choice(string.ascii_lowercase) for _ in range(3))
    event_id = event_id or f"MS{now:%y%m%d}{letters}"
    ra, dec = observable_position(now)
    common: dict[str, Any] = dict(
        event_time=now - timedelta(minutes=2),
        far=3.2e-10,
        significant=True,
        search="MDC",
        classification={"BNS": 0.93, "NSBH": 0.04, "BBH": 0.0, "Terrestrial": 0.03},
        properties={"HasNS": 0.99, "HasRemnant": 0.95, "HasMassGap": 0.01},
    )
    raws = []
    for alert_type, (dra, ddec), sigma, issued in (
        ("PRELIMINARY", (0.0, 0.0), SIGMAS_DEG[0], now),
        ("UPDATE", UPDATE_SHIFT_DEG, SIGMAS_DEG[1], now + timedelta(minutes=10)),
    ):
        skymap = make_gaussian_skymap(
            (ra + dra) % 360.0,
            dec + ddec,
            sigma,
            distance_mpc=120.0,
            distance_sigma_mpc=25.0,
            object_name=event_id,
        )
        raws.append(make_lvk_alert(event_id, alert_type, skymap=skymap, issued_at=issued, **common))
    return UpdateAlerts(event_id=event_id, preliminary=raws[0], update=raws[1], ra=ra, dec=dec)


def update_strategies() -> str:
    """The demo's strategies with a minimum probability per field (so an UPDATE drops some)."""
    book = yaml.safe_load(DEMO_STRATEGIES)
    book["strategies"]["demo-gw"]["min_probability"] = MIN_PROBABILITY
    return yaml.safe_dump(book, sort_keys=False)


def _wait_for_alert_run(stack: LocalStack, event_id: str, alert_type: str, timeout: float) -> str:
    """The id of the follow-up run the listener started for the event's alert of that type."""
    ledger = stack.ledger()
    found: list[str] = []

    def started() -> bool:
        for alert in ledger.alerts.for_event(event_id):
            if alert.alert_type == alert_type and alert.flow_run_id:
                found.append(alert.flow_run_id)
                return True
        return False

    try:
        wait_until(started, timeout=timeout, interval=0.5)
    finally:
        ledger.dispose()
    if not found:
        raise TimeoutError(f"no follow-up run for {event_id} {alert_type} within {timeout:g} s")
    return found[0]


def _requests(ledger: Ledger, event_id: str) -> list[dict[str, Any]]:
    targets = {t.id: t.name for t in ledger.events.targets(event_id)}
    return [
        {
            "group_name": r.group_name,
            "target": targets.get(r.target_id, "?"),
            "request_id": r.request_id,
            "local_status": str(r.local_status),
            "state": str(r.state),
            "detail": r.detail,
        }
        for r in ledger.requests.for_event(event_id)
    ]


def _versions(ledger: Ledger, event_id: str) -> list[dict[str, Any]]:
    from followup.replanning import PlanVersion

    out = []
    for row in ledger.plans.versions(event_id):
        version = PlanVersion.from_row(row)
        diff = version.diff
        out.append(
            {
                "version": version.version,
                "alert_type": version.alert_type,
                "summary": version.summary(),
                "hours": version.hours,
                "covered_probability": round(version.covered_probability, 5),
                "probability_gained": round(diff.probability_gained, 5),
                "added": [{"name": f.name, "p": round(f.probability, 5)} for f in diff.added],
                "kept": [{"name": f.name, "p": round(f.probability, 5)} for f in diff.kept],
                "dropped": [
                    {
                        "name": f.name,
                        "p": round(f.probability, 5),
                        "reason": diff.reasons.get(f.name),
                    }
                    for f in diff.dropped
                ],
            }
        )
    return out


def build_update_summary(
    stack: LocalStack,
    event_id: str,
    runs: dict[str, Any],
    before_update: list[dict[str, Any]],
    approvals: list[str],
    wall_s: float,
) -> dict[str, Any]:
    """The scenario's summary: both versions, the cancellations, the new submissions."""
    ledger = stack.ledger()
    try:
        versions = _versions(ledger, event_id)
        requests = _requests(ledger, event_id)
    finally:
        ledger.dispose()
    earlier = {r["group_name"] for r in before_update}
    cancelled = [r for r in requests if r["state"] == LcoState.CANCELED.value]
    submitted = [
        r for r in requests if r["group_name"] not in earlier and r["local_status"] == "submitted"
    ]
    box = sandbox_records(stack)
    return {
        "event_id": event_id,
        "scenario": "update",
        "sandbox_seed": stack.options.sandbox.seed,
        "flow_runs": {
            alert_type: {
                "id": str(run.id),
                "name": run.name,
                "state": run.state.name if run.state else None,
                "url": stack.server.flow_run_url(str(run.id)),
            }
            for alert_type, run in runs.items()
        },
        "succeeded": all(run.state and run.state.is_completed() for run in runs.values()),
        "plan_versions": versions,
        "requests_after_preliminary": before_update,
        "requests": requests,
        "cancellations": cancelled,
        "new_submissions": submitted,
        "sandbox_request_groups": box["lco_request_groups"],
        "approvals": approvals,
        "wall_time_s": round(wall_s, 1),
        "stack_startup_s": round(stack.startup_s, 1),
    }


def print_update_summary(data: dict[str, Any]) -> None:
    """The scenario's summary for people."""
    line = "-" * 78
    print(line)
    print(f"followup demo --scenario update: {data['event_id']}")
    for alert_type, run in data["flow_runs"].items():
        print(f"  {alert_type:<12} {run['name']}: {run['state']}  {run['url']}")
    print(line)
    for v in data["plan_versions"]:
        print(v["summary"])
        for change in ("added", "kept", "dropped"):
            for f in v[change]:
                why = f"  ({f['reason']})" if f.get("reason") else ""
                print(f"  {change:<8} {f['name']:<22} p={f['p']:.4f}{why}")
    print(f"Cancelled at LCO ({len(data['cancellations'])}):")
    for r in data["cancellations"]:
        print(f"  {r['group_name']:<48} request {r['request_id']}  {r['detail']}")
    print(f"New submissions of the UPDATE ({len(data['new_submissions'])}):")
    for r in data["new_submissions"]:
        print(f"  {r['group_name']:<48} request {r['request_id']}  {r['state']}")
    groups = data["sandbox_request_groups"]
    states: dict[str, int] = {}
    for g in groups:
        states[g["state"]] = states.get(g["state"], 0) + 1
    print(
        f"The sandbox portal holds {len(groups)} request group(s): "
        + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    )
    print(line)
    print(f"wall time {data['wall_time_s']} s (stack start-up {data['stack_startup_s']} s)")


def run_update_demo(
    *,
    root: Path,
    once: bool,
    summary_json: Path | None = None,
    approve: str = "auto",
    ui_port: int = 4200,
    timeout_s: float = 600.0,
    seed: int | None = None,
    sky: str = "plain",
) -> int:
    """Run the update scenario; return the exit code (0 when both follow-up runs completed)."""
    started = time.monotonic()
    seed = sandbox_seed() if seed is None else seed
    alerts = make_update_alerts()
    event_id = alerts.event_id
    stack = demo_stack(
        StackOptions(
            root=root,
            ui_port=ui_port,
            sandbox=SandboxConfig(
                completion_delay_s=3600.0,
                transients=[],
                seed=seed,
                sky=sky,  # type: ignore[arg-type]
            ),
            settings_overrides={"strategies_yaml": update_strategies(), "max_wait_s": 5.0},
        )
    )
    try:
        with stack:
            approver = AutoApprover()
            if approve == "auto":
                approver.start()
            runs: dict[str, Any] = {}
            before_update: list[dict[str, Any]] = []
            for alert_type, raw in (("PRELIMINARY", alerts.preliminary), ("UPDATE", alerts.update)):
                print(f"publishing {event_id} {alert_type} to igwn.gwalert", flush=True)
                stack.publish(raw)
                run_id = _wait_for_alert_run(stack, event_id, alert_type, timeout=120)
                print(f"{alert_type} run: {stack.server.flow_run_url(run_id)}", flush=True)
                runs[alert_type] = _wait_final(run_id, timeout_s)
                if alert_type == "PRELIMINARY":
                    ledger = stack.ledger()
                    before_update = _requests(ledger, event_id)
                    ledger.dispose()
            approver.stop.set()
            data = build_update_summary(
                stack, event_id, runs, before_update, approver.approved, time.monotonic() - started
            )
            return conclude(data, print_update_summary, summary_json, once=once)
    finally:
        print_stop_times(stack)
