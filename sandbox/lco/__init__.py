"""Stand-ins for the LCO Observation Portal and Science Archive that speak the real HTTP API.

Two FastAPI apps share one :class:`LcoSandboxState`: the portal (``/api/...``) validates request
groups with the portal's own messages, stores them and moves them through the portal's state
machine on a simulated clock; the archive (``/frames/...``) lists the frames a completed request
produced and serves them at signed, expiring URLs with HTTP Range. What is *in* a frame is the
injected :data:`sandbox.specs.FrameRenderer`'s business (the synthetic sky); this package decides
which frames exist, what they are called and which seed each is drawn from.

Both apps also answer a control API under ``/sandbox/...`` (not part of LCO's API) to inspect
submissions, move the clock, complete requests and inject faults: 5xx, 429 with Retry-After,
slow answers, "stored but the answer was lost", truncated downloads; and to damage frames as the
archive stores them (``POST /sandbox/damage``: truncated files, headers without a WCS), so that
the damage survives the download's md5 check as a broken file at the real archive would.

Modules, one concern each: :mod:`~sandbox.lco.clock` (simulated time),
:mod:`~sandbox.lco.configdb` (instruments and telescopes), :mod:`~sandbox.lco.validation` (the
portal's serializers), :mod:`~sandbox.lco.states` (state names), :mod:`~sandbox.lco.portal`
(groups, requests, blocks), :mod:`~sandbox.lco.exposures` (what a request observed: identities,
seeds, names), :mod:`~sandbox.lco.frames` and :mod:`~sandbox.lco.archive` (frames, records,
bytes, signed URLs), :mod:`~sandbox.lco.faults`, :mod:`~sandbox.lco.state` (both halves on one
lock), :mod:`~sandbox.lco.routes`, :mod:`~sandbox.lco.control` and :mod:`~sandbox.lco.app` (HTTP).

Run alone for manual trials: ``python -m sandbox.lco --port 8123`` (portal and archive on one
port; ``followup sandbox`` runs every stand-in).
"""

from __future__ import annotations

from sandbox.lco.app import create_app, create_archive_app, create_portal_app, main
from sandbox.lco.archive import header_only_renderer
from sandbox.lco.clock import Clock, ManualClock, ScaledClock
from sandbox.lco.faults import Fault, FrameDamage, damage_frame
from sandbox.lco.state import LcoSandboxState
from sandbox.lco.states import RequestState

__all__ = [
    "Clock",
    "Fault",
    "FrameDamage",
    "LcoSandboxState",
    "ManualClock",
    "RequestState",
    "ScaledClock",
    "create_app",
    "create_archive_app",
    "create_portal_app",
    "damage_frame",
    "header_only_renderer",
    "main",
]
