"""The Science Archive stand-in's state: which frames exist, their records, bytes and signed URLs.

A completed request becomes frames here (:meth:`ArchiveState.observe`): per exposure a raw
(level 0) and a reduced (level 91) frame, plus the calibrations of that camera's night. What is
*in* a frame is the injected :data:`sandbox.specs.FrameRenderer`'s business (the synthetic sky);
each frame is rendered once, when first listed or downloaded, and kept.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import itertools
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sandbox.lco.clock import Clock
from sandbox.lco.configdb import TELESCOPES, Telescope
from sandbox.lco.exposures import (
    CALIBRATIONS,
    LAST_FRAME_NUMBER,
    Exposure,
    basename,
    calibration_number,
    calibration_start,
    day_obs,
    derive_seed,
    plan_exposures,
    science_number,
)
from sandbox.lco.faults import FaultBook, damage_frame
from sandbox.lco.frames import FrameEntry, FrameQuery
from sandbox.specs import FrameRenderer, FrameSpec
from sandbox.times import drf_time

__all__ = ["ArchiveState", "Observation", "header_only_renderer"]

SITE_LONGITUDES = {t.site: t.longitude for options in TELESCOPES.values() for t in options}


@dataclass(frozen=True)
class Observation:
    """A completed request as the telescope took it: what the archive makes frames of.

    Attributes:
        request: The request as the portal stores it.
        group_id: Its request group's id (TRACKNUM).
        group_name: Its request group's name (GROUPID).
        proposal: The proposal (PROPID).
        block_id: The scheduled block that observed it (BLKUID).
        telescope: Where it was observed (None: no telescope of its class; no frames).
        identity: The request's stable identity (see :mod:`sandbox.lco.exposures`).
        completed_at: When the request was reported complete.
        started_at: When the telescope started on it: the later of its submission and its
            window's start. Exposures run from then on, inside the window and after the event
            that triggered the request (the sandbox completes requests sooner than the
            exposures would take). None: they end at ``completed_at``.
    """

    request: Mapping[str, Any]
    group_id: int
    group_name: str
    proposal: str
    block_id: int
    telescope: Telescope | None
    identity: str
    completed_at: datetime
    started_at: datetime | None = None


class ArchiveState:
    """The frames of a sandbox, shared by the archive's endpoints (thread-safe).

    Args:
        clock: The sandbox's clock.
        renderer: Makes the FITS bytes of a frame; None serves :func:`header_only_renderer`.
        faults: Where frame damage waits to be done.
        lock: The sandbox's lock, shared with the portal.
        seed: The configured sandbox seed; every frame's seed derives from it.
        cache_dir: Where rendered frames are kept; None keeps them in memory.
        url_secret: Key signing download URLs; random by default.
        url_lifetime_s: Lifetime of a signed download URL (the archive's is 48 h).
        first_frame_id: First frame id; version ids start 20,000,000 above it.
        reference_epoch: When the archive's earlier frames of any field were taken (before every
            transient of the sky). A search by position (``covers=POINT(ra dec)``) finds, besides
            the frames of completed requests, a public 300 s Sinistro frame of the field in each
            band asked for (``primary_optical_element``; all four without), reduced, taken on
            the night of this date: the reference LCO users subtract. None: no such frames.
    """

    def __init__(
        self,
        clock: Clock,
        renderer: FrameRenderer | None,
        faults: FaultBook,
        lock: threading.RLock,
        *,
        seed: int = 0,
        cache_dir: str | Path | None = None,
        url_secret: bytes | None = None,
        url_lifetime_s: float = 172800.0,
        first_frame_id: int = 50_000_000,
        reference_epoch: datetime | None = None,
    ) -> None:
        self.clock = clock
        self.reference_epoch = reference_epoch
        self.renderer = renderer
        self.faults = faults
        self.seed = seed
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.url_secret = url_secret or secrets.token_bytes(32)
        self.url_lifetime_s = url_lifetime_s
        self.first_frame_id = first_frame_id
        self._lock = lock
        self._render_lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget every frame."""
        with self._lock:
            self.frames: dict[int, FrameEntry] = {}
            self._calibrations: dict[tuple[str, date, str, str | None], int] = {}
            self._numbers: dict[tuple[str, date], set[int]] = {}
            self._rendered: dict[int, tuple[bytes | None, str, str, int]] = {}
            self._references: dict[tuple[int, str], int] = {}
            self._frame_ids = itertools.count(self.first_frame_id)
            self._version_ids = itertools.count(self.first_frame_id + 20_000_000)

    # ------------------------------------------------------------------ storing

    def observe(self, observation: Observation, reduction_delay_s: float) -> None:
        """Store the frames of a completed request: raw at completion, reduced after the delay."""
        telescope = observation.telescope
        if telescope is None:
            return
        with self._lock:
            for exposure in plan_exposures(
                observation.request,
                telescope,
                observation.identity,
                observation.completed_at,
                started_at=observation.started_at,
            ):
                day = day_obs(exposure.start, telescope.longitude)
                wanted = science_number(exposure.start, telescope.longitude)
                number = self._claim_number(exposure.camera, day, wanted)
                common = self._science_fields(observation, exposure, number)
                stem = basename(telescope, exposure.camera, day, number, "e")
                raw = self._add_frame(
                    FrameSpec(basename=f"{stem}00", reduction_level=0, **common),
                    day,
                    observation.block_id,
                    available_at=observation.completed_at,
                )
                reduced = self._add_frame(
                    FrameSpec(basename=f"{stem}91", reduction_level=91, **common),
                    day,
                    observation.block_id,
                    available_at=observation.completed_at + timedelta(seconds=reduction_delay_s),
                )
                reduced.related.append(raw.frame_id)
                raw.related.append(reduced.frame_id)
                self._add_calibrations(telescope, exposure, day)

    def _science_fields(
        self, observation: Observation, exposure: Exposure, number: int
    ) -> dict[str, Any]:
        telescope = observation.telescope
        assert telescope is not None
        target = exposure.target
        return {
            "frame_number": number,
            "ra": float(target.get("ra", 0.0)) % 360.0,
            "dec": float(target.get("dec", 0.0)),
            "filter": exposure.band,
            "exposure_time_s": exposure.exposure_time_s,
            "date_obs": exposure.start,
            "site_id": telescope.site,
            "telescope_id": telescope.telescope,
            "enclosure_id": telescope.enclosure,
            "instrument_id": exposure.camera,
            "instrument_type": exposure.instrument_type,
            "request_id": observation.request["id"],
            "group_id": observation.group_id,
            "group_name": observation.group_name,
            "proposal_id": observation.proposal,
            "target_name": str(target.get("name", "")),
            "seed": derive_seed(self.seed, exposure.key),
            "exposure_id": exposure.key,
        }

    def _claim_number(self, camera: str, day: date, wanted: int) -> int:
        """``wanted``, or the next number free on that camera and night.

        Two requests observed at once on one telescope (which a real one could not do) would
        otherwise share a number.
        """
        used = self._numbers.setdefault((camera, day), set())
        number = wanted
        while number in used:
            number = number + 1 if number < LAST_FRAME_NUMBER else 1
            if number == wanted:
                raise RuntimeError(f"no frame number left on {camera} for the night of {day}")
        used.add(number)
        return number

    def _add_calibrations(self, telescope: Telescope, exposure: Exposure, day: date) -> None:
        """The bias, dark and sky flat of the exposure's camera and night, taken once a night."""
        camera = exposure.camera
        for kind, letter in CALIBRATIONS:
            band = exposure.band if kind == "SKYFLAT" else None
            key = (camera, day, kind, band)
            if key in self._calibrations:
                continue
            number = self._claim_number(camera, day, calibration_number(kind, band))
            identity = f"calibration/{camera}/{kind}/{band or ''}"
            spec = FrameSpec(
                basename=basename(telescope, camera, day, number, f"{letter}00"),
                frame_number=number,
                reduction_level=0,
                configuration_type=kind,  # type: ignore[arg-type]
                filter=band,
                exposure_time_s={"BIAS": 0.0, "DARK": max(exposure.exposure_time_s, 60.0)}.get(
                    kind, 10.0
                ),
                date_obs=calibration_start(day, telescope.longitude, number),
                site_id=telescope.site,
                telescope_id=telescope.telescope,
                enclosure_id=telescope.enclosure,
                instrument_id=camera,
                instrument_type=exposure.instrument_type,
                proposal_id="calibrate",
                target_name="",
                seed=derive_seed(self.seed, identity),
                exposure_id=identity,
            )
            self._calibrations[key] = self._add_frame(spec, day, None).frame_id

    def _add_frame(
        self,
        spec: FrameSpec,
        day: date,
        observation_id: int | None,
        available_at: datetime | None = None,
    ) -> FrameEntry:
        frame_id = next(self._frame_ids)
        entry = FrameEntry(
            frame_id=frame_id,
            spec=spec,
            observation_id=observation_id,
            version_id=next(self._version_ids),
            version_key=hashlib.md5(
                f"{spec.basename}:{frame_id}".encode(), usedforsecurity=False
            ).hexdigest(),
            created=available_at or spec.date_obs,
            public_date=spec.date_obs + timedelta(days=365),
            observation_day=day,
        )
        self.frames[frame_id] = entry
        return entry

    def _add_references(self, query: FrameQuery) -> None:
        """The archive's earlier frames of the field around ``query.point`` (see the class)."""
        from astropy import units as u
        from astropy_healpix import HEALPix

        assert query.point is not None and self.reference_epoch is not None
        if query.numbers.get("reduction_level", 91) != 91:
            return
        asked = query.exact.get("primary_optical_element")
        bands = [asked] if asked else ["gp", "rp", "ip", "zs"]
        hp = HEALPix(nside=256, order="nested")
        cell = int(hp.lonlat_to_healpix(query.point[0] * u.deg, query.point[1] * u.deg))
        lon, lat = hp.healpix_to_lonlat(cell)
        ra, dec = float(lon.deg) % 360.0, float(lat.deg)
        options = [t for t in TELESCOPES["1m0"] if (t.latitude < 0) == (dec < 0)] or list(
            TELESCOPES["1m0"]
        )
        telescope = options[derive_seed(self.seed, "reference", cell) % len(options)]
        camera = telescope.cameras[0]
        night = day_obs(self.reference_epoch, telescope.longitude)
        for band in bands:
            if band not in ("gp", "rp", "ip", "zs") or (cell, band) in self._references:
                continue
            identity = f"reference/{cell}/{band}"
            # Local midnight of the reference night, one exposure after another.
            start = calibration_start(night, telescope.longitude, 0) + timedelta(
                hours=12, seconds=320 * ["gp", "rp", "ip", "zs"].index(band)
            )
            number = self._claim_number(camera, night, science_number(start, telescope.longitude))
            spec = FrameSpec(
                basename=basename(telescope, camera, night, number, "e91"),
                frame_number=number,
                reduction_level=91,
                ra=ra,
                dec=dec,
                filter=band,
                exposure_time_s=300.0,
                date_obs=start,
                site_id=telescope.site,
                telescope_id=telescope.telescope,
                enclosure_id=telescope.enclosure,
                instrument_id=camera,
                instrument_type="1M0-SCICAM-SINISTRO",
                proposal_id="LCO2024A-REF",
                target_name=f"REF-{cell}",
                seed=derive_seed(self.seed, identity),
                exposure_id=identity,
            )
            entry = self._add_frame(spec, night, None)
            entry.public_date = start  # public long ago: listed without a token
            self._references[(cell, band)] = entry.frame_id

    # ------------------------------------------------------------------ reading

    def select(self, query: FrameQuery, *, authenticated: bool) -> list[FrameEntry]:
        """Frames matching a query, newest observation first.

        Only frames ingested by now are listed, and without a token only public ones.
        """
        with self._lock:
            if query.point is not None and self.reference_epoch is not None:
                self._add_references(query)
            now = self.clock.now()
            selected = [
                entry
                for entry in self.frames.values()
                if entry.created <= now  # not ingested yet: BANZAI still reducing
                and (authenticated or entry.public_date <= now)
                and query.matches(entry)
            ]
        selected.sort(key=lambda e: (e.spec.date_obs, e.frame_id), reverse=True)
        return selected

    def has_frame(self, frame_id: int) -> bool:
        """True when the archive holds this frame id."""
        with self._lock:
            return frame_id in self.frames

    def frame_entry(self, frame_id: int, *, authenticated: bool) -> FrameEntry:
        """One frame.

        Raises:
            KeyError: No such frame, or not visible without a token.
        """
        with self._lock:
            entry = self.frames[frame_id]
            now = self.clock.now()
            if entry.created > now or (not authenticated and entry.public_date > now):
                raise KeyError(frame_id)
            return entry

    def all_frame_specs(self) -> list[dict[str, Any]]:
        """Every frame with its spec (``GET /sandbox/frames``), for truth look-ups."""
        with self._lock:
            return [
                {"id": entry.frame_id, **entry.spec.model_dump(mode="json")}
                for entry in sorted(self.frames.values(), key=lambda e: e.frame_id)
            ]

    def frame_ids_of(self, request_id: int) -> list[int]:
        """Ids of the frames a request produced."""
        with self._lock:
            return sorted(
                f.frame_id for f in self.frames.values() if f.spec.request_id == request_id
            )

    def frame_content(self, frame_id: int) -> tuple[bytes, str, str]:
        """The frame's bytes, md5 and extension, rendered once and cached.

        Raises:
            KeyError: No such frame.
        """
        entry = self.frames[frame_id]
        cached = self._rendered.get(frame_id)
        if cached is not None:
            data, md5, extension, _ = cached
            if data is not None:
                return data, md5, extension
            assert self.cache_dir is not None
            return (
                (self.cache_dir / f"{entry.spec.basename}{extension}").read_bytes(),
                md5,
                extension,
            )
        with self._render_lock:
            cached = self._rendered.get(frame_id)
            if cached is not None:
                return self.frame_content(frame_id)
            renderer = self.renderer or header_only_renderer
            data = renderer(entry.spec)
            if not isinstance(data, bytes | bytearray) or not data:
                raise RuntimeError(f"the renderer returned no bytes for {entry.spec.basename}")
            data = bytes(data)
            kind = self.faults.take_damage(entry.spec)
            if kind is not None:
                data = damage_frame(data, kind)
            md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
            extension = ".fits.fz" if _is_compressed_fits(data) else ".fits"
            if self.cache_dir is not None:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                path = self.cache_dir / f"{entry.spec.basename}{extension}"
                tmp = path.with_suffix(path.suffix + ".tmp")
                tmp.write_bytes(data)
                tmp.replace(path)
                self._rendered[frame_id] = (None, md5, extension, len(data))
            else:
                self._rendered[frame_id] = (data, md5, extension, len(data))
            return data, md5, extension

    def sign(self, frame_id: int, filename: str, issued: datetime) -> dict[str, str]:
        """Query parameters of a signed download URL issued at ``issued``."""
        stamp = issued.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        expires = str(int(self.url_lifetime_s))
        message = f"{frame_id}/{filename}/{stamp}/{expires}".encode()
        signature = hmac.new(self.url_secret, message, hashlib.sha256).hexdigest()
        return {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Date": stamp,
            "X-Amz-Expires": expires,
            "X-Amz-SignedHeaders": "host",
            "X-Amz-Signature": signature,
        }

    def check_signature(
        self, frame_id: int, filename: str, params: Mapping[str, str]
    ) -> str | None:
        """None when a download URL is valid now, else the S3-style refusal message."""
        try:
            issued = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            expires = float(params["X-Amz-Expires"])
            given = params["X-Amz-Signature"]
        except (KeyError, ValueError):
            return "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters"
        message = f"{frame_id}/{filename}/{params['X-Amz-Date']}/{params['X-Amz-Expires']}".encode()
        expected = hmac.new(self.url_secret, message, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, given):
            return "The request signature we calculated does not match the signature you provided."
        if self.clock.now() > issued + timedelta(seconds=expires):
            return "Request has expired"
        return None

    def frame_record(self, entry: FrameEntry, base_url: str) -> dict[str, Any]:
        """The archive's frame record (``Frame.as_dict``) with a freshly signed URL."""
        _, md5, extension = self.frame_content(entry.frame_id)
        spec = entry.spec
        filename = f"{spec.basename}{extension}"
        url = f"{base_url.rstrip('/')}/download/{entry.frame_id}/{filename}?" + urlencode(
            self.sign(entry.frame_id, filename, self.clock.now())
        )
        record = {
            "id": entry.frame_id,
            "basename": spec.basename,
            "area": None,
            "related_frames": list(entry.related),
            "version_set": [
                {
                    "id": entry.version_id,
                    "created": drf_time(entry.created),
                    "key": entry.version_key,
                    "md5": md5,
                    "extension": extension,
                    "url": url,
                }
            ],
            "filename": filename,
            "url": url,
            "reduction_level": spec.reduction_level,
            "observation_day": entry.observation_day.isoformat(),
            "observation_date": drf_time(spec.date_obs),
            "proposal_id": spec.proposal_id,
            "instrument_id": spec.instrument_id,
            "target_name": spec.target_name,
            "site_id": spec.site_id,
            "telescope_id": spec.telescope_id,
            "exposure_time": spec.exposure_time_s,
            "primary_optical_element": spec.filter or "",
            "public_date": drf_time(entry.public_date),
            "configuration_type": spec.configuration_type,
            "observation_id": entry.observation_id,
            "request_id": spec.request_id,
            "modified": drf_time(entry.created),
            "created": drf_time(entry.created),
        }
        for legacy, key in (
            ("DATE_OBS", "observation_date"),
            ("DAY_OBS", "observation_day"),
            ("PROPID", "proposal_id"),
            ("INSTRUME", "instrument_id"),
            ("OBJECT", "target_name"),
            ("RLEVEL", "reduction_level"),
            ("SITEID", "site_id"),
            ("TELID", "telescope_id"),
            ("EXPTIME", "exposure_time"),
            ("FILTER", "primary_optical_element"),
            ("L1PUBDAT", "public_date"),
            ("OBSTYPE", "configuration_type"),
            ("BLKUID", "observation_id"),
            ("REQNUM", "request_id"),
        ):
            record[legacy] = record[key]
        return record

    def frame_headers(self, entry: FrameEntry) -> dict[str, Any]:
        """The header keywords the archive indexes for a frame (``/frames/{id}/headers/``)."""
        return _spec_header(entry.spec, entry.observation_day, entry.observation_id)


def _is_compressed_fits(data: bytes) -> bool:
    head = data[: 2880 * 8]
    return b"ZIMAGE  =                    T" in head


def _spec_header(spec: FrameSpec, day: date, observation_id: int | None) -> dict[str, Any]:
    import astropy.units as u
    from astropy.coordinates import Angle

    header = {
        "ORIGIN": "LCOGT",
        "SITEID": spec.site_id,
        "ENCID": spec.enclosure_id,
        "TELID": spec.telescope_id,
        "TELESCOP": spec.telescope_id,
        "INSTRUME": spec.instrument_id,
        "OBSTYPE": spec.configuration_type,
        "OBJECT": spec.target_name,
        "FILTER": spec.filter or "air",
        "EXPTIME": spec.exposure_time_s,
        "DATE-OBS": spec.date_obs.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
        "DAY-OBS": f"{day:%Y%m%d}",
        "RLEVEL": spec.reduction_level,
        "PROPID": spec.proposal_id,
        "GROUPID": spec.group_name or "",
        "TRACKNUM": f"{spec.group_id:010d}" if spec.group_id is not None else "",
        "REQNUM": f"{spec.request_id:010d}" if spec.request_id is not None else "",
        "BLKUID": observation_id if observation_id is not None else "",
        "RA": Angle(spec.ra, u.deg).to_string(unit=u.hourangle, sep=":", precision=3, pad=True),
        "DEC": Angle(spec.dec, u.deg).to_string(
            unit=u.deg, sep=":", precision=2, alwayssign=True, pad=True
        ),
        "CAT-RA": Angle(spec.ra, u.deg).to_string(unit=u.hourangle, sep=":", precision=3, pad=True),
        "CAT-DEC": Angle(spec.dec, u.deg).to_string(
            unit=u.deg, sep=":", precision=2, alwayssign=True, pad=True
        ),
    }
    return header


def header_only_renderer(spec: FrameSpec) -> bytes:
    """A small, valid FITS file with a frame's real header keywords and an empty 64x64 image.

    Served when no synthetic sky is plugged in: clients can list, download, checksum and read
    headers, but there is no sky in it (``SANDBOX`` keyword says so).
    """
    import numpy as np
    from astropy.io import fits

    header = fits.Header()
    day = day_obs(spec.date_obs, SITE_LONGITUDES.get(spec.site_id, 0.0))
    for key, value in _spec_header(spec, day, None).items():
        header[key] = value
    header["SANDBOX"] = ("header-only", "no sky: no FrameRenderer configured")
    hdu = fits.PrimaryHDU(data=np.zeros((64, 64), dtype=np.int16), header=header)
    buffer = io.BytesIO()
    hdu.writeto(buffer)
    return buffer.getvalue()
