"""The LCO stand-in's FastAPI apps (portal, archive, or both) and ``python -m sandbox.lco``."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, FastAPI
from fastapi import Request as HttpRequest
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from sandbox.lco.clock import ScaledClock
from sandbox.lco.control import control_router
from sandbox.lco.faults import FaultMiddleware
from sandbox.lco.routes import archive_router, portal_router
from sandbox.lco.state import LcoSandboxState

__all__ = ["create_app", "create_archive_app", "create_portal_app", "main"]


def _build(state: LcoSandboxState, title: str, routers: list[APIRouter]) -> FastAPI:
    app = FastAPI(
        title=title, redirect_slashes=False, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.lco = state
    for router in routers:
        app.include_router(router)
    app.include_router(control_router(state))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: HttpRequest, exc: StarletteHTTPException) -> Response:
        # Django's APPEND_SLASH: an unknown path without its trailing slash is redirected (301).
        path = request.url.path
        if exc.status_code == 404 and not path.endswith("/"):
            scope = {**request.scope, "path": path + "/"}
            for route in app.router.routes:
                match, _ = route.matches(scope)
                if match in (Match.FULL, Match.PARTIAL):
                    return RedirectResponse(
                        str(request.url.replace(path=path + "/")), status_code=301
                    )
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    app.add_middleware(FaultMiddleware, book=state.faults)
    return app


def create_portal_app(state: LcoSandboxState | None = None) -> FastAPI:
    """The Observation Portal stand-in (``/api/...`` at the root, plus ``/sandbox/...``)."""
    state = state or LcoSandboxState()
    return _build(state, "LCO Observation Portal (sandbox)", [portal_router(state)])


def create_archive_app(state: LcoSandboxState | None = None) -> FastAPI:
    """The Science Archive stand-in (``/frames/...`` and downloads at the root, plus ``/sandbox/...``)."""
    state = state or LcoSandboxState()
    return _build(state, "LCO Science Archive (sandbox)", [archive_router(state)])


def create_app(
    state: LcoSandboxState | None = None,
    *,
    service: Literal["portal", "archive", "both"] = "both",
) -> FastAPI:
    """The LCO stand-in: the portal, the archive, or both on one app (their paths do not clash).

    Args:
        state: Shared state; a fresh real-time one by default.
        service: Which API(s) the app serves.
    """
    state = state or LcoSandboxState()
    if service == "portal":
        return create_portal_app(state)
    if service == "archive":
        return create_archive_app(state)
    return _build(
        state, "LCO portal and archive (sandbox)", [portal_router(state), archive_router(state)]
    )


def main(argv: list[str] | None = None) -> None:
    """``python -m sandbox.lco [--host H] [--port P] [--token T] [--scale S]``: both APIs on one port."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m sandbox.lco", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--token", default="sandbox-token")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="simulated seconds per real second"
    )
    parser.add_argument("--completion-delay", type=float, default=600.0, help="simulated seconds")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    args = parser.parse_args(argv)
    state = LcoSandboxState(
        ScaledClock(args.scale),
        seed=args.seed,
        token=args.token,
        completion_delay_s=args.completion_delay,
        cache_dir=args.cache_dir,
    )
    uvicorn.run(create_app(state), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
