"""Client of the LCO Science Archive: frame listings and downloads that cannot collide.

``https://archive-api.lco.global/frames/``: the frames of a request (BANZAI level 91, else raw
level 0 plus that night's calibrations), and downloads with resume, an md5 check and a local cache
keyed by basename and version.

Every download writes a part file of its own (a unique name per attempt) beside its cache path and
publishes it with one atomic rename once its size and md5 check out. Two downloads of the same or
of same-named frames, in threads of one run or in two processes, never share a partial file, and a
complete file at the cache path is never replaced by a partial one.

What the archive says is not trusted: a frame URL is fetched only from the archive's own origin
or an allowed download host (every redirect checked too), with a byte cap and a deadline; file
names are reduced to safe base names inside the cache; listings stay on the archive's origin. A
client pickled for a Dask worker carries no token (see :class:`followup.http.ServiceClient`).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
from pydantic import SecretStr

from followup.exceptions import AuthenticationError, ServiceError, ServiceUnavailable
from followup.http import CredentialSource, ServiceClient, TokenAuth
from followup.models import Frame

__all__ = [
    "CALIBRATION_TYPES",
    "DEFAULT_ARCHIVE_URL",
    "DEFAULT_DOWNLOAD_HOSTS",
    "DOWNLOAD_DEADLINE_S",
    "MAX_DOWNLOAD_BYTES",
    "ArchiveClient",
    "ChecksumMismatch",
    "frame_from_record",
]

DEFAULT_ARCHIVE_URL = "https://archive-api.lco.global"
"""Root of the Science Archive API; frames live under ``/frames/``."""

DEFAULT_DOWNLOAD_HOSTS = (
    "archive-lco-global.s3.amazonaws.com",
    "s3.us-west-2.amazonaws.com/archive.lcogt.net/",
)
"""Where the archive's signed URLs point (besides the archive itself): ``host`` or
``host/path-prefix`` (the regional S3 endpoint serves every bucket, so only LCO's path)."""

MAX_DOWNLOAD_BYTES = 2**30
"""Largest frame downloaded (LCO frames are 10-100 MB; a spectrum tarball a few hundred)."""

DOWNLOAD_DEADLINE_S = 900.0
"""Longest one download may take, resumes included (a trickle never trips a read timeout)."""

_DOWNLOAD = "download_frame"
_MAX_REDIRECTS = 5
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


class ChecksumMismatch(ServiceUnavailable):
    """A downloaded file did not match the archive's md5 (or was longer than announced).

    The part file is deleted, so a retry downloads the file afresh; retrying is reasonable because
    the usual cause is a corrupted transfer.
    """


def frame_from_record(record: Mapping[str, Any]) -> Frame:
    """Turn an archive frame record (``/frames/`` result) into a :class:`~followup.models.Frame`.

    The latest version (newest ``created``, the one the record's ``url`` serves) gives ``md5``
    and ``version_id``.

    Raises:
        KeyError: The record lacks ``id`` or ``basename``.
    """
    versions = list(record.get("version_set") or [])
    latest: Mapping[str, Any] | None = None
    if versions:
        latest = max(versions, key=lambda version: str(version.get("created") or ""))
    filename = record.get("filename")
    if not filename:
        extension = (latest or {}).get("extension", ".fits.fz")
        filename = f"{record['basename']}{extension}"
    url = record.get("url") or (latest or {}).get("url") or ""
    return Frame(
        frame_id=int(record["id"]),
        basename=str(record["basename"]),
        filename=str(filename),
        url=str(url),
        request_id=record.get("request_id", record.get("REQNUM")),
        reduction_level=int(record.get("reduction_level", record.get("RLEVEL", 0)) or 0),
        filter=record.get("primary_optical_element", record.get("FILTER")) or None,
        observation_date=record.get("observation_date", record.get("DATE_OBS")),
        exposure_time_s=record.get("exposure_time", record.get("EXPTIME")),
        configuration_type=record.get("configuration_type", record.get("OBSTYPE")),
        site_id=record.get("site_id", record.get("SITEID")),
        telescope_id=record.get("telescope_id", record.get("TELID")),
        instrument_id=record.get("instrument_id", record.get("INSTRUME")),
        md5=(latest or {}).get("md5"),
        version_id=(latest or {}).get("id"),
    )


CALIBRATION_TYPES = ("BIAS", "DARK", "SKYFLAT")
"""Archive configuration types of the calibration frames fetched beside raw science frames."""


class ArchiveClient(ServiceClient):
    """Client of the LCO Science Archive (``/frames/``) with cached, resumable downloads.

    Uses the portal's API token (``Authorization: Token``). Downloads go to the record's signed
    ``url`` without the token (a signed URL must not carry a second credential); an expired URL
    (401/403) is refreshed once by re-reading the frame. Errors follow the table of
    :mod:`followup.http`; every archive call is a read, so nothing is an ``UncertainOutcome``.
    The client never retries: a transfer that breaks after some bytes is resumed (at most
    ``max_resumes`` times within one :meth:`download_frame` call), anything else is raised for the
    calling task to retry.

    Args:
        token: Portal API token; None for public frames only.
        base_url: Archive API root (default ``https://archive-api.lco.global``).
        timeout: Seconds (or an ``httpx.Timeout``) for each HTTP call; 60 by default.
        transport: An httpx transport to use instead of the network.
        max_resumes: Range requests a download may make after transfers that broke with
            progress.
        download_hosts: Hosts (``host`` or ``host/path-prefix``) frame URLs may point at over
            https, besides the archive's own origin.
        max_download_bytes: Largest file downloaded.
        download_deadline_s: Longest one :meth:`download_frame` may take, resumes included.
        credential_source: Gives the token again in another process (a Dask worker), where a
            pickled copy of this client arrives without it.

    Raises:
        ValueError: A negative ``max_resumes``, or a cap or deadline that is not positive.
    """

    service = "LCO archive"

    def __init__(
        self,
        token: str | SecretStr | None,
        *,
        base_url: str | None = None,
        timeout: float | httpx.Timeout = 60.0,
        transport: httpx.BaseTransport | None = None,
        max_resumes: int = 5,
        download_hosts: Sequence[str] = DEFAULT_DOWNLOAD_HOSTS,
        max_download_bytes: int = MAX_DOWNLOAD_BYTES,
        download_deadline_s: float = DOWNLOAD_DEADLINE_S,
        credential_source: CredentialSource | None = None,
    ) -> None:
        if max_resumes < 0:
            raise ValueError(f"max_resumes must be >= 0, got {max_resumes}")
        if max_download_bytes <= 0 or download_deadline_s <= 0:
            raise ValueError("max_download_bytes and download_deadline_s must be > 0")
        self.max_resumes = max_resumes
        self.download_hosts = tuple(h.strip().lower() for h in download_hosts if h.strip())
        self.max_download_bytes = max_download_bytes
        self.download_deadline_s = download_deadline_s
        super().__init__(
            (base_url or DEFAULT_ARCHIVE_URL).rstrip("/"),
            auth=TokenAuth(token) if token else None,
            timeout=timeout,
            transport=transport,
            secrets=[token] if token else [],
            follow_redirects=True,
            credential_source=credential_source,
        )

    def list_frame_records(self, **filters: Any) -> list[dict[str, Any]]:
        """Raw frame records for any archive filters (``GET /frames/?...``), every page followed.

        Args:
            **filters: Archive query parameters (``request_id``, ``reduction_level``,
                ``instrument_id``, ``dayobs``, ``include_configuration_type`` (a list)...);
                None values are left out. ``limit`` defaults to 1000, the archive's maximum.

        Raises:
            ServiceUnavailable: The archive could not answer (the calling task retries).
        """
        params: list[tuple[str, Any]] = []
        filters.setdefault("limit", 1000)
        for key, value in filters.items():
            if value is None:
                continue
            if isinstance(value, list | tuple | set):
                params += [(key, item) for item in value]
            elif isinstance(value, date | datetime):
                params.append((key, value.isoformat()))
            else:
                params.append((key, value))
        return list(self._paginate("/frames/", operation="list_frames", params=params))

    def list_frames(
        self,
        request_id: int | None = None,
        *,
        reduction_level: int | None = 91,
        configuration_types: Sequence[str] | None = None,
        instrument_id: str | None = None,
        dayobs: date | None = None,
    ) -> list[Frame]:
        """Frames of a request at one reduction level, every page followed.

        Args:
            request_id: LCO request id; None to list by the other filters alone.
            reduction_level: 91 for BANZAI-reduced, 0 for raw, None for all.
            configuration_types: Keep only these (``EXPOSE``, ``BIAS``, ``DARK``, ``SKYFLAT``).
            instrument_id: Instrument id, e.g. ``fa16``.
            dayobs: Observing night (the archive's ``observation_day``).

        Returns:
            The frames, newest observation first.

        Raises:
            ServiceUnavailable: The archive could not answer (the calling task retries).
        """
        records = self.list_frame_records(
            request_id=request_id,
            reduction_level=reduction_level,
            include_configuration_type=list(configuration_types) if configuration_types else None,
            instrument_id=instrument_id,
            dayobs=dayobs,
        )
        return [frame_from_record(record) for record in records]

    def get_frame(self, frame_id: int) -> Frame:
        """One frame (``GET /frames/{id}/``), with a freshly signed download URL.

        Raises:
            NotFound: No such frame, or not visible with this token.
            ServiceUnavailable: The archive could not answer (the calling task retries).
        """
        return frame_from_record(self._get_json(f"/frames/{int(frame_id)}/", operation="get_frame"))

    def get_frame_headers(self, frame_id: int) -> dict[str, Any]:
        """The FITS header of a frame as the archive indexed it (``GET /frames/{id}/headers/``).

        Raises:
            NotFound: No such frame.
            ServiceUnavailable: The archive could not answer (the calling task retries).
        """
        data = self._get_json(f"/frames/{int(frame_id)}/headers/", operation="get_frame_headers")
        return dict(data.get("data", {}))

    def frames_for_request(self, request_id: int) -> list[Frame]:
        """The frames to reduce for a request: BANZAI-reduced if any, else raw plus calibrations.

        Calls: one listing at level 91; when it is empty, one at level 0 for the request and one
        per (instrument, night) of its raw frames for that night's BIAS, DARK and SKYFLAT frames.

        Returns:
            Level-91 science frames; or level-0 science frames followed by the calibration
            frames of the same instruments and nights (each frame once).

        Raises:
            ServiceUnavailable: The archive could not answer (the calling task retries).
        """
        reduced = self.list_frames(request_id, reduction_level=91)
        if reduced:
            return reduced
        raw_records = self.list_frame_records(request_id=request_id, reduction_level=0)
        frames = [frame_from_record(record) for record in raw_records]
        nights = sorted(
            {
                (str(record.get("instrument_id")), str(record.get("observation_day")))
                for record in raw_records
                if record.get("instrument_id") and record.get("observation_day")
            }
        )
        seen = {frame.frame_id for frame in frames}
        for instrument_id, night in nights:
            for record in self.list_frame_records(
                reduction_level=0,
                instrument_id=instrument_id,
                dayobs=night,
                include_configuration_type=list(CALIBRATION_TYPES),
            ):
                calibration = frame_from_record(record)
                if calibration.frame_id not in seen:
                    seen.add(calibration.frame_id)
                    frames.append(calibration)
        return frames

    @staticmethod
    def cache_path(frame: Frame, dest_dir: str | Path) -> Path:
        """Where :meth:`download_frame` keeps a frame: ``dest_dir/<basename>/<version>/<filename>``.

        The version is the archive's version id (else the md5, else ``latest``), so a
        reprocessed frame lands beside the old one instead of being mistaken for it. Each part
        comes from the archive, so each is reduced to a safe base name (an absolute or ``../``
        name cannot leave the cache).

        Raises:
            ServiceError: A name that leaves nothing usable.
        """
        version = (
            f"v{frame.version_id}" if frame.version_id is not None else (frame.md5 or "latest")
        )
        root = Path(dest_dir)
        path = root / _safe_name(frame.basename) / _safe_name(version) / _safe_name(frame.filename)
        if not path.resolve().is_relative_to(root.resolve()):  # belt and braces
            raise ServiceError(f"frame {frame.frame_id} would be written outside {root}")
        return path

    def download_frame(self, frame: Frame, dest_dir: str | Path) -> Path:
        """Download a frame to the local cache, resuming broken transfers; a cache hit is free.

        The bytes go to a part file of this call's own (``<filename>.<random>.part`` beside the
        cache path), which is renamed into the cache path once its size (from Content-Length or
        Content-Range) and md5 (from the archive's version) check out; when another download
        finished the same file first, its copy is kept and this one dropped. A transfer that
        breaks after bytes arrived resumes with an HTTP Range request (at most ``max_resumes``
        times); the part file is deleted when the call fails.

        Args:
            frame: The frame (from :meth:`list_frames` or :meth:`get_frame`).
            dest_dir: Root of the cache.

        Returns:
            The path of the complete file.

        Raises:
            ChecksumMismatch: The file did not match its md5 or announced size.
            ServiceUnavailable: The transfer failed without progress, or kept breaking.
            AuthenticationError: The URL stayed refused after refreshing it.
            NotFound: The file is gone.
        """
        path = self.cache_path(frame, dest_dir)
        if path.is_file():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f"{path.name}.{uuid.uuid4().hex}.part")
        try:
            url, total = self._fetch(frame, part)
            self._check(frame, part, total, url)
            if not path.is_file():
                os.replace(part, path)
        finally:
            part.unlink(missing_ok=True)
        return path

    def _fetch(self, frame: Frame, part: Path) -> tuple[str, int | None]:
        """Fill ``part`` with the frame's bytes, resuming transfers that broke with progress.

        Returns:
            The URL the bytes came from and the file size the archive announced, if it did.
        """
        url = frame.url
        refreshed = False
        resumes = 0
        deadline = time.monotonic() + self.download_deadline_s
        while True:
            had = _size(part)
            try:
                total = self._transfer(url, part, deadline)
            except _DeadlinePassed:
                raise
            except _ExpiredUrl:
                if refreshed:
                    raise
                url = self.get_frame(frame.frame_id).url
                refreshed = True
                continue
            except ServiceUnavailable:
                if _size(part) <= had or resumes >= self.max_resumes:
                    raise
                resumes += 1
                continue
            size = _size(part)
            if total is None or size >= total:
                return url, total
            if size <= had or resumes >= self.max_resumes:
                raise ServiceUnavailable(
                    f"{self.service} {_DOWNLOAD}: {frame.filename} stopped at {size} of "
                    f"{total} bytes after {resumes} resume(s)",
                    operation=_DOWNLOAD,
                    url=self._url(url),
                )
            resumes += 1

    def _check(self, frame: Frame, part: Path, total: int | None, url: str) -> None:
        """Raise :class:`ChecksumMismatch` unless ``part`` has the announced size and md5."""
        size = _size(part)
        problem = None
        if total is not None and size > total:
            problem = f"has {size} bytes, the archive announced {total}"
        elif frame.md5 and (digest := _md5_of(part)) != frame.md5.lower():
            problem = f"has md5 {digest}, the archive says {frame.md5}"
        if problem:
            raise ChecksumMismatch(
                f"{self.service} {_DOWNLOAD}: {frame.filename} {problem}",
                operation=_DOWNLOAD,
                url=self._url(url),
            )

    def _transfer(self, url: str, part: Path, deadline: float) -> int | None:
        """One GET of ``url`` into ``part`` (appending from its current size with Range).

        Redirects are followed here, each checked against the allowed hosts.

        Returns:
            The full size of the file in bytes, when the server said it.

        Raises:
            _ExpiredUrl: 401/403 on the signed URL.
            ServiceError: A host not allowed, too many redirects, a file over the cap, or the
                table's class for the failure; bytes received before a transfer broke stay in
                ``part`` for a resume.
        """
        offset = _size(part)
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        failure: ServiceError | None = None
        try:
            for _ in range(_MAX_REDIRECTS + 1):
                self._check_host(url)
                with self._client.stream(
                    "GET", url, headers=headers, auth=None, follow_redirects=False
                ) as response:
                    if not response.has_redirect_location:
                        return self._write(response, part, offset, deadline)
                    url = str(response.url.join(response.headers.get("Location", "")))
        except httpx.RequestError as exc:
            failure = self._transport_error(exc, operation=_DOWNLOAD, method="GET", url=url)
        if failure is not None:
            raise failure  # chained to a scrubbed copy of the httpx error (ServiceClient)
        raise ServiceError(
            f"{self.service} {_DOWNLOAD}: more than {_MAX_REDIRECTS} redirects",
            operation=_DOWNLOAD,
            url=self._url(url),
        )

    def _check_host(self, url: str) -> None:
        """Refuse a download URL outside the archive's origin and the allowed hosts.

        Raises:
            ServiceError: The URL points elsewhere (nothing is sent there).
        """
        target, base = httpx.URL(url), self._client.base_url
        if (target.scheme, target.host, target.port) == (base.scheme, base.host, base.port):
            return
        where = f"{target.host}{target.path}".lower()
        if target.scheme == "https" and any(
            where.startswith(allowed if "/" in allowed else f"{allowed}/")
            for allowed in self.download_hosts
        ):
            return
        raise ServiceError(
            f"{self.service} {_DOWNLOAD}: {target.scheme}://{target.host} is not an allowed "
            f"download host (the archive's own, or {', '.join(self.download_hosts) or 'none'})",
            operation=_DOWNLOAD,
            url=self._url(url),
        )

    def _write(
        self, response: httpx.Response, part: Path, offset: int, deadline: float
    ) -> int | None:
        """Write a download answer's body into ``part``; return the announced file size.

        Raises:
            ServiceError: The file is announced, or turns out, larger than the cap.
            _DeadlinePassed: The download's deadline passed while the bytes came in.
        """
        status = response.status_code
        url = self._url(response.request.url)
        if status in (401, 403):
            response.read()
            raise _ExpiredUrl(self._status_error(response, operation=_DOWNLOAD))
        if status == 416 and offset:
            # Asked past the end: what we have may be the whole file; check its size.
            total = _content_range_total(response.headers.get("Content-Range"))
            if total is not None and total <= offset:
                return total
            part.unlink()
            raise ServiceUnavailable(
                f"{self.service} {_DOWNLOAD}: the archive refused to resume at byte {offset}",
                operation=_DOWNLOAD,
                url=url,
            )
        if not response.is_success:
            response.read()
            raise self._status_error(response, operation=_DOWNLOAD)
        if status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != offset:
                raise ServiceUnavailable(
                    f"{self.service} {_DOWNLOAD}: asked for byte {offset}, the archive sent "
                    f"from {start}",
                    operation=_DOWNLOAD,
                    url=url,
                )
            mode = "ab"
        else:
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
            mode = "wb"
            offset = 0
        cap = self.max_download_bytes
        if total is not None and total > cap:
            raise ServiceError(
                f"{self.service} {_DOWNLOAD}: the archive announced {total} bytes, more than "
                f"the {cap}-byte cap",
                operation=_DOWNLOAD,
                url=url,
            )
        size = offset
        with part.open(mode) as handle:
            # Chunks as they arrive: a re-chunking buffer would lose the tail of a broken transfer.
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > cap:
                    raise ServiceError(
                        f"{self.service} {_DOWNLOAD}: more than {cap} bytes: stopped",
                        operation=_DOWNLOAD,
                        url=url,
                    )
                handle.write(chunk)
                if time.monotonic() > deadline:
                    raise _DeadlinePassed(
                        f"{self.service} {_DOWNLOAD}: the {self.download_deadline_s:g} s "
                        f"deadline passed at {size} bytes",
                        operation=_DOWNLOAD,
                        url=url,
                    )
        return total


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _safe_name(name: str) -> str:
    """A file name from the archive reduced to a safe base name (no directory, no ``..``).

    Raises:
        ServiceError: Nothing usable is left.
    """
    base = PurePosixPath(str(name).replace("\\", "/")).name
    base = _UNSAFE.sub("_", base).lstrip(".")[:200]
    if not base:
        raise ServiceError(f"the archive's file name {str(name)[:80]!r} is not usable")
    return base


class _DeadlinePassed(ServiceUnavailable):
    """A download took longer than its deadline: stopped, not resumed (a later task may retry)."""


class _ExpiredUrl(AuthenticationError):
    """The signed download URL was refused (expired): re-read the frame for a new one."""

    def __init__(self, error: ServiceError) -> None:
        super().__init__(
            str(error),
            operation=error.operation,
            status_code=error.status_code,
            url=error.url,
            body=error.body,
        )


def _content_range(value: str | None) -> tuple[int, int | None]:
    """``bytes START-END/TOTAL`` -> (START, TOTAL or None)."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not match:
        return -1, None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), total


def _content_range_total(value: str | None) -> int | None:
    match = re.fullmatch(r"\s*bytes\s+[\d*-]+/(\d+)\s*", value or "")
    return int(match.group(1)) if match else None


def _md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
