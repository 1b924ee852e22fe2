"""The LCO stand-ins' state on a manual clock, and a Starlette TestClient in front of it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from sandbox.lco import LcoSandboxState, ManualClock, create_app
from tests.lco_support import NIGHT_AT_CPT, TOKEN, TinyRenderer


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NIGHT_AT_CPT)


@pytest.fixture
def renderer() -> TinyRenderer:
    return TinyRenderer()


@pytest.fixture
def state(clock: ManualClock, renderer: TinyRenderer, tmp_path) -> LcoSandboxState:
    return LcoSandboxState(
        clock, renderer, token=TOKEN, completion_delay_s=600, cache_dir=tmp_path / "render"
    )


@pytest.fixture
def client(state: LcoSandboxState) -> TestClient:
    with TestClient(create_app(state)) as test_client:
        yield test_client
