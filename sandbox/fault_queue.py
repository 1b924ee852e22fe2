"""Faults a sandbox stand-in can be told to inject, and the ``/sandbox/faults`` control routes.

A fault applies to the next ``count`` requests of one endpoint (``"*"`` for any) of one stand-in;
``count=-1`` keeps it until it is cleared. Each stand-in lists the fault kinds it understands.

Control API (mounted by each stand-in):

* ``GET /sandbox/faults`` -- the faults still pending.
* ``POST /sandbox/faults`` -- add one: ``{"kind": "status", "endpoint": "bulk-report", "status": 503,
  "count": 1}``; answers 201 with the fault, 400 for an unknown kind or endpoint.
* ``DELETE /sandbox/faults`` -- clear them all.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

__all__ = ["Fault", "FaultQueue", "add_fault_routes"]


class Fault(BaseModel):
    """One injected misbehaviour.

    Attributes:
        kind: What to do, e.g. ``"status"``, ``"rate_limit"``, ``"hang"`` (stand-in specific).
        endpoint: The endpoint name it applies to (stand-in specific), or ``"*"``.
        count: How many requests it affects; -1 until cleared.
        status: HTTP status for ``"status"`` faults.
        body: Response body for ``"status"`` faults (JSON value or text).
        reset_s: Seconds announced by ``Retry-After`` / ``x-rate-limit-reset``.
        delay_s: Seconds to hang before answering (``"hang"``).
        variant: A stand-in specific variation of the fault.
    """

    kind: str
    endpoint: str = "*"
    count: int = Field(default=1, ge=-1)
    status: int | None = Field(default=None, ge=100, le=599)
    body: Any = None
    reset_s: float | None = Field(default=None, ge=0)
    delay_s: float = Field(default=0.0, ge=0, le=600)
    variant: str | None = None


class FaultQueue:
    """Thread-safe list of pending faults."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        """Queue a fault (count 0 is ignored)."""
        if fault.count != 0:
            with self._lock:
                self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        """Copies of the pending faults."""
        with self._lock:
            return [f.model_copy() for f in self._faults]

    def take(self, endpoint: str, kinds: Iterable[str] | None = None) -> Fault | None:
        """Use up the first pending fault for ``endpoint`` (and of one of ``kinds``), if any."""
        wanted = set(kinds) if kinds is not None else None
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.endpoint not in ("*", endpoint):
                    continue
                if wanted is not None and fault.kind not in wanted:
                    continue
                used = fault.model_copy()
                if fault.count > 0:
                    fault.count -= 1
                    if fault.count == 0:
                        del self._faults[i]
                return used
        return None


def add_fault_routes(
    app: FastAPI, queue: FaultQueue, *, kinds: Iterable[str], endpoints: Iterable[str]
) -> None:
    """Mount ``/sandbox/faults`` (GET, POST, DELETE) for ``queue`` on ``app``."""
    known_kinds = sorted(set(kinds))
    known_endpoints = sorted({*endpoints, "*"})
    router = APIRouter(prefix="/sandbox", tags=["sandbox control"])

    @router.get("/faults")
    async def list_faults() -> list[Fault]:
        return queue.pending()

    @router.post("/faults", status_code=201)
    async def add_fault(fault: Fault) -> Any:
        if fault.kind not in known_kinds:
            return JSONResponse(
                {"detail": f"unknown fault kind {fault.kind!r}; known: {known_kinds}"}, 400
            )
        if fault.endpoint not in known_endpoints:
            return JSONResponse(
                {"detail": f"unknown endpoint {fault.endpoint!r}; known: {known_endpoints}"}, 400
            )
        return queue.add(fault)

    @router.delete("/faults", status_code=204)
    async def clear_faults() -> None:
        queue.clear()

    app.include_router(router)
