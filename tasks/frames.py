"""Tasks of frame processing: list, download, reduce, find candidates, measure (one frame each)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from astropy.table import QTable
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from followup.catalogs import ReferenceCatalog
from followup.galaxies import GalaxyCatalog
from followup.lco import ArchiveClient
from followup.models import Alert, Frame, Measurement
from followup.photometry import measure_targets
from followup.photometry.candidates import search_catalog_frame
from followup.photometry.references import ReferenceCache
from followup.photometry.transients import measure_saved_difference, search_frame
from followup.photometry.vetting import SkybotMinorPlanets
from followup.reduction import reduce_raw_frames
from followup.skymap import SkyMap, read_skymap
from tasks.retry import SERVICE_RETRIES

__all__ = [
    "alert_skymap",
    "download_frame",
    "field_galaxies",
    "find_frame_candidates",
    "list_request_frames",
    "measure_difference_frame",
    "measure_frame",
    "reduce_raw",
    "search_frame_transients",
]

_RETRY = {**SERVICE_RETRIES, "cache_policy": NO_CACHE}


@task(name="list frames", task_run_name="list frames of request {request_id}", **_RETRY)
def list_request_frames(archive: ArchiveClient, request_id: int) -> list[Frame]:
    """The request's frames: BANZAI-reduced if any, else raw plus the night's calibrations."""
    frames = archive.frames_for_request(request_id)
    get_run_logger().info("request %s: %d frame(s)", request_id, len(frames))
    return frames


@task(name="download frame", task_run_name="download {frame.basename}", **_RETRY)
def download_frame(archive: ArchiveClient, frame: Frame, dest_dir: Path) -> Frame:
    """Download (or find in the cache) one frame; returns it with its local path.

    Each attempt writes its own part file, so concurrent downloads of one frame (tasks of this
    run or of another) never collide; a retry starts the file afresh.
    """
    path = archive.download_frame(frame, dest_dir)
    return frame.model_copy(update={"local_path": str(path)})


@task(name="reduce raw frames", cache_policy=NO_CACHE)
def reduce_raw(science: list[Frame], calibrations: list[Frame], out_dir: Path) -> list[Frame]:
    """Calibrate raw science frames with masters from their night's calibration frames."""
    paths = reduce_raw_frames(
        [f.local_path for f in science], [f.local_path for f in calibrations], out_dir
    )
    return [
        f.model_copy(update={"local_path": str(p), "reduction_level": 90})
        for f, p in zip(science, paths, strict=True)
    ]


@task(name="find candidates", task_run_name="find candidates on {frame.basename}", **_RETRY)
def find_frame_candidates(
    frame: Frame,
    catalog: ReferenceCatalog | None,
    skybot_url: str = "",
    galaxies: QTable | None = None,
    skymap: SkyMap | None = None,
) -> QTable:
    """Sources on the frame with no reference-catalogue counterpart, vetted.

    Minor planets (SkyBoT at ``skybot_url``), hosts (``galaxies``) and the credible level
    (``skymap``) are checked as on a difference; what fails is logged with its reasons.
    """
    found = search_catalog_frame(
        frame.local_path,
        catalog,
        minor_planets=SkybotMinorPlanets(url=skybot_url) if skybot_url else None,
        galaxies=galaxies,
        skymap=skymap,
    )
    logger = get_run_logger()
    logger.info("%s: %d candidate(s) passed vetting", frame.basename, len(found))
    for ra, dec, reasons in found.meta["rejected"]:
        logger.info("%s: %.5f %+.5f set aside: %s", frame.basename, ra, dec, "; ".join(reasons))
    return found


@task(name="measure frame", task_run_name="measure {frame.basename}", **_RETRY)
def measure_frame(
    frame: Frame, targets: list[tuple[str, float, float]], catalog: ReferenceCatalog | None
) -> list[Measurement]:
    """Forced photometry of every target on the frame (one zero point for the frame)."""
    measured = measure_targets(
        frame.local_path, targets, catalog=catalog, frame_name=frame.basename
    )
    for m in measured:
        value = (
            f"{m.mag:.3f} ± {m.mag_err:.3f}" if m.mag is not None else f"> {m.limit_mag_5sigma:.2f}"
        )
        get_run_logger().info("%s on %s: %s %s", m.target_name, frame.basename, m.band, value)
    return measured


@task(name="read sky map", cache_policy=NO_CACHE)
def alert_skymap(alert: Alert) -> SkyMap | None:
    """The alert's sky map (the combined one of a coincidence, if any); None without one."""
    source = alert.external_coinc.combined_skymap if alert.external_coinc else None
    source = source or alert.skymap
    return read_skymap(source) if source else None


@task(
    name="galaxies of a field",
    task_run_name="galaxies within {radius_deg} deg of {ra:.4f} {dec:+.4f}",
    **_RETRY,
)
def field_galaxies(catalog: GalaxyCatalog, ra: float, dec: float, radius_deg: float) -> QTable:
    """The catalogued galaxies around a field (its candidates' possible hosts), any distance."""
    galaxies = catalog.query(ra=ra, dec=dec, radius_deg=radius_deg)
    get_run_logger().info(
        "%d galaxies of %s within %.2f deg of %.4f %+.4f",
        len(galaxies),
        catalog.name,
        radius_deg,
        ra,
        dec,
    )
    return galaxies


@task(name="search frame", task_run_name="search {frame.basename} against its reference", **_RETRY)
def search_frame_transients(
    archive: ArchiveClient,
    frame: Frame,
    catalog: ReferenceCatalog | None,
    references_dir: Path,
    products_dir: Path,
    before: datetime,
    skybot_url: str = "",
    galaxies: QTable | None = None,
    skymap: SkyMap | None = None,
) -> QTable:
    """Vetted candidates on the difference of the frame and its field's reference.

    ``galaxies`` (around the frame) and ``skymap`` (the event's latest) add the host-distance
    and credible-level checks; None leaves them out.
    """
    cache = ReferenceCache(references_dir)

    def reference_for(ra: float, dec: float, band: str) -> Path:
        return cache.fetch(archive, ra, dec, band, before=before)

    found = search_frame(
        frame.local_path,
        reference_for,
        catalog=catalog,
        minor_planets=SkybotMinorPlanets(url=skybot_url) if skybot_url else None,
        galaxies=galaxies,
        skymap=skymap,
        products=Path(products_dir) / f"{frame.basename}-diff.fits",
    )
    logger = get_run_logger()
    logger.info(
        "%s: %d candidate(s) of %d source(s) on the difference with %s",
        frame.basename,
        len(found),
        found.meta["found"],
        Path(found.meta["reference"]).name,
    )
    if found.meta.get("left_out"):
        logger.warning(
            "%s: %d more source(s) scoring as real were not measured: a poor PSF match?",
            frame.basename,
            found.meta["left_out"],
        )
    for ra, dec, reasons in found.meta["rejected"]:
        logger.info("%s: %.5f %+.5f set aside: %s", frame.basename, ra, dec, "; ".join(reasons))
    return found


@task(
    name="measure difference", task_run_name="measure the difference of {frame.basename}", **_RETRY
)
def measure_difference_frame(
    frame: Frame, targets: list[tuple[str, float, float]], difference: Path
) -> list[Measurement]:
    """Forced photometry of candidates on the frame's difference: host-subtracted fluxes."""
    measured = measure_saved_difference(difference, targets, frame_name=frame.basename)
    for m in measured:
        value = (
            f"{m.mag:.3f} ± {m.mag_err:.3f}" if m.mag is not None else f"> {m.limit_mag_5sigma:.2f}"
        )
        get_run_logger().info(
            "%s on %s (difference): %s %s", m.target_name, frame.basename, m.band, value
        )
    return measured
