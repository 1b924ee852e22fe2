"""Bounded decoding of untrusted bytes: inflation with a cap, FITS sizes read from the headers.

A message from Kafka or a file from a service decides how much memory its decoding takes unless
the decoder decides first. :func:`inflate` stops a gzip or deflate stream as soon as it passes a
limit (a 1 MB gzip can inflate to a GiB); :func:`fits_hdus` walks FITS headers without reading
their data, so that a reader can compare what a file declares with what it is willing to hold
before any table is allocated; :func:`avro_blocks` walks an Avro container's blocks and inflates
each within the same kind of limit before any record is decoded.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = [
    "FITS_BLOCK",
    "DecodeLimitExceeded",
    "FitsHdu",
    "avro_blocks",
    "fits_declared_end",
    "fits_hdus",
    "inflate",
]

FITS_BLOCK = 2880
"""Every FITS header and data unit is a whole number of 2880-byte blocks."""

_CHUNK = 1 << 20


class DecodeLimitExceeded(ValueError):
    """The decoded bytes would pass the caller's limit (a decompression bomb, or a huge file)."""


def inflate(
    data: bytes,
    *,
    limit: int,
    wbits: int = 31,
    check: Callable[[bytes], int | None] | None = None,
    what: str = "data",
    as_bytearray: bool = False,
) -> bytes | bytearray:
    """Inflate gzip (``wbits=31``), zlib (15) or raw deflate (-15) bytes, never past ``limit``.

    Args:
        data: The compressed bytes; concatenated gzip members are inflated one after the other.
        limit: Most bytes the result may have.
        wbits: The zlib window bits of the format.
        check: Called with the first bytes inflated (at least 64 KiB, or all of them); it may
            raise to refuse the content, or return a smaller limit (the size the content
            declares for itself).
        what: Names the data in messages.
        as_bytearray: Return the buffer the data were inflated into, saving a copy of it.

    Returns:
        The inflated bytes.

    Raises:
        DecodeLimitExceeded: The result would be larger than the limit.
        ValueError: The stream is corrupt or truncated (``zlib.error`` and EOF are translated).
    """
    out = bytearray()
    size = 0  # bytes inflated so far: out[:size]
    pending = memoryview(data)
    checked = check is None
    bound = limit
    while pending.nbytes:
        inflater = zlib.decompressobj(wbits)
        source = pending
        while True:
            try:
                chunk = inflater.decompress(source, _CHUNK)
            except zlib.error as exc:
                raise ValueError(f"{what}: corrupt compressed stream ({exc})") from None
            if size + len(chunk) > bound:
                raise DecodeLimitExceeded(
                    f"{what} inflates to more than {bound} bytes"
                    + (" (larger than its headers declare)" if bound < limit else "")
                    + f"; the limit is {limit} bytes"
                )
            if size + len(chunk) <= len(out):
                out[size : size + len(chunk)] = chunk
            else:
                del out[size:]
                out += chunk
            size += len(chunk)
            if not checked and (size >= 64 * 1024 or inflater.eof):
                checked = True
                declared = check(bytes(out[:size]))  # type: ignore[misc]
                if declared is not None and declared < bound:
                    bound = declared
                    if size > bound:
                        raise DecodeLimitExceeded(
                            f"{what} inflates to more than {bound} bytes (larger than its "
                            f"headers declare); the limit is {limit} bytes"
                        )
                    # The size is known: inflate into one buffer instead of growing one.
                    grown = bytearray(bound)
                    grown[:size] = out[:size]
                    out = grown
            if inflater.eof:
                break
            source = memoryview(inflater.unconsumed_tail)
            if not source.nbytes and not chunk:
                raise ValueError(f"{what}: truncated compressed stream")
        pending = memoryview(inflater.unused_data)
        if wbits != 31 or bytes(pending[:2]) != b"\x1f\x8b":
            break  # only gzip has members; trailing bytes of other formats are ignored
    del out[size:]
    return out if as_bytearray else bytes(out)


@dataclass(frozen=True, slots=True)
class FitsHdu:
    """One header-and-data unit, as its header declares it.

    Attributes:
        cards: The header's keyword values (first occurrence wins), as float, bool or str.
        header_start: Offset of the header's first block.
        data_start: Offset of the data (right after the header's END block).
        data_size: Bytes of data the header declares, padded to whole blocks.
    """

    cards: dict[str, str | float | bool]
    header_start: int
    data_start: int
    data_size: int

    @property
    def end(self) -> int:
        """Offset just past this unit's data."""
        return self.data_start + self.data_size


def fits_hdus(data: bytes | bytearray, *, max_blocks: int = 200) -> Iterator[FitsHdu]:
    """Walk the headers of a FITS file, skipping each data unit by its declared size.

    Stops at the end of ``data``, at a header without ``END`` within it, after ``max_blocks``
    header blocks, or at a header whose sizes cannot be read. The data itself is never read,
    so ``data`` may be just the first bytes of a file.

    Args:
        data: The file, or its beginning.
        max_blocks: Header blocks to read at most (a header of 36 cards is one block).

    Yields:
        One :class:`FitsHdu` per complete header.
    """
    offset, blocks = 0, 0
    if not data.startswith(b"SIMPLE  ="):
        return
    while offset + FITS_BLOCK <= len(data) and blocks < max_blocks:
        start = offset
        cards: dict[str, str | float | bool] = {}
        end = False
        while offset + FITS_BLOCK <= len(data) and blocks < max_blocks and not end:
            block = data[offset : offset + FITS_BLOCK]
            offset += FITS_BLOCK
            blocks += 1
            for i in range(0, FITS_BLOCK, 80):
                card = block[i : i + 80].decode("ascii", errors="replace")
                key = card[:8].strip()
                if key == "END":
                    end = True
                    break
                if card[8:10] == "= ":
                    cards.setdefault(key, _card_value(card[10:]))
        if not end:
            return
        size = _data_size(cards)
        if size is None:
            return
        yield FitsHdu(cards, start, offset, size)
        offset += size


def fits_declared_end(head: bytes | bytearray, *, limit: int, slack: int = 0) -> int | None:
    """Where a FITS file should end, from the headers in its first bytes, within ``limit``.

    Args:
        head: The first bytes of the file (at least its first headers).
        limit: Largest size accepted.
        slack: Bytes allowed after the last unit seen (units whose headers come later).

    Returns:
        The end of the last unit seen plus ``slack``; None when no header is complete yet.

    Raises:
        ValueError: Not a FITS file, or a tile-compressed image (its tiles would be inflated).
        DecodeLimitExceeded: A header declares more data than ``limit``.
    """
    if head[:6] != b"SIMPLE":
        raise ValueError("not a FITS file (does not start with SIMPLE)")
    hdus = list(fits_hdus(head))
    for hdu in hdus:
        if hdu.cards.get("ZIMAGE") is True:
            raise ValueError("a tile-compressed image is not a table")
        if hdu.end > limit:
            raise DecodeLimitExceeded(
                f"the FITS headers declare {hdu.end} bytes, larger than {limit}"
            )
    return hdus[-1].end + slack if hdus else None


def _data_size(cards: dict[str, str | float | bool]) -> int | None:
    """Bytes of data a header declares (BITPIX, NAXISn, PCOUNT, GCOUNT), padded to blocks."""
    try:
        bitpix = abs(int(float(cards.get("BITPIX", 8))))
        naxis = int(float(cards.get("NAXIS", 0)))
        size = 0
        if naxis:
            size = 1
            for axis in range(1, naxis + 1):
                size *= int(float(cards.get(f"NAXIS{axis}", 0)))
        size = (size + int(float(cards.get("PCOUNT", 0)))) * int(float(cards.get("GCOUNT", 1)))
    except (TypeError, ValueError, OverflowError):
        return None
    if size < 0 or naxis < 0:
        return None
    size = size * bitpix // 8
    return -(-size // FITS_BLOCK) * FITS_BLOCK


def _card_value(text: str) -> str | float | bool:
    text = text.strip()
    if text.startswith("'"):
        end = text.find("'", 1)
        while end != -1 and text[end + 1 : end + 2] == "'":
            end = text.find("'", end + 2)
        return text[1 : end if end != -1 else None].replace("''", "'").rstrip()
    value = text.split("/", 1)[0].strip()
    if value == "T":
        return True
    if value == "F":
        return False
    try:
        return float(value.replace("D", "E"))
    except ValueError:
        return value


# ------------------------------------------------------------------------------------ Avro


def avro_blocks(data: bytes, *, limit: int) -> int:
    """Check an Avro container's blocks: known codec, sizes that add up, inflated within a limit.

    The container is the magic ``Obj`` and version byte 1, a metadata map (``avro.schema``,
    ``avro.codec``), a 16-byte sync marker, then blocks of (record count, byte size, bytes, sync
    marker). Deflate blocks are inflated here, one at a time and never past what is left of
    ``limit``, so that the reader that decodes the records afterwards is handed nothing larger.

    Args:
        data: The container.
        limit: Most bytes all blocks may hold once inflated.

    Returns:
        The bytes all blocks hold once inflated.

    Raises:
        DecodeLimitExceeded: The blocks hold more than ``limit`` bytes.
        ValueError: Not a container, a codec other than ``null`` or ``deflate``, a block
            larger than the data, or a sync marker out of place.
    """
    reader = _AvroReader(data)
    if reader.take(4) != b"Obj\x01":
        raise ValueError("not an Avro container")
    meta: dict[str, bytes] = {}
    while True:
        count = reader.long()
        if count == 0:
            break
        if count < 0:
            count = -count
            reader.long()  # the byte size of the block of entries
        for _ in range(count):
            key = reader.take(reader.long()).decode("utf-8", errors="replace")
            meta[key] = reader.take(reader.long())
    codec = meta.get("avro.codec", b"null").decode("ascii", errors="replace")
    if codec not in ("null", "deflate"):
        raise ValueError(f"Avro codec {codec!r} is not accepted (null or deflate)")
    json.loads(meta.get("avro.schema", b"null") or b"null")  # a schema that is JSON
    sync = reader.take(16)
    total = 0
    while not reader.at_end():
        if reader.long() < 0:
            raise ValueError("negative record count in an Avro block")
        size = reader.long()
        if size < 0 or size > reader.left():
            raise ValueError(f"Avro block of {size} bytes in {reader.left()} bytes")
        block = reader.take(size)
        if codec == "deflate":
            total += len(inflate(block, limit=limit - total, wbits=-15, what="Avro block"))
        else:
            total += size
        if total > limit:
            raise DecodeLimitExceeded(f"Avro blocks hold more than {limit} bytes")
        if reader.take(16) != sync:
            raise ValueError("Avro sync marker out of place")
    return total


class _AvroReader:
    """Reads Avro's zig-zag varints and byte runs from a buffer, refusing to read past it."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise ValueError("truncated Avro container")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def long(self) -> int:
        shift, value = 0, 0
        while True:
            if self.pos >= len(self.data) or shift > 63:
                raise ValueError("truncated or overlong Avro integer")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return (value >> 1) ^ -(value & 1)
            shift += 7
