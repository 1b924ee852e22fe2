"""The frames aggregate: archive frames (once per archive id) and the measurements made on them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from followup.coverage import FieldDepth, FrameDepth
from followup.ledger.database import Database
from followup.ledger.schema import FrameRow, MeasurementRow, RequestRow, TargetRow
from followup.models import Frame, Measurement

__all__ = ["FrameStore"]


class FrameStore:
    """Frames and measurements (``ledger.frames``).

    Args:
        db: The ledger's database.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, frame: Frame, request_row_id: int | None = None) -> tuple[FrameRow, bool]:
        """Store a frame once per archive id; updates the local path of a known frame.

        Returns:
            The row, and True when it is new.
        """
        with self._db.session() as s:
            row = s.scalar(select(FrameRow).where(FrameRow.archive_id == frame.frame_id))
            if row is not None:
                if frame.local_path and row.local_path != frame.local_path:
                    row.local_path = frame.local_path
                return row, False
            row = FrameRow(
                archive_id=frame.frame_id,
                request_row_id=request_row_id,
                basename=frame.basename,
                version_id=frame.version_id,
                reduction_level=frame.reduction_level,
                filter=frame.filter,
                observation_date=frame.observation_date,
                local_path=frame.local_path,
                md5=frame.md5,
            )
            s.add(row)
        return row, True

    def record_error(self, frame_row_id: int, error: str | None) -> FrameRow:
        """Record why a frame cannot be used (None clears it, when a rerun could use it).

        Raises:
            KeyError: No such frame row.
        """
        return self._set(frame_row_id, error=error[:4000] if error else None)

    def record_depth(self, frame_row_id: int, depth: FrameDepth) -> FrameRow:
        """Store a frame's depth (a later measurement replaces it).

        Raises:
            KeyError: No such frame row.
        """
        return self._set(frame_row_id, depth=depth.model_dump(mode="json"))

    def _set(self, frame_row_id: int, **columns: Any) -> FrameRow:
        """Set columns of one frame row.

        Raises:
            KeyError: No such frame row.
        """
        with self._db.session() as s:
            row = s.get(FrameRow, frame_row_id)
            if row is None:
                raise KeyError(f"no frame row {frame_row_id}")
            for column, value in columns.items():
                setattr(row, column, value)
            return row

    def depths(self, event_id: str) -> list[FieldDepth]:
        """The depth of every measured frame of an event, with the target its request observed."""
        with self._db.session() as s:
            rows = s.execute(
                select(FrameRow.depth, TargetRow)
                .join(RequestRow, FrameRow.request_row_id == RequestRow.id)
                .join(TargetRow, RequestRow.target_id == TargetRow.id)
                .where(RequestRow.event_id == event_id, FrameRow.depth.is_not(None))
                .order_by(FrameRow.id)
            ).all()
            return [
                FieldDepth(
                    field=target.name,
                    ra=target.ra,
                    dec=target.dec,
                    probability=target.probability,
                    depth=FrameDepth.model_validate(depth),
                )
                for depth, target in rows
            ]

    def record_measurement(
        self, frame_row_id: int, target_row_id: int, measurement: Measurement
    ) -> tuple[MeasurementRow, bool]:
        """Store a measurement once per (frame, target, method); a rerun keeps the first."""
        with self._db.session() as s:
            row = s.scalar(
                select(MeasurementRow).where(
                    MeasurementRow.frame_id == frame_row_id,
                    MeasurementRow.target_id == target_row_id,
                    MeasurementRow.method == measurement.method,
                )
            )
            if row is not None:
                return row, False
            row = MeasurementRow(
                frame_id=frame_row_id,
                target_id=target_row_id,
                method=measurement.method,
                band=measurement.band,
                mjd=measurement.mjd,
                flux_ujy=measurement.flux_ujy,
                flux_err_ujy=measurement.flux_err_ujy,
                mag=measurement.mag,
                mag_err=measurement.mag_err,
                limit_mag_5sigma=measurement.limit_mag_5sigma,
                data=measurement.model_dump(mode="json"),
            )
            s.add(row)
        return row, True

    def measurements(self, event_id: str) -> list[Measurement]:
        """Every measurement of an event's targets, in time order."""
        with self._db.session() as s:
            rows = s.scalars(
                select(MeasurementRow)
                .join(TargetRow, MeasurementRow.target_id == TargetRow.id)
                .where(TargetRow.event_id == event_id)
                .order_by(MeasurementRow.mjd)
            )
            return [Measurement.model_validate(row.data) for row in rows]
