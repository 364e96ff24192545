"""The pass-through streams: CRC32C as GCS computes it, and write-behind that keeps order, bounds
memory and never writes past a failure."""

from __future__ import annotations

import base64
import io
import threading
from typing import Any

import google_crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmsflow.envelope.streams import ChecksumReader, crc32c_of, write_behind, write_through

MiB = 1 << 20


def test_crc32c_is_gcs_encoding() -> None:
    # GCS's documented value for an empty object is "AAAAAA=="; for b"hello" it is "mnG7TA==".
    assert crc32c_of(b"") == "AAAAAA=="
    assert crc32c_of(b"hello") == base64.b64encode(google_crc32c.value(b"hello").to_bytes(4, "big")).decode()
    assert crc32c_of(b"hello") == "mnG7TA=="


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3 * MiB), min_size=1, max_size=8))
def test_write_behind_keeps_order(sizes: list[int]) -> None:
    pieces = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    out = io.BytesIO()
    with write_behind(out, checksum=True) as sink:
        for piece in pieces:
            sink.write(piece)
    whole = b"".join(pieces)
    assert out.getvalue() == whole
    assert sink.count == len(whole) and sink.crc32c() == crc32c_of(whole)
    reader = ChecksumReader(io.BytesIO(whole))
    reader.drain()
    assert reader.count == len(whole) and reader.crc32c() == crc32c_of(whole)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2 * MiB), min_size=1, max_size=10))
def test_write_behind_to_a_file_keeps_order(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int]
) -> None:
    """A local file gets whole batches through its descriptor (``os.writev``): small pieces the
    file object buffered before the thread started must still come first."""
    path = tmp_path_factory.mktemp("wb") / "out"
    pieces = [bytes([i % 251]) * n for i, n in enumerate([7, *sizes, 5 * MiB, 3])]
    with open(path, "wb") as f, write_behind(f) as behind:
        for piece in pieces:
            behind.write(piece)
    assert path.read_bytes() == b"".join(pieces)


class FailingSink:
    """Accepts ``limit`` bytes, then fails every write like a full disk."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()

    def write(self, data: bytes | memoryview) -> int:
        if len(self.data) + len(data) > self.limit:
            raise OSError(28, "No space left on device")
        self.data += data
        return len(data)


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=0, max_value=20), st.integers(min_value=0, max_value=24 * MiB))
def test_write_behind_stops_at_the_first_failure(count: int, limit: int) -> None:
    pieces = [bytes([i]) * MiB for i in range(count)]
    sink = FailingSink(limit)
    fits = min(limit // MiB, count)
    if fits == count:
        with write_behind(sink) as behind:
            for piece in pieces:
                behind.write(piece)
    else:
        with pytest.raises(OSError, match="No space left") as raised, write_behind(sink) as behind:
            for piece in pieces:
                behind.write(piece)
        assert behind.error is raised.value
    assert bytes(sink.data) == b"".join(pieces[:fits])  # nothing after the failed piece
    assert behind.count == len(sink.data)  # counts what reached the sink, not what was offered


def test_abort_drops_queued_pieces() -> None:
    sink = FailingSink(1 << 40)
    with pytest.raises(RuntimeError), write_behind(sink) as behind:
        for i in range(12):
            behind.write(bytes([i]) * MiB)
        raise RuntimeError("the producer failed")
    # what was written is a prefix, in order; the thread is gone
    written = bytes(sink.data)
    assert written == b"".join(bytes([i]) * MiB for i in range(len(written) // MiB))
    assert not [t for t in threading.enumerate() if t.name == "kmsflow-write-behind"]


class Trickle(io.RawIOBase):
    """A raw stream that takes at most ``limit`` bytes per write, as a raw stream may."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit, self.got = limit, bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        taken = bytes(b[: self.limit])
        self.got += taken
        return len(taken)


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=5000), st.integers(min_value=1, max_value=700))
def test_write_through_writes_everything_to_the_raw_stream_despite_short_writes(
    data: bytes, limit: int
) -> None:
    raw = Trickle(limit)
    buffered = io.BufferedWriter(raw)
    write_through(buffered, data)
    assert bytes(raw.got) == data  # all of it, in order, and nothing left in the buffer
