"""Validate request-group payloads with aeonlib's models (run by a Python that has aeonlib).

Usage: python aeonlib_models_probe.py PAYLOADS.json -> prints ``{"name": null | "error", ...}``.
aeonlib's ``RequestGroup`` is generated from LCO's configdb; not imported by the test suite.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    from aeonlib.ocs.request_models import RequestGroup
    from pydantic import ValidationError

    with open(sys.argv[1]) as handle:
        payloads = json.load(handle)
    report = {}
    for name, payload in payloads.items():
        try:
            RequestGroup.model_validate(payload)
            report[name] = None
        except ValidationError as exc:
            report[name] = str(exc)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
