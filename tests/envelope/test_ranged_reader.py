"""Remote objects are read with several ranged GETs in flight (``streams.RangedReader``, what
``Location.open_sequential`` gives for gs://): the bytes come back whole and in order whatever the
reader asks for, never more than four GETs are out at once, a failed or short GET ends the stream
where it happened, closing stops cleanly, and a GCS object replaced mid-read fails the read
instead of mixing two generations."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmsflow.envelope import streams
from kmsflow.envelope.storage import resolve
from kmsflow.envelope.streams import RangedReader

BLOCK = 1000  # small blocks, so that a few KiB span many GETs


@pytest.fixture(autouse=True)
def _small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "RANGE_BLOCK", BLOCK)


class Object:
    """An object served by ranges, counting the GETs in flight (each takes ``delay`` seconds)."""

    def __init__(self, data: bytes, delay: float = 0.0, gate: int = 0) -> None:
        self.data = data
        self.delay = delay
        self.gate = gate  # GETs hold until this many are in flight at once (then never again)
        self.opened = threading.Event()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.fetched: list[tuple[int, int]] = []

    def fetch(self, start: int, end: int) -> bytes:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.fetched.append((start, end))
            if self.in_flight >= self.gate:
                self.opened.set()
        try:
            self.opened.wait(10)
            time.sleep(self.delay)
            return self.data[start:end]
        finally:
            with self.lock:
                self.in_flight -= 1


def read_all(reader: Any, sizes: Iterator[int]) -> bytes:
    parts = []
    while piece := reader.read(next(sizes)):
        parts.append(piece)
    return b"".join(parts)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=9 * BLOCK + 7), st.lists(st.integers(1, 3 * BLOCK), min_size=1))
def test_every_byte_in_order_whatever_the_read_sizes(size: int, reads: list[int]) -> None:
    data = random.Random(size).randbytes(size)
    obj = Object(data)
    sizes = itertools.cycle(reads)
    with RangedReader(obj.fetch, size) as reader:
        assert read_all(reader, sizes) == data
        assert reader.read(5) == b""  # and stays at its end
    assert sorted(obj.fetched) == [(s, min(s + BLOCK, size)) for s in range(0, size, BLOCK)]


def test_four_gets_in_flight_ahead_of_a_slow_reader() -> None:
    """While the reader works on one block (Tink), the next four are requested and overlap on the
    wire (the first GETs hold until four are in flight: a reader that sent them one at a time
    would wait out the test's deadline and fail), and never more than four."""
    obj = Object(random.randbytes(40 * BLOCK), delay=0.01, gate=streams.RANGES_IN_FLIGHT)
    with RangedReader(obj.fetch, len(obj.data)) as reader:
        assert reader.read(10) == obj.data[:10]
        deadline = time.monotonic() + 10
        while len(obj.fetched) < 1 + streams.RANGES_IN_FLIGHT and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # the reader is busy: the next blocks arrive meanwhile, and no more
        assert len(obj.fetched) == 1 + streams.RANGES_IN_FLIGHT
        assert read_all(reader, iter(lambda: 300, None)) == obj.data[10:]
    assert obj.most_in_flight == streams.RANGES_IN_FLIGHT


def test_one_block_is_fetched_without_a_thread() -> None:
    obj = Object(b"x" * BLOCK)
    before = threading.active_count()
    with RangedReader(obj.fetch, BLOCK) as reader:
        assert reader.read() == obj.data
        assert threading.active_count() == before
    assert obj.fetched == [(0, BLOCK)]


def test_a_failed_get_raises_where_its_block_starts() -> None:
    data = random.randbytes(10 * BLOCK)

    def fetch(start: int, end: int) -> bytes:
        if start == 6 * BLOCK:
            raise ConnectionResetError("reset by peer")
        return data[start:end]

    with RangedReader(fetch, len(data)) as reader:
        got = b""
        with pytest.raises(ConnectionResetError):
            while piece := reader.read(700):
                got += piece
        assert got == data[: 6 * BLOCK]  # everything before the failed block, nothing after
        with pytest.raises(ConnectionResetError):
            reader.read(1)


def test_a_short_block_ends_the_stream_there() -> None:
    """An object shorter than it said (a non-GCS store without generations): the stream ends at
    the short block and the caller's size check rejects it; nothing after it is read."""
    data = random.randbytes(8 * BLOCK)

    def fetch(start: int, end: int) -> bytes:
        return data[start : min(end, 3 * BLOCK + 10)]

    with RangedReader(fetch, len(data)) as reader:
        assert reader.read() == data[: 3 * BLOCK + 10]


def test_close_cancels_what_has_not_started_and_waits_for_what_has() -> None:
    obj = Object(random.randbytes(50 * BLOCK), delay=0.1)
    reader = RangedReader(obj.fetch, len(obj.data))
    reader.read(1)
    reader.close()
    assert obj.in_flight == 0
    started = len(obj.fetched)
    time.sleep(0.3)
    assert len(obj.fetched) == started <= 1 + streams.RANGES_IN_FLIGHT
    assert not [t for t in threading.enumerate() if t.name.startswith("kmsflow-range")]
    with pytest.raises(ValueError):
        reader.read(1)


def test_gcs_object_replaced_mid_read_fails_instead_of_mixing(gcs_bucket: str) -> None:
    """Every GET of one read is pinned to the generation found at open (GCS ``generation=``), so
    an object overwritten while it is read fails the read with an OSError (the envelope layer
    reports an I/O error) rather than splicing old and new bytes together."""
    location = resolve(f"gs://{gcs_bucket}/obj")
    old, new = random.randbytes(30 * BLOCK), random.randbytes(30 * BLOCK)
    fs = location.fs
    assert fs is not None
    fs.pipe(location.path, old)
    with location.open_sequential() as reader:
        head = reader.read(BLOCK)
        fs.pipe(location.path, new)
        with pytest.raises(OSError):
            while reader.read(BLOCK):
                pass
    assert head == old[:BLOCK]
    with location.open_sequential() as reader:  # a new read sees the new object, whole
        assert reader.read() == new


def test_gcs_directory_or_missing_object(gcs_bucket: str) -> None:
    fs = resolve(f"gs://{gcs_bucket}/x").fs
    assert fs is not None
    fs.pipe(f"{gcs_bucket}/dir/file", b"1")
    with pytest.raises(IsADirectoryError):
        resolve(f"gs://{gcs_bucket}/dir").open_sequential()
    with pytest.raises(FileNotFoundError):
        resolve(f"gs://{gcs_bucket}/missing").open_sequential()


def test_a_failed_single_get_stays_failed() -> None:
    calls = []

    def fetch(start: int, end: int) -> bytes:
        calls.append(start)
        raise TimeoutError("no answer")

    with RangedReader(fetch, 10) as reader:
        for _ in range(2):
            with pytest.raises(TimeoutError):
                reader.read(4)
    assert calls == [0]  # not retried behind the caller's back, and never a clean end
