"""The LCO stand-in's whole state: the portal's and the archive's, one clock, one seed, one lock."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from sandbox.lco.archive import ArchiveState, Observation
from sandbox.lco.clock import Clock, ScaledClock
from sandbox.lco.faults import FaultBook
from sandbox.lco.frames import FrameEntry, FrameQuery
from sandbox.lco.portal import PortalState
from sandbox.specs import FrameRenderer
from sandbox.times import drf_time

__all__ = ["LcoSandboxState"]


class LcoSandboxState:
    """Everything the portal and archive stand-ins know, shared between them (thread-safe).

    The portal's part (:attr:`portal`: groups, requests, blocks) and the archive's
    (:attr:`archive`: frames) live in their own objects on one lock; a request that completes
    becomes frames through :meth:`ArchiveState.observe`. Injected faults and frame damage wait in
    :attr:`faults`.

    Args:
        clock: The simulated clock (:class:`ManualClock` in tests, :class:`ScaledClock` for
            drills); a real-time :class:`ScaledClock` by default.
        renderer: Makes the FITS bytes of a frame (the synthetic sky); None serves
            :func:`header_only_renderer` files (correct headers, no sky).
        seed: The sandbox's seed: every random choice (telescope, conditions, noise) of a frame
            derives from it and the exposure's stable identity (see :mod:`sandbox.lco.exposures`).
        token: The one API token the portal and archive accept.
        username: The user the token belongs to.
        proposals: Proposal ids the user belongs to (the first is the default).
        time_allocation_hours: Hours of each observation type per proposal and semester
            (``NORMAL``, ``RAPID_RESPONSE``, ``TIME_CRITICAL``); 0 gives the portal's
            "does not have any ... time left" refusal.
        completion_delay_s: Simulated seconds from the later of submission and window start
            until a request completes.
        reduction_delay_s: Simulated seconds from completion until the BANZAI (level 91)
            frames reach the archive; raw frames and calibrations are there at completion.
        cache_dir: Where rendered frames are kept (each rendered once); None keeps them in memory.
        url_secret: Key signing download URLs; random by default.
        url_lifetime_s: Lifetime of a signed download URL (the archive's is 48 h).
        page_size: Default ``limit`` of portal listings (the portal's PAGE_SIZE is 10).
        first_id: First request group / request id. A sandbox started afresh against a ledger
            that outlives it should start above every id it handed out before (the real
            portal's ids are unique for ever).
        first_frame_id: First archive frame id (same reasoning); version ids start
            20,000,000 above it, so that a download cache keyed by basename and version never
            mistakes a restarted sandbox's frame for an earlier one of the same basename.
        reference_epoch: When the archive's earlier frames of every field were taken (see
            :class:`~sandbox.lco.archive.ArchiveState`); None: a search by position finds only
            the frames of completed requests.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        renderer: FrameRenderer | None = None,
        *,
        seed: int = 0,
        token: str = "sandbox-token",
        username: str = "sandbox",
        proposals: Iterable[str] = ("SANDBOX-001",),
        time_allocation_hours: Mapping[str, float] | None = None,
        completion_delay_s: float = 600.0,
        reduction_delay_s: float = 0.0,
        cache_dir: str | Path | None = None,
        url_secret: bytes | None = None,
        url_lifetime_s: float = 172800.0,
        page_size: int = 10,
        first_id: int = 1000,
        first_frame_id: int = 50_000_000,
        reference_epoch: datetime | None = None,
    ) -> None:
        self.clock: Clock = clock or ScaledClock()
        self.seed = seed
        self.token = token
        self.username = username
        self.reduction_delay_s = reduction_delay_s
        self.page_size = page_size
        self._lock = threading.RLock()
        self.portal = PortalState(
            self.clock,
            self._lock,
            self._observed,
            seed=seed,
            username=username,
            token=token,
            proposals=proposals,
            time_allocation_hours={
                "NORMAL": 100.0,
                "RAPID_RESPONSE": 10.0,
                "TIME_CRITICAL": 10.0,
                **(time_allocation_hours or {}),
            },
            completion_delay_s=completion_delay_s,
            first_id=first_id,
        )
        self.faults = FaultBook(self.portal.next_id)
        self.archive = ArchiveState(
            self.clock,
            renderer,
            self.faults,
            self._lock,
            seed=seed,
            cache_dir=cache_dir,
            url_secret=url_secret,
            url_lifetime_s=url_lifetime_s,
            first_frame_id=first_frame_id,
            reference_epoch=reference_epoch,
        )

    def __repr__(self) -> str:
        return (
            f"LcoSandboxState(groups={len(self.portal.groups)}, frames={len(self.archive.frames)})"
        )

    @property
    def cache_dir(self) -> Path | None:
        """Where rendered frames are kept (None: in memory)."""
        return self.archive.cache_dir

    @property
    def create_calls(self) -> int:
        """``POST /api/requestgroups/`` calls answered (stored or refused)."""
        return self.portal.create_calls

    @property
    def validate_calls(self) -> int:
        """``POST /api/requestgroups/validate/`` calls answered."""
        return self.portal.validate_calls

    def _observed(self, observation: Observation) -> None:
        self.archive.observe(observation, self.reduction_delay_s)

    def reset(self) -> None:
        """Forget every group, request, frame, fault and counter (configuration stays)."""
        with self._lock:
            self.portal.reset()
            self.archive.reset()
            self.faults.clear()

    # ------------------------------------------------------------------ time

    def now(self) -> datetime:
        """The simulated time."""
        return self.clock.now()

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward and apply every state change that became due."""
        now = self.clock.advance(seconds)
        self.portal.refresh()
        return now

    # ------------------------------------------------------------------ archive reads

    def frame_entries(
        self, query: Mapping[str, list[str]], *, authenticated: bool
    ) -> list[FrameEntry]:
        """Frames matching the archive's filters, newest observation first.

        Raises:
            ValueError: A filter value is malformed; ``args[0]`` is the DRF error body.
        """
        parsed = FrameQuery.parse(query)
        with self._lock:
            self.portal.refresh()
            return self.archive.select(parsed, authenticated=authenticated)

    def frame_entry(self, frame_id: int, *, authenticated: bool) -> FrameEntry:
        """One frame, once due completions have made their frames.

        Raises:
            KeyError: No such frame, or not visible without a token.
        """
        with self._lock:
            self.portal.refresh()
            return self.archive.frame_entry(frame_id, authenticated=authenticated)

    # ------------------------------------------------------------------ control

    def submissions(self) -> dict[str, Any]:
        """What was submitted, for tests and drills (``GET /sandbox/requests``)."""
        portal = self.portal
        with self._lock:
            portal.refresh()
            results = []
            for group in sorted(portal.groups.values(), key=lambda g: g["id"]):
                requests = []
                for request in group["requests"]:
                    scheduled = portal.scheduled[request["id"]]
                    requests.append(
                        {
                            "id": request["id"],
                            "state": portal.requests[request["id"]]["state"],
                            "window_start": drf_time(scheduled.window_start),
                            "window_end": drf_time(scheduled.window_end),
                            "complete_at": drf_time(scheduled.complete_at),
                            "frames": self.archive.frame_ids_of(request["id"]),
                        }
                    )
                results.append(
                    {
                        "group_id": group["id"],
                        "name": group["name"],
                        "state": group["state"],
                        "proposal": group["proposal"],
                        "observation_type": group["observation_type"],
                        "created": group["created"],
                        "received_at": portal.received_at.get(group["id"]),
                        "requests": requests,
                    }
                )
            return {
                "count": len(results),
                "create_calls": portal.create_calls,
                "validate_calls": portal.validate_calls,
                "now": drf_time(self.now()),
                "results": results,
            }
