"""Task of coverage: the 5-sigma depth of one frame."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from followup.catalogs import ReferenceCatalog
from followup.coverage import FrameDepth
from followup.models import Frame
from followup.photometry import frame_depth
from tasks.retry import SERVICE_RETRIES

__all__ = ["measure_frame_depth"]


@task(
    name="measure depth",
    task_run_name="measure depth of {frame.basename}",
    **{**SERVICE_RETRIES, "cache_policy": NO_CACHE},
)
def measure_frame_depth(frame: Frame, catalog: ReferenceCatalog | None) -> FrameDepth:
    """The frame's 5-sigma depth from empty apertures, calibrated like its targets."""
    depth = frame_depth(frame.local_path, catalog=catalog, frame_name=frame.basename)
    get_run_logger().info(
        "%s: %s 5-sigma depth %.2f (%d empty apertures)",
        frame.basename,
        depth.band,
        depth.depth_5sigma,
        depth.n_apertures,
    )
    return depth
