"""A local HERMES stand-in: ``api/v0/submit_message/`` and its ``validate/`` with HERMES's own rules.

It follows LCOGT/hermes (``hermes/views.py``, ``hermes/serializers.py``): token authentication
(an unknown token is refused with 403 ``{"detail": "Invalid token."}``; no token at all is an
anonymous user), the serializer's validation with its nested Django REST Framework error dicts
(:mod:`sandbox.hermes_validation`), ``validate/`` answering 200 in every case, the dev server's
"test topics only" rule as an option, and the quirk of an account without SCiMMA credential
getting ``{"error": ...}`` with status 200. A published message is echoed back with its ``uuid``.

``GET api/v0/query/`` is HERMES's message query (``hermes/views.py`` ``QueryApiView``, a pass-through
to the SCiMMA archive): ``topic`` (repeatable), ``start`` and ``end`` (any date dateutil reads),
``search_query``, ``limit`` (10), ``page``, ``include_retracted``; the answer is
``{"messages": [...]}``, newest first, each as ``hermes/utils.py`` ``convert_message`` shapes it:
``metadata`` (``topic``, ``timestamp`` in ms, ``headers`` with ``_id`` (the message uuid),
``_sender``, ``_format`` and ``title``), ``annotations`` and ``message`` (the content). How the
archive matches ``search_query`` is not public; the stand-in looks for it, case-insensitively, in
the title.

Control API (not part of HERMES):

* ``GET /sandbox/messages`` -- the messages published, in order.
* ``GET/POST/DELETE /sandbox/faults`` -- inject faults (see :mod:`sandbox.fault_queue`); kinds:
  ``error_200`` (the missing-credential error with status 200), ``status`` (any status and body;
  with ``variant: "after_store"`` the message is published first, then the error answered),
  ``hang`` (wait ``delay_s`` then answer normally); endpoints ``submit``, ``validate``.
* ``POST /sandbox/reset`` -- forget messages and faults.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from dateutil.parser import parse as parse_date
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from sandbox.fault_queue import FaultQueue, add_fault_routes
from sandbox.hermes_validation import HermesContext, angle_degrees, validate_hermes_message

__all__ = ["DEFAULT_TOKEN", "HermesSandboxState", "create_app", "validate_hermes_message"]

DEFAULT_TOKEN = "sandbox-hermes-token"
NO_CREDENTIAL_ERROR = "User account does not have an associated SCIMMA auth credential. Please logout and log back in."


class HermesSandboxState:
    """What the HERMES stand-in knows: accounts, published messages, pending faults.

    Args:
        tokens: API token -> user name of accounts with a SCiMMA credential.
        tokens_without_credential: Tokens of accounts lacking a SCiMMA credential (their
            submissions get HERMES's error-with-200).
        dev_server: Apply hermes-dev's rule that only topics containing ``test`` are accepted.
        gcn_linked_tokens: Tokens of accounts with a linked GCN account (``submit_to_gcn``).
        utc_now: The wall-clock time messages are stamped with.
    """

    def __init__(
        self,
        tokens: Mapping[str, str] | None = None,
        *,
        tokens_without_credential: Iterable[str] = (),
        dev_server: bool = False,
        gcn_linked_tokens: Iterable[str] = (),
        utc_now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.tokens = dict(tokens) if tokens is not None else {DEFAULT_TOKEN: "sandbox-user"}
        self.no_credential = set(tokens_without_credential)
        self.dev_server = dev_server
        self.gcn_linked = set(gcn_linked_tokens)
        self.utc_now = utc_now
        self.messages: list[dict[str, Any]] = []
        self.faults = FaultQueue()
        self.lock = threading.Lock()

    def reset(self) -> None:
        """Forget messages and faults."""
        with self.lock:
            self.messages.clear()
        self.faults.clear()

    def context(self, token: str | None) -> HermesContext:
        """What the serializer looks up for a request made with ``token``."""
        with self.lock:
            known = {m["uuid"] for m in self.messages}
        return HermesContext(
            dev_server=self.dev_server,
            known_uuids=known,
            authenticated=token is not None,
            gcn_linked=token in self.gcn_linked,
        )

    def publish(self, token: str | None, payload: dict[str, Any]) -> dict[str, Any]:
        """Publish a validated message; return it as HERMES echoes it, with its uuid."""
        message = _clean(payload)
        message["uuid"] = str(uuid.uuid4())
        with self.lock:
            self.messages.append(
                {
                    "uuid": message["uuid"],
                    "user": self.tokens.get(token or "", ""),
                    "received_at": self.utc_now().isoformat(),
                    "message": copy.deepcopy(message),
                }
            )
        return message

    def query(self, params: Mapping[str, list[str]]) -> dict[str, Any]:
        """``GET api/v0/query/``: published messages as the SCiMMA archive lists them.

        Raises:
            ValueError: ``start`` or ``end`` is not a date.
        """
        topics = set(params.get("topic", []))
        start = _query_time(params, "start")
        end = _query_time(params, "end")
        search = (params.get("search_query") or [""])[-1].lower()
        limit = int((params.get("limit") or ["10"])[-1])
        page = int((params.get("page") or ["0"])[-1] or 0)
        with self.lock:
            records = list(reversed(self.messages))
        selected = []
        for record in records:
            message = record["message"]
            stamp = datetime.fromisoformat(record["received_at"])
            if topics and message["topic"] not in topics:
                continue
            if (start and stamp < start) or (end and stamp > end):
                continue
            if search and search not in str(message["title"]).lower():
                continue
            selected.append(_archived(record, stamp))
        return {"messages": selected[page * limit : (page + 1) * limit]}


def _clean(payload: dict[str, Any]) -> dict[str, Any]:
    """The validated message as HERMES echoes it: nulls/blanks dropped, defaults filled, angles in degrees."""
    message = copy.deepcopy(payload)
    for flag in ("submit_to_tns", "submit_to_mpc", "submit_to_gcn"):
        message.pop(flag, None)
    message.setdefault("authors", "")
    message.setdefault("message_text", "")
    data = message.get("data")
    if isinstance(data, dict):
        for target in data.get("targets") or []:
            for key in [k for k, v in target.items() if v is None or v == ""]:
                del target[key]
            for name in ("ra", "dec"):
                if name in target:
                    target[name] = angle_degrees(target[name], dec=name == "dec")
            target.setdefault("ra_error_units", "degrees")
            target.setdefault("dec_error_units", "degrees")
            target.setdefault("epoch", "2000.0")
            target.setdefault("new_discovery", False)
        for point in data.get("photometry") or []:
            for key in [k for k, v in point.items() if v is None or v == ""]:
                del point[key]
            point.setdefault("brightness_unit", "AB mag")
            point.setdefault("limiting_brightness_unit", "AB mag")
    return message


# ------------------------------------------------------------------------------ the app
def create_app(state: HermesSandboxState | None = None) -> FastAPI:
    """The HERMES stand-in as a FastAPI app (state injectable; ``app.state.hermes`` holds it)."""
    state = state if state is not None else HermesSandboxState()
    app = FastAPI(title="HERMES sandbox", description=__doc__)
    app.state.hermes = state
    add_fault_routes(
        app, state.faults, kinds=("error_200", "status", "hang"), endpoints=("submit", "validate")
    )

    @app.get("/api/v0/heartbeat/")
    async def heartbeat() -> dict[str, Any]:
        return {"status": "ok", "sandbox": True}

    @app.get("/api/v0/submit_message/")
    async def describe() -> dict[str, str]:
        return {
            "message": "This endpoint is used to send a generic hermes message (sandbox stand-in)."
        }

    @app.post("/api/v0/submit_message/validate/")
    async def validate(request: Request) -> Response:
        admitted = await _admit(state, request, "validate")
        if isinstance(admitted, Response):
            return admitted
        return JSONResponse(
            validate_hermes_message(admitted.payload, context=state.context(admitted.token))
        )

    @app.post("/api/v0/submit_message/")
    async def submit(request: Request) -> Response:
        admitted = await _admit(state, request, "submit")
        if isinstance(admitted, Response):
            return admitted
        token, payload, after_store = admitted
        errors = validate_hermes_message(payload, context=state.context(token))
        if errors:
            return JSONResponse(errors, 400)
        if token is None or token in state.no_credential:
            # HERMES's quirk: no status set, so this error goes out as a 200.
            return JSONResponse({"error": NO_CREDENTIAL_ERROR})
        message = state.publish(token, payload)
        # Published, but the answer is lost: the client cannot tell.
        return after_store or JSONResponse(message)

    @app.get("/api/v0/query/")
    async def query(request: Request) -> Response:
        _, refused = _authenticate(state, request)
        if refused:
            return refused
        params: dict[str, list[str]] = {}
        for key, value in request.query_params.multi_items():
            params.setdefault(key, []).append(value)
        try:
            return JSONResponse(state.query(params))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 400)

    @app.get("/sandbox/messages", tags=["sandbox control"])
    async def list_messages() -> list[dict[str, Any]]:
        with state.lock:
            return copy.deepcopy(state.messages)

    @app.post("/sandbox/reset", tags=["sandbox control"], status_code=204)
    async def reset() -> None:
        state.reset()

    return app


def _authenticate(
    state: HermesSandboxState, request: Request
) -> tuple[str | None, JSONResponse | None]:
    """DRF TokenAuthentication after SessionAuthentication: bad tokens are a 403."""
    header = request.headers.get("authorization")
    if not header:
        return None, None
    parts = header.split()
    if not parts or parts[0].lower() != "token":
        return None, None
    if len(parts) == 1:
        return None, JSONResponse({"detail": "Invalid token header. No credentials provided."}, 403)
    if len(parts) > 2:
        return None, JSONResponse(
            {"detail": "Invalid token header. Token string should not contain spaces."}, 403
        )
    if parts[1] not in state.tokens and parts[1] not in state.no_credential:
        return None, JSONResponse({"detail": "Invalid token."}, 403)
    return parts[1], None


async def _injected(
    state: HermesSandboxState, endpoint: str
) -> tuple[Response | None, Response | None]:
    """An injected fault's answer: (instead of the endpoint, after publishing); None for none."""
    fault = state.faults.take(endpoint)
    if fault is None:
        return None, None
    if fault.kind == "hang":
        await asyncio.sleep(fault.delay_s)
        return None, None
    if fault.kind == "error_200":
        return JSONResponse({"error": NO_CREDENTIAL_ERROR}), None
    body = fault.body if fault.body is not None else {"detail": "Injected failure."}
    headers = {"Retry-After": f"{fault.reset_s:g}"} if fault.reset_s is not None else None
    if isinstance(body, str):
        answer: Response = Response(
            body, fault.status or 500, headers=headers, media_type="text/html"
        )
    else:
        answer = JSONResponse(body, fault.status or 500, headers=headers)
    return (None, answer) if fault.variant == "after_store" else (answer, None)


def _query_time(params: Mapping[str, list[str]], key: str) -> datetime | None:
    if not params.get(key):
        return None
    try:
        value = parse_date(params[key][-1])
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"{key}: {exc}") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _archived(record: dict[str, Any], stamp: datetime) -> dict[str, Any]:
    """One message as the query API lists it (hermes/utils.py convert_message)."""
    message = copy.deepcopy(record["message"])
    return {
        "metadata": {
            "topic": message["topic"],
            "timestamp": int(stamp.timestamp() * 1000),
            "key": None,
            "headers": {
                "_id": message.pop("uuid"),
                "_sender": record["user"],
                "_format": "json",
                "title": message["title"],
            },
        },
        "annotations": {},
        "message": message,
    }


class _Admitted(NamedTuple):
    """A POST that passed authentication, the injected faults and JSON parsing."""

    token: str | None
    payload: Any
    after_store: Response | None


async def _admit(
    state: HermesSandboxState, request: Request, endpoint: str
) -> _Admitted | Response:
    """The request's token, body and after-publishing fault; or the answer that ends it first.

    The checks run in HERMES's order: a bad token (403), an injected fault, unparseable JSON
    (400).
    """
    token, refused = _authenticate(state, request)
    if refused:
        return refused
    fault, after_store = await _injected(state, endpoint)
    if fault:
        return fault
    payload, bad = await _read_json(request)
    if bad:
        return bad
    return _Admitted(token, payload, after_store)


async def _read_json(request: Request) -> tuple[Any, JSONResponse | None]:
    try:
        return await request.json(), None
    except ValueError as exc:
        return None, JSONResponse({"detail": f"JSON parse error - {exc}"}, 400)
