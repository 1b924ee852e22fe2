"""Reports name the telescope and camera that took each measurement, as each reader expects."""

from __future__ import annotations

import pytest

from followup.reporting.at_report import AtDiscovery, build_at_report, discovery_points
from followup.reporting.bands import tns_filter_id
from followup.reporting.equipment import equipment_of
from followup.reporting.gcn import draft_circular
from followup.reporting.hermes import build_hermes_message
from tests.reporting.conftest import REPORTER, make_measurement, make_target


def measured(camera: str | None, telescope: str | None, **fields):
    return make_measurement(**fields).model_copy(
        update={"instrument": camera, "telescope": telescope}
    )


@pytest.mark.parametrize(
    ("camera", "telescope", "instrument_type", "expected"),
    [
        ("fa14", "1m0a", None, ("LCO 1-m", "Sinistro", "LCO1m - Sinistro", "208")),
        ("ep04", "2m0a", None, ("LCO 2-m", "MuSCAT3", "MuSCAT3", "0")),
        ("ep07", "2m0a", None, ("LCO 2-m", "MuSCAT4", "MuSCAT4", "0")),
        ("sq34", "0m4b", None, ("LCO 0.4-m", "QHY600", "QHY600", "0")),
        ("en06", "2m0a", None, ("LCO 2-m", "FLOYDS-N", "FTN - FLOYDS-N", "108")),
        ("en12", "2m0a", None, ("LCO 2-m", "FLOYDS-S", "FTS - FLOYDS-S", "125")),
        (None, None, "2M0-SCICAM-MUSCAT", ("LCO 2-m", "MuSCAT3", "MuSCAT3", "0")),
        (None, None, "0M4-SCICAM-QHY600", ("LCO 0.4-m", "QHY600", "QHY600", "0")),
    ],
)
def test_each_camera_has_its_names(camera, telescope, instrument_type, expected) -> None:
    equipment = equipment_of(measured(camera, telescope), instrument_type=instrument_type)
    got = (
        equipment.telescope,
        equipment.camera,
        equipment.hermes_instrument,
        equipment.tns_instrument_id,
    )
    assert got == expected


def test_tns_ids_can_be_given_for_cameras_tns_lists_under_another_id() -> None:
    equipment = equipment_of(measured("ep04", "2m0a"), tns_instrument_ids={"MuSCAT3": 321})
    assert equipment.tns_instrument_id == "321"


def test_lco_filters_have_their_tns_ids() -> None:
    assert [tns_filter_id(code) for code in ("up", "gp", "rp", "ip", "zs", "w")] == [
        "20",
        "21",
        "22",
        "23",
        "59",  # Pan-STARRS z, not Sloan z (24)
        "26",
    ]


def test_an_at_report_carries_each_points_camera_and_what_is_known_of_the_host() -> None:
    target = make_target()
    points = [
        measured("fa14", "1m0a", hours=1.0),
        measured("ep04", "2m0a", hours=5.0, mag=19.61, band="zs"),
    ]
    first, last = discovery_points(points, target.name)
    entry = build_at_report(
        AtDiscovery(
            target=target,
            first_detection=first,
            last_non_detection=last,
            host_name="NGC 1234",
            host_redshift=0.0123,
            transient_redshift=0.0125,
            position_error_arcsec=0.4,
        ),
        REPORTER,
    )["at_report"]["0"]
    detection = entry["photometry"]["photometry_group"]["0"]
    assert (detection["instrument_value"], detection["filter_value"]) == ("0", "59")
    assert "LCO 2-m MuSCAT3" in detection["comments"]
    assert entry["non_detection"]["instrument_value"] == "208"
    assert (entry["host_name"], entry["host_redshift"], entry["transient_redshift"]) == (
        "NGC 1234",
        "0.0123",
        "0.0125",
    )
    assert entry["ra"]["error"] == entry["dec"]["error"] == "0.4"


def test_hermes_and_gcn_name_each_measurements_equipment() -> None:
    points = [measured("fa14", "1m0a", hours=1.0), measured("ep04", "2m0a", hours=2.0)]
    message = build_hermes_message(
        "S260314ab",
        [make_target()],
        points,
        title="t",
        authors="A",
        target_details={"S260314ab-C1": {"host_name": "NGC 1234", "host_redshift": 0.01}},
    )
    photometry = message.data.photometry
    assert [(p.telescope, p.instrument) for p in photometry] == [
        ("LCO 1-m", "LCO1m - Sinistro"),
        ("LCO 2-m", "MuSCAT3"),
    ]
    assert message.data.targets[0].host_name == "NGC 1234"
    circular = draft_circular("S260314ab", points, observers=["A. Author (LCO)"], team="LCO team")
    text = " ".join(circular.body.split())
    assert "with the LCO 1-m Sinistro and LCO 2-m MuSCAT3 of the Las Cumbres" in text
    assert "LCO 1-m" in circular.body and "LCO 2-m MuSCAT3" in circular.body
