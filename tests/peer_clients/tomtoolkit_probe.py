"""Run TOM Toolkit's LCO facility against the portal and archive (a Python with tomtoolkit).

Usage: python tomtoolkit_probe.py PORTAL_URL ARCHIVE_URL TOKEN PAYLOAD.json CONTROL_URL
prints a JSON report. Between submission and the status check it completes the request through
the sandbox's control API. Not imported by the test suite (tomtoolkit pins older astropy/numpy).
"""

from __future__ import annotations

import json
import sys
import urllib.request


def configure(portal_url: str, archive_url: str, token: str) -> None:
    import django
    from django.conf import settings
    from tom_common import default_settings

    settings.configure(
        SECRET_KEY="probe",
        INSTALLED_APPS=default_settings.TOMTOOLKIT_INSTALLED_APPS,
        MIDDLEWARE=default_settings.TOMTOOLKIT_MIDDLEWARE,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        FACILITIES={
            "LCO": {"portal_url": portal_url, "archive_url": archive_url, "api_key": token}
        },
        TARGET_TYPE="SIDEREAL",
        USE_TZ=True,
        SITE_ID=1,
    )
    django.setup()


def main() -> None:
    portal_url, archive_url, token, payload_path, control_url = sys.argv[1:6]
    configure(portal_url, archive_url, token)
    from tom_observations.facilities.lco import LCOFacility

    facility = LCOFacility()
    with open(payload_path) as handle:
        payload = json.load(handle)
    report: dict = {"validate": facility.validate_observation(payload)}
    ids = facility.submit_observation(payload)
    report["observation_ids"] = ids
    report["pending"] = facility.get_observation_status(ids[0])
    request = urllib.request.Request(
        f"{control_url}/sandbox/requests/{ids[0]}/complete", method="POST"
    )
    urllib.request.urlopen(request).read()
    report["status"] = facility.get_observation_status(ids[0])
    report["products"] = [
        {"id": p["id"], "filename": p["filename"], "url": p["url"], "created": str(p["created"])}
        for p in facility.data_products(ids[0])
    ]
    second = dict(payload, name=payload["name"][:-1] + "x")
    other = facility.submit_observation(second)
    report["canceled"] = facility.cancel_observation(other[0])
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    main()
