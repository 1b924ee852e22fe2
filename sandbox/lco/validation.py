"""The portal's request validation, DRF-style: the same rules, the same error shapes and messages.

Each reader takes the raw JSON of one object and returns ``(errors, cleaned)``: errors nested as
Django REST framework nests them (field -> list of messages, ``non_field_errors``, lists in
position for nested lists), so a client sees the 400 bodies the real portal sends.

Every rule follows observatorycontrolsystem/observation-portal; the comment at each names its
place: ``requestgroups/serializers.py`` (the serializers), ``requestgroups/models.py`` (field
validators), ``requestgroups/target_helpers.py``, ``requestgroups/duration_utils.py``,
``common/state_changes.py`` (IPP time), ``common/rise_set_utils.py`` (visibility) and configdb's
per-mode ``validation_schema`` (``common/test_data/configdb.json``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sandbox.lco.configdb import (
    ACQUIRE_OVERHEAD_S,
    CONFIG_FRONT_PADDING_S,
    CONFIGDB,
    CONFIGURATION_TYPES,
    ELEMENT_CHANGE_S,
    FRONT_PADDING_S,
    PROPOSAL_TIME_OVERUSE_ALLOWANCE,
    SITE_CODES,
    TARGET_TYPES,
    TELESCOPE_CLASSES,
    TELESCOPES,
    semester_in,
)
from sandbox.lco.visibility import largest_visible_interval
from sandbox.times import parse_datetime

__all__ = ["HoursLeft", "IppHoursLeft", "read_group"]

HoursLeft = Callable[[str, str, str], float]
"""``hours_left(proposal, semester, observation_type)``: allocated minus used hours."""

IppHoursLeft = Callable[[str, str, str], float]
"""``ipp_hours_left(proposal, semester, instrument_type)``: the allocation's ipp_time_available."""

_NOT_VISIBLE = (
    "According to the constraints of the request, the target will not be visible within the "
    "time window. Check that the target is in the nighttime sky. Consider modifying the time "
    "window or loosening the airmass or lunar separation constraints. If the target is non "
    "sidereal, double check that the provided elements are correct."
)


_REQUIRED = "This field is required."
_NULL = "This field may not be null."
_NUMBER = "A valid number is required."
_INTEGER = "A valid integer is required."
_DATETIME = (
    "Datetime has wrong format. Use one of these formats instead: "
    "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
)


_CALIBRATION_TYPES = frozenset({"LAMP_FLAT", "ARC"})
"""Spectrograph configuration types that may leave guiding optional (requestgroups/serializers.py,
``ConfigurationSerializer.validate``)."""

_ACQUISITION_OFF_TYPES = frozenset({"LAMP_FLAT", "ARC", "AUTO_FOCUS", "BIAS", "DARK", "SCRIPT"})
"""Configuration types the portal forces to acquisition mode OFF (same place)."""


class _Invalid(Exception):
    """A field-level error: the DRF message list (or nested dict) for one field."""

    def __init__(self, detail: Any) -> None:
        super().__init__(str(detail))
        self.detail = detail


def _choice(value: Any, choices: Iterable[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _Invalid([f'"{value}" is not a valid choice.'])
    return value


def _float(value: Any, *, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or value is None or value == "":
        raise _Invalid([_NUMBER])
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _Invalid([_NUMBER]) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise _Invalid([_NUMBER])
    if low is not None and number < low:
        raise _Invalid([f"Ensure this value is greater than or equal to {low}."])
    if high is not None and number > high:
        raise _Invalid([f"Ensure this value is less than or equal to {high}."])
    return number


def _int(value: Any, *, low: int | None = None) -> int:
    if isinstance(value, bool) or value is None:
        raise _Invalid([_INTEGER])
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _Invalid([_INTEGER]) from None
    if number != int(number):
        raise _Invalid([_INTEGER])
    if low is not None and number < low:
        raise _Invalid([f"Ensure this value is greater than or equal to {low}."])
    return int(number)


def _text(value: Any, *, max_length: int | None = None, blank: str | None = None) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise _Invalid(["Not a valid string."])
    text = str(value).strip()
    if not text and blank is not None:
        raise _Invalid([blank])
    if max_length is not None and len(text) > max_length:
        raise _Invalid([f"Ensure this field has no more than {max_length} characters."])
    return text


def _datetime(value: Any) -> datetime:
    try:
        return parse_datetime(value)
    except (TypeError, ValueError):
        raise _Invalid([_DATETIME]) from None


class _Fields:
    """Collects DRF field errors for one object while reading its fields."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw if isinstance(raw, dict) else {}
        self.errors: dict[str, Any] = {}
        self.clean: dict[str, Any] = {}

    def take(
        self,
        key: str,
        reader: Callable[[Any], Any],
        *,
        required: bool = True,
        default: Any = None,
        null: str | None = None,
        allow_null: bool = False,
    ) -> Any:
        if key not in self.raw:
            if required:
                self.errors[key] = [_REQUIRED]
                return None
            if default is not None or allow_null:
                self.clean[key] = copy.deepcopy(default)
            return self.clean.get(key)
        value = self.raw[key]
        if value is None:
            if allow_null:
                self.clean[key] = None
                return None
            self.errors[key] = [null or _NULL]
            return None
        try:
            self.clean[key] = reader(value)
        except _Invalid as exc:
            self.errors[key] = exc.detail
            return None
        return self.clean[key]

    def _given(self, key: str) -> Any:
        """The field's value; None, with its error recorded, when it is missing or null."""
        if key not in self.raw:
            self.errors[key] = [_REQUIRED]
            return None
        if self.raw[key] is None:
            self.errors[key] = [_NULL]
        return self.raw[key]

    def many(
        self, key: str, reader: Callable[[Any], tuple[dict[str, Any], Any]], *, empty: str
    ) -> list[Any] | None:
        """A nested list: per-item errors in position, ``{}`` for valid items."""
        value = self._given(key)
        if value is None:
            return None
        if not isinstance(value, list):
            self.errors[key] = {
                "non_field_errors": [
                    f'Expected a list of items but got type "{type(value).__name__}".'
                ]
            }
            return None
        results = [reader(item) for item in value]
        if any(errors for errors, _ in results):
            self.errors[key] = [errors for errors, _ in results]
            return None
        if not value:
            self.errors[key] = [empty]
            return None
        self.clean[key] = [clean for _, clean in results]
        return self.clean[key]

    def nested(self, key: str, reader: Callable[[Any], tuple[dict[str, Any], Any]]) -> Any:
        value = self._given(key)
        if value is None:
            return None
        errors, clean = reader(value)
        if errors:
            self.errors[key] = errors
            return None
        self.clean[key] = clean
        return clean


def _not_a_dict(raw: Any) -> dict[str, Any] | None:
    if isinstance(raw, dict):
        return None
    return {
        "non_field_errors": [f"Invalid data. Expected a dictionary, but got {type(raw).__name__}."]
    }


def _read_location(raw: Any) -> tuple[dict[str, Any], Any]:
    if (bad := _not_a_dict(raw)) is not None:
        return bad, None
    fields = _Fields(raw)
    fields.take("telescope_class", lambda v: _choice(v, TELESCOPE_CLASSES))
    fields.take("site", lambda v: _choice(v, SITE_CODES), required=False)
    fields.take("enclosure", _text, required=False)
    fields.take("telescope", _text, required=False)
    if fields.errors:
        return fields.errors, None
    clean = fields.clean
    if "enclosure" in clean and "site" not in clean:
        return {"non_field_errors": ["Must specify a site with an enclosure."]}, None
    if "telescope" in clean and "enclosure" not in clean:
        return {"non_field_errors": ["Must specify an enclosure with a telescope."]}, None
    return {}, clean


def _read_window(raw: Any, now: datetime) -> tuple[dict[str, Any], Any]:
    if (bad := _not_a_dict(raw)) is not None:
        return bad, None
    fields = _Fields(raw)
    fields.take("start", _datetime, required=False)

    def end_reader(value: Any) -> datetime:
        end = _datetime(value)
        if end < now:
            raise _Invalid(["Window end time must be in the future"])
        return end

    fields.take("end", end_reader)
    if fields.errors:
        return fields.errors, None
    clean = fields.clean
    clean.setdefault("start", now)
    if clean["end"] <= clean["start"]:
        message = (
            f"Window end '{clean['end']}' cannot be earlier than window start '{clean['start']}'"
        )
        return {"non_field_errors": [message]}, None
    # serializers.py WindowSerializer.validate with duration_utils.get_semester_in.
    if semester_in(clean["start"], clean["end"]) is None:
        message = "The observation window does not fit within any defined semester."
        return {"non_field_errors": [message]}, None
    return {}, clean


def _read_target(raw: Any) -> tuple[dict[str, Any], Any]:
    if (bad := _not_a_dict(raw)) is not None:
        return bad, None
    fields = _Fields(raw)
    fields.take("name", lambda v: _text(v, max_length=50, blank="This field may not be blank."))
    kind = fields.take("type", lambda v: _choice(v, TARGET_TYPES))
    if kind == "ICRS":
        fields.take("ra", lambda v: _float(v, low=0.0, high=360.0))
        fields.take("dec", lambda v: _float(v, low=-90.0, high=90.0))
        # models.py Target: MaxValueValidator(20000) on the proper motions, (2100) on the
        # epoch, (2000) on the parallax; target_helpers.py ICRSTargetHelper fills the defaults.
        for key, default, high in (
            ("proper_motion_ra", 0.0, 20000),
            ("proper_motion_dec", 0.0, 20000),
            ("epoch", 2000.0, 2100),
            ("parallax", 0.0, 2000),
        ):
            fields.take(
                key, lambda v, high=high: _float(v, high=high), required=False, default=default
            )
    elif kind is not None:
        # Non-sidereal and other target types are stored as sent (numbers kept as numbers).
        for key, value in fields.raw.items():
            if key not in ("name", "type", "extra_params") and isinstance(value, int | float):
                fields.clean[key] = float(value)
            elif key == "scheme" and isinstance(value, str):
                fields.clean[key] = value
    fields.take("extra_params", _dict, required=False, default={})
    return fields.errors, (None if fields.errors else fields.clean)


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid([f'Expected a dictionary of items but got type "{type(value).__name__}".'])
    return dict(value)


def _read_constraints(raw: Any) -> tuple[dict[str, Any], Any]:
    if (bad := _not_a_dict(raw)) is not None:
        return bad, None
    fields = _Fields(raw)
    fields.take("max_airmass", lambda v: _float(v, low=1.0, high=25.0), required=False, default=1.6)
    fields.take(
        "min_lunar_distance",
        lambda v: _float(v, low=0.0, high=180.0),
        required=False,
        default=30.0,
    )
    fields.take(
        "max_lunar_phase", lambda v: _float(v, low=0.0, high=1.0), required=False, default=1.0
    )
    fields.take("max_seeing", lambda v: _float(v, low=0.0), required=False, allow_null=True)
    fields.take("min_transparency", lambda v: _float(v, low=0.0), required=False, allow_null=True)
    fields.take("extra_params", _dict, required=False, default={})
    return fields.errors, (None if fields.errors else fields.clean)


def _read_instrument_config(raw: Any) -> tuple[dict[str, Any], Any]:
    if (bad := _not_a_dict(raw)) is not None:
        return bad, None
    fields = _Fields(raw)
    fields.take("exposure_time", lambda v: _float(v, low=0.0))
    fields.take("exposure_count", lambda v: _int(v, low=1))
    fields.take("mode", _text, required=False)
    fields.take("rotator_mode", _text, required=False)

    def elements(value: Any) -> dict[str, str]:
        mapping = _dict(value)
        return {str(key): str(item) for key, item in mapping.items()}

    fields.take("optical_elements", elements, required=False, default={})
    fields.take("extra_params", _dict, required=False, default={})
    fields.take(
        "rois",
        lambda v: list(v) if isinstance(v, list) else _dict(v),
        required=False,
        default=[],
    )
    return fields.errors, (None if fields.errors else fields.clean)


def _mode_config_reader(max_exposure_s: float) -> Callable[[Any], tuple[dict[str, Any], Any]]:
    """The reader of an acquisition or guiding config, its exposure time capped.

    models.py caps them: AcquisitionConfig MaxValueValidator(60.0), GuidingConfig (120.0).
    """

    def read(raw: Any) -> tuple[dict[str, Any], Any]:
        if (bad := _not_a_dict(raw)) is not None:
            return bad, None
        fields = _Fields(raw)
        fields.take("mode", _text, required=False)
        fields.take("optional", lambda v: bool(v), required=False)
        fields.take(
            "exposure_time",
            lambda v: _float(v, low=0.0, high=max_exposure_s),
            required=False,
            allow_null=True,
        )
        fields.take("optical_elements", _dict, required=False, default={})
        fields.take("extra_params", _dict, required=False, default={})
        return fields.errors, (None if fields.errors else fields.clean)

    return read


def _mode(
    kind: str, value: str | None, allowed: tuple[str, ...], default: str, instrument: str
) -> str:
    """The portal's ModeValidationHelper: a given mode must exist; a missing one gets the default."""
    if not allowed:
        return value or ""
    if not value:
        return default
    for mode in allowed:
        if mode.lower() == value.lower():
            return mode
    raise _Invalid(
        f"{kind.capitalize()} mode {value} is not available for instrument type {instrument}"
    )


def _read_configuration(raw: Any) -> tuple[dict[str, Any], Any]:
    if (bad := _not_a_dict(raw)) is not None:
        return bad, None
    fields = _Fields(raw)
    fields.take(
        "type", lambda v: _choice(str(v).upper() if isinstance(v, str) else v, CONFIGURATION_TYPES)
    )

    def instrument_reader(value: Any) -> str:
        code = _text(value).upper()
        if code not in CONFIGDB:
            raise _Invalid(
                [
                    f"Invalid instrument type {value}. Valid instruments may include: "
                    + ", ".join(CONFIGDB)
                ]
            )
        return code

    fields.take("instrument_type", instrument_reader)
    fields.nested("target", _read_target)
    fields.nested("constraints", _read_constraints)
    fields.many(
        "instrument_configs",
        _read_instrument_config,
        empty="A configuration must have at least one instrument configuration",
    )
    fields.nested("acquisition_config", _mode_config_reader(60.0))
    fields.nested("guiding_config", _mode_config_reader(120.0))
    fields.take("repeat_duration", lambda v: _float(v, low=0.0), required=False, allow_null=True)
    fields.take("extra_params", _dict, required=False, default={})
    if fields.errors:
        return fields.errors, None
    try:
        return {}, _check_configuration(fields.clean)
    except _Invalid as exc:
        return {"non_field_errors": [exc.detail]}, None


def _check_configuration(data: dict[str, Any]) -> dict[str, Any]:
    """ConfigurationSerializer.validate: modes, configuration type, optical elements, repeats."""
    instrument = CONFIGDB[data["instrument_type"]]
    code = instrument.code
    guiding = data["guiding_config"]
    guiding["mode"] = _mode(
        "guiding", guiding.get("mode"), instrument.guiding_modes, instrument.default_guiding, code
    )
    guiding.setdefault("optional", True)
    guiding.setdefault("exposure_time", None)
    kind = data["type"]
    if kind not in instrument.configuration_types:
        raise _Invalid(f"configuration type {kind} is not valid for instrument type {code}")
    if not instrument.configuration_types[kind]:
        raise _Invalid(f"configuration type {kind} is not schedulable for instrument type {code}")
    # ConfigurationSerializer.validate: a spectrograph's science spectrum must be guided (only
    # ARC and LAMP_FLAT may leave guiding optional), and calibration types are forced to
    # acquisition OFF before the acquisition modes are checked (FLOYDS has no OFF mode).
    if instrument.kind == "SPECTRA" and kind not in _CALIBRATION_TYPES:
        if guiding.get("optional") is True:
            raise _Invalid(
                "Guiding cannot be optional on spectrograph instruments for types that are not "
                "ARC or LAMP_FLAT."
            )
        guiding["optional"] = False
    acquisition = data["acquisition_config"]
    if kind in _ACQUISITION_OFF_TYPES:
        acquisition["mode"] = "OFF"
    else:
        acquisition["mode"] = _mode(
            "acquisition",
            acquisition.get("mode"),
            instrument.acquisition_modes,
            instrument.default_acquisition,
            code,
        )
    acquisition.setdefault("exposure_time", None)
    acquisition.pop("optional", None)
    acquisition.pop("optical_elements", None)
    for config in data["instrument_configs"]:
        config["mode"] = _mode(
            "readout",
            config.get("mode"),
            tuple(instrument.readout_modes),
            instrument.default_readout,
            code,
        )
        if instrument.rotator_modes:
            config["rotator_mode"] = _mode(
                "rotator",
                config.get("rotator_mode"),
                instrument.rotator_modes,
                instrument.default_rotator,
                code,
            )
        else:
            config["rotator_mode"] = ""
        available = instrument.optical_elements
        for element_type, value in list(config["optical_elements"].items()):
            plural = f"{element_type}s"
            if plural not in available:
                raise _Invalid(
                    f"optical_element of type {element_type} is not available on {code} instruments"
                )
            codes = {name.lower(): name for name, schedulable in available[plural] if schedulable}
            if value.lower() not in codes:
                raise _Invalid(f"optical element {value} of type {element_type} is not available")
            config["optical_elements"][element_type] = codes[value.lower()]
        for plural in available:
            singular = plural[:-1]
            if singular not in config["optical_elements"]:
                raise _Invalid(
                    f"Must set optical element of type {singular} for instrument type {code}"
                )
        if instrument.exposure_modes:
            extra = config["extra_params"]
            extra["exposure_mode"] = _mode(
                "exposure",
                extra.get("exposure_mode"),
                instrument.exposure_modes,
                instrument.default_exposure_mode,
                code,
            )
            _check_exposure_mode(extra)
    if "REPEAT" in kind:
        if data.get("repeat_duration") is None:
            raise _Invalid(
                f"Must specify a configuration repeat_duration for {kind} type configurations."
            )
    elif data.get("repeat_duration") is not None:
        raise _Invalid("You may only specify a repeat_duration for REPEAT_* type configurations.")
    return data


def _check_exposure_mode(extra: dict[str, Any]) -> None:
    """MuSCAT's exposure modes need the four per-channel times in ``extra_params``.

    configdb's ``validation_schema`` of the modes (floats >= 0, required), run by
    serializers.py ModeValidationHelper; cerberus's errors joined as
    ``_cerberus_validation_error_to_str`` does.
    """
    problems = {}
    for channel in ("g", "i", "r", "z"):
        key = f"exposure_time_{channel}"
        value = extra.get(key)
        if key not in extra:
            problems[key] = "required field"
        elif isinstance(value, bool) or not isinstance(value, int | float):
            problems[key] = "must be of float type"
        elif value < 0:
            problems[key] = "min value is 0"
    if problems:
        inner = ", ".join(f"{key} error: {text}" for key, text in sorted(problems.items()))
        raise _Invalid(
            f"Exposure mode {extra['exposure_mode']} requirements are not met: "
            f"extra_params{{{inner}}}"
        )


def _read_request(raw: Any, now: datetime) -> tuple[dict[str, Any], Any]:
    if (bad := _not_a_dict(raw)) is not None:
        return bad, None
    fields = _Fields(raw)
    fields.nested("location", _read_location)
    fields.many(
        "configurations", _read_configuration, empty="You must specify at least 1 configuration"
    )
    windows = fields.many(
        "windows", lambda item: _read_window(item, now), empty="You must specify at least 1 window"
    )
    # serializers.py RequestSerializer.validate_windows.
    if windows and len({semester_in(w["start"], w["end"]) for w in windows}) > 1:
        fields.errors["windows"] = ["The observation windows must all be in the same semester"]
    fields.take(
        "acceptability_threshold",
        lambda v: _float(v, low=0.0, high=100.0),
        required=False,
    )
    fields.take("configuration_repeats", lambda v: _int(v, low=1), required=False, default=1)
    fields.take(
        "optimization_type",
        lambda v: _choice(v, ("TIME", "AIRMASS")),
        required=False,
        default="TIME",
    )
    fields.take("observation_note", lambda v: _text(v, max_length=255), required=False, default="")
    fields.take("extra_params", _dict, required=False, default={})
    if raw.get("cadence"):
        fields.errors["cadence"] = [
            "Please use the cadence endpoint to expand your cadence request"
        ]
    if fields.errors:
        return fields.errors, None
    data = fields.clean
    telescope_class = data["location"]["telescope_class"]
    valid = [code for code, item in CONFIGDB.items() if item.telescope_class == telescope_class]
    for configuration in data["configurations"]:
        if configuration["instrument_type"] not in valid:
            location = data["location"]
            message = (
                f"Invalid instrument type '{configuration['instrument_type']}' at "
                f"site={location.get('site', 'Any')}, enc={location.get('enclosure', 'Any')}, "
                f"tel={location.get('telescope', 'Any')}. \n"
                "Valid instruments include: " + "".join(f"{code}, " for code in valid) + "."
            )
            return {"non_field_errors": [message]}, None
    if "acceptability_threshold" not in data:
        data["acceptability_threshold"] = max(
            CONFIGDB[c["instrument_type"]].acceptability_threshold for c in data["configurations"]
        )
    problem = _visibility_problem(data, now)
    if problem:
        return {"non_field_errors": [problem]}, None
    return {}, data


def _visibility_problem(request: dict[str, Any], now: datetime) -> str | None:
    """The target must be observable in the windows, for longer than the request lasts.

    serializers.py RequestSerializer.validate with rise_set_utils.py get_largest_interval.
    """
    location = request["location"]
    telescopes = [
        telescope
        for telescope in TELESCOPES.get(location["telescope_class"], ())
        if not location.get("site") or telescope.site == location["site"]
    ]
    largest = largest_visible_interval(
        request["windows"], request["configurations"], telescopes, now
    ).total_seconds()
    duration = _durations(request)["duration"]
    if largest <= 0:
        return _NOT_VISIBLE
    if largest <= duration:
        return (
            "According to the constraints of the request, the target will only be visible for a "
            f"maximum of {largest / 3600.0:.2f} hours within the time window. This is less than "
            f"the duration of your request {duration / 3600.0:.2f} hours. Consider expanding the "
            "time window or loosening the airmass or lunar separation constraints."
        )
    return None


def _durations(request: dict[str, Any]) -> dict[str, Any]:
    """Per-request duration breakdown in the shape of the validate endpoint."""
    configurations = []
    total = 0.0
    for configuration in request["configurations"]:
        instrument = CONFIGDB[configuration["instrument_type"]]
        ic_durations = []
        for config in configuration["instrument_configs"]:
            readout = instrument.readout_modes.get(config["mode"], 0.0)
            duration = (
                config["exposure_count"] * (config["exposure_time"] + readout) + ELEMENT_CHANGE_S
            )
            ic_durations.append({"duration": duration})
        duration = sum(item["duration"] for item in ic_durations) + CONFIG_FRONT_PADDING_S
        if configuration["acquisition_config"].get("mode", "OFF") != "OFF":
            duration += ACQUIRE_OVERHEAD_S
        if configuration.get("repeat_duration"):
            duration = max(duration, float(configuration["repeat_duration"]))
        configurations.append({"duration": duration, "instrument_configs": ic_durations})
        total += duration
    total = total * request.get("configuration_repeats", 1) + FRONT_PADDING_S.get(
        request["location"]["telescope_class"], 120.0
    )
    largest = max(
        (window["end"] - window["start"]).total_seconds() for window in request["windows"]
    )
    return {
        "duration": round(total),
        "configurations": configurations,
        "largest_interval": largest,
    }


def read_group(
    raw: Any,
    now: datetime,
    proposals: Iterable[str],
    hours_left: HoursLeft,
    ipp_hours_left: IppHoursLeft,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the portal's RequestGroup serializer on a body; returns (errors, cleaned group).

    Args:
        raw: The request body.
        now: The portal's time (windows must end after it).
        proposals: Proposal ids the user belongs to.
        hours_left: Hours of an observation type a proposal has left in a semester.
        ipp_hours_left: IPP hours a proposal has left in a semester on an instrument type.
    """
    member = set(proposals)
    if (bad := _not_a_dict(raw)) is not None:
        return bad, {}
    fields = _Fields(raw)
    fields.take("name", lambda v: _text(v, max_length=50, blank="Please provide a name."))

    def proposal_reader(value: Any) -> str:
        text = _text(value)
        if text not in member:
            raise _Invalid([f'Invalid pk "{text}" - object does not exist.'])
        return text

    fields.take("proposal", proposal_reader, null="Please provide a proposal.")
    fields.take("ipp_value", lambda v: _float(v, low=0.0))
    fields.take("operator", lambda v: _choice(v, ("SINGLE", "MANY")))
    fields.take(
        "observation_type",
        lambda v: _choice(v, ("NORMAL", "RAPID_RESPONSE", "TIME_CRITICAL")),
    )
    fields.many(
        "requests",
        lambda item: _read_request(item, now),
        empty="You must specify at least 1 request",
    )
    if fields.errors:
        return fields.errors, {}
    data = fields.clean
    try:
        _check_group(data, now, hours_left, ipp_hours_left)
    except _Invalid as exc:
        return {"non_field_errors": [exc.detail]}, {}
    return {}, data


def _check_group(
    data: dict[str, Any], now: datetime, hours_left: HoursLeft, ipp_hours_left: IppHoursLeft
) -> None:
    """RequestGroupSerializer.validate: ipp, operator, time allocation, rapid response, IPP time."""
    if not 0.5 <= data["ipp_value"] <= 2.0:
        raise _Invalid("requestgroups ipp_value must be >= 0.5, <= 2.0")
    if data["operator"] == "SINGLE" and len(data["requests"]) > 1:
        raise _Invalid("'Single' type requestgroups must have exactly one child request.")
    if data["operator"] != "SINGLE" and len(data["requests"]) == 1:
        raise _Invalid(
            f"'{data['operator'].title()}' type requestgroups must have more than one child request."
        )
    kind = data["observation_type"]
    needed: dict[tuple[str, str], float] = {}
    for request in data["requests"]:
        request["_durations"] = _durations(request)
        window = request["windows"][0]
        term = semester_in(window["start"], window["end"]) or ""
        for configuration in request["configurations"]:
            key = (term, configuration["instrument_type"])
            needed.setdefault(key, 0.0)
        first = request["configurations"][0]["instrument_type"]
        needed[(term, first)] += request["_durations"]["duration"]
    for (term, instrument), duration in needed.items():
        available = hours_left(data["proposal"], term, kind)
        if kind == "RAPID_RESPONSE":
            for request in data["requests"]:
                for window in request["windows"]:
                    if window["start"] > now:
                        raise _Invalid(
                            "The Rapid Response observation window start time cannot be in the future."
                        )
                    if (window["end"] - now).total_seconds() > duration + 86400:
                        raise _Invalid(
                            "A Rapid Response observation must start within the next 24 hours, "
                            "so the window end time must be within the next (24 hours + the "
                            "observation duration)"
                        )
        if available <= 0.0:
            raise _Invalid(
                f"Proposal {data['proposal']} does not have any {kind} time left allocated "
                f"in semester {term} on {instrument} instruments"
            )
        if available * PROPOSAL_TIME_OVERUSE_ALLOWANCE < duration / 3600.0:
            raise _Invalid(
                f"Proposal {data['proposal']} does not have enough {kind} time allocated "
                f"in semester {term}"
            )
    if kind == "NORMAL":
        _check_ipp(data, needed, ipp_hours_left)


class TimeAllocationError(Exception):
    """common/state_changes.py's error; the portal answers its ``repr``."""


def _check_ipp(
    data: dict[str, Any], needed: dict[tuple[str, str], float], ipp_hours_left: IppHoursLeft
) -> None:
    """An ipp_value above 1 spends (ipp - 1) x duration of the allocation's IPP time.

    common/state_changes.py validate_ipp; serializers.py answers ``repr(TimeAllocationError)``.
    """
    extra = data["ipp_value"] - 1
    if extra <= 0:
        return
    available = {key: ipp_hours_left(data["proposal"], *key) for key in needed}
    for (term, instrument), duration in needed.items():
        hours = duration / 3600
        if available[(term, instrument)] < hours * extra:
            most = math.floor(((available[(term, instrument)] / hours) + 1) * 1000) / 1000
            error = TimeAllocationError(
                f"An IPP Value of {extra + 1} requires more IPP time than you have available "
                f"for '{data['observation_type']}' Observation with the {instrument} . "
                f"Please lower your IPP Value to <= {most} and submit again."
            )
            raise _Invalid(repr(error))
        available[(term, instrument)] -= hours * extra
