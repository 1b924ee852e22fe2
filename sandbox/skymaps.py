"""Sky maps served by URL, as GraceDB serves a superevent's files.

LVK VOEvents and GCN notices may carry only a sky-map URL
(``https://gracedb.ligo.org/api/superevents/S190425z/files/bayestar.fits.gz,0``). The sandbox's
control app serves maps at the same path, so a notice that points at the sandbox can be planned
offline: ``PUT /sandbox/skymaps/{superevent}/{filename}`` stores a map (the next version of that
file), and ``GET /api/superevents/{superevent}/files/{filename}`` serves it; ``filename,N`` asks
for version N, a bare name for the latest, as GraceDB answers (an unknown file is a 404 with
``{"detail": "Not found."}``).
"""

from __future__ import annotations

import threading

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

__all__ = ["SkymapStore", "add_skymap_routes"]

MAX_SKYMAP_BYTES = 64 * 2**20
"""Largest map the store takes (GraceDB's maps are a few MB gzipped)."""


class SkymapStore:
    """The maps the sandbox serves: versions of each superevent's files, in memory."""

    def __init__(self) -> None:
        self._files: dict[tuple[str, str], list[bytes]] = {}
        self._lock = threading.Lock()

    def put(self, superevent_id: str, filename: str, data: bytes) -> int:
        """Store the next version of a file; returns its version number (0 first)."""
        with self._lock:
            versions = self._files.setdefault((superevent_id, filename), [])
            versions.append(bytes(data))
            return len(versions) - 1

    def get(self, superevent_id: str, filename: str) -> bytes | None:
        """A file by ``name`` (latest version) or ``name,N`` (version N), if stored."""
        name, _, version = filename.partition(",")
        with self._lock:
            versions = self._files.get((superevent_id, name), [])
            if not versions:
                return None
            if not version:
                return versions[-1]
            if not version.isdigit() or int(version) >= len(versions):
                return None
            return versions[int(version)]


def add_skymap_routes(app: FastAPI, store: SkymapStore) -> None:
    """Serve ``store`` on ``app`` at GraceDB's file paths, with a control path to add maps."""

    @app.put("/sandbox/skymaps/{superevent_id}/{filename}", status_code=201)
    async def put_skymap(superevent_id: str, filename: str, request: Request) -> JSONResponse:
        if "," in filename or "/" in filename:
            return JSONResponse({"detail": "a file name without a version"}, status_code=400)
        data = await request.body()
        if not data or len(data) > MAX_SKYMAP_BYTES:
            return JSONResponse(
                {"detail": f"a map of 1 to {MAX_SKYMAP_BYTES} bytes"}, status_code=400
            )
        version = store.put(superevent_id, filename, data)
        path = f"/api/superevents/{superevent_id}/files/{filename},{version}"
        return JSONResponse({"path": path, "version": version}, status_code=201)

    @app.get("/api/superevents/{superevent_id}/files/{filename}")
    def get_skymap(superevent_id: str, filename: str) -> Response:
        data = store.get(superevent_id, filename)
        if data is None:
            return JSONResponse({"detail": "Not found."}, status_code=404)
        return Response(
            data,
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{filename.split(",")[0]}"'},
        )
