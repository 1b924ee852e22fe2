"""The sandbox's own control API under ``/sandbox/``, which LCO does not have.

Inspect submissions and frames, move the clock, complete requests or force their states, queue
outcomes, inject faults and frame damage, reset.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from sandbox.lco.faults import Fault, FrameDamage
from sandbox.lco.routes import not_found
from sandbox.lco.state import LcoSandboxState
from sandbox.lco.states import RequestState
from sandbox.times import drf_time

__all__ = ["control_router"]


class _Seconds(BaseModel):
    seconds: float = Field(ge=0)


class _StateChange(BaseModel):
    state: RequestState


class _Outcomes(BaseModel):
    states: list[RequestState]


def control_router(state: LcoSandboxState) -> APIRouter:
    """The control endpoints of a sandbox's LCO state."""
    router = APIRouter(prefix="/sandbox")

    @router.get("/requests")
    def submissions() -> dict[str, Any]:
        return state.submissions()

    @router.post("/requests/{request_id}/complete")
    def complete(request_id: int) -> dict[str, Any]:
        try:
            return state.portal.complete_request(request_id)
        except KeyError:
            raise not_found("Request") from None

    @router.post("/requests/{request_id}/state")
    def force_state(request_id: int, change: _StateChange) -> dict[str, Any]:
        try:
            return state.portal.force_request_state(request_id, change.state)
        except KeyError:
            raise not_found("Request") from None

    @router.post("/outcomes")
    def outcomes(body: _Outcomes) -> dict[str, Any]:
        state.portal.queue_outcomes(body.states)
        return {"queued": [s.value for s in body.states]}

    @router.get("/clock")
    def clock() -> dict[str, str]:
        return {"now": drf_time(state.now())}

    @router.post("/clock/advance")
    def advance(body: _Seconds) -> dict[str, str]:
        return {"now": drf_time(state.advance(body.seconds))}

    @router.get("/faults")
    def list_faults() -> list[Fault]:
        return state.faults.faults()

    @router.post("/faults", status_code=201)
    def add_fault(fault: Fault) -> Fault:
        try:
            return state.faults.add_fault(fault)
        except re.error as exc:
            raise HTTPException(status_code=400, detail=f"bad endpoint pattern: {exc}") from exc

    @router.delete("/faults")
    def clear_faults() -> dict[str, int]:
        return {"deleted": state.faults.clear_faults()}

    @router.delete("/faults/{fault_id}")
    def delete_fault(fault_id: int) -> dict[str, int]:
        return {"deleted": state.faults.clear_faults(fault_id)}

    @router.get("/frames")
    def frames() -> list[dict[str, Any]]:
        return state.archive.all_frame_specs()

    @router.get("/damage")
    def list_damage() -> list[FrameDamage]:
        return state.faults.pending_damage()

    @router.post("/damage", status_code=201)
    def add_damage(damage: FrameDamage) -> FrameDamage:
        return state.faults.add_damage(damage)

    @router.post("/reset")
    def reset() -> dict[str, str]:
        state.reset()
        return {"status": "reset"}

    return router
