"""The observatory view: a person approves telescope time in the Prefect UI with a real browser,
the alarm webhook hears about it, and the plots show in the UI.

One local stack (Prefect server and UI, Kafka, sandbox, served deployments, listener) whose
approval rules make every request wait for a person, and no auto-approver: the only way on is the
Resume form in the UI, driven by headless Chromium (Debian's ``chromium``, through playwright's
``executable_path``; ``make install`` installs it when missing).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.demo import make_demo_alert
from deployments.stack import DEMO_STRATEGIES, LocalStack, StackOptions
from followup.http import client_settings
from sandbox.server import SandboxConfig
from tests.stack_support import flow_runs, patient, serving, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
REVIEWER = "Ada Lovelace (browser test)"
# Every request needs a person: more telescope time than 0 h.
ALWAYS_ASK = DEMO_STRATEGIES.replace("max_hours: 12", "max_hours: 0")
assert ALWAYS_ASK != DEMO_STRATEGIES


@pytest.fixture(scope="module")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: `make install` installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing (make install installs it)")
    return CHROMIUM


@pytest.fixture(scope="module")
def demo() -> Any:
    return make_demo_alert()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, demo, chromium) -> Iterator[LocalStack]:

    from deployments.processes import free_port

    root = tmp_path_factory.mktemp("observatory")
    port = free_port()
    options = StackOptions(
        root=root,
        ui_port=port,
        # The UI is under test, not the sky: the plain sky's frames are measured in seconds.
        sandbox=SandboxConfig(completion_delay_s=5.0, transients=[demo.transient], sky="plain"),
        settings_overrides={"strategies_yaml": ALWAYS_ASK},
        listener_workers=1,
    )
    with serving(LocalStack(options)) as stack:
        stack.publish(demo.raw)
        yield stack


@pytest.fixture
def page(chromium: str, tmp_path: Path) -> Iterator[Any]:
    """A page of a fresh headless Chromium with an empty profile."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=ui_ms(10))
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=chromium,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        # Clicks and fills without a deadline of their own wait this long, as expectations do.
        context.set_default_timeout(ui_ms(10))
        try:
            yield context.new_page()
        finally:
            context.close()


def ui_ms(seconds: float) -> float:
    """A deadline of the browser's (milliseconds), stretched for a busy machine like the others."""
    return patient(seconds) * 1000


def shot(page: Any, path: Path) -> Path:
    page.screenshot(path=str(path))
    print(f"screenshot: {path}")
    return path


def test_a_person_approves_telescope_time_in_the_ui(stack, demo, page, tmp_path) -> None:
    from playwright.sync_api import expect

    event_id = demo.event_id
    name = f"approve-requests:{event_id}:preliminary"
    assert stack.wait_for_run(event_id, timeout=patient(120)), (
        "the listener started no follow-up run"
    )
    paused = wait_for(lambda: [r for r in flow_runs(name) if r.state and r.state.is_paused()], 120)
    assert paused, f"no paused approval run {name}"
    (approval,) = paused

    # The on-call person was told, with a link to the form.
    assert stack.urls is not None
    hooks = wait_for(
        lambda: [
            h
            for h in httpx.get(f"{stack.urls.webhook}/sandbox/hooks?name=alarms").json()
            if h["body"].get("alarm") == "approval-waiting"
        ],
        30,
    )
    assert hooks and hooks[0]["body"]["flow_run_id"] == str(approval.id)
    assert hooks[0]["body"]["flow_run_url"].startswith(stack.server.ui_url)

    # The person opens the UI, finds the paused run in the runs list, and answers its form.
    page.goto(f"{stack.server.ui_url}/v2/runs")
    link = page.get_by_role("link", name=name)
    expect(link).to_be_visible(timeout=ui_ms(30))
    link.click()
    expect(page.get_by_text("Paused").first).to_be_visible(timeout=ui_ms(30))
    page.get_by_role("button", name="Open menu").first.click()
    page.get_by_role("menuitem", name="Resume").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Resume Flow Run")
    expect(dialog).to_contain_text(f"Telescope time for {event_id}")
    approved = dialog.get_by_role("switch")
    expect(approved).to_have_attribute("aria-checked", "false")
    approved.click()
    expect(approved).to_have_attribute("aria-checked", "true")
    dialog.get_by_label("Reviewer").fill(REVIEWER)
    shot(page, tmp_path / "resume-form.png")
    # On SQLite the server answers 503 when the database is busy (Prefect's "retry me"); the UI
    # shows an error and keeps the form, and a person presses Resume again. Any other failure,
    # or three busy answers in a row, fails the test.
    for attempt in range(3):
        with page.expect_response(
            lambda r: (
                r.url.endswith(f"/flow_runs/{approval.id}/resume") and r.request.method == "POST"
            ),
            timeout=ui_ms(90),
        ) as answer:
            dialog.get_by_role("button", name="Resume", exact=True).click()
        if answer.value.status != 503:
            break
        print(f"resume attempt {attempt + 1}: the server was busy (503); pressing Resume again")
        time.sleep(2)
    assert answer.value.ok, (
        f"the UI's resume call failed: {answer.value.status} {answer.value.text()}"
    )
    expect(dialog).to_be_hidden(timeout=ui_ms(60))

    # The run resumes and completes; the decision, with the reviewer's name, is in the ledger.
    done = wait_for(lambda: [r for r in flow_runs(name) if r.state and r.state.is_final()], 60)
    assert done and done[0].state.is_completed(), done
    page.reload()
    expect(page.get_by_text("Completed").first).to_be_visible(timeout=ui_ms(30))
    shot(page, tmp_path / "resumed-run.png")
    ledger = stack.ledger()
    try:
        (decision,) = ledger.approvals.for_subject(f"requests:{event_id}:preliminary")
        assert decision.approved and decision.decided_by == REVIEWER
        submitted = wait_for(
            lambda: [
                r for r in ledger.requests.for_event(event_id) if r.local_status == "submitted"
            ],
            30,
        )
        assert submitted, "nothing was submitted to LCO after the approval"
    finally:
        ledger.dispose()


def test_plots_embedded_as_data_urls_render_in_both_uis(stack, demo, page, tmp_path) -> None:
    """The sky plot is a markdown artifact with a ``data:`` PNG; both UIs must draw it."""
    from playwright.sync_api import expect
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    key = f"sky-plot-{demo.event_id.lower()}"

    def sky_plot() -> Any:
        with get_client(sync_client=True, httpx_settings=client_settings()) as client:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
            )
        return found[0] if found else None

    artifact = wait_for(sky_plot, 120)
    assert artifact is not None, f"no {key} artifact (did the approval test run first?)"
    assert str(artifact.data).startswith("![") and "data:image/png;base64," in str(artifact.data)
    for ui, path in (("v2", f"/v2/artifacts/artifact/{artifact.id}"),
                     ("v1", f"/artifacts/artifact/{artifact.id}")):  # fmt: skip
        page.goto(f"{stack.server.ui_url}{path}")
        image = page.locator("img[src^='data:image/png']").first
        expect(image).to_be_visible(timeout=ui_ms(30))
        width = image.evaluate("img => img.complete ? img.naturalWidth : 0")
        assert width > 100, f"the {ui} UI did not draw the plot (naturalWidth {width})"
        shot(page, tmp_path / f"sky-plot-{ui}.png")
