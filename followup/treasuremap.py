"""The Gravitational Wave Treasure Map: where teams share the pointings of a GW follow-up.

Its REST API (TheTreasureMap/gwtm, ``/api/v0``; the ``gwtm-api`` client on PyPI wraps it but
brings healpy, ligo.skymap and matplotlib, so this is a small client of the same endpoints):

* ``POST api/v0/pointings`` with ``{"graceid", "api_token", "pointings": [...]}``: each pointing
  has ``ra``, ``dec``, ``instrumentid``, ``band`` (a name of GWTM's bandpass list: ``u g r i z``,
  ``U B V R I``...), ``time`` (``%Y-%m-%dT%H:%M:%S.%f``), ``status`` (``planned`` or
  ``completed``), ``depth`` with ``depth_unit`` (``ab_mag``...; the unit is always required, the
  depth when completed) and ``pos_angle``. A planned pointing is completed by posting its ``id``
  with ``status: completed``, the time and the depth reached. The answer is
  ``{"pointing_ids": [...], "ERRORS": [["Object: <json>", [messages]]...], "WARNINGS": [...]}``:
  the valid pointings are stored, in order, and each refused one is listed with its reasons.
* ``POST api/v0/update_pointings`` with ``{"api_token", "status": "cancelled", "ids": "[1, 2]"}``
  cancels planned pointings (only planned ones, only the submitter's).
* ``GET api/v0/pointings`` with ``{"api_token", "graceid", ...}`` lists pointings.

The token travels in the JSON body, as the API reads it, and is scrubbed from every message like
the other clients' credentials. The API answers a refused request (no token, an unknown token or
graceid, a malformed list) with HTTP 500 and a plain-text reason: those reasons are read here as
the refusals they are (:class:`AuthenticationError`, :class:`RequestRejected`); any other 500 is
left to the error table of :mod:`followup.http`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import httpx
from pydantic import BaseModel, Field, SecretStr

from followup.exceptions import AuthenticationError, RequestRejected, UncertainOutcome
from followup.http import ServiceClient, required_secret
from followup.ledger import Ledger, PointingRow

__all__ = [
    "GWTM_BANDS",
    "TREASUREMAP_URL",
    "FieldPointing",
    "Pointing",
    "PointingStatus",
    "PointingsReceipt",
    "RemotePointing",
    "TreasureMapClient",
    "gwtm_band",
    "share_pointings",
]

TREASUREMAP_URL = "https://treasuremap.space/"

GWTM_BANDS: Mapping[str, str] = {
    "up": "u",
    "gp": "g",
    "rp": "r",
    "ip": "i",
    "zs": "z",
    "U": "U",
    "B": "B",
    "V": "V",
    "R": "R",
    "I": "I",
}
"""GWTM bandpass names (``server/core/enums/bandpass.py``) by LCO filter code. LCO's ``w`` and
``Y`` have no GWTM band of their own."""

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
_AUTH_REFUSALS = ("api_token is required", "invalid api_token")
_REFUSALS = (
    "graceid is required",
    "invalid graceid",
    "invalid request",
    "id or ids of pointing event is required",
    "planned status can only be updated",
    "there was a problem reading your list of ids",
    "endpoint only accepts json",
    "invalid arguments",
)


def gwtm_band(code: str) -> str:
    """The GWTM band name of an LCO filter code.

    Raises:
        ValueError: The filter has no GWTM band.
    """
    try:
        return GWTM_BANDS[code]
    except KeyError:
        raise ValueError(f"LCO filter {code!r} has no Treasure Map band") from None


class PointingStatus(StrEnum):
    """A pointing's state on the Treasure Map."""

    PLANNED = "planned"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class Pointing(BaseModel):
    """A pointing to post: a new one (planned or completed), or the completion of a planned one.

    Attributes:
        ra: Field centre, ICRS degrees (new pointings).
        dec: Field centre, ICRS degrees (new pointings).
        instrumentid: The Treasure Map's id of the instrument (new pointings).
        band: GWTM band name (``r``).
        time: When it is planned or was observed (UTC).
        status: ``planned`` or ``completed``.
        depth: Limiting magnitude (planned: expected; completed: reached).
        depth_unit: ``ab_mag``.
        pos_angle: Position angle of the field in degrees.
        id: The planned pointing's Treasure Map id, to complete it.
    """

    ra: float | None = Field(default=None, ge=0, lt=360)
    dec: float | None = Field(default=None, ge=-90, le=90)
    instrumentid: int | None = None
    band: str | None = None
    time: datetime
    status: PointingStatus = PointingStatus.PLANNED
    depth: float | None = None
    depth_unit: str = "ab_mag"
    pos_angle: float | None = 0.0
    id: int | None = None

    def to_payload(self) -> dict[str, Any]:
        """The pointing as the API takes it."""
        time = self.time.astimezone(UTC).replace(tzinfo=None).strftime(_TIME_FORMAT)
        if self.id is not None:
            body: dict[str, Any] = {
                "id": self.id,
                "status": self.status.value,
                "time": time,
                "depth_unit": self.depth_unit,
            }
            if self.depth is not None:
                body["depth"] = self.depth
            return body
        if self.ra is None or self.dec is None or self.instrumentid is None or not self.band:
            raise ValueError("a new pointing needs ra, dec, instrumentid and band")
        if self.status is PointingStatus.CANCELLED:
            raise ValueError("a pointing is cancelled with cancel_pointings, not posted")
        body = {
            "ra": self.ra,
            "dec": self.dec,
            "instrumentid": self.instrumentid,
            "band": self.band,
            "time": time,
            "status": self.status.value,
            "depth_unit": self.depth_unit,
        }
        if self.depth is not None:
            body["depth"] = self.depth
        if self.pos_angle is not None:
            body["pos_angle"] = self.pos_angle
        return body


class PointingsReceipt(BaseModel):
    """What the Treasure Map answered to posted pointings, one entry per pointing posted.

    Attributes:
        ids: The id given to each pointing, None where it was refused.
        errors: The reasons of each refused pointing, by its index in the post.
        warnings: The API's warnings, as given.
    """

    ids: list[int | None]
    errors: dict[int, list[str]] = Field(default_factory=dict)
    warnings: list[Any] = Field(default_factory=list)


class RemotePointing(BaseModel):
    """A pointing as the Treasure Map lists it."""

    id: int
    status: str
    ra: float | None = None
    dec: float | None = None
    instrumentid: int | None = None
    band: str | None = None
    depth: float | None = None
    depth_unit: str | None = None
    time: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> RemotePointing:
        """Read one listed pointing (``position`` is ``POINT(ra dec)``)."""
        ra = dec = None
        position = item.get("position")
        if isinstance(position, str) and position.upper().startswith("POINT"):
            inside = position[position.index("(") + 1 : position.rindex(")")].split()
            ra, dec = float(inside[0]), float(inside[1])
        return cls(
            id=int(item["id"]),
            status=str(item.get("status", "")),
            ra=ra,
            dec=dec,
            instrumentid=item.get("instrumentid"),
            band=None if item.get("band") is None else str(item["band"]),
            depth=item.get("depth"),
            depth_unit=None if item.get("depth_unit") is None else str(item["depth_unit"]),
            time=item.get("time"),
            raw=dict(item),
        )


def _object_of(entry: Any) -> Any:
    """The pointing JSON an ``ERRORS`` entry quotes (``"Object: {...}"``), or None."""
    if isinstance(entry, list | tuple) and entry and isinstance(entry[0], str):
        text = entry[0]
        if text.startswith("Object: "):
            try:
                return json.loads(text[len("Object: ") :])
            except ValueError:
                return None
    return None


def _reasons(entry: Any) -> list[str]:
    if isinstance(entry, list | tuple) and len(entry) > 1:
        detail = entry[1]
        return [str(d) for d in detail] if isinstance(detail, list) else [str(detail)]
    return [str(entry)]


class TreasureMapClient(ServiceClient):
    """Client of the Treasure Map's pointings API.

    Args:
        api_token: The account's API token.
        base_url: :data:`TREASUREMAP_URL` or a sandbox URL.
        api_version: ``v0``.
        timeout: Seconds for connect, read and write.
        transport: An httpx transport to use instead of the network.
    """

    service = "Treasure Map"

    def __init__(
        self,
        api_token: SecretStr | str,
        *,
        base_url: str = TREASUREMAP_URL,
        api_version: str = "v0",
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        token = required_secret(api_token, "a Treasure Map API token")
        self._token = token
        self._prefix = f"api/{api_version}"
        super().__init__(base_url, timeout=timeout, transport=transport, secrets=[token])

    def _call(
        self, method: str, endpoint: str, body: dict[str, Any], *, operation: str, creates: bool
    ) -> httpx.Response:
        """One call with the token in the JSON body; the API's 500 refusals read as refusals."""
        token = getattr(self, "_token", None)  # a copy pickled for another process has none
        if token is None:
            raise AuthenticationError(
                f"{self.service} {operation}: this copy of the client carries no token",
                operation=operation,
            )
        response = self._request(
            method,
            f"{self._prefix}/{endpoint}",
            operation=operation,
            creates=creates,
            passthrough=(500,),
            json={**body, "api_token": token.get_secret_value()},
        )
        if response.status_code != 500:
            return response
        text = self._text(response).strip().strip('"')
        lower = text.lower()
        url = self._url(response.request.url)
        if any(lower.startswith(r) for r in _AUTH_REFUSALS):
            cls: type = AuthenticationError
        elif any(lower.startswith(r) for r in _REFUSALS):
            cls = RequestRejected
        else:
            raise self._status_error(response, operation=operation, creates=creates)
        raise self._error(
            cls,
            f"{self.service} {operation}: HTTP 500 from {method} {url}: {text}",
            operation=operation,
            url=url,
            status_code=500,
            body=text,
        )

    def post_pointings(self, graceid: str, pointings: Sequence[Pointing]) -> PointingsReceipt:
        """Post new pointings, or completions of planned ones, for one GW event.

        Returns:
            The id of each pointing (None where refused, with its reasons in ``errors``).

        Raises:
            ValueError: A pointing cannot be posted (checked before sending).
            AuthenticationError: No or an unknown token.
            RequestRejected: An unknown graceid.
            UncertainOutcome: The answer was lost or cannot be read: some may be stored.
        """
        if not pointings:
            return PointingsReceipt(ids=[])
        payloads = [p.to_payload() for p in pointings]
        operation = "post_pointings"
        response = self._call(
            "POST",
            "pointings",
            {"graceid": graceid, "pointings": payloads},
            operation=operation,
            creates=True,
        )
        body = self._json(response, operation=operation, creates=True)
        ids = body.get("pointing_ids")
        if not isinstance(ids, list):
            raise UncertainOutcome(
                f"{self.service} {operation}: answer without pointing_ids; pointings may be stored",
                operation=operation,
                status_code=response.status_code,
                url=self._url(response.request.url),
                body=self._scrub(body),
            )
        errors: dict[int, list[str]] = {}
        unmatched = list(range(len(payloads)))
        for entry in body.get("ERRORS") or []:
            quoted = _object_of(entry)
            index = next((i for i in unmatched if payloads[i] == quoted), None)
            if index is None:  # the refused one cannot be told apart: nothing can be matched
                raise UncertainOutcome(
                    f"{self.service} {operation}: a refusal that names no posted pointing: "
                    f"{self._scrub(str(entry))[:300]}",
                    operation=operation,
                    status_code=response.status_code,
                    url=self._url(response.request.url),
                    body=self._scrub(body),
                )
            unmatched.remove(index)
            errors[index] = _reasons(entry)
        if len(ids) != len(unmatched):
            raise UncertainOutcome(
                f"{self.service} {operation}: {len(ids)} ids for {len(unmatched)} accepted "
                "pointings",
                operation=operation,
                status_code=response.status_code,
                url=self._url(response.request.url),
                body=self._scrub(body),
            )
        given: list[int | None] = [None] * len(payloads)
        for index, remote_id in zip(unmatched, ids, strict=True):
            given[index] = int(remote_id)
        return PointingsReceipt(ids=given, errors=errors, warnings=body.get("WARNINGS") or [])

    def cancel_pointings(self, ids: Sequence[int]) -> int:
        """Cancel planned pointings; returns how many the Treasure Map says it updated.

        Raises:
            AuthenticationError: No or an unknown token.
            RequestRejected: A malformed list.
        """
        if not ids:
            return 0
        response = self._call(
            "POST",
            "update_pointings",
            {"status": "cancelled", "ids": json.dumps([int(i) for i in ids])},
            operation="cancel_pointings",
            creates=False,
        )
        text = response.text.strip().strip('"')
        words = text.split()
        return int(words[1]) if len(words) > 1 and words[1].isdigit() else 0

    def get_pointings(
        self, graceid: str, *, status: PointingStatus | None = None
    ) -> list[RemotePointing]:
        """The pointings of one GW event (all teams'), optionally of one status."""
        body: dict[str, Any] = {"graceid": graceid}
        if status is not None:
            body["status"] = status.value
        response = self._call("GET", "pointings", body, operation="get_pointings", creates=False)
        items = self._json(response, operation="get_pointings", kind=list)
        return [RemotePointing.from_api(item) for item in items]


# ------------------------------------------------------------------------------- sharing
class FieldPointing(BaseModel):
    """One field and band as the follow-up knows it, to share on the Treasure Map.

    Attributes:
        target_name: The field (target) name.
        ra: Field centre, ICRS degrees.
        dec: Field centre, ICRS degrees.
        band: LCO filter code.
        camera: LCO camera name (``Sinistro``), looked up in the instrument ids.
        status: What is known: planned (requested), completed (observed, with its depth) or
            cancelled (the request was cancelled, expired or declined).
        planned_time: When it may be observed (the request window's start).
        observed_time: When it was observed.
        depth: 5-sigma AB depth reached, for a completed field.
    """

    target_name: str
    ra: float
    dec: float
    band: str
    camera: str = "Sinistro"
    status: PointingStatus = PointingStatus.PLANNED
    planned_time: datetime | None = None
    observed_time: datetime | None = None
    depth: float | None = None


def _problem(field: FieldPointing, instrument_ids: Mapping[str, int]) -> str | None:
    if field.camera not in instrument_ids:
        return f"no Treasure Map instrument id for camera {field.camera!r}"
    if field.band not in GWTM_BANDS:
        return f"LCO filter {field.band!r} has no Treasure Map band"
    return None


def share_pointings(
    ledger: Ledger,
    client: TreasureMapClient,
    event_id: str,
    fields: Sequence[FieldPointing],
    *,
    instrument_ids: Mapping[str, int],
) -> list[PointingRow]:
    """Bring the event's pointings on the Treasure Map up to what the follow-up knows.

    A requested field is posted as planned; an observed one completes its planned pointing
    with the depth reached (or is posted as completed when it was never planned); a cancelled
    request cancels its planned pointing. The ledger keeps one row per field and band with the
    Treasure Map's id, so calling this again posts only what changed. A pointing the Treasure
    Map refuses keeps the reason in ``error`` and is not posted again.

    Args:
        ledger: The ledger.
        client: The Treasure Map client.
        event_id: The GW event (its graceid).
        fields: Every field and band of the event, with what is known of it.
        instrument_ids: Treasure Map instrument id by camera name.

    Returns:
        The event's pointings after the update.

    Raises:
        ServiceError: The Treasure Map failed (the ledger keeps what was stored before).
    """
    new: list[tuple[PointingRow, Pointing]] = []
    completions: list[tuple[PointingRow, Pointing, FieldPointing]] = []
    cancels: list[PointingRow] = []
    for field in fields:
        row, _ = ledger.pointings.record(
            event_id,
            field.target_name,
            field.band,
            camera=field.camera,
            ra=field.ra,
            dec=field.dec,
            planned_time=field.planned_time,
        )
        if row.error or row.status in (PointingStatus.CANCELLED, PointingStatus.COMPLETED):
            continue
        problem = _problem(field, instrument_ids)
        if problem:
            ledger.pointings.update(row.id, error=problem)
            continue
        done = field.status is PointingStatus.COMPLETED and field.depth is not None
        if field.status is PointingStatus.CANCELLED:
            if row.remote_id is None:
                ledger.pointings.update(row.id, status=PointingStatus.CANCELLED.value)
            else:
                cancels.append(row)
        elif row.remote_id is None:
            when = (field.observed_time if done else field.planned_time) or field.observed_time
            if when is None:
                continue
            new.append(
                (
                    row,
                    Pointing(
                        ra=field.ra,
                        dec=field.dec,
                        instrumentid=instrument_ids[field.camera],
                        band=gwtm_band(field.band),
                        time=when,
                        status=PointingStatus.COMPLETED if done else PointingStatus.PLANNED,
                        depth=field.depth if done else None,
                    ),
                )
            )
        elif done and field.observed_time is not None:
            completions.append(
                (
                    row,
                    Pointing(
                        id=row.remote_id,
                        time=field.observed_time,
                        status=PointingStatus.COMPLETED,
                        depth=field.depth,
                    ),
                    field,
                )
            )
    if new:
        receipt = client.post_pointings(event_id, [p for _, p in new])
        for index, (row, pointing) in enumerate(new):
            remote_id = receipt.ids[index]
            if remote_id is None:
                reasons = "; ".join(receipt.errors.get(index, ["refused"]))
                ledger.pointings.update(row.id, error=reasons[:2000])
                continue
            completed = pointing.status is PointingStatus.COMPLETED
            ledger.pointings.update(
                row.id,
                remote_id=remote_id,
                status=pointing.status.value,
                depth=pointing.depth,
                observed_time=pointing.time if completed else None,
            )
    if completions:
        receipt = client.post_pointings(event_id, [p for _, p, _ in completions])
        for index, (row, pointing, _) in enumerate(completions):
            if receipt.ids[index] is None:
                reasons = "; ".join(receipt.errors.get(index, ["refused"]))
                ledger.pointings.update(row.id, error=reasons[:2000])
                continue
            ledger.pointings.update(
                row.id,
                status=PointingStatus.COMPLETED.value,
                depth=pointing.depth,
                observed_time=pointing.time,
            )
    if cancels:
        client.cancel_pointings([r.remote_id for r in cancels if r.remote_id is not None])
        for row in cancels:
            ledger.pointings.update(row.id, status=PointingStatus.CANCELLED.value)
    return ledger.pointings.for_event(event_id)
