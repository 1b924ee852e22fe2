"""The stand-ins served by uvicorn on free ports, driven by the real clients over real sockets."""

from __future__ import annotations

import httpx
import pytest

from followup.exceptions import AuthenticationError
from followup.reporting.gcn import GcnCircularsClient, draft_circular
from followup.reporting.hermes import HermesClient, build_hermes_message
from followup.reporting.tns import (
    TnsClient,
    TnsOutcomeStatus,
)
from sandbox import gcn, hermes, tns, webhook
from sandbox.fault_queue import Fault
from tests.reporting.conftest import make_at_report, make_measurement, make_target

pytestmark = pytest.mark.slow


def test_hermes_over_http(served, target, candidate_points):
    state = hermes.HermesSandboxState(dev_server=True)
    url = served(hermes.create_app(state))
    message = build_hermes_message(
        "S260314ab", [target], candidate_points, title="LCO photometry", authors="A. Author"
    )
    with HermesClient(hermes.DEFAULT_TOKEN, base_url=url + "/", timeout=5) as client:
        client.validate_message(message)
        receipt = client.submit_message(message)
        assert state.messages[0]["uuid"] == str(receipt.uuid)
        httpx.post(
            f"{url}/sandbox/faults", json={"kind": "error_200", "endpoint": "submit"}
        ).raise_for_status()
        with pytest.raises(AuthenticationError, match="SCIMMA"):
            client.submit_message(message)
    assert len(httpx.get(f"{url}/sandbox/messages").json()) == 1


def _tns_client(url: str, timeout: float = 5.0) -> TnsClient:
    bot = tns.DEFAULT_BOT
    return TnsClient(
        bot.api_key, bot_id=bot.bot_id, bot_name=bot.name, base_url=url + "/api/", timeout=timeout
    )


def _report(name: str, ra: float) -> dict:
    target = make_target(name, ra=ra, dec=-30.0)
    return make_at_report(
        target,
        [
            make_measurement(target=name, hours=1.0),
            make_measurement(target=name, hours=4.0, mag=18.9),
        ],
    )


def test_tns_over_http_under_quirks(served):
    state = tns.TnsSandboxState(processing_delay_s=0.3)
    url = served(tns.create_app(state))
    cases = [
        ("gateway_timeout", None, 0),
        ("stored_nothing", None, 1),
        ("reply_404", "bulk-report-reply", 2),
        ("hang", "bulk-report", 3),
    ]
    with _tns_client(url, timeout=0.5) as client:
        for kind, endpoint, i in cases:
            fault = {
                "kind": kind,
                "endpoint": endpoint or "bulk-report",
                "count": -1 if kind == "reply_404" else 1,
            }
            if kind == "hang":
                fault["delay_s"] = (
                    1.0  # longer than the client's timeout: the report lands after it gave up
                )
            httpx.post(f"{url}/sandbox/faults", json=fault).raise_for_status()
            outcome = client.report_and_confirm(
                _report(f"C{i}", 10.0 + i), poll_interval_s=0.2, max_wait_s=8
            )
            assert outcome.confirmed, (kind, outcome.notes)
            httpx.delete(f"{url}/sandbox/faults").raise_for_status()
    reports = httpx.get(f"{url}/sandbox/reports").json()
    objects = httpx.get(f"{url}/sandbox/objects").json()
    assert len(reports) == 4 and len(objects) == 4  # one report per object, whatever the quirk
    assert sorted(o["objname"] for o in objects) == ["2026aaa", "2026aab", "2026aac", "2026aad"]
    with _tns_client(url) as client:
        again = client.report_and_confirm(_report("C0", 10.0), poll_interval_s=0.2, max_wait_s=5)
    assert (
        again.status is TnsOutcomeStatus.ALREADY_KNOWN
        and len(httpx.get(f"{url}/sandbox/reports").json()) == 4
    )


def test_gcn_and_webhook_over_http(served):
    gcn_state = gcn.GcnSandboxState()
    gcn_url = served(gcn.create_app(gcn_state))
    hook_url = served(webhook.create_app())
    circular = draft_circular(
        "S260314ab", [make_measurement()], observers=["A. Author (LCO)"], team="LCO team"
    )
    with GcnCircularsClient(gcn.DEFAULT_TOKEN, base_url=gcn_url + "/", timeout=5) as client:
        record = client.submit_circular(circular)
    assert (
        httpx.get(f"{gcn_url}/circulars/{record.circular_id}.json").json()["body"] == circular.body
    )
    assert httpx.post(f"{hook_url}/hooks/alarm", json={"flow": "report"}).json()["ok"] is True
    assert httpx.get(f"{hook_url}/sandbox/hooks").json()[0]["body"] == {"flow": "report"}
    bad = httpx.post(f"{hook_url}/sandbox/faults", json=Fault(kind="bogus").model_dump())
    assert bad.status_code == 400
