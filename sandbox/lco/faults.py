"""Failures the LCO stand-ins inject: HTTP faults on matching calls, and damage to stored frames.

A :class:`Fault` answers a call with a 5xx, a 429 with Retry-After, a slow or truncated answer,
or the real answer lost after the request was stored; :class:`FrameDamage` breaks the next
matching frames as the archive stores them (truncated files, headers without a WCS), so that the
damage survives the download's md5 check as a broken file at the real archive would.
"""

from __future__ import annotations

import asyncio
import io
import re
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from sandbox.specs import FrameSpec

__all__ = ["Fault", "FaultBook", "FaultMiddleware", "FrameDamage", "damage_frame"]


class Fault(BaseModel):
    """A failure the sandbox injects into matching calls (``POST /sandbox/faults``).

    Attributes:
        endpoint: Regular expression searched in ``"METHOD /path"``, e.g.
            ``"POST /api/requestgroups/$"`` or ``"GET /download/"``.
        status: HTTP status to answer instead (429, 500, 502, 503, 504...); None to pass the
            real answer through (after ``delay_s``, or cut by ``truncate_bytes``).
        count: How many matching calls to affect; None until the fault is deleted.
        retry_after: Seconds for the ``Retry-After`` header (429/503).
        delay_s: Wait this long before answering (a hang, when longer than the client's timeout).
        truncate_bytes: Send only this many body bytes of the real answer, then drop the
            connection (a broken download).
        after_store: Run the real endpoint first (the group is stored), then answer with
            ``status`` (or with the real answer after ``delay_s``): the "stored but the answer
            was lost" case.
        id: Assigned by the sandbox.
        hits: Calls affected so far.
    """

    model_config = ConfigDict(extra="forbid")

    endpoint: str = ".*"
    status: int | None = Field(default=None, ge=100, le=599)
    count: int | None = Field(default=1, ge=1)
    retry_after: float | None = Field(default=None, ge=0)
    delay_s: float = Field(default=0.0, ge=0)
    truncate_bytes: int | None = Field(default=None, ge=0)
    after_store: bool = False
    id: int = 0
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        """True when this fault applies to a call."""
        return re.search(self.endpoint, f"{method.upper()} {path}") is not None


class FrameDamage(BaseModel):
    """Damage done to the next matching frames the archive stores (``POST /sandbox/damage``).

    Attributes:
        kind: ``truncated`` (the file is cut in half) or ``no_wcs`` (every WCS keyword removed
            from every header).
        group: Only frames of request groups whose name contains this ("" for any).
        filter: Only frames in this filter (None for any).
        count: How many frames to damage.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["truncated", "no_wcs"]
    group: str = ""
    filter: str | None = None
    count: int = Field(default=1, ge=1)

    def matches(self, spec: FrameSpec) -> bool:
        """True when a frame is one this damage is for."""
        return (
            spec.configuration_type == "EXPOSE"
            and self.group in (spec.group_name or "")
            and (self.filter is None or spec.filter == self.filter)
        )


_WCS_KEY = re.compile(
    r"^(WCSAXES|CTYPE\d|CUNIT\d|CRVAL\d|CRPIX\d|CDELT\d|CROTA\d|CD\d_\d|PC\d_\d|PV\d_\d+"
    r"|LONPOLE|LATPOLE|RADESYS|EQUINOX|A_\w+|B_\w+|AP_\w+|BP_\w+)$"
)


def damage_frame(data: bytes, kind: str) -> bytes:
    """A frame's bytes with the damage ``kind`` done (see :class:`FrameDamage`)."""
    if kind == "truncated":
        return data[: len(data) // 2]
    from astropy.io import fits

    with fits.open(io.BytesIO(data)) as hdus:
        for hdu in hdus:
            for key in [k for k in hdu.header if _WCS_KEY.match(k)]:
                del hdu.header[key]
        out = io.BytesIO()
        hdus.writeto(out)
    return out.getvalue()


class FaultBook:
    """The faults and frame damage waiting to be applied (thread-safe).

    Fault ids come from ``ids``, the counter the portal's own ids come from, so that a fault id
    never looks like a request id of the same sandbox.
    """

    def __init__(self, ids: Callable[[], int]) -> None:
        self._ids = ids
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._damage: list[FrameDamage] = []

    def clear(self) -> None:
        """Forget every fault and every damage not done yet."""
        with self._lock:
            self._faults = []
            self._damage = []

    def add_fault(self, fault: Fault) -> Fault:
        """Register a fault; returns it with its id.

        Raises:
            re.error: The endpoint is not a regular expression.
        """
        re.compile(fault.endpoint)
        fault = fault.model_copy(update={"id": self._ids(), "hits": 0})
        with self._lock:
            self._faults.append(fault)
        return fault

    def faults(self) -> list[Fault]:
        """The active faults."""
        with self._lock:
            return [fault.model_copy() for fault in self._faults]

    def clear_faults(self, fault_id: int | None = None) -> int:
        """Delete one fault (or all); returns how many were deleted."""
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if fault_id is not None and f.id != fault_id]
            return before - len(self._faults)

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first active fault matching a call, counting the hit (exhausted ones expire)."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    if fault.count is not None and fault.hits >= fault.count:
                        self._faults.remove(fault)
                    return fault.model_copy()
        return None

    def add_damage(self, damage: FrameDamage) -> FrameDamage:
        """Damage the next ``damage.count`` matching frames when they are stored."""
        with self._lock:
            self._damage.append(damage.model_copy())
            return damage

    def pending_damage(self) -> list[FrameDamage]:
        """Damage not done yet."""
        with self._lock:
            return [d.model_copy() for d in self._damage]

    def take_damage(self, spec: FrameSpec) -> str | None:
        """The kind of damage to do to a frame being stored, counting it; None to leave it whole."""
        with self._lock:
            for damage in self._damage:
                if damage.matches(spec):
                    damage.count -= 1
                    if damage.count == 0:
                        self._damage.remove(damage)
                    return damage.kind
        return None


_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class FaultMiddleware:
    """Pure ASGI middleware applying a :class:`FaultBook`'s faults to every call outside ``/sandbox/``."""

    def __init__(self, app: Any, book: FaultBook) -> None:
        self.app = app
        self.book = book

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        """Serve one ASGI call, with the first matching fault applied."""
        if scope["type"] != "http" or scope["path"].startswith("/sandbox/"):
            await self.app(scope, receive, send)
            return
        fault = self.book.take_fault(scope["method"], scope["path"])
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault.after_store:
            captured: list[MutableMapping[str, Any]] = []

            async def capture(message: MutableMapping[str, Any]) -> None:
                captured.append(message)

            await self.app(scope, receive, capture)
            if fault.delay_s:
                await asyncio.sleep(fault.delay_s)
            if fault.status is not None:
                await _fault_response(fault)(scope, receive, send)
            else:
                for message in captured:
                    await send(message)
            return
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if fault.status is not None:
            await _fault_response(fault)(scope, receive, send)
            return
        if fault.truncate_bytes is not None:
            await self.app(scope, receive, _truncating(send, fault.truncate_bytes))
            return
        await self.app(scope, receive, send)


def _truncating(send: _Send, limit: int) -> _Send:
    sent = 0
    done = False

    async def cut(message: MutableMapping[str, Any]) -> None:
        nonlocal sent, done
        if done:
            return
        if message["type"] == "http.response.body":
            body = message.get("body", b"")
            if sent + len(body) >= limit:
                done = True
                # Fewer bytes than Content-Length, then end: the server drops the connection.
                await send(
                    {"type": "http.response.body", "body": body[: limit - sent], "more_body": False}
                )
                return
            sent += len(body)
        await send(message)

    return cut


def _fault_response(fault: Fault) -> Response:
    status = fault.status or 500
    headers = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = str(int(fault.retry_after))
    if status == 429:
        wait = int(fault.retry_after or 1)
        return JSONResponse(
            {"detail": f"Request was throttled. Expected available in {wait} seconds."},
            status_code=429,
            headers=headers,
        )
    if status >= 500:
        title = {
            500: "Server Error (500)",
            502: "502 Bad Gateway",
            503: "503 Service Temporarily Unavailable",
            504: "504 Gateway Time-out",
        }.get(status, f"{status} Error")
        return Response(
            f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>",
            status_code=status,
            media_type="text/html",
            headers=headers,
        )
    return JSONResponse({"detail": "Injected by the sandbox."}, status_code=status, headers=headers)
