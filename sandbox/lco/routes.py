"""The portal's and the archive's HTTP endpoints, with their auth, pagination and error bodies."""

from __future__ import annotations

import hmac
import json
import re
import time
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi import Request as HttpRequest
from fastapi.responses import JSONResponse, Response

from sandbox.lco.state import LcoSandboxState

__all__ = ["archive_router", "not_found", "portal_router"]


def _user(request: HttpRequest, state: LcoSandboxState, *, archive: bool = False) -> str | None:
    """The authenticated user, None when anonymous; a bad token is refused as DRF does."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "token":
        return None
    key = key.strip()
    if not key or " " in key:
        message = (
            "Invalid token header. No credentials provided."
            if not key
            else ("Invalid token header. Token string should not contain spaces.")
        )
        raise HTTPException(status_code=401 if archive else 403, detail=message)
    if not hmac.compare_digest(key, state.token):
        # The portal's first auth class is Session (no WWW-Authenticate) -> 403; the archive's
        # is token auth -> 401.
        raise HTTPException(
            status_code=401 if archive else 403,
            detail="Invalid token.",
            headers={"WWW-Authenticate": "Token"} if archive else None,
        )
    return state.username


def _require_user(request: HttpRequest, state: LcoSandboxState) -> str:
    user = _user(request, state)
    if user is None:
        raise HTTPException(status_code=403, detail="Authentication credentials were not provided.")
    return user


def _page(
    request: HttpRequest,
    items: list[Any],
    *,
    default_limit: int,
    max_limit: int | None,
) -> tuple[list[Any], dict[str, Any]]:
    """DRF LimitOffsetPagination: the page's items and its envelope (without ``results``)."""

    def integer(key: str, default: int) -> int:
        try:
            value = int(request.query_params.get(key, default))
        except ValueError:
            return default
        return value if value >= 0 else default

    limit = integer("limit", default_limit) or default_limit
    if max_limit is not None:
        limit = min(limit, max_limit)
    offset = integer("offset", 0)
    count = len(items)
    url = request.url
    next_url = None
    if offset + limit < count:
        next_url = str(url.include_query_params(limit=limit, offset=offset + limit))
    previous = None
    if offset > 0:
        if offset - limit <= 0:
            previous = str(url.include_query_params(limit=limit).remove_query_params("offset"))
        else:
            previous = str(url.include_query_params(limit=limit, offset=offset - limit))
    return items[offset : offset + limit], {"count": count, "next": next_url, "previous": previous}


def _query(request: HttpRequest) -> dict[str, list[str]]:
    query: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        query.setdefault(key, []).append(value)
    return query


async def _json_body(request: HttpRequest) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPException(status_code=400, detail=f"JSON parse error - {exc}") from exc


def not_found(model: str) -> HTTPException:
    """DRF's 404 for a missing object of ``model``."""
    return HTTPException(status_code=404, detail=f"No {model} matches the given query.")


def portal_router(state: LcoSandboxState) -> APIRouter:
    """The Observation Portal's endpoints (``/api/...``)."""
    router = APIRouter()

    @router.post("/api/requestgroups/")
    async def create_request_group(request: HttpRequest) -> JSONResponse:
        received_at = time.time()
        user = _require_user(request, state)
        payload = await _json_body(request)
        status, body = state.portal.submit(payload, user=user, received_at=received_at)
        return JSONResponse(body, status_code=status)

    @router.post("/api/requestgroups/validate/")
    async def validate_request_group(request: HttpRequest) -> JSONResponse:
        _require_user(request, state)
        payload = await _json_body(request)
        return JSONResponse(state.portal.validate(payload))

    @router.get("/api/requestgroups/")
    def list_request_groups(request: HttpRequest) -> JSONResponse:
        user = _user(request, state)
        try:
            groups = state.portal.list_groups(_query(request)) if user else []
        except ValueError as exc:
            return JSONResponse(exc.args[0], status_code=400)
        page, envelope = _page(request, groups, default_limit=state.page_size, max_limit=None)
        return JSONResponse({**envelope, "results": page})

    @router.get("/api/requestgroups/{group_id}/")
    def get_request_group(group_id: int, request: HttpRequest) -> JSONResponse:
        if _user(request, state) is None:
            raise not_found("RequestGroup")
        try:
            return JSONResponse(state.portal.get_group(group_id))
        except KeyError:
            raise not_found("RequestGroup") from None

    @router.post("/api/requestgroups/{group_id}/cancel/")
    def cancel_request_group(group_id: int, request: HttpRequest) -> JSONResponse:
        _require_user(request, state)
        try:
            status, body = state.portal.cancel(group_id)
        except KeyError:
            raise not_found("RequestGroup") from None
        return JSONResponse(body, status_code=status)

    @router.get("/api/requests/{request_id}/")
    def get_request(request_id: int, request: HttpRequest) -> JSONResponse:
        if _user(request, state) is None:
            raise not_found("Request")
        try:
            return JSONResponse(state.portal.get_request(request_id))
        except KeyError:
            raise not_found("Request") from None

    @router.get("/api/requests/{request_id}/observations/")
    def get_request_observations(request_id: int, request: HttpRequest) -> JSONResponse:
        if _user(request, state) is None:
            raise not_found("Request")
        exclude = request.query_params.get("exclude_canceled", "").lower() in ("true", "1")
        try:
            return JSONResponse(state.portal.observations(request_id, exclude_canceled=exclude))
        except KeyError:
            raise not_found("Request") from None

    @router.get("/api/instruments/")
    def get_instruments(request: HttpRequest) -> JSONResponse:
        _user(request, state)
        return JSONResponse(state.portal.instruments())

    @router.get("/api/semesters/")
    def list_semesters(request: HttpRequest) -> JSONResponse:
        # proposals/viewsets.py SemesterViewSet: AllowAny, paged, ordered by -start.
        _user(request, state)
        try:
            terms = state.portal.semesters(_query(request))
        except ValueError as exc:
            return JSONResponse(exc.args[0], status_code=400)
        page, envelope = _page(request, terms, default_limit=state.page_size, max_limit=None)
        return JSONResponse({**envelope, "results": page})

    @router.get("/api/profile/")
    def get_profile(request: HttpRequest) -> JSONResponse:
        _require_user(request, state)
        return JSONResponse(state.portal.profile())

    return router


def archive_router(state: LcoSandboxState) -> APIRouter:
    """The Science Archive's endpoints (``/frames/...`` and signed downloads)."""
    router = APIRouter()

    def base(request: HttpRequest) -> str:
        return str(request.base_url)

    @router.get("/frames/")
    def list_frames(request: HttpRequest) -> JSONResponse:
        user = _user(request, state, archive=True)
        try:
            entries = state.frame_entries(_query(request), authenticated=user is not None)
        except ValueError as exc:
            return JSONResponse(exc.args[0], status_code=400)
        page, envelope = _page(request, entries, default_limit=100, max_limit=1000)
        results = [state.archive.frame_record(entry, base(request)) for entry in page]
        return JSONResponse({**envelope, "results": results, "count_estimated": False})

    @router.get("/frames/{frame_id}/")
    def get_frame(frame_id: int, request: HttpRequest) -> JSONResponse:
        user = _user(request, state, archive=True)
        try:
            entry = state.frame_entry(frame_id, authenticated=user is not None)
        except KeyError:
            raise not_found("Frame") from None
        return JSONResponse(state.archive.frame_record(entry, base(request)))

    @router.get("/frames/{frame_id}/headers/")
    def get_frame_headers(frame_id: int, request: HttpRequest) -> JSONResponse:
        user = _user(request, state, archive=True)
        try:
            entry = state.frame_entry(frame_id, authenticated=user is not None)
        except KeyError:
            raise not_found("Frame") from None
        return JSONResponse({"data": state.archive.frame_headers(entry)})

    @router.api_route("/download/{frame_id}/{filename}", methods=["GET", "HEAD"])
    def download(frame_id: int, filename: str, request: HttpRequest) -> Response:
        refusal = state.archive.check_signature(frame_id, filename, dict(request.query_params))
        if refusal is None and not state.archive.has_frame(frame_id):
            refusal = "The specified key does not exist."
        if refusal is not None:
            code = "NoSuchKey" if "key" in refusal else "AccessDenied"
            return Response(
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                f"<Message>{refusal}</Message></Error>",
                status_code=404 if code == "NoSuchKey" else 403,
                media_type="application/xml",
            )
        data, md5, _ = state.archive.frame_content(frame_id)
        return _ranged(request, data, md5)

    return router


def _ranged(request: HttpRequest, data: bytes, md5: str) -> Response:
    total = len(data)
    headers = {"Accept-Ranges": "bytes", "ETag": f'"{md5}"'}
    header = request.headers.get("range")
    media = "application/octet-stream"
    if header:
        match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                end = int(match.group(2)) if match.group(2) else total - 1
            else:
                start = max(0, total - int(match.group(2)))
                end = total - 1
            if start >= total or end < start:
                return Response(
                    status_code=416, headers={**headers, "Content-Range": f"bytes */{total}"}
                )
            end = min(end, total - 1)
            body = data[start : end + 1] if request.method != "HEAD" else b""
            return Response(
                body,
                status_code=206,
                media_type=media,
                headers={
                    **headers,
                    "Content-Range": f"bytes {start}-{end}/{total}",
                    "Content-Length": str(end - start + 1),
                },
            )
    body = data if request.method != "HEAD" else b""
    return Response(body, media_type=media, headers={**headers, "Content-Length": str(total)})
