"""Drills stay drills: test and mock alerts never reach a production service, nor read any file.

A drill runs the whole loop on a test or mock alert (an LVK ``MS...`` mock event, a ``TS...``
test event, the MDC search, a GCN notice whose tense is ``test`` or ``injection``, a message with
hop's ``_test`` header: :attr:`followup.models.Alert.is_test`). Two rules keep it harmless:

* **The fence** (:func:`check_drill_fence`): a test alert may reach a service only when the
  settings say their services are sandboxes (``FollowupSettings.sandbox_endpoints``) and the
  service's URL is not a production host (:data:`PRODUCTION_HOSTS`). Both must hold: a flag set
  on a production document by mistake still stops at the host check. Flows check it where they
  hand a client to the task that submits or sends.
* **The drills folder** (:func:`read_drill_file`): a drill replays alert files from one
  configured folder only; a path outside it (``..``, an absolute path, a symbolic link leading
  out) is refused, and no error quotes the file's content.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import urlsplit

from followup.exceptions import FollowupError
from followup.models import Alert

__all__ = [
    "MAX_DRILL_FILE_BYTES",
    "PRODUCTION_HOSTS",
    "DrillFenced",
    "DrillFileError",
    "check_drill_fence",
    "is_production_url",
    "read_drill_file",
]

PRODUCTION_HOSTS: dict[str, frozenset[str]] = {
    "LCO": frozenset({"observe.lco.global", "archive-api.lco.global", "archive.lco.global"}),
    "HERMES": frozenset({"hermes.lco.global"}),
    "TNS": frozenset({"www.wis-tns.org", "wis-tns.org"}),
    "GCN": frozenset({"gcn.nasa.gov", "www.gcn.nasa.gov"}),
    "TREASUREMAP": frozenset({"treasuremap.space", "www.treasuremap.space"}),
}
"""The production hosts of each service (reference/apis.md). Their sandboxes are other hosts:
``hermes-dev.lco.global``, ``sandbox.wis-tns.org``, ``test.gcn.nasa.gov``, the local sandbox."""

MAX_DRILL_FILE_BYTES = 16 * 1024 * 1024
"""The largest alert file a drill reads (an LVK alert with its sky map is about 1 MB)."""


class DrillFenced(FollowupError):
    """A test or mock alert was about to reach a service that is not a sandbox."""


class DrillFileError(FollowupError, ValueError):
    """An alert file a drill may not read (outside the drills folder, missing, too large)."""


def is_production_url(url: str) -> bool:
    """True when ``url``'s host is a production host of LCO, HERMES, TNS or GCN."""
    host = (urlsplit(url if "//" in url else f"//{url}").hostname or "").lower().rstrip(".")
    return any(host in hosts for hosts in PRODUCTION_HOSTS.values())


def check_drill_fence(alert: Alert, *, service: str, url: str, sandbox_endpoints: bool) -> None:
    """Refuse to let a test or mock alert reach ``service`` at ``url`` unless it is a sandbox.

    A real alert always passes. A test alert passes only when ``sandbox_endpoints`` is set and
    ``url`` is not a production host.

    Args:
        alert: The alert the submission or report is for.
        service: ``LCO``, ``HERMES``, ``TNS`` or ``GCN`` (for the message).
        url: Root URL of the service the client will call.
        sandbox_endpoints: The settings' word that their services are sandboxes.

    Raises:
        DrillFenced: The alert is a test and the service is not (known to be) a sandbox.
    """
    if not alert.is_test:
        return
    if is_production_url(url):
        why = f"{service} at {url} is a production service"
    elif not sandbox_endpoints:
        why = (
            f"the settings do not say {service} at {url} is a sandbox "
            "(FollowupSettings.sandbox_endpoints is off)"
        )
    else:
        return
    reason = alert.extra.get("test_reason") or "a test or mock alert"
    raise DrillFenced(
        f"{alert.event_id} is a drill ({reason}) and {why}: test and mock alerts reach "
        "sandboxes only; nothing was sent"
    )


def read_drill_file(drills_dir: str | os.PathLike[str], name: str) -> bytes:
    """The bytes of the alert file ``name`` inside the drills folder.

    ``name`` is resolved against ``drills_dir`` with every symbolic link followed; the result
    must be a regular file inside the folder. Error messages name the file as given, never its
    content.

    Args:
        drills_dir: The configured drills folder (empty: none is configured).
        name: The file, relative to the folder (an absolute path must still lie inside it).

    Returns:
        The file's bytes.

    Raises:
        DrillFileError: No folder configured, the file lies outside it, is not a regular file,
            or is larger than :data:`MAX_DRILL_FILE_BYTES`.
    """
    if not str(drills_dir).strip():
        raise DrillFileError(
            "no drills folder is configured (ListenerSettings.drills_dir): a drill can publish "
            "a fresh mock alert, not a file"
        )
    root = Path(drills_dir).resolve()
    if not root.is_dir():
        raise DrillFileError(f"the drills folder {str(drills_dir)!r} does not exist")
    path = (root / name).resolve()
    if path == root or not path.is_relative_to(root):
        raise DrillFileError(f"{name!r} is outside the drills folder {str(drills_dir)!r}")
    try:
        # O_NOFOLLOW: a link swapped in after the check above is refused, not followed.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        raise DrillFileError(f"{name!r} is not a readable file in the drills folder") from None
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode) or status.st_size > MAX_DRILL_FILE_BYTES:
        os.close(fd)
        raise DrillFileError(
            f"{name!r} is not a regular file of at most {MAX_DRILL_FILE_BYTES} bytes"
        )
    with os.fdopen(fd, "rb") as handle:
        return handle.read(MAX_DRILL_FILE_BYTES + 1)
