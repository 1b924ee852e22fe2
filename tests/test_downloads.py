"""Downloads that cannot collide: the same or same-named frames, in threads and in two processes.

A small archive served over HTTP streams each file slowly, so that concurrent downloads of one
file overlap for sure. Two frames share a basename and differ in version (as the sandbox's do
across runs); one frame fails. Every download must end with the right bytes at its own cache path,
no partial file may be left or published, and the failing frame must not disturb the others,
neither here nor inside a Prefect flow (``flows.frames.download_frames``).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from followup.exceptions import NotFound
from followup.lco import ArchiveClient
from followup.models import Frame

BASENAME = "cpt1m010-fa14-20261205-0005-e91"
CHUNK = 4096
CHUNKS = 24


def _content(seed: str) -> bytes:
    block = hashlib.sha256(seed.encode()).digest()
    return (block * (CHUNK * CHUNKS // len(block) + 1))[: CHUNK * CHUNKS]


FILES = {f"{BASENAME}-v{v}": _content(f"{BASENAME}/{v}") for v in (101, 102)}
FILES["cpt1m010-fa14-20261205-0006-e91-v103"] = _content("other frame")


class _Archive(BaseHTTPRequestHandler):
    """``GET /download/<key>``: the file, streamed in slow chunks (Range honoured); else 404."""

    def do_GET(self) -> None:
        key = self.path.removeprefix("/download/").split("?")[0]
        data = FILES.get(key)
        if data is None:
            body = b'{"detail": "Not found."}'
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        start = int(self.headers.get("Range", "bytes=0-")[6:].split("-")[0] or 0)
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        for offset in range(start, len(data), CHUNK):
            self.wfile.write(data[offset : offset + CHUNK])
            self.wfile.flush()
            time.sleep(0.01)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def archive_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Archive)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def frame(url: str, key: str, frame_id: int) -> Frame:
    basename, version = key.rsplit("-v", 1)
    data = FILES.get(key, b"")
    return Frame(
        frame_id=frame_id,
        basename=basename,
        filename=f"{basename}.fits.fz",
        url=f"{url}/download/{key}?X-Amz-Signature=s{frame_id}",
        version_id=int(version),
        md5=hashlib.md5(data).hexdigest() if data else None,
    )


def frames(url: str) -> list[Frame]:
    """Two versions of one basename, another frame, and a frame the archive does not have."""
    keys = [*FILES, "cpt1m010-fa14-20261205-0009-e91-v104"]
    return [frame(url, key, i) for i, key in enumerate(keys, start=1)]


def download_all(url: str, dest: str, copies: int, start_at: float) -> dict[int, list[str]]:
    """Download every frame ``copies`` times at once; per frame, the paths or error classes.

    Runs in this process or in another one (spawned), against the same cache directory.
    """
    archive = ArchiveClient("token", base_url=url, max_resumes=0)
    work = [f for f in frames(url) for _ in range(copies)]
    time.sleep(max(0.0, start_at - time.time()))

    def one(item: Frame) -> tuple[int, str]:
        try:
            return item.frame_id, str(archive.download_frame(item, dest))
        except Exception as exc:
            return item.frame_id, type(exc).__name__

    with ThreadPoolExecutor(max_workers=len(work)) as pool:
        results = list(pool.map(one, work))
    outcome: dict[int, list[str]] = {}
    for frame_id, result in results:
        outcome.setdefault(frame_id, []).append(result)
    return outcome


def check(outcome: dict[int, list[str]], url: str, dest: Path) -> None:
    """Every good frame at its own cache path with its own bytes; the missing one NotFound."""
    *good, missing = frames(url)
    paths = set()
    for item in good:
        path = ArchiveClient.cache_path(item, dest)
        assert set(outcome[item.frame_id]) == {str(path)}, outcome[item.frame_id]
        assert hashlib.md5(path.read_bytes()).hexdigest() == item.md5
        paths.add(path)
    assert len(paths) == len(good)  # same basename, other version: another path
    assert set(outcome[missing.frame_id]) == {"NotFound"}
    leftovers = [p for p in dest.rglob("*") if p.is_file() and p not in paths]
    assert leftovers == []  # no part file left behind, none published


def test_threads_never_share_a_partial_file(archive_url: str, tmp_path: Path) -> None:
    outcome = download_all(archive_url, str(tmp_path), copies=4, start_at=time.time())
    check(outcome, archive_url, tmp_path)


def test_two_processes_never_share_a_partial_file(archive_url: str, tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 8.0  # both processes are up and importing done by then
    with context.Pool(2) as pool:
        runs = [
            pool.apply_async(download_all, (archive_url, str(tmp_path), 2, start_at))
            for _ in range(2)
        ]
        outcomes = [run.get(timeout=120) for run in runs]
    merged: dict[int, list[str]] = {}
    for outcome in outcomes:
        for frame_id, results in outcome.items():
            merged.setdefault(frame_id, []).extend(results)
    check(merged, archive_url, tmp_path)


def test_a_complete_file_is_never_replaced(archive_url: str, tmp_path: Path) -> None:
    good = frames(archive_url)[0]
    path = ArchiveClient.cache_path(good, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(FILES[f"{BASENAME}-v101"])
    before = path.stat().st_mtime_ns
    archive = ArchiveClient("token", base_url=archive_url)
    assert archive.download_frame(good, tmp_path) == path
    assert path.stat().st_mtime_ns == before


@pytest.mark.slow
def test_a_failed_frame_is_set_aside_without_cancelling_its_siblings(
    archive_url: str, tmp_path: Path, prefect_api: object
) -> None:
    from prefect import flow

    from flows.frames import download_frames

    @flow
    def fetch(items: list[Frame]) -> tuple[list[Frame], dict[int, str]]:
        archive = ArchiveClient("token", base_url=archive_url)
        return download_frames(archive, items, tmp_path)

    items = frames(archive_url)
    missing = items[-1]
    # The missing frame fails at once (NotFound is not retried) while its siblings still stream.
    downloaded, errors = fetch([missing, *items[:-1]])
    assert list(errors) == [missing.frame_id] and errors[missing.frame_id].startswith("NotFound")
    assert sorted(f.frame_id for f in downloaded) == sorted(f.frame_id for f in items[:-1])
    for item in downloaded:
        assert hashlib.md5(Path(item.local_path).read_bytes()).hexdigest() == item.md5
    with pytest.raises(NotFound):
        ArchiveClient("token", base_url=archive_url).download_frame(missing, tmp_path)
