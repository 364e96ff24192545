"""SHA-256 of a stream of pieces, computed on a helper thread once the stream is large.

Why: re-encrypt hashes every plaintext byte twice (once as it re-encrypts, once as it verifies the
staged copy) to prove the new ciphertext holds the very plaintext the old one did. Inline, that
was ~38 % of a 1 GiB re-encrypt's time (docs/BENCHMARKS.md), even at ~1.4 GB/s with SHA-NI.
``hashlib`` releases the GIL while it hashes a piece, so on a helper thread the hashing of piece
*n* overlaps Tink's work on piece *n+1*, on another core when there is one.

The same shape as :class:`kmsflow.envelope.streams.WriteBehind`: inline below 4 MiB (a thread
would cost more than it saves), then pieces handed over in batches of ~1 MiB through a bounded
queue (constant memory). Only immutable ``bytes`` are queued, so the producer cannot change a piece
before it is hashed.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from types import TracebackType

_THREAD_THRESHOLD = 4 << 20
_BATCH_BYTES = 1 << 20
_QUEUE_DEPTH = 8


class HashBehind:
    """``update`` pieces in order, then :meth:`digest`. Use it as a context manager: leaving the
    block stops the helper thread, whether or not the digest was taken (an exception mid-stream)."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._seen = 0
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self._queue: queue.Queue[list[bytes] | None] = queue.Queue(_QUEUE_DEPTH)
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def __enter__(self) -> HashBehind:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        piece = data if isinstance(data, bytes) else bytes(data)
        self._seen += len(piece)
        if self._thread is None and self._seen <= _THREAD_THRESHOLD:
            self._sha.update(piece)
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="kmsflow-hash-behind", daemon=True)
            self._thread.start()
        self._batch.append(piece)
        self._batch_bytes += len(piece)
        if self._batch_bytes >= _BATCH_BYTES:
            self._hand_over()

    def digest(self) -> bytes:
        """The SHA-256 of every piece given, in order (waits for the helper thread)."""
        self._stop()
        if self._failure is not None:
            raise self._failure
        return self._sha.digest()

    def _hand_over(self) -> None:
        if self._batch:
            self._queue.put(self._batch)
            self._batch, self._batch_bytes = [], 0

    def _run(self) -> None:
        while (pieces := self._queue.get()) is not None:
            if self._failure is None:
                try:
                    for piece in pieces:
                        self._sha.update(piece)
                except BaseException as exc:  # kept for digest(); the queue is still drained
                    self._failure = exc

    def _stop(self) -> None:
        if self._thread is not None:
            self._hand_over()
            self._queue.put(None)
            self._thread.join()
            self._thread = None
