"""A local GCN Circulars stand-in: ``POST /api/circulars`` with GCN's checks, and the JSON archive.

It follows nasa-gcn/gcn.nasa.gov (``app/routes/api.circulars.ts``, ``circulars.server.ts``,
``circulars.lib.ts``): requests that look like a browser's (``Accept: text/html``) get 404;
``Authorization: Bearer <token>`` is required (403 ``Bearer missing``); a token GCN cannot validate
makes the real site fail with 500, and so does this one; a token without the
``gcn.nasa.gov/circular-submitter`` scope gets 403 ``Invalid scope``; a user outside the
submitters group 403 ``User is not in the submitters group``; then 400 ``missing required
parameter``, ``subject is invalid`` (GCN's keyword and auto-reply rule), ``body is invalid``,
``format is invalid``. Errors are plain text, as GCN sends them. A stored Circular is answered with
its JSON record (``circularId``, ``createdOn`` in ms, ``submitter``, ``submittedHow: "api"``,
``eventId`` derived from the subject).

Control API (not part of GCN):

* ``GET /sandbox/circulars`` -- the Circulars stored, in order.
* ``GET/POST/DELETE /sandbox/faults`` -- kinds ``status`` (any status/body, before storing; with
  ``variant: "after_store"`` after storing) and ``hang`` (the Circular is stored, the answer comes
  after ``delay_s``); endpoint ``circulars``.
* ``POST /sandbox/reset`` -- forget Circulars and faults.
"""

from __future__ import annotations

import asyncio
import copy
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from sandbox.fault_queue import FaultQueue, add_fault_routes

__all__ = [
    "DEFAULT_TOKEN",
    "SUBMITTER_SCOPE",
    "GcnSandboxState",
    "GcnUser",
    "create_app",
    "subject_is_valid",
]

SUBMITTER_SCOPE = "gcn.nasa.gov/circular-submitter"
DEFAULT_TOKEN = "sandbox-gcn-token"

# GCN's validSubjectKeywords and emailAutoReplyChecklist (circulars.lib.ts @11d32bd4).
_KEYWORDS: tuple[str, ...] = (
    "AGILE", "ALMA", "AMON", "ANTARES", "AXP", "CALET", "Chandra", "COLIBRI", "COLIBRÍ", "EP",
    "Fermi", "FRB", "FXT", "GOTO", "GRANDMA", "GRB", "GW", "HAWC", "HST", "IBAS", "IceCube",
    "INTEGRAL", "IPN", "JCMT", "KAGRA", "KamLAND", "KONUS", "LIGO", "LOFAR", "LVC", "LVK", "LXT",
    "MAGIC", "MASTER", "MAXI", "Nova", "NuEM", "Pan-STARRS", "POLAR", "RATIR", "SDSS", "SFXT",
    "SGR", "SN", "Super-Kamiokande", "Supernova", "Suzaku", "SVOM", "Swift", "transient", "VLA",
    "VLBI", "XRB", "XRF", "XRT", "XTR", "Virgo", "ZTF", "Baksan Neutrino Observatory Alert",
)  # fmt: skip
_AUTO_REPLY: tuple[str, ...] = (
    "this is an automatic reply", "automatic reply: ", "auto reply", "autoreply", "vacation",
    "out of the office", "out of office", "out of town", "away from my mail",
    "away from his e-mail", "away from her e-mail", "away from the office",
    "away from his office", "away from her office", "traveling until", "no longer receiving mail",
    "delivery failure notif", "mail delivery failure", "returned mail", "saxzlcnkgzmfpbhvyzsbub",
    "ponse_automatique", "off-line re:", "re: ", "fwd: ", " r: ", " ris: ", "subject:", "draft",
)  # fmt: skip


def _lvk(m: re.Match[str]) -> str:
    return (
        f"{m.group(1).upper().replace('VIRGO', 'Virgo')} {m.group(2).upper()}{m.group(3).lower()}"
    )


# circulars.lib.ts subjectMatchers, all 17, in GCN's order: the event id GCN derives.
_EVENTS: tuple[tuple[str, Callable[[re.Match[str]], str]], ...] = (
    (r"GRB[.\s_-]*(\d{6}(?:[a-z]|\.[0-9]+)?)", lambda m: f"GRB {m.group(1).upper()}"),
    (r"SGR[.\s_-]*(J*\d{4}\.?\d*\+\d{4})", lambda m: f"SGR {m.group(1).upper()}"),
    (
        r"SGR[.\s_-]*Swift[.\s_-]*(J*\d{4}\.?\d*\+\d{4})",
        lambda m: f"SGR Swift {m.group(1).upper()}",
    ),
    (r"IceCube[.\s_-]*(\d{6}[a-z])", lambda m: f"IceCube-{m.group(1).upper()}"),
    (
        r"IceCube[.\s_-]*Cascade[.\s_-]*(\d{6}[a-z])",
        lambda m: f"IceCube-Cascade {m.group(1).upper()}",
    ),
    (r"ZTF[.\s_-]*(\d{2}[a-z]*)", lambda m: f"ZTF{m.group(1).lower()}"),
    (r"HAWC[.\s_-]*(\d{6}A)", lambda m: f"HAWC-{m.group(1).upper()}"),
    (r"((?:LIGO|Virgo|KAGRA)(?:[/-](?:LIGO|Virgo|KAGRA))*)[-_ \s]?(S|G|GW)(\d{5,}[a-z]*)", _lvk),
    (r"ANTARES[.\s_-]*(\d{6}[a-z])", lambda m: f"ANTARES {m.group(1)}".upper()),
    (
        r"Baksan\sNeutrino\sObservatory\sAlert[.\s_-]*(\d{6}.\d{2})",
        lambda m: f"Baksan Neutrino Observatory Alert {m.group(1)}",
    ),
    (r"EP[.\s_-]*(\d{6}[a-z])", lambda m: f"EP{m.group(1).lower()}"),
    (
        r"SN[.\s_-]*(\d{4}[a-z]*)",
        lambda m: f"SN {m.group(1).upper() if len(m.group(1)) == 5 else m.group(1).lower()}",
    ),
    (r"GW[.\s_-]*(\d{6})", lambda m: f"GW{m.group(1)}"),
    (r"FRB[.\s_-]*(\d{8}[a-z]|\d{6}[a-z]?)", lambda m: f"FRB {m.group(1)}".upper()),
    (r"sb[.\s_-]*(\d{8})", lambda m: f"sb{m.group(1)}"),
    (r"XRF[.\s_-]*(\d{6}[a-z]?)", lambda m: f"XRF {m.group(1).upper()}"),
    (r"AT[.\s_-]*(\d{4}[a-z]+)", lambda m: f"AT{m.group(1).lower()}"),
)


def _event_from_subject(subject: str) -> str | None:
    for anchored in (True, False):
        for pattern, normalise in _EVENTS:
            regex = re.compile(pattern, re.IGNORECASE)
            m = regex.match(subject) if anchored else regex.search(subject)
            if m:
                return normalise(m)
    return None


def subject_is_valid(subject: str) -> bool:
    """GCN's ``subjectIsValid``: no auto-reply marker, and a keyword or a parseable event name."""
    lower = subject.lower()
    if not subject or any(marker in lower for marker in _AUTO_REPLY):
        return False
    return any(k.lower() in lower for k in _KEYWORDS) or _event_from_subject(subject) is not None


@dataclass
class GcnUser:
    """A GCN account behind an access token."""

    name: str = "Sandbox Submitter"
    email: str = "submitter@example.org"
    affiliation: str = "followup sandbox"
    scope: str = f"openid profile {SUBMITTER_SCOPE}"
    groups: list[str] = field(default_factory=lambda: [SUBMITTER_SCOPE])

    @property
    def author(self) -> str:
        """GCN's formatAuthor: ``Name at Affiliation <email>``."""
        if not self.name:
            return self.email
        if not self.affiliation:
            return f"{self.name} <{self.email}>"
        return f"{self.name} at {self.affiliation} <{self.email}>"


class GcnSandboxState:
    """What the GCN stand-in knows.

    Args:
        tokens: Access token -> account (default: one submitter with :data:`DEFAULT_TOKEN`).
        first_circular_id: Number of the first Circular stored.
        clock: Epoch seconds (injectable).
    """

    def __init__(
        self,
        tokens: Mapping[str, GcnUser] | None = None,
        *,
        first_circular_id: int = 40000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tokens = dict(tokens) if tokens is not None else {DEFAULT_TOKEN: GcnUser()}
        self.circulars: list[dict[str, Any]] = []
        self.faults = FaultQueue()
        self.lock = threading.Lock()
        self.clock = clock
        self._first = first_circular_id

    def reset(self) -> None:
        """Forget Circulars and faults."""
        with self.lock:
            self.circulars.clear()
        self.faults.clear()

    def store(
        self, user: GcnUser, subject: str, body: str, fmt: str | None, event_id: Any
    ) -> dict[str, Any]:
        """Store a Circular as GCN's ``put`` does and return its record."""
        with self.lock:
            circular: dict[str, Any] = {
                "circularId": self._first + len(self.circulars),
                "createdOn": int(self.clock() * 1000),
                "subject": subject,
                "body": body,
                "submitter": user.author,
                "submittedHow": "api",
            }
            if fmt:
                circular["format"] = fmt
            derived = _event_from_subject(subject)
            if derived or isinstance(event_id, str):
                circular["eventId"] = derived or event_id
            self.circulars.append(circular)
            return copy.deepcopy(circular)


def create_app(state: GcnSandboxState | None = None) -> FastAPI:
    """The GCN Circulars stand-in as a FastAPI app (state injectable; ``app.state.gcn`` holds it)."""
    state = state if state is not None else GcnSandboxState()
    app = FastAPI(title="GCN Circulars sandbox", description=__doc__)
    app.state.gcn = state
    add_fault_routes(app, state.faults, kinds=("status", "hang"), endpoints=("circulars",))

    def text(message: str, status: int) -> Response:
        return PlainTextResponse(message, status)

    @app.api_route("/api/circulars", methods=["GET", "PUT", "DELETE", "PATCH"])
    async def other_methods(request: Request) -> Response:
        if "text/html" in request.headers.get("accept", ""):
            return text("Not Found", 404)
        if request.method != "PUT":
            return Response(status_code=405)
        return text(
            "Invalid scope", 403
        )  # edits need the moderator scope, which no sandbox token has

    @app.post("/api/circulars")
    async def submit(request: Request) -> Response:
        if "text/html" in request.headers.get("accept", ""):
            return text("Not Found", 404)  # notFoundIfBrowserRequest
        match = re.match(r"^Bearer (.*)$", request.headers.get("authorization", ""))
        if not match:
            return text("Bearer missing", 403)
        user = state.tokens.get(match.group(1))
        if user is None:
            return text("Unexpected Server Error", 500)  # GCN's JWT validation throws
        if SUBMITTER_SCOPE not in user.scope.split(" "):
            return text("Invalid scope", 403)
        try:
            payload = await request.json()
        except ValueError:
            return text("Unexpected Server Error", 500)
        if not isinstance(payload, dict):
            return text("missing required parameter", 400)
        subject, body, fmt = payload.get("subject"), payload.get("body"), payload.get("format")
        # api.circulars.ts: format must be undefined (absent) or a string; JSON null is neither.
        if not (
            isinstance(subject, str)
            and isinstance(body, str)
            and ("format" not in payload or isinstance(fmt, str))
        ):
            return text("missing required parameter", 400)
        fmt = fmt or None  # `...(format ? { format } : {})`: an empty format is left out
        if SUBMITTER_SCOPE not in user.groups:
            return text("User is not in the submitters group", 403)
        if not subject_is_valid(subject):
            return text("subject is invalid", 400)
        if not body:
            return text("body is invalid", 400)
        if fmt is not None and fmt not in ("text/plain", "text/markdown"):
            return text("format is invalid", 400)
        fault = state.faults.take("circulars")
        failure = None
        if fault is not None and fault.kind == "status":
            failure = text(
                fault.body if isinstance(fault.body, str) else "Injected failure",
                fault.status or 500,
            )
            if fault.variant != "after_store":
                return failure  # refused before anything was stored
        record = state.store(user, subject, body, fmt, payload.get("eventId"))
        if failure is not None:
            return failure  # stored, but the answer is an error: the client cannot tell
        if fault is not None and fault.kind == "hang":
            await asyncio.sleep(fault.delay_s)
        return JSONResponse(record)

    @app.get("/circulars/{circular_id}.json")
    async def archive(circular_id: int) -> Response:
        with state.lock:
            found = next((c for c in state.circulars if c["circularId"] == circular_id), None)
        return JSONResponse(found) if found else text("Not Found", 404)

    @app.get("/sandbox/circulars", tags=["sandbox control"])
    async def list_circulars() -> list[dict[str, Any]]:
        with state.lock:
            return copy.deepcopy(state.circulars)

    @app.post("/sandbox/reset", tags=["sandbox control"], status_code=204)
    async def reset() -> None:
        state.reset()

    return app
