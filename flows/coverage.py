"""Coverage of an event, remade as frames land: each frame's depth, a table and a sky plot.

Called once from the ``process-frames`` flow with the frames it fetched; frames measured on an
earlier run keep their depth in the ledger and are not measured again.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, unmapped
from prefect.futures import wait

from flows.runtime import Runtime
from followup.coverage import CoverageRow, coverage_rows, covered_probability, plot_coverage
from followup.exceptions import PhotometryError, ReductionError, ServiceError
from followup.models import Frame, TargetKind
from tasks.artifacts import publish_plot, publish_table
from tasks.coverage import measure_frame_depth

__all__ = ["update_coverage"]

NOT_MEASURED = (ReductionError, PhotometryError, ServiceError)
"""What a frame whose depth cannot be measured raises: it is left out of the coverage."""


def update_coverage(
    runtime: Runtime, event_id: str, frames: list[Frame], frame_rows: dict[int, Any]
) -> list[CoverageRow]:
    """Measure the depth of frames not measured yet; publish the event's coverage.

    Args:
        runtime: The run's settings and ledger.
        event_id: The event.
        frames: Usable frames of the event's completed requests (downloaded).
        frame_rows: The ledger row of each frame by archive frame id.

    Returns:
        The coverage table (also a ``coverage`` table artifact and a ``coverage-plot``).
    """
    logger = get_run_logger()
    todo = [f for f in frames if frame_rows[f.frame_id].depth is None]
    if todo:
        catalog = runtime.settings.get_reference_catalog()
        futures = list(measure_frame_depth.map(todo, unmapped(catalog)))
        wait(futures)
        for frame, future in zip(todo, futures, strict=True):
            try:
                depth = future.result()
            except NOT_MEASURED as exc:
                logger.warning("%s: no depth: %s", frame.basename, exc)
                continue
            runtime.ledger.frames.record_depth(frame_rows[frame.frame_id].id, depth)
    depths = runtime.ledger.frames.depths(event_id)
    if not depths:
        return []
    rows = coverage_rows(depths)
    publish_table(
        "coverage",
        event_id,
        [r.model_dump() for r in rows],
        f"fields of {event_id} observed, with their probability and 5-sigma depth per band "
        f"({covered_probability(rows):.1%} of the sky map)",
    )
    fields = [
        (t.name, t.ra, t.dec)
        for t in runtime.ledger.events.targets(event_id)
        if TargetKind(t.kind) == TargetKind.FIELD
    ]
    publish_plot(
        "coverage",
        event_id,
        plot_coverage(depths, planned=fields, title=f"{event_id}: observed fields"),
        f"observed fields of {event_id} coloured by 5-sigma depth",
        plots_dir=runtime.settings.plots_dir,
        plots_base_url=runtime.settings.plots_base_url,
    )
    logger.info(
        "%s: coverage of %d field(s) and band(s), %.1f%% of the sky map",
        event_id,
        len(rows),
        100 * covered_probability(rows),
    )
    return rows
