"""Run aeonlib's LCO facility against a portal URL (run by a Python that has aeonlib installed).

Usage: python aeonlib_probe.py PORTAL_URL TOKEN PAYLOAD.json -> prints a JSON report.
Not imported by the test suite: aeonlib needs Python >= 3.12 and is not a project dependency.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    portal_url, token, payload_path = sys.argv[1:4]
    from aeonlib.conf import Settings
    from aeonlib.ocs.lco.facility import LcoFacility
    from aeonlib.ocs.request_models import RequestGroup

    facility = LcoFacility(settings=Settings(lco_token=token, lco_api_root=f"{portal_url}/api/"))
    with open(payload_path) as handle:
        group = RequestGroup.model_validate(json.load(handle))
    valid, errors = facility.validate_request_group(group)
    bad_valid, bad_errors = facility.validate_request_group(
        group.model_copy(update={"ipp_value": 3.0})
    )
    submitted = facility.submit_request_group(group)
    print(
        json.dumps(
            {
                "valid": valid,
                "errors": errors,
                "bad_valid": bad_valid,
                "bad_errors": bad_errors,
                "submitted": submitted.model_dump(mode="json"),
            }
        )
    )


if __name__ == "__main__":
    main()
