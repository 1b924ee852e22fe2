"""The value lists of the TNS stand-in: the ids an AT report may use (TNS's ``api/get/values``).

TNS refuses an AT report whose group, filter, instrument or flux-unit id is not in its lists.
The ids here are real TNS ids, each list named after where it was read:

* filters: skyportal/skyportal ``skyportal/utils/tns.py`` (``SNCOSMO_TO_TNSFILTER``), labelled with
  SkyPortal's band names, plus 0 Other and 1 Clear (tom_tns ``tom_tns/forms.py`` uses 22
  "r-Sloan");
* instruments: skyportal/skyportal ``tools/populate_tns_ids/tns_instruments.json`` (a copy of
  TNS's list; the LCO cameras and the survey cameras SkyPortal maps);
* flux units: LCOGT/hermes ``hermes/tns.py`` ``convert_flux_units`` and the order of TNS's units
  list in ``hermes/test/tns_options.json``;
* groups: the data-source groups of skyportal/skyportal ``skyportal/utils/tns.py`` (``SURVEYS``),
  0 None, and the sandbox account's own reporting group, 82.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["FILTERS", "GROUPS", "INSTRUMENTS", "UNITS", "TnsValues"]

FILTERS: Mapping[str, str] = {
    "0": "Other",
    "1": "Clear",
    "20": "sdssu",
    "21": "sdssg",
    "22": "sdssr",
    "23": "sdssi",
    "24": "sdssz",
    "26": "ps1::w",
    "56": "ps1::g",
    "57": "ps1::r",
    "58": "ps1::i",
    "59": "ps1::z",
    "71": "atlasc",
    "72": "atlaso",
    "75": "gaia::g",
    "81": "desy",
    "110": "ztfg",
    "111": "ztfr",
    "112": "ztfi",
    "120": "gotol",
    "121": "gotor",
    "122": "gotog",
    "123": "gotob",
    "160": "lsstu",
    "161": "lsstg",
    "162": "lsstr",
    "163": "lssti",
    "164": "lsstz",
    "165": "lssty",
}

INSTRUMENTS: Mapping[str, str] = {
    "0": "Other - Other",
    "105": "FTS - FS01",
    "108": "FTN - FLOYDS-N",
    "110": "FTN - EM01",
    "112": "FTN - FS02",
    "125": "FTS - FLOYDS-S",
    "155": "PS1 - GPC1",
    "160": "ATLAS-MLO - ATLAS-01",
    "172": "CTIO-4m - DECAM",
    "196": "P48 - ZTF-Cam",
    "208": "LCO1m - Sinistro",
    "209": "LCO2m - Spectral",
    "287": "Rubin - LSSTCam",
}

UNITS: Mapping[str, str] = {
    "0": "Other",
    "1": "ABMag",
    "2": "STMag",
    "3": "VegaMag",
    "4": "erg cm(-2) sec(-1)",
    "5": "erg cm(-2) sec(-1) Hz(-1)",
    "6": "erg cm(-2) sec(-1) Ang(-1)",
    "7": "counts sec(-1)",
    "8": "Jy",
    "9": "mJy",
}

GROUPS: Mapping[str, str] = {
    "0": "None",
    "48": "ZTF",
    "82": "followup sandbox",
    "88": "DECam",
    "165": "LSST",
}


class TnsValues:
    """The lists one TNS stand-in checks ids against (defaults: the module's lists).

    Args:
        groups: Group ids and names.
        filters: Filter ids and names.
        instruments: Instrument ids and names.
        units: Flux-unit ids and names.
    """

    def __init__(
        self,
        *,
        groups: Mapping[str, str] = GROUPS,
        filters: Mapping[str, str] = FILTERS,
        instruments: Mapping[str, str] = INSTRUMENTS,
        units: Mapping[str, str] = UNITS,
    ) -> None:
        self.lists: dict[str, dict[str, str]] = {
            "groups": dict(groups),
            "filters": dict(filters),
            "instruments": dict(instruments),
            "units": dict(units),
        }

    def knows(self, kind: str, value: object) -> bool:
        """True when ``value`` (an id, as text or number) is in the list ``kind``."""
        return str(value).strip() in self.lists[kind]
