"""A report goes out at most once per destination, event, target and content."""

from __future__ import annotations

import pytest

from followup.exceptions import ServiceUnavailable, UncertainOutcome
from followup.models import Report
from followup.reporting.delivery import Delivery, deliver_once


def report(content: str = "h1", destination: str = "hermes") -> Report:
    return Report(
        destination=destination,
        event_id="S250101ab",
        content_hash=content,
        status="draft",
        payload={"title": "x"},
    )


class Sender:
    def __init__(self, *results):
        self.results = list(results)
        self.calls = 0

    def __call__(self) -> Delivery:
        self.calls += 1
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


def test_a_rerun_sends_nothing(ledger) -> None:
    send = Sender(Delivery(status="confirmed", remote_id="uuid-1"))
    row, sent = deliver_once(ledger, report(), send)
    again, sent_again = deliver_once(ledger, report(), send)
    assert (sent, sent_again, send.calls) == (True, False, 1)
    assert again.id == row.id and again.remote_id == "uuid-1" and again.status == "confirmed"


def test_new_content_is_a_new_report(ledger) -> None:
    send = Sender(Delivery(status="sent"), Delivery(status="sent"))
    deliver_once(ledger, report("h1"), send)
    deliver_once(ledger, report("h2"), send)
    assert send.calls == 2


def test_nothing_sent_may_be_tried_again(ledger) -> None:
    send = Sender(ServiceUnavailable("503"), Delivery(status="confirmed", remote_id="r"))
    with pytest.raises(ServiceUnavailable):
        deliver_once(ledger, report(), send)
    assert ledger.reports.for_event("S250101ab")[0].status == "failed"
    row, sent = deliver_once(ledger, report(), send)
    assert sent and row.status == "confirmed" and send.calls == 2


def test_a_report_that_may_have_arrived_is_recorded_and_not_resent(ledger) -> None:
    send = Sender(UncertainOutcome("504 after the body was sent"), Delivery(status="sent"))
    # Returned, not raised: an uncertain send is never handed to a retry policy.
    row, sent = deliver_once(ledger, report(), send)
    assert sent and row.status == "unconfirmed" and "504" in row.payload["error"]
    again, sent_again = deliver_once(ledger, report(), send)
    assert not sent_again and again.status == "unconfirmed" and send.calls == 1


def test_a_send_cut_short_by_a_crash_is_not_resent(ledger) -> None:
    row, _ = ledger.reports.claim(report())
    ledger.reports.update(row.id, status="sending")  # the process died inside send()
    send = Sender(Delivery(status="sent"))
    after, sent = deliver_once(ledger, report(), send)
    assert not sent and after.status == "unconfirmed" and send.calls == 0


def test_destinations_that_search_first_may_retry_an_uncertain_send(ledger) -> None:
    send = Sender(UncertainOutcome("lost"), Delivery(status="confirmed", remote_id="2026aaa"))
    first, _ = deliver_once(ledger, report(destination="tns"), send, retry_uncertain=True)
    assert first.status == "unconfirmed"
    row, sent = deliver_once(ledger, report(destination="tns"), send, retry_uncertain=True)
    assert sent and row.remote_id == "2026aaa" and row.status == "confirmed"
