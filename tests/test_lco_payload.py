"""The request-group payload builder and the deterministic group names."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from followup.lco import (
    INSTRUMENTS,
    RequestGroupSpec,
    build_request_group,
    epoch_windows,
    estimate_request_duration_s,
    group_name_prefix,
    make_group_name,
)
from tests.lco_support import strategy, target

START = datetime(2025, 3, 1, 12, tzinfo=UTC)


def build(**fields):
    return build_request_group(
        RequestGroupSpec(
            target=target(),
            strategy=strategy(**fields),
            proposal="P1",
            group_name="S1_GAL-001_e0_0123456789",
            window_start=START,
            window_end=START + timedelta(hours=24),
        )
    )


def test_sinistro_payload_shape() -> None:
    payload = build(filters=["gp", "rp"], exposure_time_per_filter_s={"gp": 200.0}, max_airmass=2.0)
    assert payload["operator"] == "SINGLE" and payload["observation_type"] == "NORMAL"
    assert payload["ipp_value"] == 1.05 and payload["proposal"] == "P1"
    (request,) = payload["requests"]
    assert request["location"] == {"telescope_class": "1m0"}
    assert request["windows"] == [{"start": "2025-03-01T12:00:00Z", "end": "2025-03-02T12:00:00Z"}]
    (configuration,) = request["configurations"]
    assert (
        configuration["type"] == "EXPOSE"
        and configuration["instrument_type"] == "1M0-SCICAM-SINISTRO"
    )
    assert configuration["target"]["type"] == "ICRS" and configuration["target"]["ra"] == 150.25
    assert configuration["constraints"]["max_airmass"] == 2.0
    assert [ic["optical_elements"] for ic in configuration["instrument_configs"]] == [
        {"filter": "gp"},
        {"filter": "rp"},
    ]
    assert [ic["exposure_time"] for ic in configuration["instrument_configs"]] == [200.0, 120.0]
    assert configuration["guiding_config"] == {"mode": "ON", "optional": True, "extra_params": {}}
    assert configuration["acquisition_config"]["mode"] == "OFF"


def test_muscat_uses_per_channel_extra_params() -> None:
    payload = build(
        instrument_type="2M0-SCICAM-MUSCAT",
        filters=["gp", "rp", "ip", "zs"],
        exposure_time_per_filter_s={"gp": 180.0},
        exposure_count=2,
    )
    (request,) = payload["requests"]
    assert request["location"]["telescope_class"] == "2m0"
    (config,) = request["configurations"][0]["instrument_configs"]
    assert config["optical_elements"] == {f"narrowband_{c}_position": "out" for c in "griz"}
    assert config["extra_params"] == {
        "exposure_mode": "ASYNCHRONOUS",
        "exposure_time_g": 180.0,
        "exposure_time_r": 120.0,
        "exposure_time_i": 120.0,
        "exposure_time_z": 120.0,
    }
    assert config["exposure_time"] == 180.0 and config["exposure_count"] == 2
    assert config["mode"] == "MUSCAT_SLOW"


def test_floyds_spectrum_sits_between_lamp_flats_and_arcs() -> None:
    payload = build(
        instrument_type="2M0-FLOYDS-SCICAM", filters=["slit_1.6as"], exposure_time_s=900
    )
    configurations = payload["requests"][0]["configurations"]
    assert [c["type"] for c in configurations] == [
        "LAMP_FLAT",
        "ARC",
        "SPECTRUM",
        "ARC",
        "LAMP_FLAT",
    ]
    spectrum = configurations[2]
    assert spectrum["acquisition_config"]["mode"] == "WCS"
    assert spectrum["guiding_config"]["mode"] == "ON"
    assert spectrum["guiding_config"]["optional"] is False
    assert spectrum["instrument_configs"][0]["exposure_time"] == 900
    for configuration in configurations:
        (config,) = configuration["instrument_configs"]
        # Every calibration through the spectrum's slit, at its pointing and rotator mode.
        assert config["optical_elements"] == {"slit": "slit_1.6as"}
        assert config["rotator_mode"] == "VFLOAT"
        assert configuration["target"] == spectrum["target"]
        assert configuration["instrument_type"] == "2M0-FLOYDS-SCICAM"
    calibrations = [c for c in configurations if c["type"] != "SPECTRUM"]
    # The portal turns a calibration's acquisition OFF; configdb's schema allows only WCS here.
    assert {c["acquisition_config"]["mode"] for c in calibrations} == {"WCS"}
    assert {c["guiding_config"]["optional"] for c in calibrations} == {True}
    times = {c["type"]: c["instrument_configs"][0]["exposure_time"] for c in calibrations}
    assert times == {"LAMP_FLAT": 50.0, "ARC": 60.0}  # the portal form's 1.6" lamp flat


def test_lamp_flat_time_follows_the_slit() -> None:
    wide = build(instrument_type="2M0-FLOYDS-SCICAM", filters=["slit_6.0as"])
    assert wide["requests"][0]["configurations"][0]["instrument_configs"][0]["exposure_time"] == 15


def test_imagers_get_no_calibrations() -> None:
    for instrument_type, filters in [
        ("1M0-SCICAM-SINISTRO", ["rp"]),
        ("2M0-SCICAM-MUSCAT", ["gp", "rp", "ip", "zs"]),
    ]:
        payload = build(instrument_type=instrument_type, filters=filters)
        assert [c["type"] for c in payload["requests"][0]["configurations"]] == ["EXPOSE"]


def test_floyds_duration_counts_the_calibrations() -> None:
    plan = strategy(instrument_type="2M0-FLOYDS-SCICAM", filters=["slit_2.0as"])
    # 2 lamp flats of 40 s and 2 arcs of 60 s, each with the 25 s readout and a config change.
    calibrations = 2 * (40 + 25 + 2) + 2 * (60 + 25 + 2)
    spectrum = plan.exposure_count * (plan.exposure_time_s + 25) + 2
    assert estimate_request_duration_s(plan) == pytest.approx(300 + spectrum + calibrations)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param(
            {"instrument_type": "1M0-SCICAM-SBIG"}, "unknown instrument type", id="instrument"
        ),
        pytest.param({"filters": ["rp", "Ha"]}, r"has no filter \['Ha'\]", id="filter"),
    ],
)
def test_builder_rejects_bad_strategy(fields, message) -> None:
    with pytest.raises(ValueError, match=message):
        build(**fields)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"window_end": START}, "not after", id="empty window"),
        pytest.param({"group_name": "x" * 51}, "at most 50 characters", id="long name"),
        pytest.param({"group_name": ""}, "at least 1 character", id="no name"),
        pytest.param({"max_lunar_phase": 1.5}, "less than or equal to 1", id="moon"),
    ],
)
def test_spec_rejects_bad_window_name_and_moon(fields, message) -> None:
    values = {
        "target": target(),
        "strategy": strategy(),
        "proposal": "P",
        "group_name": "n",
        "window_start": START,
        "window_end": START + timedelta(hours=1),
    }
    with pytest.raises(ValueError, match=message):
        RequestGroupSpec(**(values | fields))


def test_site_note_and_moon_reach_the_payload() -> None:
    payload = build_request_group(
        RequestGroupSpec(
            target=target(),
            strategy=strategy(),
            proposal="P",
            group_name="n",
            window_start=START,
            window_end=START + timedelta(hours=6),
            site="cpt",
            observation_note="x" * 300,
            max_lunar_phase=0.4,
        )
    )
    (request,) = payload["requests"]
    assert request["location"] == {"telescope_class": "1m0", "site": "cpt"}
    assert request["observation_note"] == "x" * 255
    assert request["configurations"][0]["constraints"]["max_lunar_phase"] == 0.4


def test_naive_window_is_utc() -> None:
    payload = build_request_group(
        RequestGroupSpec(
            target=target(),
            strategy=strategy(),
            proposal="P",
            group_name="n",
            window_start=datetime(2025, 3, 1, 12),
            window_end=datetime(2025, 3, 1, 18),
        )
    )
    assert payload["requests"][0]["windows"][0] == {
        "start": "2025-03-01T12:00:00Z",
        "end": "2025-03-01T18:00:00Z",
    }


def test_group_names_are_deterministic_unique_and_safe() -> None:
    base = make_group_name("S250101ab", "GAL-001", epoch=0, filters=["gp", "rp"], plan="gw-bns")
    assert base == make_group_name(
        "S250101ab", "GAL-001", epoch=0, filters=["gp", "rp"], plan="gw-bns"
    )
    variants = {
        make_group_name("S250101ab", "GAL-001", epoch=1, filters=["gp", "rp"], plan="gw-bns"),
        make_group_name("S250101ab", "GAL-002", epoch=0, filters=["gp", "rp"], plan="gw-bns"),
        make_group_name("S250101ab", "GAL-001", epoch=0, filters=["gp"], plan="gw-bns"),
        make_group_name("S250101ac", "GAL-001", epoch=0, filters=["gp", "rp"], plan="gw-bns"),
        make_group_name("S250101ab", "GAL-001", epoch=0, filters=["gp", "rp"], plan="other"),
    }
    assert base not in variants and len(variants) == 5
    assert base.startswith("S250101ab_GAL-001_e0_")
    long = make_group_name(
        "GRB 250101A / Swift-BAT trigger 1234567", "field #12 (ra=10, dec=-20)" + "x" * 10, epoch=12
    )
    assert len(long) <= 50 and re.fullmatch(r"[A-Za-z0-9._-]+", long)
    assert long.startswith(group_name_prefix("GRB 250101A / Swift-BAT trigger 1234567"))
    with pytest.raises(ValueError):
        make_group_name("", "T")
    with pytest.raises(ValueError):
        make_group_name("E", "T", epoch=-1)


def test_epoch_windows_follow_the_cadence() -> None:
    windows = epoch_windows(strategy(epochs=3, cadence_hours=24, window_hours=6), START)
    assert windows == [
        (START + timedelta(hours=24 * k), START + timedelta(hours=24 * k + 6)) for k in range(3)
    ]


def test_duration_estimate_counts_exposures_and_overheads() -> None:
    spec = INSTRUMENTS["1M0-SCICAM-SINISTRO"]
    one = estimate_request_duration_s(strategy(filters=["rp"], exposure_count=1))
    three = estimate_request_duration_s(strategy(filters=["rp"], exposure_count=3))
    assert three - one == pytest.approx(2 * (120 + spec.readout_s))
    assert one == pytest.approx(spec.front_padding_s + 120 + spec.readout_s + spec.element_change_s)
