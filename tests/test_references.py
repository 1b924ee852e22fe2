"""Reference frames: searched by position in the archive once per field and band, then cached."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from followup.exceptions import PhotometryError
from followup.models import Frame
from followup.photometry.references import ReferenceCache, field_key

EVENT = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)


class FakeArchive:
    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self.searches: list[dict[str, Any]] = []
        self.downloads: list[int] = []

    def list_frame_records(self, **filters: Any) -> list[dict[str, Any]]:
        self.searches.append(filters)
        return [
            r
            for r in self.records
            if r["primary_optical_element"] == filters["primary_optical_element"]
        ]

    def download_frame(self, frame: Frame, dest_dir: str | Path) -> Path:
        self.downloads.append(frame.frame_id)
        path = Path(dest_dir) / f"{frame.basename}.fits.fz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"SIMPLE")
        return path


def record(frame_id: int, band: str, when: str, exptime: float) -> dict[str, Any]:
    return {
        "id": frame_id,
        "basename": f"cpt1m010-fa16-{frame_id}-e91",
        "url": "http://archive.test/x",
        "primary_optical_element": band,
        "observation_date": when,
        "exposure_time": exptime,
        "configuration_type": "EXPOSE",
        "reduction_level": 91,
    }


def test_the_deepest_earlier_frame_is_fetched_once_per_field_and_band(tmp_path: Path) -> None:
    archive = FakeArchive(
        [
            record(1, "rp", "2025-03-01T03:00:00Z", 120.0),
            record(2, "rp", "2025-04-01T03:00:00Z", 300.0),
            record(3, "rp", "2026-03-02T03:00:00Z", 600.0),  # after the event: not a reference
            record(4, "gp", "2025-04-01T03:00:00Z", 300.0),
        ]
    )
    cache = ReferenceCache(tmp_path / "refs")
    path = cache.fetch(archive, 150.0, -20.0, "rp", before=EVENT)
    assert path.name == "cpt1m010-fa16-2-e91.fits.fz" and path.is_file()
    search = archive.searches[0]
    assert search["covers"] == "POINT(150.000000 -20.000000)"
    assert search["primary_optical_element"] == "rp" and search["end"] == EVENT
    # The same field (a few arcmin away) and band: from the cache, no search, no download.
    again = ReferenceCache(tmp_path / "refs").fetch(archive, 150.02, -20.01, "rp", before=EVENT)
    assert again == path and len(archive.searches) == 1 and archive.downloads == [2]
    # Another band is another reference.
    cache.fetch(archive, 150.0, -20.0, "gp", before=EVENT)
    assert archive.downloads == [2, 4]
    assert field_key(150.0, -20.0, "rp") != field_key(151.0, -20.0, "rp")
    # Another field is searched again.
    cache.fetch(archive, 151.0, -20.0, "rp", before=EVENT)
    assert len(archive.searches) == 3


def test_no_earlier_frame_says_so(tmp_path: Path) -> None:
    archive = FakeArchive([record(3, "rp", "2026-03-02T03:00:00Z", 600.0)])
    with pytest.raises(PhotometryError, match="no reference"):
        ReferenceCache(tmp_path).fetch(archive, 150.0, -20.0, "rp", before=EVENT)
