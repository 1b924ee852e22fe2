"""HERMES's message serializer as the stand-in runs it: the same rules, the same error dicts.

Every rule follows LCOGT/hermes ``hermes/serializers.py`` (``HermesMessageSerializer`` and the
nested ``ReferenceDataSerializer``, ``TargetDataSerializer``, ``DiscoveryInfoSerializer``,
``FileInfoSerializer``, ``OrbitalElementsSerializer``, ``PhotometryDataSerializer``,
``SpectroscopyDataSerializer``, ``AstrometryDataSerializer``, ``GenericHermesDataSerializer`` and
``validate_date``), with Django REST framework's field messages (``CharField``, ``FloatField``,
``BooleanField``, ``ChoiceField``, ``ListField``, ``URLField``). The ``submit_to_gcn`` rules
are the serializer's ``GCN_REQUIRED_KEYS``/``GCN_PROHIBITED_KEYS`` checks; ``submit_to_tns``
checks instruments against TNS's instrument names (:mod:`sandbox.tns_values`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

from sandbox.tns_values import INSTRUMENTS

__all__ = ["HermesContext", "angle_degrees", "validate_hermes_message"]

_UNITS = ("AB mag", "Vega mag", "mJy", "erg / s / cm² / Å")
_ERROR_UNITS = ("degrees", "mas", "arcsec", "arcmin")
_DISTANCE_UNITS = ("cm", "m", "km", "pc", "kpc", "Mpc", "Gpc", "ly", "au")
_TRANSIENT_TYPES = (
    "PSN - Possible SN",
    "NUC - Possibly nuclear",
    "PNV - Possible Nova",
    "AGN - Known AGN",
    "FRB - Fast Radio Burst event",
    "Other - Undefined",
)
_PERIOD_UNITS = ("Days", "Months", "Years")
_REQUIRED = "This field is required."
_URL = re.compile(r"^(https?|ftps?)://[^\s/$.?#][^\s]*$", re.IGNORECASE)
_TRUE = {
    True,
    "1",
    "true",
    "True",
    "TRUE",
    "t",
    "T",
    "y",
    "Y",
    "yes",
    "Yes",
    "YES",
    "on",
    "On",
    "ON",
}
_FALSE = {
    False,
    "0",
    "false",
    "False",
    "FALSE",
    "f",
    "F",
    "n",
    "N",
    "no",
    "No",
    "NO",
    "off",
    "Off",
    "OFF",
}
# serializers.py HermesMessageSerializer.GCN_REQUIRED_KEYS and GCN_PROHIBITED_KEYS.
GCN_REQUIRED_KEYS = (
    "AGILE", "ANTARES", "AXP", "Baksan Neutrino Observatory Alert", "CALET", "Chandra", "Fermi",
    "FXT", "GRB", "GW", "HAWC", "HST", "IBAS", "IceCube", "INTEGRAL", "IPN", "KAGRA", "KONUS",
    "LIGO", "LOFAR", "LVC", "LVK", "MAGIC", "MASTER", "MAXI", "Pan-STARRS", "POLAR", "RATIR",
    "SDSS", "SFXT", "SGR", "Suzaku", "Swift", "transient", "VLA", "VLBI", "XRB", "XRF", "XRT",
    "XTR", "Virgo", "ZTF",
)  # fmt: skip
GCN_PROHIBITED_KEYS = (
    "this is an automatic reply", "automatic reply:", "auto reply", "autoreply", "vacation",
    "out of the office", "out of office", "out of town", "away from my mail",
    "away from his e-mail", "away from her e-mail", "away from the office",
    "away from his office", "away from her office", "traveling until",
    "no longer receiving mail", "delivery failure notif", "mail delivery failure",
    "returned mail", "saxzlcnkgzmfpbhvyzsbub", "ponse_automatique", "off-line re:", "re: ",
    "fwd: ", " r: ", " ris: ", "subject:",
)  # fmt: skip
_STYLE_GUIDE = (
    '<a href="https://gcn.nasa.gov/docs/circulars/styleguide#message-content" '
    'target="_blank">GCN Style Guide</a>'
)


class HermesContext:
    """What the serializer looks up beyond the payload.

    Args:
        dev_server: hermes-dev's rule: only topics containing ``test``.
        known_uuids: Message uuids a ``hop_uuid`` reference may cite.
        authenticated: The request has a user.
        gcn_linked: The user linked a GCN account (``submit_to_gcn`` needs it).
    """

    def __init__(
        self,
        *,
        dev_server: bool = False,
        known_uuids: Collection[str] = (),
        authenticated: bool = True,
        gcn_linked: bool = False,
    ) -> None:
        self.dev_server = dev_server
        self.known_uuids = known_uuids
        self.authenticated = authenticated
        self.gcn_linked = gcn_linked


def _string(value: Any) -> str | None:
    """DRF CharField: the error for a value that is not a string-like scalar, else None."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return "Not a valid string."
    return None


def _char(
    data: Mapping[str, Any], name: str, errors: dict[str, Any], *, required: bool, blank: bool
) -> None:
    if name not in data:
        if required:
            errors[name] = [_REQUIRED]
        return
    value = data[name]
    if value is None:
        if required:
            errors[name] = ["This field may not be null."]
        return
    problem = _string(value)
    if problem:
        errors[name] = [problem]
    elif not blank and str(value).strip() == "" and required:
        errors[name] = ["This field may not be blank."]


def _float(data: Mapping[str, Any], name: str, errors: dict[str, Any]) -> None:
    value = data.get(name)
    if value is None or value == "":
        return
    try:
        number = float(value)
    except (TypeError, ValueError):
        errors[name] = ["A valid number is required."]
        return
    if isinstance(value, bool) or not math.isfinite(number):
        errors[name] = ["A valid number is required."]


def _choice(
    data: Mapping[str, Any], name: str, choices: tuple[str, ...], errors: dict[str, Any]
) -> None:
    value = data.get(name)
    if value is not None and value not in choices:
        errors[name] = [f'"{value}" is not a valid choice.']


def _date(value: Any) -> str | None:
    """HERMES's validate_date: a JD/MJD in bounds, or a string dateutil can parse."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        from dateutil.parser import parse

        try:
            parse(str(value))
        except (ValueError, OverflowError):
            return f"{value} does not parse with dateutil.parser.parse. Please specify the date in a standard format or as a JD."
        return None
    if not (2400000 < number < 2600000 or 1000 < number < 150000):
        return (
            f"Date {number} in JD format must be within bounds of 2400000 to 2600000, "
            "and in MJD format within bounds of 15000 to 150000."
        )
    return None


def angle_degrees(value: Any, *, dec: bool) -> float | None:
    """Decimal degrees from a number or sexagesimal text (as HERMES's validate_ra/dec), or None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    if number is not None:
        if not math.isfinite(number) or (dec and not -90 <= number <= 90):
            return None
        return number if dec else number % 360.0
    import astropy.units as u
    from astropy.coordinates import Latitude, Longitude

    try:
        return (
            float(Latitude(str(value), unit=u.deg).deg)
            if dec
            else float(Longitude(str(value), unit=u.hourangle).deg)
        )
    except Exception:
        return None


def _list(data: Mapping[str, Any], name: str) -> tuple[list[Any] | None, Any]:
    value = data.get(name)
    if value is None:
        return [], None
    if not isinstance(value, list):
        return None, {
            "non_field_errors": [f'Expected a list of items but got type "{type(value).__name__}".']
        }
    return value, None


def _each(items: list[Any], check: Any) -> list[dict[str, Any]] | None:
    results = []
    for item in items:
        if not isinstance(item, dict):
            results.append(
                {
                    "non_field_errors": [
                        f"Invalid data. Expected a dictionary, but got {type(item).__name__}."
                    ]
                }
            )
        else:
            results.append(check(item))
    return results if any(results) else None


def _boolean(data: Mapping[str, Any], name: str, errors: dict[str, Any]) -> None:
    """DRF BooleanField."""
    value = data.get(name)
    if value is not None and not _is_bool_text(value):
        errors[name] = ["Must be a valid boolean."]


def _is_bool_text(value: Any) -> bool:
    try:
        return value in _TRUE or value in _FALSE
    except TypeError:  # unhashable
        return False


def _url(data: Mapping[str, Any], name: str, errors: dict[str, Any]) -> None:
    """DRF URLField (Django's URLValidator, in short)."""
    value = data.get(name)
    if value is not None and (not isinstance(value, str) or not _URL.match(value)):
        errors[name] = ["Enter a valid URL."]


def _dated(data: Mapping[str, Any], name: str, errors: dict[str, Any]) -> None:
    """A CharField checked by serializers.py ``validate_date``."""
    value = data.get(name)
    if value is None or name in errors:
        return
    problem = _string(value) or _date(value)
    if problem:
        errors[name] = [problem]


def _strings(data: Mapping[str, Any], name: str, errors: dict[str, Any], *, null: bool) -> None:
    """DRF ListField(child=CharField()): a list of strings, errors keyed by position."""
    if name not in data or (data[name] is None and null):
        return
    value = data[name]
    if value is None:
        errors[name] = ["This field may not be null."]
        return
    if not isinstance(value, list):
        errors[name] = [f'Expected a list of items but got type "{type(value).__name__}".']
        return
    bad = {
        str(i): ["This field may not be null."] if item is None else [problem]
        for i, item in enumerate(value)
        if item is None or (problem := _string(item))
    }
    if bad:
        errors[name] = bad


def _nested(
    data: Mapping[str, Any], name: str, check: Callable[[dict[str, Any]], dict[str, Any]]
) -> Any:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        return {
            "non_field_errors": [
                f"Invalid data. Expected a dictionary, but got {type(value).__name__}."
            ]
        }
    return check(value) or None


def _check_reference(ref: dict[str, Any], context: HermesContext) -> dict[str, Any]:
    """ReferenceDataSerializer."""
    errors: dict[str, Any] = {}
    for name in ("source", "citation"):
        if ref.get(name) is not None and _string(ref[name]):
            errors[name] = [_string(ref[name])]
    _url(ref, "url", errors)
    if errors:
        return errors
    source, citation = ref.get("source"), ref.get("citation")
    if source and citation:
        if str(source).lower() == "hop_uuid" and str(citation) not in context.known_uuids:
            return {"citation": [f"hop_uuid {citation} does not exist"]}
        return {}
    if source:
        return {"citation": ["Must set citation with source"]}
    if citation:
        return {"source": ["Must set source with citation"]}
    if not ref.get("url"):
        message = ["Must set source/citation or url"]
        return {"source": message, "citation": message, "url": message}
    return {}


def _check_discovery_info(info: dict[str, Any]) -> dict[str, Any]:
    """DiscoveryInfoSerializer."""
    errors: dict[str, Any] = {}
    for name in ("reporting_group", "discovery_source", "nondetection_source"):
        if info.get(name) is not None and _string(info[name]):
            errors[name] = [_string(info[name])]
    _dated(info, "date", errors)
    _choice(info, "transient_type", _TRANSIENT_TYPES, errors)
    _float(info, "proprietary_period", errors)
    _choice(info, "proprietary_period_units", _PERIOD_UNITS, errors)
    return errors


def _check_file_info(item: dict[str, Any]) -> dict[str, Any]:
    """FileInfoSerializer."""
    errors: dict[str, Any] = {}
    _char(item, "name", errors, required=True, blank=False)
    _url(item, "url", errors)
    return errors


def _check_orbital_elements(elements: dict[str, Any]) -> dict[str, Any]:
    """OrbitalElementsSerializer: the required elements."""
    errors: dict[str, Any] = {}
    _char(elements, "epoch_of_elements", errors, required=True, blank=False)
    _dated(elements, "epoch_of_elements", errors)
    for name in (
        "orbital_inclination",
        "longitude_of_the_ascending_node",
        "argument_of_the_perihelion",
        "eccentricity",
    ):
        if elements.get(name) is None:
            errors[name] = [_REQUIRED]
        else:
            _float(elements, name, errors)
    return errors


def _check_target(target: dict[str, Any], context: HermesContext) -> dict[str, Any]:
    """TargetDataSerializer."""
    errors: dict[str, Any] = {}
    _char(target, "name", errors, required=True, blank=False)
    for name in ("ra", "dec"):
        value = target.get(name)
        if value not in (None, "") and angle_degrees(value, dec=name == "dec") is None:
            errors[name] = ["Must be in a format astropy understands"]
    for name in (
        "ra_error",
        "dec_error",
        "pm_ra",
        "pm_dec",
        "distance",
        "distance_error",
        "redshift",
        "host_redshift",
    ):
        _float(target, name, errors)
    _choice(target, "ra_error_units", _ERROR_UNITS, errors)
    _choice(target, "dec_error_units", _ERROR_UNITS, errors)
    _choice(target, "distance_units", _DISTANCE_UNITS, errors)
    _dated(target, "epoch", errors)  # TargetDataSerializer.validate_epoch
    _boolean(target, "new_discovery", errors)
    _strings(target, "aliases", errors, null=False)
    _strings(target, "group_associations", errors, null=True)
    for name, check in (
        ("discovery_info", _check_discovery_info),
        ("orbital_elements", _check_orbital_elements),
    ):
        problem = _nested(target, name, check)
        if problem:
            errors[name] = problem
    items, problem = _list(target, "file_info")
    file_errors = problem or _each(items or [], _check_file_info)
    if file_errors:
        errors["file_info"] = file_errors
    if errors:
        return errors
    ra, dec = target.get("ra"), target.get("dec")
    ra = None if ra == "" else ra
    dec = None if dec == "" else dec
    if ra is None or dec is None:
        if ra is not None:
            return {"dec": ["Must set dec if ra is set"]}
        if dec is not None:
            return {"ra": ["Must set ra if dec is set"]}
        if not target.get("orbital_elements"):
            message = "ra/dec or orbital elements are required"
            return {
                "ra": [message],
                "dec": [message],
                "orbital_elements": {"non_field_errors": [message]},
            }
    return {}


def _check_common(point: dict[str, Any], errors: dict[str, Any]) -> None:
    """CommonDataSerializer's fields."""
    _char(point, "target_name", errors, required=True, blank=False)
    _char(point, "date_obs", errors, required=True, blank=False)
    _dated(point, "date_obs", errors)
    for name in ("telescope", "instrument"):
        if point.get(name) is not None and _string(point[name]):
            errors[name] = [_string(point[name])]


def _telescope_or_instrument(point: dict[str, Any]) -> dict[str, Any]:
    """CommonDataSerializer.validate."""
    if not (point.get("instrument") or point.get("telescope")):
        message = "Must have at least one of telescope or instrument set"
        return {"telescope": [message], "instrument": [message]}
    return {}


def _check_photometry(point: dict[str, Any], context: HermesContext) -> dict[str, Any]:
    """PhotometryDataSerializer."""
    errors: dict[str, Any] = {}
    _check_common(point, errors)
    _char(point, "bandpass", errors, required=True, blank=False)
    for name in (
        "brightness",
        "brightness_error",
        "limiting_brightness",
        "limiting_brightness_error",
        "exposure_time",
    ):
        _float(point, name, errors)
    _choice(point, "brightness_unit", _UNITS, errors)
    _choice(point, "limiting_brightness_unit", _UNITS, errors)
    if errors:
        return errors
    if problem := _telescope_or_instrument(point):
        return problem

    def truthy(name: str) -> bool:
        value = point.get(name)
        return value not in (None, "") and float(value) != 0.0

    if not (truthy("brightness") or truthy("limiting_brightness")):
        message = "brightness or limiting_brightness are required"
        return {"brightness": [message], "limiting_brightness": [message]}
    return {}


def _check_astrometry(point: dict[str, Any], context: HermesContext) -> dict[str, Any]:
    """AstrometryDataSerializer."""
    errors: dict[str, Any] = {}
    _check_common(point, errors)
    for name in ("ra", "dec"):
        _char(point, name, errors, required=True, blank=False)
        if name not in errors and angle_degrees(point[name], dec=name == "dec") is None:
            errors[name] = ["Must be in a format astropy understands"]
    for name in ("ra_error", "dec_error"):
        _float(point, name, errors)
    _choice(point, "ra_error_units", _ERROR_UNITS, errors)
    _choice(point, "dec_error_units", _ERROR_UNITS, errors)
    return errors or _telescope_or_instrument(point)


def _check_spectroscopy(datum: dict[str, Any], context: HermesContext) -> dict[str, Any]:
    """SpectroscopyDataSerializer."""
    errors: dict[str, Any] = {}
    _check_common(datum, errors)
    for name in ("flux", "flux_error", "wavelength"):
        values = datum.get(name)
        if values is not None and not (
            isinstance(values, list)
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        ):
            errors[name] = ["A valid list of numbers is required."]
    if errors:
        return errors
    if problem := _telescope_or_instrument(datum):
        return problem
    flux, wavelength = datum.get("flux") or [], datum.get("wavelength") or []
    if not flux and not datum.get("file_info"):
        message = ["Must specify a spectroscopy file to upload or specify one or more flux values"]
        return {"file_info": message, "flux": message}
    if "flux_error" in datum and len(datum["flux_error"] or []) != len(flux):
        return {"non_field_errors": ["Must have same number of datapoints for flux and flux_error"]}
    if len(flux) != len(wavelength):
        return {"non_field_errors": ["Must have same number of datapoints for flux and wavelength"]}
    return {}


_CHECKS: Mapping[str, Callable[[dict[str, Any], HermesContext], dict[str, Any]]] = {
    "references": _check_reference,
    "targets": _check_target,
    "photometry": _check_photometry,
    "spectroscopy": _check_spectroscopy,
    "astrometry": _check_astrometry,
}


def _check_data(data: Any, context: HermesContext) -> dict[str, Any]:
    """GenericHermesDataSerializer."""
    if not isinstance(data, dict):
        return {
            "non_field_errors": [
                f"Invalid data. Expected a dictionary, but got {type(data).__name__}."
            ]
        }
    errors: dict[str, Any] = {}
    if data.get("event_id") is not None and _string(data["event_id"]):
        errors["event_id"] = [_string(data["event_id"])]
    lists: dict[str, list[Any]] = {}
    for name, check in _CHECKS.items():
        items, problem = _list(data, name)
        if problem:
            errors[name] = problem
            continue
        lists[name] = items or []
        item_errors = _each(lists[name], lambda item, check=check: check(item, context))
        if item_errors:
            errors[name] = item_errors
    if errors:
        return errors
    names = [t.get("name") for t in lists["targets"]]
    duplicate = [
        {"name": ["The target name must be unique within the submission"]}
        if names.count(n) > 1
        else {}
        for n in names
    ]
    if any(duplicate):
        errors["targets"] = duplicate
    for name in ("photometry", "spectroscopy", "astrometry"):
        unknown = [
            {}
            if p.get("target_name") in names
            else {"target_name": ["The target_name must reference a name in your target table"]}
            for p in lists[name]
        ]
        if any(unknown):
            errors[name] = unknown
    return errors


def _check_gcn(payload: dict[str, Any], context: HermesContext) -> dict[str, Any]:
    """HermesMessageSerializer.validate with ``submit_to_gcn``."""
    errors: dict[str, Any] = {}
    non_field = []
    if not context.authenticated:
        non_field.append("Must be an authenticated user to submit to GCN")
    elif not context.gcn_linked:
        non_field.append("Must register a valid GCN account on your Profile page to submit to GCN")
    if not payload.get("authors"):
        errors["authors"] = ["Authors must be set to submit to GCN"]
    if not payload.get("message_text"):
        errors["message_text"] = ["Message text must be set to submit to GCN"]
    title = str(payload.get("title") or "")
    if not title:
        errors["title"] = ["Title must be set to submit to GCN"]
    if not any(key.lower() in title.lower() for key in GCN_REQUIRED_KEYS):
        non_field.append(
            "Title must contain one of allowed subject keywords from the "
            f"{_STYLE_GUIDE} to submit to GCN."
        )
    non_field += [
        f'Title cannot contain the prohibited keyword "{key}". Please see the {_STYLE_GUIDE}.'
        for key in GCN_PROHIBITED_KEYS
        if key in title.lower()
    ]
    if non_field:
        errors["non_field_errors"] = non_field
    return errors


def _check_tns(payload: dict[str, Any], context: HermesContext) -> dict[str, Any]:
    """HermesMessageSerializer.validate with ``submit_to_tns`` (a discovery report)."""
    errors: dict[str, Any] = {}
    data = payload.get("data") or {}
    targets, photometry = data.get("targets") or [], data.get("photometry") or []
    if not context.authenticated:
        errors["non_field_errors"] = ["Must be an authenticated user to submit to TNS"]
    if not targets:
        errors["target_non_field_errors"] = [
            "Must fill in at least one target entry for TNS submission"
        ]
    target_errors = []
    for target in targets:
        problem: dict[str, Any] = {}
        for name in ("ra", "dec"):
            if target.get(name) is None:
                problem[name] = [f"Target {name} must be present for TNS submission"]
        info = target.get("discovery_info") or {}
        info_errors = {}
        for name, text in (
            ("reporting_group", "discovery info reporting group"),
            ("discovery_source", "discovery info discovery source"),
        ):
            if not info.get(name):
                info_errors[name] = [f"Target must have {text} for TNS submission"]
        if not info.get("transient_type"):
            info_errors["transient_type"] = [
                "Target must have a discovery info transient_type for TNS submission"
            ]
        if info_errors:
            problem["discovery_info"] = info_errors
        if target.get("new_discovery") in _FALSE:
            problem["new_discovery"] = [
                "Target new_discovery must be set to True for TNS submission"
            ]
        target_errors.append(problem)
    if any(target_errors):
        errors["data"] = {"targets": target_errors}
    point_errors = []
    for point in photometry:
        instrument = point.get("instrument")
        if not instrument:
            point_errors.append(
                {"instrument": ["Photometry must have instrument specified for TNS submission"]}
            )
        elif instrument not in INSTRUMENTS.values():
            point_errors.append(
                {"instrument": [f"Instrument {instrument} is not a valid TNS instrument"]}
            )
        else:
            point_errors.append({})
    if any(point_errors):
        errors.setdefault("data", {})["photometry"] = point_errors
    messages = []
    if not any(p.get("limiting_brightness") for p in photometry):
        messages.append(
            "At least one separate photometry nondetection / limiting_brightness or target "
            "discovery nondetection_source must be specified for TNS submission"
        )
    if not any(p.get("brightness") for p in photometry):
        messages.append(
            "At least one photometry detection / brightness must be specified for TNS submission"
        )
    if messages:
        errors["photometry_non_field_errors"] = messages
    if not payload.get("authors"):
        errors["authors"] = ["Must set an author / reporter for TNS submission"]
    return errors


def validate_hermes_message(
    payload: Any, *, dev_server: bool = False, context: HermesContext | None = None
) -> dict[str, Any]:
    """HERMES's ``HermesMessageSerializer`` errors for a message: ``{}`` when it is valid.

    Args:
        payload: The message.
        dev_server: hermes-dev's test-topic rule (when no ``context`` is given).
        context: What the serializer looks up (known message uuids, the user's GCN link).
    """
    context = context or HermesContext(dev_server=dev_server)
    if not isinstance(payload, dict):
        return {
            "non_field_errors": [
                f"Invalid data. Expected a dictionary, but got {type(payload).__name__}."
            ]
        }
    errors: dict[str, Any] = {}
    _char(payload, "title", errors, required=True, blank=False)
    _char(payload, "topic", errors, required=True, blank=False)
    _char(payload, "submitter", errors, required=True, blank=False)
    for name in ("message_text", "authors"):
        if payload.get(name) is not None and _string(payload[name]):
            errors[name] = [_string(payload[name])]
    for name in ("submit_to_tns", "submit_to_mpc", "submit_to_gcn"):
        _boolean(payload, name, errors)
    if "topic" not in errors and context.dev_server and "test" not in str(payload["topic"]):
        errors["topic"] = ["Hermes Dev can only submit to a test topic."]
    if "data" in payload:
        data_errors = _check_data(payload["data"], context)
        if data_errors:
            errors["data"] = data_errors
    if errors:
        return errors
    if payload.get("submit_to_tns") in _TRUE:
        errors = _check_tns(payload, context)
    if not errors and payload.get("submit_to_gcn") in _TRUE:
        errors = _check_gcn(payload, context)
    return errors
