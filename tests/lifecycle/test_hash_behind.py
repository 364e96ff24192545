"""``HashBehind``: the SHA-256 re-encrypt compares, hashed on a helper thread. It must equal
``hashlib.sha256`` of the same pieces in order, whichever path (inline or thread) they took, and
must neither leak its thread nor block its producer when something goes wrong."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmsflow.lifecycle import hash_behind
from kmsflow.lifecycle.hash_behind import HashBehind


@pytest.fixture(autouse=True)
def small_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thread after 64 bytes, batches of 32, a queue of 2: every path with small inputs."""
    monkeypatch.setattr(hash_behind, "_THREAD_THRESHOLD", 64)
    monkeypatch.setattr(hash_behind, "_BATCH_BYTES", 32)
    monkeypatch.setattr(hash_behind, "_QUEUE_DEPTH", 2)


def helper_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "kmsflow-hash-behind"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=50), max_size=40))
def test_the_digest_is_sha256_of_the_pieces_in_order(pieces: list[bytes]) -> None:
    with HashBehind() as sha:
        for piece in pieces:
            sha.update(piece)
        assert sha.digest() == hashlib.sha256(b"".join(pieces)).digest()
    assert helper_threads() == []


def test_a_piece_changed_after_it_was_given_is_hashed_as_it_was() -> None:
    buffer = bytearray(b"a" * 100)
    with HashBehind() as sha:
        sha.update(b"x" * 100)  # past the threshold: the thread has started
        sha.update(buffer)
        buffer[:] = b"b" * 100  # a producer reusing its buffer
        assert sha.digest() == hashlib.sha256(b"x" * 100 + b"a" * 100).digest()


def test_leaving_the_block_on_an_error_stops_the_thread() -> None:
    with pytest.raises(RuntimeError, match="stream failed"), HashBehind() as sha:
        sha.update(b"x" * 1000)
        assert helper_threads()
        raise RuntimeError("stream failed")
    assert helper_threads() == []


@pytest.mark.timeout(30)  # a helper that stopped draining its queue would block the producer for good
def test_a_failing_hash_is_raised_by_digest_and_never_blocks_the_producer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Broken:
        def __init__(self) -> None:
            self.calls = 0

        def update(self, piece: bytes) -> None:
            self.calls += 1
            if self.calls > 3:  # inline pieces pass; a piece on the helper thread fails
                raise MemoryError("no memory for the hash")

        def digest(self) -> bytes:
            raise AssertionError("never reached")

    fake: Any = type("fake_hashlib", (), {"sha256": Broken})
    monkeypatch.setattr(hash_behind, "hashlib", fake)
    with HashBehind() as sha:
        for _ in range(500):  # far more than the queue holds: the helper must keep draining it
            sha.update(b"y" * 30)
        with pytest.raises(MemoryError, match="no memory"):
            sha.digest()
    assert helper_threads() == []
