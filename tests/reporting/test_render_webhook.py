"""Markdown renderings for approval forms, and the webhook receiver stand-in."""

from __future__ import annotations

import httpx
import pytest

from followup.reporting.gcn import Circular, draft_circular
from followup.reporting.hermes import build_hermes_message
from followup.reporting.render import render_markdown
from sandbox.fault_queue import Fault
from sandbox.webhook import WebhookState, create_app
from tests.reporting.conftest import AppTransport, make_at_report, make_measurement, make_target


def test_hermes_rendering(target, candidate_points):
    msg = build_hermes_message(
        "S260314ab",
        [target],
        candidate_points,
        title="LCO | photometry",
        authors="A. Author (LCO)",
        message_text="Line one.\n\nLine two.",
    )
    text = render_markdown(msg)
    assert "test topic `hermes.test`" in text and "needs approval" not in text
    assert "LCO \\| photometry" in text  # pipes escaped inside the markdown
    assert "> Line one." in text and "> Line two." in text
    assert "| S260314ab-C1 | 150.123456 | -20.654321 |" in text
    assert "19.610 ± 0.080" in text and "> 21.500" in text
    public = render_markdown(msg.model_copy(update={"topic": "hermes.photometry"}))
    assert "**public topic `hermes.photometry`: sending needs approval**" in public
    assert render_markdown(msg.to_payload()) == text


@pytest.mark.parametrize("dialect", ["new", "legacy"])
def test_tns_rendering(target, candidate_points, dialect):
    report = make_at_report(target, candidate_points, dialect=dialect)
    text = render_markdown(report)
    assert f"{dialect} field names" in text
    assert "| Internal name | S260314ab-C1 |" in text
    assert "| Discovery (UT) | 2026-03-14 11:00:00 |" in text
    assert "| AT type | 1 (PSN - Possible SN) |" in text
    assert "| Reporting group id | 82 |" in text and "| Data source id | 48 |" in text
    assert "| 2026-03-14 11:00:00 | 19.610 | 0.080 | 21.400 | 1 (AB mag) | 22 | 208 | 300 |" in text
    assert "| 2026-03-14 07:00:00 | – | – | 21.500 | 1 (AB mag) | 22 | 208 | 300 |" in text
    assert '"at_report"' in text  # the JSON is shown too


def test_circular_rendering():
    c = draft_circular(
        "S260314ab",
        [make_measurement(hours=1), make_measurement(hours=2)],
        observers=["A"],
        team="T",
    )
    text = render_markdown(c)
    assert "**Subject:** LIGO/Virgo/KAGRA S260314ab: LCO optical upper limits" in text
    assert "passes GCN's subject rule" in text and f"{c.line_count} lines" in text
    assert "```text\n" + c.body.rstrip("\n") + "\n```" in text
    bad = render_markdown(Circular(subject="Re: our results", body="x ``` y"))
    assert "GCN would refuse this subject" in bad and "````text" in bad
    assert render_markdown(c.model_dump()) == text


def test_render_refuses_unknown_things():
    with pytest.raises(TypeError):
        render_markdown({"what": "ever"})
    with pytest.raises(TypeError):
        render_markdown(make_target())


# ----------------------------------------------------------------------------- webhook receiver
@pytest.fixture
def hooks() -> tuple[WebhookState, httpx.Client]:
    state = WebhookState()
    with httpx.Client(
        base_url="http://testserver/", transport=AppTransport(create_app(state))
    ) as client:
        yield state, client


def test_webhook_stores_json_form_and_text(hooks):
    state, http = hooks
    assert http.post("hooks/alarm", json={"state": "Failed", "flow": "followup"}).json() == {
        "ok": True,
        "id": 1,
    }
    assert http.post("hooks/notify", data={"text": "a", "n": "1"}).json()["id"] == 2
    assert (
        http.post(
            "hooks/alarm", content=b"plain words", headers={"Content-Type": "text/plain"}
        ).status_code
        == 200
    )
    alarms = http.get("sandbox/hooks", params={"name": "alarm"}).json()
    assert [h["kind"] for h in alarms] == ["json", "text"]
    assert (
        alarms[0]["body"] == {"state": "Failed", "flow": "followup"}
        and alarms[1]["body"] == "plain words"
    )
    assert http.get("sandbox/hooks").json()[1]["body"] == {"text": "a", "n": "1"}
    assert http.delete("sandbox/hooks").status_code == 204 and state.hooks == []


def test_webhook_faults(hooks):
    state, http = hooks
    state.faults.add(Fault(kind="status", endpoint="hooks", status=503))
    assert http.post("hooks/alarm", json={}).status_code == 503
    assert http.post("hooks/alarm", json={}).status_code == 200
    assert len(state.hooks) == 1
