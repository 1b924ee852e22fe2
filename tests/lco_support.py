"""Helpers for the LCO tests: a tiny FITS renderer, targets, strategies, and ``serve``."""

from __future__ import annotations

import io
import json
import os
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from followup.models import ObservingStrategy, Target
from sandbox.serving import serve
from sandbox.specs import FrameSpec

__all__ = [
    "AUTH",
    "NIGHT_AT_CPT",
    "TOKEN",
    "TinyRenderer",
    "peer_python",
    "run_probe",
    "serve",
    "strategy",
    "target",
    "window",
]

TOKEN = "test-token-0123456789"
NIGHT_AT_CPT = datetime(2026, 12, 6, 0, 30, tzinfo=UTC)
"""A time when :func:`target` stands high in a dark sky at Sutherland (cpt) for hours: the portal
stand-in refuses a request whose target is not observable in its window, as LCO does."""
AUTH = {"Authorization": f"Token {TOKEN}"}


class TinyRenderer:
    """A FrameRenderer writing a 16x16 FITS file with the spec's keywords; counts its calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, spec: FrameSpec) -> bytes:
        with self._lock:
            self.calls.append(spec.basename)
        header = fits.Header()
        header["OBJECT"] = spec.target_name
        header["FILTER"] = spec.filter or "air"
        header["RLEVEL"] = spec.reduction_level
        header["OBSTYPE"] = spec.configuration_type
        header["REQNUM"] = spec.request_id or 0
        rng = np.random.default_rng(spec.seed)
        data = rng.normal(100, 5, size=(16, 16)).astype(np.float32)
        buffer = io.BytesIO()
        fits.PrimaryHDU(data=data, header=header).writeto(buffer)
        return buffer.getvalue()


def target(name: str = "GAL-001", ra: float = 150.25, dec: float = -20.5) -> Target:
    return Target(name=name, ra=ra, dec=dec, kind="galaxy", rank=1, probability=0.2)


def strategy(**fields: Any) -> ObservingStrategy:
    values: dict[str, Any] = {
        "name": "test",
        "filters": ["gp", "rp"],
        "exposure_time_s": 120.0,
        "exposure_count": 1,
    }
    values.update(fields)
    return ObservingStrategy(**values)


def window(now: datetime, hours: float = 24.0, start_offset_h: float = 0.0) -> dict[str, datetime]:
    start = now + timedelta(hours=start_offset_h)
    return {"window_start": start, "window_end": start + timedelta(hours=hours)}


def peer_python(module: str) -> str:
    """The Python of ``FOLLOWUP_PEER_PYTHON`` when it can import ``module``, else skip the test.

    aeonlib needs Python >= 3.12 and tomtoolkit pins astropy/numpy below this project's, so
    neither can live in the project's venv (python3.12 -m venv /tmp/lco-peers &&
    /tmp/lco-peers/bin/pip install aeonlib tomtoolkit); the probes in tests/peer_clients/ run
    there.
    """
    python = os.environ.get("FOLLOWUP_PEER_PYTHON")
    if not python:
        pytest.skip("set FOLLOWUP_PEER_PYTHON to a Python with aeonlib and tomtoolkit")
    probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"{python} cannot import {module}")
    return python


def run_probe(python: str, *args: str) -> dict:
    """Run a probe script; its last output line is its JSON report."""
    done = subprocess.run([python, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
