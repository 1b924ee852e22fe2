"""Stage flow ``process-frames``: frames of completed requests to calibrated photometry.

Per-frame work is mapped: it runs on a thread pool locally, or on a Dask cluster when the
settings name one.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, unmapped
from prefect.futures import wait
from prefect.states import Completed, State
from prefect.task_runners import ThreadPoolTaskRunner

from flows.candidate import start_candidate_followups
from flows.coverage import update_coverage
from flows.runtime import LcoToken, Runtime, load_runtime
from followup.evidence import vettings_of
from followup.exceptions import CatalogError, PhotometryError, ReductionError, ServiceError
from followup.lco import ArchiveClient
from followup.ledger import RequestRow
from followup.models import (
    AlertDecision,
    Frame,
    LcoState,
    Measurement,
    RequestStatus,
    Target,
    TargetKind,
)
from followup.photometry import associate_candidates, build_light_curve, plot_light_curve
from tasks.alerts import load_alert
from tasks.artifacts import publish_plot, publish_table
from tasks.frames import (
    alert_skymap,
    download_frame,
    field_galaxies,
    find_frame_candidates,
    list_request_frames,
    measure_difference_frame,
    measure_frame,
    reduce_raw,
    search_frame_transients,
)
from tasks.targets import fetch_alert_skymap

__all__ = ["download_frames", "frames_task_runner", "process_frames"]

SCIENCE = "EXPOSE"
MEASURED_KINDS = (TargetKind.POINT, TargetKind.CANDIDATE)
SEARCHED_KINDS = (TargetKind.FIELD, TargetKind.GALAXY)
UNUSABLE = (ReductionError, PhotometryError)
"""What a frame that cannot be read or measured raises (truncated, no WCS...): that frame is set
aside with the reason, the others go on."""
FIELD_RADIUS_DEG = 0.4
"""Galaxies this close to a searched target's centre may host its candidates (a Sinistro or
QHY600 field reaches about 0.3 deg from its centre at the corners)."""
UNAVAILABLE = (ServiceError,)
"""What a frame that could not be downloaded raises once its task's retries are spent (gone,
refused, corrupted, the archive down): set aside the same way."""


def frames_task_runner(dask_address: str = "") -> Any:
    """Thread pool locally; the Dask cluster at ``dask_address`` when one is given."""
    if dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=dask_address)
    return ThreadPoolTaskRunner(max_workers=2)


def _completed(runtime: Runtime, event_id: str) -> list[RequestRow]:
    return [
        r
        for r in runtime.ledger.requests.for_event(event_id)
        if r.local_status == RequestStatus.SUBMITTED
        and r.state == LcoState.COMPLETED
        and r.request_id
    ]


def download_frames(
    archive: ArchiveClient, frames: list[Frame], dest_dir: Path
) -> tuple[list[Frame], dict[int, str]]:
    """Download frames concurrently (one task each); a frame that fails is set aside.

    Every download runs to its end whatever its siblings do: a failed frame (after its task's
    retries) gives its reason instead of a path, and cancels nothing.

    Returns:
        The downloaded frames (with ``local_path``), and the reason of each failed frame by
        archive frame id.
    """
    futures = download_frame.map(unmapped(archive), frames, unmapped(dest_dir))
    done, errors = _per_frame(frames, futures, unusable=UNAVAILABLE)
    return [local for _, local in done], errors


def _fetch(
    runtime: Runtime, requests: list[RequestRow]
) -> tuple[list[tuple[RequestRow, Frame]], list[tuple[RequestRow, Frame]], dict[int, str]]:
    """Download every frame of the completed requests; reduce the raw ones.

    Returns:
        The usable frames and the frames that could not be downloaded (each with its request),
        and the reason of each failed download by archive frame id.
    """
    # Pickled to Dask workers without its token; each worker reads it from the settings Block.
    archive = runtime.settings.lco.get_archive_client(credential_source=LcoToken(runtime.name))
    listed = list_request_frames.map(unmapped(archive), [r.request_id for r in requests]).result()
    pairs = [(row, frame) for row, frames in zip(requests, listed, strict=True) for frame in frames]
    downloaded, errors = download_frames(
        archive, [f for _, f in pairs], runtime.settings.frames_dir
    )
    local = {f.frame_id: f for f in downloaded}
    fetched: list[tuple[RequestRow, Frame]] = []
    for row in requests:
        frames = [local[f.frame_id] for r, f in pairs if r.id == row.id and f.frame_id in local]
        science = [f for f in frames if (f.configuration_type or SCIENCE) == SCIENCE]
        raw = [f for f in science if f.reduction_level == 0]
        if raw:
            calibrations = [f for f in frames if (f.configuration_type or SCIENCE) != SCIENCE]
            science = [f for f in science if f.reduction_level != 0] + reduce_raw(
                raw, calibrations, runtime.settings.frames_dir / "reduced"
            )
        fetched += [(row, f) for f in science]
    failed = [(row, f) for row, f in pairs if f.frame_id in errors]
    return fetched, failed, errors


def _per_frame(
    frames: list[Frame], futures: Any, *, unusable: tuple[type[Exception], ...] = UNUSABLE
) -> tuple[list[tuple[Frame, Any]], dict[int, str]]:
    """Results of a per-frame task; a frame it could not use gives its reason instead.

    Every future is waited for before any result is read, so that an error of one frame (even
    one that is raised, not set aside) never cancels the work on its siblings.
    """
    futures = list(futures)
    wait(futures)
    done: list[tuple[Frame, Any]] = []
    errors: dict[int, str] = {}
    for frame, future in zip(frames, futures, strict=True):
        try:
            done.append((frame, future.result()))
        except unusable as exc:
            errors[frame.frame_id] = f"{type(exc).__name__}: {exc}"
    return done, errors


def _new_candidates(
    runtime: Runtime,
    event_id: str,
    frames: list[Frame],
    fields: list[Target],
    targets: list[Target],
) -> dict[int, str]:
    """Transients in the frames of fields and galaxies: stored as candidate targets.

    Sources absent from the candidate catalogue, vetted as the difference path vets (minor
    planets, the host's distance, the credible level in the event's latest map).

    Returns:
        The reason each frame that could not be searched was set aside, by archive frame id.
    """
    settings = runtime.settings
    galaxies = _galaxies_around(runtime, fields)
    futures = find_frame_candidates.map(
        frames,
        unmapped(settings.get_candidate_catalog()),
        unmapped(settings.skybot_url),
        [galaxies.get(t.name) for t in fields],
        unmapped(_latest_skymap(runtime, event_id)),
    )
    searched, errors = _per_frame(frames, futures)
    found = [table for _, table in searched]
    _save_candidates(runtime, event_id, found, targets)
    return errors


def _new_transients(
    runtime: Runtime,
    event_id: str,
    frames: list[Frame],
    fields: list[Target],
    targets: list[Target],
    before: datetime,
) -> tuple[dict[int, str], dict[int, Path]]:
    """Transients on the differences of field and galaxy frames and their references.

    Each frame (of the target in ``fields`` at the same index) is subtracted from the earlier
    archive frame of its field (fetched once per field and band). The vetting knows the event's
    latest sky map (the credible level at each candidate, the distance along its line of sight)
    and the galaxies the planner's catalogue holds around each field (hosts and their
    distances); what it passes on enough frames is stored as candidate targets.

    Returns:
        The reason each frame could not be searched, and each searched frame's difference.
    """
    settings = runtime.settings
    archive = settings.lco.get_archive_client(credential_source=LcoToken(runtime.name))
    skymap = _latest_skymap(runtime, event_id)
    galaxies = _galaxies_around(runtime, fields)
    futures = search_frame_transients.map(
        unmapped(archive),
        frames,
        unmapped(settings.get_candidate_catalog()),
        unmapped(settings.references_dir),
        unmapped(settings.products_dir),
        unmapped(before),
        unmapped(settings.skybot_url),
        [galaxies.get(t.name) for t in fields],
        unmapped(skymap),
    )
    searched, errors = _per_frame(frames, futures)
    _save_candidates(runtime, event_id, [table for _, table in searched], targets)
    differences = {frame.frame_id: Path(table.meta["difference"]) for frame, table in searched}
    return errors, differences


def _latest_skymap(runtime: Runtime, event_id: str) -> Any:
    """The sky map of the event's latest accepted alert that has one; None if none has."""
    accepted = [
        row
        for row in runtime.ledger.alerts.for_event(event_id)
        if row.decision == AlertDecision.ACCEPTED
    ]
    for row in reversed(accepted):
        alert = fetch_alert_skymap(load_alert(runtime.ledger, row.id))
        skymap = alert_skymap(alert)
        if skymap is not None:
            return skymap
    get_run_logger().warning("%s: no sky map; candidates are not placed in one", event_id)
    return None


def _galaxies_around(runtime: Runtime, fields: list[Target]) -> dict[str, Any]:
    """The planner's catalogued galaxies around each searched field, by target name.

    Empty when no galaxy catalogue is configured (the host check is then left out); a field
    whose query fails after its retries is vetted without it, and the run says so.
    """
    catalog = runtime.settings.get_galaxy_catalog()
    if catalog is None:
        return {}
    unique = list({t.name: t for t in fields}.values())
    futures = field_galaxies.map(
        unmapped(catalog),
        [t.ra for t in unique],
        [t.dec for t in unique],
        unmapped(FIELD_RADIUS_DEG),
    )
    wait(list(futures))
    galaxies: dict[str, Any] = {}
    for target, future in zip(unique, futures, strict=True):
        try:
            galaxies[target.name] = future.result()
        except (CatalogError, ServiceError) as exc:
            get_run_logger().warning(
                "%s: no galaxies (%s); its candidates' hosts are not checked", target.name, exc
            )
    return galaxies


def _save_candidates(
    runtime: Runtime, event_id: str, found: list[Any], targets: list[Target]
) -> None:
    """Candidates seen on enough frames, stored as targets of the event, and followed."""
    merged = associate_candidates(found, min_frames=runtime.settings.candidate_min_frames)
    rank = max((t.rank for t in targets), default=0)
    candidates = [
        Target(
            name=c["name"],
            ra=c["ra"],
            dec=c["dec"],
            kind=TargetKind.CANDIDATE,
            rank=rank + i,
            probability=0.0,
        )
        for i, c in enumerate(merged, start=1)
    ]
    runtime.ledger.events.save_targets(event_id, candidates)
    # Their vetting (score, reasons, cutouts) for the forms a person answers; each one that
    # passed gets its own follow-up run, once (the ledger remembers it across reruns).
    for name, vetting in vettings_of(merged, found).items():
        if vetting is not None:
            runtime.ledger.events.record_vetting(event_id, name, vetting)
    start_candidate_followups(runtime, event_id)


def _record_errors(
    runtime: Runtime, event_id: str, frame_rows: dict[int, Any], errors: dict[int, str]
) -> None:
    """Keep each unusable frame's reason in the ledger and show them as a table in the UI."""
    for frame_id, row in frame_rows.items():
        if errors.get(frame_id) != row.error:
            runtime.ledger.frames.record_error(row.id, errors.get(frame_id))
    if errors:
        get_run_logger().warning("%s: %d frame(s) set aside", event_id, len(errors))
        publish_table(
            "frame-errors",
            event_id,
            [{"frame": frame_rows[i].basename, "error": e} for i, e in errors.items()],
            f"frames of {event_id} that could not be used, with the reason",
        )


@flow(
    name="process-frames",
    flow_run_name="process-frames-{event_id}",
    task_runner=ThreadPoolTaskRunner(max_workers=2),
)
def process_frames(
    alert_id: int, event_id: str = "", settings: str = "default"
) -> list[dict[str, Any]] | State:
    """Download, reduce and measure the frames of the event's completed requests.

    Frames of fields and galaxies are searched for sources absent from the reference catalogue
    (transient candidates, stored as targets); every point target and candidate is then measured
    on every frame that covers it. Measurements are stored once per frame, target and method, so a
    rerun measures only what is new. A frame that cannot be downloaded (after its task's
    retries), read or measured (truncated, no WCS) is set aside without stopping the others: its
    reason goes to the ledger (``frames.error``) and to a ``frame-errors`` table, and the run ends
    Completed with a message naming how many frames were set aside.

    Returns:
        The light curve rows (as the data of that Completed state when frames were set aside).
    """
    logger = get_run_logger()
    runtime = load_runtime(settings)
    ledger = runtime.ledger
    event_id = ledger.alerts.get(alert_id)[0].event_id
    requests = _completed(runtime, event_id)
    if not requests:
        logger.info("%s: no completed request yet", event_id)
        return []
    fetched, failed, errors = _fetch(runtime, requests)
    frame_rows = {f.frame_id: ledger.frames.record(f, row.id)[0] for row, f in [*failed, *fetched]}
    frames = [f for _, f in fetched]

    targets = [Target.model_validate(t.data) for t in ledger.events.targets(event_id)]
    searched = {t.name for t in targets if t.kind in SEARCHED_KINDS}
    target_of_request = {r.id: r.target_id for r in requests}
    names = {t.id: t.name for t in ledger.events.targets(event_id)}
    search_frames = [f for row, f in fetched if names.get(target_of_request[row.id]) in searched]
    differences: dict[int, Path] = {}
    by_name = {t.name: t for t in targets}
    fields = [
        by_name[names[target_of_request[row.id]]]
        for row, f in fetched
        if names.get(target_of_request[row.id]) in searched
    ]
    if search_frames and runtime.settings.difference_imaging:
        before = ledger.alerts.get(alert_id)[0].issued_at
        found_errors, differences = _new_transients(
            runtime, event_id, search_frames, fields, targets, before
        )
        errors |= found_errors
    elif search_frames:
        errors |= _new_candidates(runtime, event_id, search_frames, fields, targets)
    frames = [f for f in frames if f.frame_id not in errors]
    update_coverage(runtime, event_id, frames, frame_rows)
    rows = {t.name: t for t in ledger.events.targets(event_id)}
    measured = [
        (t.name, t.ra, t.dec) for t in rows.values() if TargetKind(t.kind) in MEASURED_KINDS
    ]
    if not measured:
        logger.info(
            "%s: no point target or candidate to measure on %d frame(s)", event_id, len(frames)
        )
        _record_errors(runtime, event_id, frame_rows, errors)
        return _ended([], errors)
    done, bad = _measure(runtime, frames, rows, differences)
    errors |= bad
    _record_errors(runtime, event_id, frame_rows, errors)
    measurements: list[Measurement] = []
    for frame, found in done:
        for m in found:
            ledger.frames.record_measurement(
                frame_rows[frame.frame_id].id, rows[m.target_name].id, m
            )
            measurements.append(m)

    everything = ledger.frames.measurements(event_id)
    curve = build_light_curve(everything)
    table = json.loads(curve.to_json(orient="records", date_format="iso"))
    publish_table("light-curve", event_id, table, f"photometry of {event_id} (AB, µJy)")
    publish_plot(
        "light-curve",
        event_id,
        plot_light_curve(curve, title=f"{event_id}: LCO forced photometry"),
        f"light curve of {event_id}",
        plots_dir=runtime.settings.plots_dir,
        plots_base_url=runtime.settings.plots_base_url,
    )
    logger.info("%s: %d new measurement(s) on %d frame(s)", event_id, len(measurements), len(done))
    return _ended(table, errors)


def _measure(
    runtime: Runtime, frames: list[Frame], rows: dict[str, Any], differences: dict[int, Path]
) -> tuple[list[tuple[Frame, Any]], dict[int, str]]:
    """Every point target and candidate on every frame that covers it.

    Candidates are measured on the difference of the frames that have one (their flux without
    the host's), point targets and the frames without a difference on the frame itself.
    """
    kinds = {name: TargetKind(row.kind) for name, row in rows.items()}
    every = [(t.name, t.ra, t.dec) for t in rows.values() if kinds[t.name] in MEASURED_KINDS]
    points = [t for t in every if kinds[t[0]] == TargetKind.POINT]
    candidates = [t for t in every if kinds[t[0]] == TargetKind.CANDIDATE]
    catalog = runtime.settings.get_reference_catalog()
    plain = [f for f in frames if f.frame_id not in differences]
    subtracted = [f for f in frames if f.frame_id in differences]
    done, errors = _per_frame(plain, measure_frame.map(plain, unmapped(every), unmapped(catalog)))
    if subtracted and candidates:
        futures = measure_difference_frame.map(
            subtracted, unmapped(candidates), [differences[f.frame_id] for f in subtracted]
        )
        more, bad = _per_frame(subtracted, futures)
        done += more
        errors |= bad
    if subtracted and points:
        futures = measure_frame.map(subtracted, unmapped(points), unmapped(catalog))
        more, bad = _per_frame(subtracted, futures)
        done += more
        errors |= bad
    return done, errors


def _ended(table: list[dict[str, Any]], errors: dict[int, str]) -> list[dict[str, Any]] | State:
    """The light curve, in a Completed state that says how many frames were set aside, if any."""
    if not errors:
        return table
    return Completed(
        message=f"{len(errors)} frame(s) set aside: " + "; ".join(sorted(set(errors.values()))),
        data=table,
    )
