"""LCO filter codes as HERMES, TNS and GCN readers name them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["LCO_BANDS", "Band", "band_label", "tns_filter_id"]


@dataclass(frozen=True)
class Band:
    """One LCO imaging filter.

    Attributes:
        code: The LCO filter code (``gp``, ``rp``...), as in ``Measurement.band``.
        label: The name used in HERMES messages and GCN Circulars (``g``, ``r``, ``B``...).
        tns_filter_id: The TNS ``filters`` id (from TNS ``api/get/values``), when known.
    """

    code: str
    label: str
    tns_filter_id: str | None = None


# TNS filter ids from skyportal/skyportal skyportal/utils/tns.py (SNCOSMO_TO_TNSFILTER, read from
# TNS's api/get/values): 20-23 are Sloan u, g, r, i (LCO's up, gp, rp, ip); LCO's zs is
# Pan-STARRS z ("ps1::z", 59), not Sloan z (24), and w is Pan-STARRS w ("ps1::w", 26). The
# Bessell and Y filters have no id in that list: pass `filter_ids` to build_at_report after
# checking them against TNS api/get/values.
LCO_BANDS: Mapping[str, Band] = {
    b.code: b
    for b in (
        Band("up", "u", "20"),
        Band("gp", "g", "21"),
        Band("rp", "r", "22"),
        Band("ip", "i", "23"),
        Band("zs", "z", "59"),
        Band("w", "w", "26"),
        Band("U", "U"),
        Band("B", "B"),
        Band("V", "V"),
        Band("R", "R"),
        Band("I", "I"),
        Band("Y", "Y"),
    )
}


def band_label(code: str) -> str:
    """The readable name of an LCO filter code (``"rp"`` -> ``"r"``); unknown codes are kept as given."""
    band = LCO_BANDS.get(code)
    return band.label if band else code


def tns_filter_id(code: str, overrides: Mapping[str, str] | None = None) -> str:
    """The TNS filter id of an LCO filter code.

    Args:
        code: LCO filter code.
        overrides: Ids by filter code that take precedence over the built-in table.

    Returns:
        The id as a string (TNS wants numeric strings).

    Raises:
        ValueError: No TNS id is known for this filter.
    """
    if overrides and code in overrides:
        return str(overrides[code])
    band = LCO_BANDS.get(code)
    if band is None or band.tns_filter_id is None:
        raise ValueError(
            f"no TNS filter id is known for LCO filter {code!r}; pass filter_ids={{{code!r}: '<id>'}} "
            "with the id from TNS api/get/values"
        )
    return band.tns_filter_id
