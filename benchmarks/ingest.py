"""Ingest throughput: messages per second from a real Tansu topic through parse, filter and store.

Two figures, each from a topic preloaded before the clock starts and consumed by
``followup.stream.AlertStream`` with ``followup.ingest.Ingestor.handle_batch`` into a fresh ledger:

* small GCN JSON notices (50,000; ``--quick``: 5,000), half of them refused by the rules;
* LVK ``igwn.gwalert`` JSON alerts, each with a realistic base64 multi-order sky map (~1 MB on
  the wire), half of them not significant. 50,000 such alerts would be 50 GB in the broker's
  memory and the ledger, so 500 are used (``--quick``: 100).

The clock runs from ``run()`` to the last batch stored (consumer start-up included). Refused
alerts must create nothing downstream: the "started" counter stands for the follow-up runs the
listener would start and must equal the number of accepted alerts.

Usage: ``python benchmarks/ingest.py [--quick] [--notices N] [--lvk N] [--ledger URL]``
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from followup.alerts.mock import make_gcn_notice, make_lvk_alert
from followup.ingest import Ingestor, IngestStatus
from followup.ledger import Ledger
from followup.rules import TriggerRules
from followup.stream import AlertStream, Publisher
from sandbox.broker import TansuBroker


def realistic_skymap(rows: int = 19_200, seed: int = 0) -> bytes:
    """A BAYESTAR-like multi-order map: ~``rows`` NUNIQ pixels refined around a Gaussian blob."""
    import astropy_healpix as ah
    from astropy import units as u
    from astropy.io import fits
    from astropy.table import Table

    rng = np.random.default_rng(seed)
    ra0, dec0, sigma = rng.uniform(0, 2 * np.pi), rng.uniform(-1, 1), np.deg2rad(3.0)

    def density(order: np.ndarray, ipix: np.ndarray) -> np.ndarray:
        lon = np.empty(len(ipix))
        lat = np.empty(len(ipix))
        for level in np.unique(order):
            sel = order == level
            lo, la = ah.healpix_to_lonlat(ipix[sel], 2 ** int(level), order="nested")
            lon[sel], lat[sel] = lo.to_value(u.rad), la.to_value(u.rad)
        cos_d = np.sin(lat) * np.sin(dec0) + np.cos(lat) * np.cos(dec0) * np.cos(lon - ra0)
        return np.exp(-0.5 * (np.arccos(np.clip(cos_d, -1, 1)) / sigma) ** 2) + 1e-9

    order = np.full(768, 3)
    ipix = np.arange(768)
    while len(ipix) + 3 <= rows:
        rho = density(order, ipix)
        k = min((rows - len(ipix)) // 3, max(1, len(ipix) // 4))
        refine = np.argsort(rho * (order < 12))[-k:]
        keep = np.ones(len(ipix), bool)
        keep[refine] = False
        children = (4 * ipix[refine][:, None] + np.arange(4)).ravel()
        order = np.concatenate([order[keep], np.repeat(order[refine] + 1, 4)])
        ipix = np.concatenate([ipix[keep], children])
    rho = density(order, ipix)
    area = 4 * np.pi / (12 * 4.0**order)
    rho /= (rho * area).sum()
    table = Table(
        {
            "UNIQ": (4 * 4**order + ipix).astype(np.int64),
            "PROBDENSITY": rho,
            "DISTMU": np.full(len(ipix), 180.0),
            "DISTSIGMA": np.full(len(ipix), 45.0),
            "DISTNORM": np.full(len(ipix), 1 / (180.0**2 + 45.0**2)),
        }
    )
    hdu = fits.table_to_hdu(table)
    for key, value in {
        "PIXTYPE": "HEALPIX",
        "ORDERING": "NUNIQ",
        "COORDSYS": "C",
        "MOCORDER": int(order.max()),
        "INDXSCHM": "EXPLICIT",
        "MOC": True,
        "DISTMEAN": 180.0,
        "DISTSTD": 45.0,
    }.items():
        hdu.header[key] = value
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buffer)
    return buffer.getvalue()


def area_function() -> Any:
    """followup.skymap's 90% area, when the module is installed."""
    try:
        from followup import skymap  # type: ignore[attr-defined]
    except ImportError:
        return None
    reader = getattr(skymap, "read_skymap", None)
    if reader is None:
        return None
    return lambda data: reader(data).area(0.9)


def consume(
    broker: TansuBroker, topic: str, expected: int, ledger_url: str, rules: TriggerRules,
    batch_size: int, area_fn: Any = None,
) -> dict[str, Any]:  # fmt: skip
    ledger = Ledger(ledger_url)
    ledger.migrate()
    ingestor = Ingestor(ledger, rules, area_fn=area_fn)
    stop = threading.Event()
    counts: Counter[str] = Counter()
    started: list[str] = []  # stands for the follow-up runs the listener would start
    first: list[float] = []
    last = [0.0]

    def after_batch(outcomes: list[Any], committed: bool) -> None:
        if not first:
            first.append(time.perf_counter())
        for outcome in outcomes:
            counts[outcome.status.value] += 1
            if outcome.status is IngestStatus.ACCEPTED:
                started.append(outcome.event_id)
        last[0] = time.perf_counter()
        if sum(counts.values()) >= expected:
            stop.set()

    stream = AlertStream(broker.url(), [topic], f"bench-{topic}", batch_size=batch_size,
                         poll_timeout_s=0.05)  # fmt: skip
    begin = time.perf_counter()
    timer = threading.Timer(3600, stop.set)
    timer.start()
    try:
        stats = stream.run(batch_handler=ingestor.handle_batch, after_batch=after_batch, stop=stop)
    finally:
        timer.cancel()
    elapsed = last[0] - begin
    ledger.dispose()
    return {
        "messages": sum(counts.values()),
        "seconds": elapsed,
        "rate": sum(counts.values()) / elapsed,
        "rate_after_first_batch": (sum(counts.values()) / (last[0] - first[0]))
        if first and last[0] > first[0]
        else math.nan,
        "counts": dict(counts),
        "started": len(started),
        "batches": stats.batches,
    }


def preload(broker: TansuBroker, topic: str, payloads: list[bytes]) -> float:
    begin = time.perf_counter()
    with Publisher(broker.url(), produce_timeout_s=120) as publisher:
        for raw in payloads:
            publisher.send(raw, topic=topic)
    return len(payloads) / (time.perf_counter() - begin)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 notices and 100 LVK alerts")
    parser.add_argument("--notices", type=int, default=None)
    parser.add_argument("--lvk", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--ledger", default=None, help="ledger URL (default: SQLite in a tmp dir)")
    args = parser.parse_args()
    n_notices = args.notices or (5_000 if args.quick else 50_000)
    n_lvk = args.lvk or (100 if args.quick else 500)

    with (
        tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp,
        TansuBroker(topics=["gcn.notices.bench", "igwn.gwalert.bench"], partitions=1) as broker,
    ):
        notices = [
            make_gcn_notice(
                "swift/bat/Guano", event_id=str(700_000_000 + i), far=1e-8 if i % 2 else 1e-3
            )
            for i in range(n_notices)
        ]
        preload_rate = preload(broker, "gcn.notices.bench", notices)
        del notices
        url = args.ledger or f"sqlite:///{Path(tmp) / 'notices.db'}"
        small = consume(broker, "gcn.notices.bench", n_notices, url,
                        TriggerRules(max_far_hz=1e-6), args.batch_size)  # fmt: skip

        skymap = realistic_skymap()
        alerts = [
            make_lvk_alert(f"S2501{i % 28 + 1:02d}x{i}", skymap=skymap, significant=bool(i % 2))
            for i in range(n_lvk)
        ]
        alert_bytes = len(alerts[0])
        preload_lvk = preload(broker, "igwn.gwalert.bench", alerts)
        del alerts
        area_fn = area_function()
        rules = TriggerRules(max_area90_deg2=1000) if area_fn else TriggerRules()
        url = args.ledger or f"sqlite:///{Path(tmp) / 'lvk.db'}"
        big = consume(broker, "igwn.gwalert.bench", n_lvk, url, rules,
                      min(args.batch_size, 50), area_fn)  # fmt: skip

    ok = True
    for result, n, expect_accepted in (
        (small, n_notices, n_notices // 2),
        (big, n_lvk, n_lvk // 2),
    ):
        if result["counts"].get(IngestStatus.ACCEPTED, 0) != expect_accepted:
            ok = False
        if (
            result["started"] != result["counts"].get(IngestStatus.ACCEPTED, 0)
            or result["messages"] != n
        ):
            ok = False
    dialect = (args.ledger or "sqlite").split(":", 1)[0].split("+", 1)[0]
    print(f"ingest benchmark (Tansu on 127.0.0.1, {dialect} ledger, batch {args.batch_size})")
    print(
        f"  GCN JSON notices: {small['rate']:,.0f} messages/s "
        f"({small['messages']:,} in {small['seconds']:.2f} s; "
        f"{small['rate_after_first_batch']:,.0f}/s after the first batch; preload {preload_rate:,.0f}/s)"
    )
    print(f"    outcomes {small['counts']}; follow-ups started {small['started']}")
    print(
        f"  LVK alerts with sky maps ({alert_bytes / 1e6:.2f} MB each): {big['rate']:,.1f} alerts/s "
        f"({big['messages']:,} in {big['seconds']:.2f} s; preload {preload_lvk:,.0f}/s; "
        f"90% area {'computed by followup.skymap' if area_fn else 'not computed (no followup.skymap)'})"
    )
    print(f"    outcomes {big['counts']}; follow-ups started {big['started']}")
    print(
        f"  targets: >= 5,000 notices/s, >= 50 sky-map alerts/s; checks {'passed' if ok else 'FAILED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
