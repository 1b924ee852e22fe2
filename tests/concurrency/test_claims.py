"""Exclusive claims: two senders of one request or one report, one POST and one send.

Each contest runs on SQLite and on PostgreSQL, with two threads of one process and with two
processes, against a slow fake (the POST or send takes 300 ms: the window in which a second
sender would get in). The loser waits for the winner, looks the row up and reports what the
winner did; it never sends.
"""

from __future__ import annotations

import multiprocessing
import time
from datetime import timedelta
from pathlib import Path

import pytest

from followup.exceptions import ClaimHeld
from followup.ledger import Ledger
from followup.observing import submit_once
from followup.reporting.delivery import deliver_once
from tests.concurrency.support import (
    FileDestination,
    FilePortal,
    deliver_in_process,
    prepare_request,
    report,
    run_threads,
    submit_in_process,
)

pytestmark = pytest.mark.slow


def _database(ledger: Ledger) -> str:
    return ledger.engine.dialect.name


def test_two_threads_submit_one_request_once(ledger: Ledger, tmp_path: Path, figures) -> None:
    request, payload = prepare_request(ledger)
    portal = FilePortal(tmp_path / "portal.jsonl")
    client = portal.client()
    started = time.perf_counter()
    results = run_threads(lambda: submit_once(client, ledger, request, payload))
    elapsed = time.perf_counter() - started
    outcomes = sorted(r.outcome.value if hasattr(r, "outcome") else repr(r) for r in results)
    figures.append(
        f"submit_once x2 threads on {_database(ledger)}: {len(portal.groups())} POST(s), "
        f"outcomes {outcomes}, {elapsed:.2f} s"
    )
    assert len(portal.groups()) == 1, outcomes
    assert outcomes == ["already", "submitted"], outcomes
    row = ledger.requests.find(request.group_name)
    assert row.local_status == "submitted" and row.group_id == portal.groups()[0]["id"]
    assert row.claimed_by is None  # released once recorded


def test_two_threads_deliver_one_report_once(ledger: Ledger, tmp_path: Path, figures) -> None:
    send = FileDestination(tmp_path / "sends.txt")
    started = time.perf_counter()
    results = run_threads(lambda: deliver_once(ledger, report(), send))
    elapsed = time.perf_counter() - started
    sent = sorted(str(r[1]) if isinstance(r, tuple) else repr(r) for r in results)
    figures.append(
        f"deliver_once x2 threads on {_database(ledger)}: {len(send.sends())} send(s), "
        f"called {sent}, {elapsed:.2f} s"
    )
    assert len(send.sends()) == 1, results
    assert sent == ["False", "True"], results
    assert all(r[0].status == "confirmed" for r in results)


def _race(target, args_of, count: int = 2) -> list[str]:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    start_at = time.time() + 4.0  # every process imported and connected by then
    processes = [
        context.Process(target=target, args=(*args_of(i), start_at, out)) for i in range(count)
    ]
    for process in processes:
        process.start()
    results = [out.get(timeout=90) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    return sorted(results)


def test_two_processes_submit_one_request_once(ledger: Ledger, tmp_path: Path, figures) -> None:
    prepare_request(ledger)
    portal_file = tmp_path / "portal.jsonl"
    results = _race(submit_in_process, lambda i: (ledger.url, str(portal_file)))
    groups = FilePortal(portal_file).groups()
    figures.append(
        f"submit_once x2 processes on {_database(ledger)}: {len(groups)} POST(s), outcomes {results}"
    )
    assert len(groups) == 1, results
    assert results == ["already", "submitted"], results


def test_two_processes_deliver_one_report_once(ledger: Ledger, tmp_path: Path, figures) -> None:
    sends_file = tmp_path / "sends.txt"
    results = _race(deliver_in_process, lambda i: (ledger.url, str(sends_file)))
    sends = FileDestination(sends_file).sends()
    figures.append(
        f"deliver_once x2 processes on {_database(ledger)}: {len(sends)} send(s), results {results}"
    )
    assert len(sends) == 1, results
    assert results == ["confirmed:False", "confirmed:True"], results


def test_a_dead_holders_claim_runs_out_and_the_next_caller_looks_up_first(
    ledger: Ledger, tmp_path: Path
) -> None:
    request, payload = prepare_request(ledger)
    portal = FilePortal(tmp_path / "portal.jsonl", delay_s=0)
    # A worker claimed the row, POSTed, and died before recording the answer.
    ledger.requests.claim(request, owner="dead-worker", lease=timedelta(milliseconds=50))
    portal.client().submit_request_group(payload)
    time.sleep(0.1)
    result = submit_once(portal.client(), ledger, request, payload)
    assert result.outcome == "found" and len(portal.groups()) == 1


def test_a_live_holder_is_waited_for_and_never_overtaken(ledger: Ledger, tmp_path: Path) -> None:
    request, payload = prepare_request(ledger)
    portal = FilePortal(tmp_path / "portal.jsonl", delay_s=0)
    ledger.requests.claim(request, owner="busy-worker", lease=timedelta(hours=1))
    with pytest.raises(ClaimHeld, match="busy-worker"):
        submit_once(portal.client(), ledger, request, payload, wait_s=0.3)
    assert portal.groups() == []
    assert ledger.requests.find(request.group_name).claimed_by == "busy-worker"


def test_a_report_being_sent_elsewhere_is_waited_for_then_left_alone(
    ledger: Ledger, tmp_path: Path
) -> None:
    send = FileDestination(tmp_path / "sends.txt", delay_s=0)
    row, _ = ledger.reports.claim(report())
    ledger.reports.transition(
        row.id,
        "busy-worker",
        from_statuses=["draft"],
        to_status="sending",
        lease=timedelta(hours=1),
    )
    with pytest.raises(ClaimHeld):
        deliver_once(ledger, report(), send, wait_s=0.3)
    assert send.sends() == []
    # The sender died: once its claim runs out the report may have arrived, so it is not resent.
    ledger.reports.update(row.id, claim_expires_at=ledger.reports.get(row.id).created_at)
    after, sent = deliver_once(ledger, report(), send)
    assert (after.status, sent, send.sends()) == ("unconfirmed", False, [])


def _dead_local_owner() -> str:
    """The owner a claim of a process of this host that has died carries."""
    import socket
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return f"{socket.gethostname()[:40]}:{process.pid}:1:deadbeef"


def test_a_killed_local_holder_is_taken_over_at_once(ledger: Ledger, tmp_path: Path) -> None:
    request, payload = prepare_request(ledger)
    portal = FilePortal(tmp_path / "portal.jsonl", delay_s=0)
    # A worker of this host claimed the row, POSTed and was killed before recording the answer;
    # its lease has an hour to run, but its process is gone.
    ledger.requests.claim(request, owner=_dead_local_owner(), lease=timedelta(hours=1))
    portal.client().submit_request_group(payload)
    started = time.monotonic()
    result = submit_once(portal.client(), ledger, request, payload, wait_s=5)
    assert result.outcome == "found" and len(portal.groups()) == 1
    assert time.monotonic() - started < 2


def test_a_report_whose_local_sender_was_killed_is_unconfirmed_at_once(
    ledger: Ledger, tmp_path: Path
) -> None:
    send = FileDestination(tmp_path / "sends.txt", delay_s=0)
    row, _ = ledger.reports.claim(report())
    ledger.reports.transition(
        row.id, _dead_local_owner(), from_statuses=["draft"], to_status="sending",
        lease=timedelta(hours=1),
    )  # fmt: skip
    after, sent = deliver_once(ledger, report(), send, wait_s=5)
    assert (after.status, sent, send.sends()) == ("unconfirmed", False, [])
    assert after.claimed_by is None
