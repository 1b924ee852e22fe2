"""Candidates as the difference search leaves them: vetted tables and their products on disk.

One realistic search (benchmarks/transient_scenes.py: a kilonova beside its host's nucleus, a star
below the reference catalogue, a minor planet, cosmic rays) is made once per process, so the tests
of what follows a vetted candidate read the same cutouts ``process-frames`` writes.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from astropy.table import QTable

FRAME = "coj1m003-fa19-20260301-0042-e91"


@functools.cache
def _search() -> tuple[Path, QTable]:
    from benchmarks.transient_scenes import pair, standard_scene
    from followup.photometry.transients import search_frame

    scene = standard_scene(1)
    science, reference = pair(scene, 1)
    folder = Path(tempfile.mkdtemp(prefix="candidate-support-"))
    path = folder / f"{FRAME}.fits"
    science.writeto(path)
    kept = search_frame(
        str(path),
        lambda ra, dec, band: reference,
        catalog=scene.catalog(),
        products=folder / f"{FRAME}-diff.fits",
    )
    return folder, kept


def vetted_table() -> QTable:
    """The candidates that passed vetting on one frame (as ``search frame transients`` returns)."""
    _, kept = _search()
    return kept.copy(copy_data=True)


def kilonova() -> tuple[float, float]:
    """Where the scene's transient is (deg)."""
    from benchmarks.transient_scenes import standard_scene

    (source,) = [s for s in standard_scene(1).sources if s.kind == "transient"]
    return source.ra, source.dec
