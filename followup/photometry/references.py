"""Reference frames for difference imaging: an earlier LCO frame of the field, fetched once.

What LCO users subtract is an earlier frame of the same field and band from the archive. The
archive is searched by position (``covers=POINT(ra dec)``, reduced science frames in the band,
observed before the event); the deepest of them (longest exposure, then the earliest) is
downloaded into the reference cache, and an index file remembers it per field and band: a
later frame in the band whose centre lies within ``field_radius_arcmin`` (5 arcmin, a fifth of a
Sinistro field) of a cached one reuses its reference without asking the archive again.
"""

from __future__ import annotations

import json
import math
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from followup.exceptions import PhotometryError
from followup.models import Frame

__all__ = ["ReferenceArchive", "ReferenceCache", "field_key"]


class ReferenceArchive(Protocol):
    """What the cache needs of :class:`followup.lco.ArchiveClient`."""

    def list_frame_records(self, **filters: Any) -> list[dict[str, Any]]:
        """Raw frame records for archive filters."""
        ...

    def download_frame(self, frame: Frame, dest_dir: str | Path) -> Path:
        """Download a frame into a cache directory."""
        ...


def field_key(ra: float, dec: float, band: str) -> str:
    """``<band>/<ra><dec>`` of a science frame's centre: the index's key."""
    return f"{band}/{ra:.5f}{dec:+.5f}"


class ReferenceCache:
    """References per field and band, downloaded once into ``directory``.

    Args:
        directory: Where references and the index (``index.json``) are kept.
        field_radius_arcmin: Frames whose centres are this close are of the same field.
    """

    _lock = threading.Lock()

    def __init__(self, directory: str | Path, *, field_radius_arcmin: float = 5.0) -> None:
        self.directory = Path(directory)
        self.field_radius_arcmin = field_radius_arcmin
        self.index_path = self.directory / "index.json"

    def _index(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.index_path.read_text()))
        except (OSError, ValueError):
            return {}

    def cached(self, ra: float, dec: float, band: str) -> Path | None:
        """The cached reference of the field, if one was fetched (and is still on disk)."""
        best: tuple[float, Path] | None = None
        for entry in self._index().values():
            if entry.get("band") != band or not Path(entry["path"]).is_file():
                continue
            distance = _arcmin(ra, dec, float(entry["ra"]), float(entry["dec"]))
            if distance <= self.field_radius_arcmin and (best is None or distance < best[0]):
                best = (distance, Path(entry["path"]))
        return best[1] if best else None

    def fetch(
        self,
        archive: ReferenceArchive,
        ra: float,
        dec: float,
        band: str,
        *,
        before: datetime,
    ) -> Path:
        """The field's reference: from the cache, else searched and downloaded once.

        Args:
            archive: The LCO archive client.
            ra: Centre of the science frame (deg).
            dec: Centre of the science frame (deg).
            band: Filter code (``gp``, ``rp``...).
            before: Only frames taken before this (the event's time) can be references.

        Raises:
            PhotometryError: The archive has no earlier frame of the field in the band.
            ServiceError: The archive failed (the calling task retries).
        """
        cached = self.cached(ra, dec, band)
        if cached is not None:
            return cached
        records = archive.list_frame_records(
            covers=f"POINT({ra:.6f} {dec:.6f})",
            primary_optical_element=band,
            reduction_level=91,
            configuration_type="EXPOSE",
            end=before,
        )
        from followup.lco.archive import frame_from_record

        frames = [frame_from_record(r) for r in records]
        frames = [
            f
            for f in frames
            if f.observation_date is not None
            and f.observation_date < before
            and (f.filter or band) == band
            and (f.configuration_type or "EXPOSE") == "EXPOSE"
        ]
        if not frames:
            raise PhotometryError(
                f"no reference: the archive has no {band} frame of {ra:.4f} {dec:+.4f} "
                f"before {before:%Y-%m-%d %H:%M}"
            )
        best = max(
            frames,
            key=lambda f: (f.exposure_time_s or 0.0, -_timestamp(f.observation_date)),
        )
        path = archive.download_frame(best, self.directory / "frames")
        with self._lock:
            index = self._index()
            index[field_key(ra, dec, band)] = {
                "ra": ra,
                "dec": dec,
                "band": band,
                "path": str(path),
                "frame_id": best.frame_id,
                "basename": best.basename,
                "observation_date": best.observation_date.isoformat()
                if best.observation_date
                else None,
            }
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.index_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(index, indent=1, sort_keys=True))
            tmp.replace(self.index_path)
        return path


def _timestamp(when: datetime | None) -> float:
    return when.timestamp() if when is not None else math.inf


def _arcmin(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Angular distance in arcminutes (haversine)."""
    p1, p2 = math.radians(dec1), math.radians(dec2)
    dra = math.radians(ra2 - ra1)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dra / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h)))) * 60.0
