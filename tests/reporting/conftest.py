"""Fixtures of the reporting tests: targets and measurements, a fake clock, apps served in-process or by uvicorn."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.exceptions import StarletteDeprecationWarning

from sandbox.serving import serve

with warnings.catch_warnings():
    # Starlette 1.0 wants `httpx2` for its TestClient; the lock pins httpx, which still works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from followup.models import Measurement, Target, TargetKind
from followup.reporting.at_report import AtDiscovery, TnsReporter, build_at_report, discovery_points

T0 = datetime(2026, 3, 14, 6, 0, 0, tzinfo=UTC)


def make_target(
    name: str = "S260314ab-C1", ra: float = 150.123456, dec: float = -20.654321
) -> Target:
    return Target(name=name, ra=ra, dec=dec, kind=TargetKind.POINT, rank=1, probability=1.0)


def make_measurement(
    target: str = "S260314ab-C1",
    hours: float = 2.0,
    band: str = "rp",
    mag: float | None = None,
    limit: float = 21.4,
    exposure: float | None = 300.0,
) -> Measurement:
    detected = mag is not None
    return Measurement(
        target_name=target,
        frame_basename=f"cpt1m010-fa16-20260314-{int(hours * 10):04d}-e91",
        date_obs=T0 + timedelta(hours=hours),
        mjd=61113.25 + hours / 24,
        band=band,
        flux_ujy=55.0 if detected else 3.0,
        flux_err_ujy=4.0,
        snr=13.7 if detected else 0.8,
        mag=mag,
        mag_err=0.08 if detected else None,
        limit_mag_5sigma=limit,
        zero_point=23.4,
        zero_point_err=0.02,
        n_ref_stars=57,
        telescope="1m0a",
        instrument="fa16",
        exposure_time_s=exposure,
    )


REPORTER = TnsReporter(
    reporter="A. Author (LCO)",
    reporting_group_id=82,
    discovery_data_source_id=48,
)


def make_at_report(target: Target, points: Sequence[Measurement], **reporter: Any) -> dict:
    """The AT report of the discovery of ``target`` in ``points``, by :data:`REPORTER`.

    ``reporter`` overrides fields of :data:`REPORTER` (``dialect="legacy"``...).
    """
    first, last = discovery_points(points, target.name)
    return build_at_report(
        AtDiscovery(target=target, first_detection=first, last_non_detection=last),
        REPORTER.model_copy(update=reporter),
    )


@pytest.fixture
def target() -> Target:
    return make_target()


@pytest.fixture
def candidate_points() -> list[Measurement]:
    """A non-detection, then two detections of the same candidate."""
    return [
        make_measurement(hours=1.0, band="rp", limit=21.5),
        make_measurement(hours=5.0, band="rp", mag=19.61),
        make_measurement(hours=5.2, band="gp", mag=19.95),
    ]


class FakeClock:
    """Monotonic time that only moves when something sleeps (shared by client and stand-in)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class AppTransport(httpx.BaseTransport):
    """Send an httpx client's requests to an ASGI app in-process (through starlette's TestClient)."""

    def __init__(self, app: Any) -> None:
        self.client = TestClient(app, base_url="http://testserver")

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.client.send(request)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=response.content,
            request=request,
        )

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def served() -> Iterator[Callable[[Any], str]]:
    """Start apps with uvicorn for one test (all stopped at its end)."""
    with_stack: list[Any] = []

    def start(app: Any) -> str:
        cm = serve(app)
        url = cm.__enter__()
        with_stack.append(cm)
        return url

    yield start
    for cm in reversed(with_stack):
        cm.__exit__(None, None, None)
