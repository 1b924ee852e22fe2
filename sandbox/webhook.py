"""A tiny webhook receiver for alarms and notifications (e.g. Prefect automations calling a webhook).

* ``POST /hooks/{name}`` -- store the call: a JSON body as JSON, a form body as a dict, anything
  else as text; answers 200 ``{"ok": true, "id": <n>}``.
* ``GET /sandbox/hooks`` -- the calls received (``?name=`` to filter), in order.
* ``DELETE /sandbox/hooks`` -- forget them.
* ``GET/POST/DELETE /sandbox/faults`` -- kinds ``status`` (answer that status, store nothing) and
  ``hang`` (store, answer after ``delay_s``); endpoint ``hooks``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from sandbox.fault_queue import FaultQueue, add_fault_routes

__all__ = ["WebhookState", "create_app"]

_KEPT_HEADERS = ("content-type", "user-agent", "x-prefect-event", "x-request-id")


class WebhookState:
    """Calls received by the webhook receiver."""

    def __init__(self) -> None:
        self.hooks: list[dict[str, Any]] = []
        self.faults = FaultQueue()
        self.lock = threading.Lock()

    def reset(self) -> None:
        """Forget calls and faults."""
        with self.lock:
            self.hooks.clear()
        self.faults.clear()


def create_app(state: WebhookState | None = None) -> FastAPI:
    """The webhook receiver as a FastAPI app (state injectable; ``app.state.webhook`` holds it)."""
    state = state if state is not None else WebhookState()
    app = FastAPI(title="Webhook receiver sandbox", description=__doc__)
    app.state.webhook = state
    add_fault_routes(app, state.faults, kinds=("status", "hang"), endpoints=("hooks",))

    @app.post("/hooks/{name}")
    async def receive(name: str, request: Request) -> Response:
        fault = state.faults.take("hooks")
        if fault is not None and fault.kind == "status":
            return JSONResponse({"ok": False, "detail": "Injected failure"}, fault.status or 500)
        content_type = request.headers.get("content-type", "")
        raw = await request.body()
        body: Any
        kind = "text"
        if "json" in content_type:
            try:
                body, kind = json.loads(raw or b"null"), "json"
            except ValueError:
                body = raw.decode("utf-8", "replace")
        elif "form" in content_type:
            form = await request.form()
            body, kind = {k: str(v) for k, v in form.multi_items()}, "form"
        else:
            body = raw.decode("utf-8", "replace")
        with state.lock:
            hook_id = len(state.hooks) + 1
            state.hooks.append(
                {
                    "id": hook_id,
                    "name": name,
                    "received_at": datetime.now(UTC).isoformat(),
                    "kind": kind,
                    "body": body,
                    "query": dict(request.query_params),
                    "headers": {
                        h: request.headers[h] for h in _KEPT_HEADERS if h in request.headers
                    },
                }
            )
        if fault is not None and fault.kind == "hang":
            await asyncio.sleep(fault.delay_s)
        return JSONResponse({"ok": True, "id": hook_id})

    @app.get("/sandbox/hooks", tags=["sandbox control"])
    async def list_hooks(name: str | None = None) -> list[dict[str, Any]]:
        with state.lock:
            return [copy.deepcopy(h) for h in state.hooks if name is None or h["name"] == name]

    @app.delete("/sandbox/hooks", tags=["sandbox control"], status_code=204)
    async def clear_hooks() -> None:
        state.reset()

    return app
