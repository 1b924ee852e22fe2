"""A HERMES send whose answer was lost is resolved through HERMES's message query."""

from __future__ import annotations

import logging
import uuid

import pytest

from followup.models import Report, ReportStatus, content_hash
from followup.reporting.delivery import Delivery, deliver_once
from followup.reporting.hermes import HermesClient, HermesMessage, build_hermes_message
from followup.reporting.hermes_recovery import resolve_unconfirmed_hermes
from sandbox.fault_queue import Fault
from sandbox.hermes import DEFAULT_TOKEN, HermesSandboxState, create_app
from tests.reporting.conftest import AppTransport, make_measurement, make_target


@pytest.fixture
def sandbox() -> HermesSandboxState:
    return HermesSandboxState()


@pytest.fixture
def hermes(sandbox: HermesSandboxState) -> HermesClient:
    return HermesClient(
        DEFAULT_TOKEN, base_url="http://testserver/", transport=AppTransport(create_app(sandbox))
    )


def message(title: str = "LCO follow-up photometry of S260314ab") -> HermesMessage:
    return build_hermes_message(
        "S260314ab",
        [make_target()],
        [make_measurement(hours=1.0)],
        title=title,
        authors="A. Author (LCO)",
        submitter="followup",
    )


def send_losing_the_answer(ledger, hermes, sandbox, sent: HermesMessage, *, stored: bool):
    """Deliver a message while HERMES answers 502 (after publishing it when ``stored``)."""
    sandbox.faults.add(
        Fault(
            kind="status",
            endpoint="submit",
            status=502,
            variant="after_store" if stored else None,
        )
    )
    report = Report(
        destination="hermes",
        event_id="S260314ab",
        content_hash=content_hash(sent.to_payload()),
        status="draft",
        payload={k: getattr(sent, k) for k in ("title", "topic", "submitter", "authors")},
    )

    def send() -> Delivery:
        receipt = hermes.submit_message(sent)
        return Delivery(status=ReportStatus.CONFIRMED, remote_id=str(receipt.uuid))

    row, called = deliver_once(ledger, report, send)
    assert called and row.status == ReportStatus.UNCONFIRMED
    return row


def test_a_published_message_is_found_and_confirmed(ledger, hermes, sandbox) -> None:
    # Another message with a similar title on the same topic must not be taken for it.
    hermes.submit_message(message("LCO follow-up photometry of S260314ab (update)"))
    row = send_losing_the_answer(ledger, hermes, sandbox, message(), stored=True)
    published = sandbox.messages[-1]["uuid"]
    [resolved] = resolve_unconfirmed_hermes(ledger, hermes, "S260314ab")
    assert resolved.id == row.id and resolved.status == ReportStatus.CONFIRMED
    assert resolved.remote_id == published and uuid.UUID(published)
    assert resolved.url.endswith(f"message/{published}")
    assert "alarm" not in resolved.payload
    assert len(sandbox.messages) == 2  # nothing was sent again


def test_a_message_hermes_never_published_raises_an_alarm(ledger, hermes, sandbox, caplog) -> None:
    row = send_losing_the_answer(ledger, hermes, sandbox, message(), stored=False)
    with caplog.at_level(logging.ERROR, logger="followup.reporting.hermes_recovery"):
        [resolved] = resolve_unconfirmed_hermes(ledger, hermes, "S260314ab")
    assert resolved.status == ReportStatus.UNCONFIRMED and resolved.remote_id is None
    alarm = resolved.payload["alarm"]
    assert "LCO follow-up photometry of S260314ab" in alarm and "a person must check" in alarm
    assert f"HERMES report {row.id} of S260314ab" in caplog.text
    assert sandbox.messages == []


def test_the_query_api_answers_as_hermes_does(hermes, sandbox) -> None:
    receipt = hermes.submit_message(message())
    client = AppTransport(create_app(sandbox)).client
    answer = client.get(
        "/api/v0/query/",
        params={"topic": "hermes.test", "search_query": "photometry"},
        headers={"Authorization": f"Token {DEFAULT_TOKEN}"},
    ).json()
    [item] = answer["messages"]
    assert item["metadata"]["headers"]["_id"] == str(receipt.uuid)
    assert item["metadata"]["topic"] == "hermes.test" and item["metadata"]["timestamp"] > 0
    assert item["message"]["title"] == "LCO follow-up photometry of S260314ab"
    other = client.get(
        "/api/v0/query/",
        params={"topic": "hermes.photometry"},
        headers={"Authorization": f"Token {DEFAULT_TOKEN}"},
    ).json()
    assert other == {"messages": []}
