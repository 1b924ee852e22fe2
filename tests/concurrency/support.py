"""Slow fakes shared by threads and processes: an LCO portal and a report destination.

Their state is a JSON-lines file, so that two processes see one portal (and one HERMES): every
POST that reaches the fake is a line, whoever sent it. Each side sleeps ``delay_s`` before it
stores, which is the window in which a second sender would get in.
"""

from __future__ import annotations

import fcntl
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from followup.lco import PortalClient
from followup.ledger import Ledger
from followup.models import Alert, ObservationRequest, Report, Target
from followup.observing import submit_once
from followup.reporting.delivery import Delivery, deliver_once
from tests.ledger_support import store_alert

EVENT = "S250101ab"
TARGET = "F001"
GROUP = "S250101ab-F001-gr"


class FilePortal:
    """The portal's request-group endpoints, stored in a file, answering after ``delay_s``."""

    def __init__(self, path: Path, delay_s: float = 0.3) -> None:
        self.path = Path(path)
        self.delay_s = delay_s

    def groups(self) -> list[dict[str, Any]]:
        """Every group the fake stored (one per POST that reached it)."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]

    def _store(self, payload: dict[str, Any]) -> dict[str, Any]:
        with self.path.open("a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            count = sum(1 for line in handle if line.strip())
            now = datetime.now(UTC).isoformat()
            group = {
                "id": 1000 + count,
                "name": payload["name"],
                "proposal": "TEST",
                "state": "PENDING",
                "observation_type": "NORMAL",
                "created": now,
                "requests": [{"id": 5000 + count, "state": "PENDING"}],
            }
            handle.write(json.dumps(group) + "\n")
        return group

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path.endswith("/validate/"):
            return httpx.Response(200, json={"request_durations": {"duration": 60}, "errors": {}})
        if request.method == "POST" and path == "/api/requestgroups/":
            time.sleep(self.delay_s)
            return httpx.Response(201, json=self._store(json.loads(request.content)))
        if request.method == "GET" and path == "/api/requestgroups/":
            name = request.url.params.get("name", "")
            found = [g for g in self.groups() if name in g["name"]]
            return httpx.Response(200, json={"count": len(found), "next": None, "results": found})
        return httpx.Response(404, json={"detail": "Not found."})

    def client(self) -> PortalClient:
        """A portal client whose every call goes to this fake."""
        return PortalClient(
            "token", base_url="https://portal.test", transport=httpx.MockTransport(self)
        )


class FileDestination:
    """A report destination that takes ``delay_s`` per send and writes one line per send."""

    def __init__(self, path: Path, delay_s: float = 0.3) -> None:
        self.path = Path(path)
        self.delay_s = delay_s

    def sends(self) -> list[str]:
        """One entry per send that reached the destination."""
        return self.path.read_text().split() if self.path.exists() else []

    def __call__(self) -> Delivery:
        time.sleep(self.delay_s)
        with self.path.open("a") as handle:
            handle.write(f"sent-{time.monotonic_ns()}\n")
        return Delivery(status="confirmed", remote_id=f"uuid-{len(self.sends())}")


def prepare_request(ledger: Ledger) -> tuple[ObservationRequest, dict[str, Any]]:
    """An event with one stored target, and the request and payload of its first epoch."""
    store_alert(
        ledger,
        Alert(
            source="LVK",
            kind="gw",
            format="lvk-json",
            event_id=EVENT,
            alert_type="PRELIMINARY",
            issued_at=datetime(2025, 1, 1, tzinfo=UTC),
        ),
    )
    ledger.events.save_targets(
        EVENT, [Target(name=TARGET, ra=150.0, dec=-20.0, kind="field", rank=1, probability=0.4)]
    )
    request = ObservationRequest(
        event_id=EVENT, target_name=TARGET, group_name=GROUP, filters=["gp", "rp"]
    )
    return request, {"name": GROUP, "proposal": "TEST", "requests": []}


def report() -> Report:
    """The HERMES report both senders try to deliver."""
    return Report(
        destination="hermes",
        event_id=EVENT,
        content_hash="c" * 64,
        status="draft",
        payload={"title": "LCO follow-up of S250101ab"},
    )


def submit_in_process(url: str, portal_file: str, start_at: float, out: Any) -> None:
    """One contender in its own process: open the ledger, wait for the start, submit."""
    ledger = Ledger(url)
    request = ObservationRequest(
        event_id=EVENT, target_name=TARGET, group_name=GROUP, filters=["gp", "rp"]
    )
    portal = FilePortal(Path(portal_file)).client()
    _wait_until(start_at)
    try:
        result = submit_once(
            portal, ledger, request, {"name": GROUP, "proposal": "TEST", "requests": []}
        )
        out.put(result.outcome.value)
    except Exception as exc:  # reported to the parent, which fails the test
        out.put(f"error: {type(exc).__name__}: {exc}")
    finally:
        ledger.dispose()


def deliver_in_process(url: str, sends_file: str, start_at: float, out: Any) -> None:
    """One sender in its own process: open the ledger, wait for the start, deliver."""
    ledger = Ledger(url)
    send = FileDestination(Path(sends_file))
    _wait_until(start_at)
    try:
        row, sent = deliver_once(ledger, report(), send)
        out.put(f"{row.status.value}:{sent}")
    except Exception as exc:
        out.put(f"error: {type(exc).__name__}: {exc}")
    finally:
        ledger.dispose()


def _wait_until(start_at: float) -> None:
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)


def run_threads(target: Callable[[], Any], count: int = 2) -> list[Any]:
    """Run ``target`` in ``count`` threads released together; their results (or exceptions)."""
    import threading

    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = target()
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results
