"""Light curves: measurements of targets over time as one table."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from followup.models import Measurement

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LIGHT_CURVE_COLUMNS", "build_light_curve"]

LIGHT_CURVE_COLUMNS = [
    "target_name",
    "mjd",
    "date_obs",
    "band",
    "flux_ujy",
    "flux_err_ujy",
    "snr",
    "mag",
    "mag_err",
    "limit_mag_5sigma",
    "is_detection",
    "zero_point",
    "zero_point_err",
    "n_ref_stars",
    "method",
    "frame_basename",
    "telescope",
    "instrument",
    "exposure_time_s",
    "flags",
]


def build_light_curve(measurements: Iterable[Measurement]) -> pd.DataFrame:
    """A light curve table from measurements, one row each, sorted by target, band and time.

    Args:
        measurements: Measurements of one or more targets.

    Returns:
        pandas DataFrame with columns ``target_name``, ``mjd``, ``date_obs`` (UTC), ``band``,
        ``flux_ujy``, ``flux_err_ujy`` (uJy), ``snr``, ``mag``, ``mag_err`` (AB, NaN for
        non-detections), ``limit_mag_5sigma``, ``is_detection``, ``zero_point``,
        ``zero_point_err``, ``n_ref_stars``, ``method``, ``frame_basename``, ``telescope``,
        ``instrument``, ``exposure_time_s``, ``flags``.
    """
    import pandas as pd

    rows = []
    for m in measurements:
        row = m.model_dump()
        row["is_detection"] = m.is_detection
        rows.append({c: row.get(c) for c in LIGHT_CURVE_COLUMNS})
    df = pd.DataFrame(rows, columns=LIGHT_CURVE_COLUMNS)
    df["mag"] = pd.to_numeric(df["mag"], errors="coerce").astype(float)
    df["mag_err"] = pd.to_numeric(df["mag_err"], errors="coerce").astype(float)
    if len(df):
        df["date_obs"] = pd.to_datetime(df["date_obs"], utc=True)
    return df.sort_values(["target_name", "band", "mjd"], kind="stable").reset_index(drop=True)
