"""Fuzz every parser: whatever the bytes, an Alert or an AlertParseError, never anything else.

LVK JSON and Avro, GCN JSON notices, VOEvents, Circulars (text and JSON) and sky maps are each
given mutations of real-format fixtures (values replaced, removed or added at any depth; bytes
flipped, inserted, deleted, truncated), and the whole ingest path is given arbitrary bytes and
headers: it must never raise. What each target tried is printed at the end of the run.
"""

from __future__ import annotations

import gzip
import json
import re
import uuid
from xml.sax.saxutils import quoteattr

import pytest
from hypothesis import given
from hypothesis import strategies as st

from followup.alerts import parse_message
from followup.alerts.mock import make_lvk_alert
from followup.exceptions import AlertParseError, SkymapError
from followup.ingest import Ingestor, MessageMeta
from followup.ledger import Ledger
from followup.models import Alert
from followup.rules import TriggerRules
from followup.skymap import read_skymap
from tests.alert_helpers import DATA, make_multiorder_skymap
from tests.fuzz.support import FUZZ, JSON, mangled, measure, mutated

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::astropy.io.fits.verify.VerifyWarning"),
    pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyUserWarning"),
]

PARSED = (AlertParseError,)


def _parse(name: str, raw: bytes, **kwargs: object) -> None:
    result = measure(name, lambda: parse_message(raw, **kwargs), PARSED)
    assert isinstance(result, Alert | AlertParseError)
    if isinstance(result, Alert):
        result.model_dump_json()  # what the ledger stores must serialise


def _fixtures(prefix: str, suffix: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted(DATA.glob(f"{prefix}*{suffix}"))]


LVK = [json.loads(raw) for raw in _fixtures("lvk-", ".json")]
NOTICES = [json.loads(raw) for raw in _fixtures("gcn-", ".json")]
VOEVENTS = _fixtures("voevent-", ".xml")
CIRCULAR_JSON = json.loads((DATA / "circular-41234.json").read_bytes())
CIRCULAR_TEXT = (DATA / "circular-41235.gcn3").read_bytes()
SKYMAP = make_multiorder_skymap(order=2)


@FUZZ
@given(st.sampled_from(LVK).flatmap(mutated))
def test_lvk_json(record: dict) -> None:
    _parse("LVK JSON", json.dumps(record).encode())


@pytest.fixture(scope="module")
def lvk_avro() -> bytes:
    try:
        return make_lvk_alert("S250101ab", form="avro", skymap=SKYMAP)
    except ImportError as exc:  # the Avro schema comes from a development dependency
        pytest.skip(str(exc))


@FUZZ
@given(data=st.data())
def test_lvk_avro(lvk_avro: bytes, data: st.DataObject) -> None:
    _parse("LVK Avro", data.draw(mangled(lvk_avro)))


@FUZZ
@given(st.sampled_from(NOTICES).flatmap(mutated), st.booleans())
def test_gcn_json(notice: dict, drop_schema: bool) -> None:
    if drop_schema and isinstance(notice, dict):
        notice.pop("$schema", None)
    _parse("GCN JSON notice", json.dumps(notice).encode(), topic="gcn.notices.fuzz")


@FUZZ
@given(st.sampled_from(VOEVENTS), st.data())
def test_voevent(raw: bytes, data: st.DataObject) -> None:
    text = raw.decode()
    values = re.findall(r'value="([^"]*)"', text)
    for old in data.draw(st.lists(st.sampled_from(values), max_size=4)) if values else []:
        new = data.draw(st.text(max_size=20) | st.sampled_from(["0", "-1", "1e999", "nan", ""]))
        text = text.replace(f'value="{old}"', f"value={quoteattr(new)}", 1)
    for tag in data.draw(
        st.lists(st.sampled_from(["C1", "C2", "Error2Radius", "ISOTime", "Date"]), max_size=3)
    ):
        new = data.draw(st.text(max_size=12) | st.sampled_from(["0", "0.0", "361", "-91", "nan"]))
        escaped = new.replace("&", "&amp;").replace("<", "&lt;")
        text = re.sub(
            f"<{tag}>[^<]*</{tag}>", lambda _, t=tag, e=escaped: f"<{t}>{e}</{t}>", text, count=1
        )
    raw = text.encode()
    if data.draw(st.booleans()):
        raw = data.draw(mangled(raw))
    _parse("VOEvent", raw)


@FUZZ
@given(st.data())
def test_circulars(data: st.DataObject) -> None:
    if data.draw(st.booleans()):
        raw = json.dumps(data.draw(mutated(CIRCULAR_JSON))).encode()
    else:
        raw = data.draw(mangled(CIRCULAR_TEXT))
        if data.draw(st.booleans()):
            header = data.draw(st.sampled_from([b"TITLE:", b"NUMBER:", b"SUBJECT:", b"DATE:"]))
            raw = header + data.draw(st.text(max_size=40)).encode() + b"\n" + raw
    _parse("GCN Circular", raw)


@FUZZ
@given(st.data())
def test_skymaps(data: st.DataObject) -> None:
    # Mutations in the headers (the first blocks) matter most: concentrate them there.
    head, body = SKYMAP[:5760], SKYMAP[5760:]
    raw = data.draw(mangled(head)) + (
        data.draw(mangled(body)) if data.draw(st.booleans()) else body
    )
    if data.draw(st.booleans()):
        raw = gzip.compress(raw, compresslevel=1)
        if data.draw(st.booleans()):
            raw = data.draw(mangled(raw))

    def area() -> float:
        return read_skymap(raw).area90

    result = measure("sky map (read + 90% area)", area, (SkymapError,))
    assert isinstance(result, float | SkymapError)


@pytest.fixture(scope="module")
def ingestor(tmp_path_factory: pytest.TempPathFactory) -> Ingestor:
    ledger = Ledger(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'ledger.db'}")
    ledger.migrate()

    def area(skymap: bytes) -> float:
        return read_skymap(skymap).area90

    return Ingestor(ledger, TriggerRules(max_area90_deg2=1000), area_fn=area)


HEADERS = st.lists(
    st.tuples(
        st.sampled_from(["_id", "_format", "_test", "_sender", "other"]),
        st.binary(max_size=20)
        | st.sampled_from([b"json", b"avro", b"voevent", b"circular", b"blob"]),
    ),
    max_size=4,
)


@FUZZ
@given(st.data(), HEADERS)
def test_ingest_never_raises(ingestor: Ingestor, data: st.DataObject, headers: list) -> None:
    sources = [
        st.binary(max_size=200),
        st.sampled_from(LVK).flatmap(mutated).map(lambda d: json.dumps(d).encode()),
        st.sampled_from(NOTICES).flatmap(mutated).map(lambda d: json.dumps(d).encode()),
        st.sampled_from(VOEVENTS).flatmap(mangled),
        JSON.map(lambda d: json.dumps(d).encode()),
    ]
    raw = data.draw(st.one_of(sources))
    headers = [*headers, ("_id", uuid.uuid4().bytes)]
    meta = MessageMeta(
        topic="fuzz", partition=0, offset=data.draw(st.integers(0, 10**9)), headers=headers
    )
    outcome = measure("ingest (store, parse, judge)", lambda: ingestor.handle(raw, meta), ())
    assert outcome.status.value in {"accepted", "rejected", "duplicate", "quarantined", "retracted"}
