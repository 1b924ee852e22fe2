"""The TNS approval form shows what a person decides on, and only vetted candidates reach it.

The report flow runs against the session's Prefect API with three detected candidates: one that
passed vetting on a real difference search (its cutouts in the frame's difference product), one
the vetting set aside, and one a catalog search found (never vetted). Only the first gets a form;
its description carries the science, reference and difference cutouts and the light curve as
Markdown images of published PNGs, the real-bogus score and every vetting reason, and the same
is an artifact of the run.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

from followup.evidence import CandidateVetting, vettings_of
from followup.http import client_settings
from followup.ledger import Ledger
from followup.models import Frame, ObservationRequest, ReportDestination, Target, TargetKind
from followup.photometry import associate_candidates
from tests.candidate_support import kilonova, vetted_table
from tests.reporting.conftest import make_measurement
from tests.test_flow_approvals import (
    HERMES,
    answer,
    description,
    in_thread,
    paused,
    save_settings,
    services,
    stored_alert,
)

pytestmark = pytest.mark.slow

PLOTS = "http://plots.test/followup"


@pytest.fixture(scope="module", autouse=True)
def harness(prefect_api: object) -> Iterator[None]:
    """Flows of this module run against the session's Prefect API (``tests/conftest.py``)."""
    yield


def detected(ledger: Ledger, event_id: str, name: str, ra: float, dec: float) -> None:
    """A candidate with a limit and a detection, as process-frames leaves it."""
    candidate = Target(name=name, ra=ra, dec=dec, kind=TargetKind.CANDIDATE, rank=5, probability=0)
    ledger.events.save_targets(event_id, [candidate])
    row, _ = ledger.requests.claim(
        ObservationRequest(
            event_id=event_id, target_name=name, group_name=f"{event_id}-{name}", filters=["rp"]
        )
    )
    target_id = ledger.events.get_target(event_id, name).id
    for point in [
        make_measurement(name, hours=1.0, limit=21.5),
        make_measurement(name, hours=5.0, mag=19.6),
    ]:
        frame_row, _ = ledger.frames.record(
            Frame(
                frame_id=uuid.uuid4().int % 10**9,
                basename=point.frame_basename,
                filename=f"{point.frame_basename}.fits.fz",
                url="https://archive.test/f",
                observation_date=point.date_obs - timedelta(minutes=1),
                filter="rp",
            ),
            row.id,
        )
        ledger.frames.record_measurement(frame_row.id, target_id, point)


def tns_forms(event_id: str) -> list[Any]:
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                name=FlowRunFilterName(like_=f"approve-report:tns:{event_id}:")
            )
        )


def test_only_the_vetted_candidate_reaches_the_tns_form_and_it_shows_the_evidence(
    tmp_path: Path,
) -> None:
    from flows.report import report

    name = f"t-{uuid.uuid4().hex[:8]}"
    ledger = save_settings(name, tmp_path, send_tns=True, plots_base_url=PLOTS)
    plots_dir = Path(tmp_path / "state" / "plots")
    event = "S260103ta"
    alert_id, _ = stored_alert(ledger, event)
    # The kilonova passed vetting on a real difference search; its vetting is kept as
    # process-frames keeps it.
    table = vetted_table()
    ra, dec = kilonova()
    merged = [
        c for c in associate_candidates([table]) if abs(c["ra"] - ra) + abs(c["dec"] - dec) < 1e-3
    ]
    [(good, vetting)] = vettings_of(merged, [table]).items()
    detected(ledger, event, good, merged[0]["ra"], merged[0]["dec"])
    ledger.events.record_vetting(event, good, vetting)
    # Vetted out (a minor planet), and never vetted (a catalog search): detected all the same.
    detected(ledger, event, "C150.20000-20.20000", 150.2, -20.2)
    ledger.events.record_vetting(
        event,
        "C150.20000-20.20000",
        CandidateVetting(passed=False, score=0.9, reasons=["minor planet 2010 AB1 0.8″ away"]),
    )
    detected(ledger, event, "C150.30000-20.30000", 150.3, -20.3)

    with services() as mock:
        hermes = mock.post(f"{HERMES}api/v0/submit_message/").mock(
            side_effect=lambda request: httpx.Response(
                200, json={**json.loads(request.content), "uuid": str(uuid.uuid4())}
            )
        )
        thread, out = in_thread(lambda: report(alert_id, event, name))
        run = paused(f"approve-report:tns:{event}:{good}", set())
        shown = description(run)
        answer(run, approved=False, reviewer="on-call", text="declined", comment="a test")
        thread.join(120)
    assert "error" not in out, out.get("error")
    assert hermes.call_count == 1  # the test topic needs nobody

    # The form: the AT report, then the cutouts, the light curve, the score and every reason.
    assert f"![{good}: science, reference, difference]({PLOTS}/cutouts-" in shown
    assert f"![{good}: light curve]({PLOTS}/light-curve-" in shown
    assert f"**Real-bogus score:** {vetting.score:.2f}" in shown
    assert vetting.reasons and all(f"- {reason}" in shown for reason in vetting.reasons)
    images = re.findall(r"!\[[^\]]*\]\(" + re.escape(PLOTS) + r"/([^)]+)\)", shown)
    assert len(images) == 2
    for image in images:  # each link is a PNG written to the plots directory
        assert (plots_dir / image).read_bytes().startswith(b"\x89PNG")

    # Only the candidate that passed vetting was asked about, and only it has a TNS report.
    assert [r.name.split(":")[3] for r in tns_forms(event)] == [good]
    tns = [r for r in ledger.reports.for_event(event) if r.destination == ReportDestination.TNS]
    assert [(r.target_name, r.status) for r in tns] == [(good, "declined")]

    # The same evidence is an artifact of the report run, with the cutouts as an image artifact.
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        artifacts = {a.key: a for a in client.read_latest_artifacts() if event.lower() in a.key}
    evidence = artifacts[f"candidate-{good.lower().replace('.', '-')}-{event.lower()}"]
    assert f"{PLOTS}/cutouts-" in evidence.data and "**Real-bogus score:**" in evidence.data
    [cutouts] = [a for key, a in artifacts.items() if key.startswith("cutouts-")]
    assert cutouts.type == "image" and cutouts.data == f"{PLOTS}/{images[0]}"

    again = report(alert_id, event, name)  # the decline is reused: no second form
    assert len(tns_forms(event)) == 1
    assert [r["status"] for r in again if r["destination"] == ReportDestination.TNS] == ["declined"]
