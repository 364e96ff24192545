"""Pass-through streams: CRC32C (and, for signing, SHA-256) the ciphertext as Tink reads or writes
it, and write behind.

Checksumming on the way through keeps every file to a single pass: no re-read for the checksum,
constant memory. CRC32C (Castagnoli, hardware-accelerated in ``google-crc32c``) is cheap: reads
compute it inline, writes on the write-behind thread (off the thread that feeds Tink).
Authentication is Tink's job; the
checksum lets storage-level tools compare a stored object with the record without any key (it is
the same value GCS keeps as an object's ``crc32c``, see docs/FORMAT.md §2).

:class:`WriteBehind` hands the output to a helper thread once a file is large: Tink holds the GIL
while it encrypts or decrypts a segment, but ``write`` releases it, so writing segment *n* overlaps
with computing segment *n+1* and a large file streams at close to ``cp`` speed instead of the sum
of both (docs/BENCHMARKS.md). The queue is bounded, so memory stays constant.

Each wrapper remembers the ``OSError`` it met (``.error``): Tink reports I/O failures of its
source or destination as a generic ``TinkError``, and the caller needs to tell a full disk or a
network error from a failed authentication. Likewise ``.interrupt``: a ``KeyboardInterrupt`` or a
signal's exception (the CLI's SIGTERM, Airflow's task termination or timeout) raised while Tink's
C++ stream was calling back into Python reaches the caller only as a ``TinkError`` text, and must
be re-raised as itself, not reported as a tampered envelope. Neither wrapper owns its file:
closing it (Tink closes its destination/source when its stream closes) leaves the underlying
file open for the staging layer to finalize or discard.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import io
import os
import queue
import threading
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any, Protocol

import google_crc32c

if TYPE_CHECKING:  # loaded by the first remote read that needs threads
    import concurrent.futures


class BinarySink(Protocol):
    """Where bytes go: a binary file, a staged object, another wrapper of this module."""

    def write(self, data: bytes | memoryview, /) -> int | None: ...


# Below this many bytes a file is written inline: a thread would cost more than it saves.
_THREAD_THRESHOLD = 4 << 20
_BATCH_BYTES = 1 << 20  # hand pieces to the writer thread in batches of about this many bytes
_BATCH_PIECES = 256  # ... or of this many pieces (well under the kernel's IOV_MAX of 1024)
_QUEUE_DEPTH = 8  # batches in flight: bounded memory (~8 MiB)


def crc32c_base64(value: int) -> str:
    """A CRC32C as GCS writes it: standard base64 of the 4 big-endian bytes (e.g. ``"AAAAAA=="``)."""
    return base64.b64encode(value.to_bytes(4, "big")).decode("ascii")


def crc32c_of(data: bytes) -> str:
    """The base64 CRC32C of ``data`` (small buffers; streams use the wrappers below)."""
    return crc32c_base64(int(google_crc32c.value(data)))


def plaintext_pieces(decrypting: IO[bytes], size: int) -> Iterator[bytes]:
    """Read a Tink decrypting stream to EOF in pieces of at most ``size`` bytes, one copy fewer.

    Why not ``read1``: Tink hands back an ``io.BufferedReader`` over its raw decrypting stream, and
    a ``read1`` larger than that reader's 8 KiB buffer makes the raw stream copy each plaintext
    piece, which Tink already returned as a fresh ``bytes``, into a second buffer: a needless
    memcpy of the whole file. The raw stream is read directly instead (the buffered reader is never
    read, so no byte can be left in its buffer). A raw read that returns ``None`` ("no data yet",
    non-blocking sources only) ends the pieces early, which the callers' size checks reject.
    """
    source = getattr(decrypting, "raw", decrypting)
    while block := source.read(size):
        yield block


def write_through(encrypting: IO[bytes], data: bytes) -> None:
    """Write ``data`` to a Tink encrypting stream's raw stream, past its ``BufferedWriter``.

    The counterpart of :func:`plaintext_pieces`: a piece larger than the writer's 8 KiB buffer
    reaches Tink as a ``memoryview`` of the caller's bytes; handing Tink the ``bytes`` themselves
    is measurably faster (docs/BENCHMARKS.md). Nothing goes
    through the buffered writer, so its buffer stays empty and closing it still finalizes Tink's
    stream.
    """
    raw = getattr(encrypting, "raw", encrypting)
    written = raw.write(data)
    while written < len(data):  # a raw stream may take less than it was given
        written += raw.write(memoryview(data)[written:])


class ChecksumReader(io.RawIOBase):
    """Reads from ``inner`` while counting bytes and (``checksum=True``) computing their CRC32C.

    Counting alone serves a reader that authenticates what it reads anyway (see
    ``Envelope.decrypt``): the CRC32C costs ~10 % of a decrypt's time, because ``google_crc32c``
    holds the GIL, and it can only confirm bytes Tink already authenticated.
    """

    def __init__(self, inner: IO[bytes], *, checksum: bool = True, digest: bool = False) -> None:
        super().__init__()
        self._inner = inner
        self._checksum = checksum
        self._crc = 0
        self._sha256 = hashlib.sha256() if digest else None
        self.count = 0
        self.error: OSError | None = None
        self.interrupt: BaseException | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        try:
            data = self._inner.read(-1 if size is None else size)
            if data:
                if self._checksum:
                    self._crc = google_crc32c.extend(self._crc, data)
                if self._sha256 is not None:
                    self._sha256.update(data)
                self.count += len(data)
        except OSError as exc:
            self.error = exc
            raise
        except BaseException as exc:
            self.interrupt = _as_interrupt(exc)
            raise
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Read (and checksum) whatever follows: bytes appended after Tink's last segment count too."""
        while self.read(1 << 20):
            pass

    def close(self) -> None:  # leave ``inner`` open: the caller owns it
        super().close()

    def crc32c(self) -> str:
        """CRC32C of everything read, as GCS spells it (``checksum=True`` only)."""
        if not self._checksum:
            raise ValueError("ChecksumReader was created with checksum=False")
        return crc32c_base64(self._crc)

    def sha256(self) -> str:
        """SHA-256 of everything read, lowercase hex (``digest=True`` only)."""
        return _hex_digest(self._sha256)


class WriteBehind(io.RawIOBase):
    """Writes to ``inner`` in order, on a helper thread once more than 4 MiB went through.

    Pieces are handed to the thread in batches of about 1 MiB (Tink writes 128 KiB at a time, and
    every hand-off costs two GIL switches), and a batch bound for a local file reaches the kernel
    in one ``os.writev`` on its descriptor (no copy, GIL released). Only immutable ``bytes`` are
    queued (anything else is copied), so the producer can never change a piece in flight. A
    failure of the helper thread is kept (``.failure``) and raised to the producer at its next
    ``write`` and by :meth:`finish`; nothing after a failed write is written.

    With ``checksum=True`` it also counts what it wrote and computes its CRC32C (the ciphertext
    checksum of the record), on the writing thread: that keeps it off the thread that feeds Tink.
    ``count`` and :meth:`crc32c` are final once :meth:`finish` returned.
    """

    def __init__(self, inner: BinarySink, *, checksum: bool = False, digest: bool = False) -> None:
        super().__init__()
        self._inner = inner
        self._checksum = checksum
        self._crc = 0
        self._sha256 = hashlib.sha256() if digest else None
        self.count = 0
        self._seen = 0
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self._queue: queue.Queue[list[bytes] | None] = queue.Queue(_QUEUE_DEPTH)
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._aborted = False
        self.failure: BaseException | None = None
        self.interrupt: BaseException | None = None

    @property
    def error(self) -> OSError | None:
        """The ``OSError`` a write failed with (a full disk, a network error), if any."""
        return self.failure if isinstance(self.failure, OSError) else None

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        try:
            return self._write_or_queue(b)
        except BaseException as exc:
            self.interrupt = self.interrupt or _as_interrupt(exc)
            raise

    def _write_or_queue(self, b: Any) -> int:
        if self.failure is not None:
            raise self.failure
        data = b if isinstance(b, bytes) else bytes(b)
        self._seen += len(data)
        if self._thread is None and self._seen <= _THREAD_THRESHOLD:
            self._write([data])
            return len(data)
        if self._thread is None:
            self._fd = _descriptor(self._inner)
            self._thread = threading.Thread(target=self._run, name="kmsflow-write-behind", daemon=True)
            self._thread.start()
        self._batch.append(data)
        self._batch_bytes += len(data)
        if self._batch_bytes >= _BATCH_BYTES or len(self._batch) >= _BATCH_PIECES:
            self._hand_over()
        return len(data)

    def _hand_over(self) -> None:
        if self._batch:
            self._queue.put(self._batch)
            self._batch, self._batch_bytes = [], 0

    def _write(self, pieces: list[bytes]) -> None:
        try:
            if self._fd is not None:
                _writev_all(self._fd, pieces)
            else:
                for piece in pieces:
                    _write_all(self._inner, piece)
        except BaseException as exc:
            self.failure = exc
            raise
        for piece in pieces:  # only what was written; in order (inline first, then the thread's)
            self.count += len(piece)
            if self._checksum:
                self._crc = google_crc32c.extend(self._crc, piece)
            if self._sha256 is not None:
                self._sha256.update(piece)

    def crc32c(self) -> str:
        """CRC32C of everything written, as GCS spells it (``checksum=True``; after :meth:`finish`)."""
        if not self._checksum:
            raise ValueError("WriteBehind was created without checksum=True")
        return crc32c_base64(self._crc)

    def sha256(self) -> str:
        """SHA-256 of everything written, lowercase hex (``digest=True``; after :meth:`finish`)."""
        return _hex_digest(self._sha256)

    def _run(self) -> None:
        while (pieces := self._queue.get()) is not None:
            if self.failure is None and not self._aborted:
                with contextlib.suppress(BaseException):  # kept in .failure for the producer
                    self._write(pieces)

    def _stop(self) -> None:
        if self._thread is not None:
            if not self._aborted:
                self._hand_over()
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def finish(self) -> None:
        """Wait until every piece is written; raise what a write failed with."""
        self._stop()
        if self.failure is not None:
            raise self.failure

    def abort(self) -> None:
        """Stop without writing what is still queued (the output is being discarded anyway)."""
        self._aborted = True
        self._stop()

    def close(self) -> None:  # leave ``inner`` open: the staging layer finalizes it
        super().close()


RANGE_BLOCK = 8 << 20  # bytes per ranged GET
RANGES_IN_FLIGHT = 4  # GETs on the wire at once, as gcsfs's own downloads: memory ~5 blocks


class RangedReader(io.RawIOBase):
    """Reads a remote object of known size from start to end, with up to four ranged GETs of
    8 MiB in flight ahead of the reader.

    ``fetch(start, end)`` returns the object's bytes in ``[start, end)`` (fewer at its end). Read
    through an fsspec file instead, each block is one GET that starts only when the reader reaches
    it: the network waits while Tink works and Tink waits while the network does, and one stream
    at a time gets a fraction of what a store like GCS serves to several (``gcsfs``'s own
    downloads keep four ranges in flight). Here the next blocks are already on the wire. An object
    of one block is fetched on the first read, with no thread.

    Blocks reach the reader in order; the reader's reads are copied out of them (Tink asks for
    128 KiB at a time). A fetch that fails (an ``OSError`` from the network, a generation that no
    longer exists) raises to the reader at the point of the stream where its block starts, after
    every byte before it; a block that comes back short ends the stream there (the caller's size
    check rejects it). :meth:`close` cancels what has not started and waits for what has.
    """

    def __init__(self, fetch: Callable[[int, int], bytes], size: int) -> None:
        super().__init__()
        self._fetch = fetch
        self._size = size
        self._next = 0  # where the next block to request starts
        self._pending: collections.deque[concurrent.futures.Future[bytes]] = collections.deque()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._view = memoryview(b"")
        self._pos = 0
        self._ended = False
        self._failure: BaseException | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("read of a closed RangedReader")
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(RANGE_BLOCK), b""))
        if self._pos == len(self._view) and not self._next_block():
            return b""
        data = bytes(self._view[self._pos : self._pos + size])
        self._pos += len(data)
        return data

    def _next_block(self) -> bool:
        """Move to the next block (waiting for its GET); False at the end of the object."""
        if self._failure is not None:  # every later read fails too: never a clean end
            raise self._failure
        if self._ended or (self._next >= self._size and not self._pending):
            return False
        try:
            block = self._fetch_next()
        except BaseException as exc:
            self._failure = exc
            raise
        if len(block) < RANGE_BLOCK:
            self._ended = True  # the end, or the object is shorter than it said
        self._view, self._pos = memoryview(block), 0
        return bool(block)

    def _fetch_next(self) -> bytes:
        if self._size <= RANGE_BLOCK:  # one block: fetched here, no thread
            self._next = self._size
            return self._fetch(0, self._size)
        self._request()
        future = self._pending.popleft()
        self._request()  # four on the wire while this one is read
        return future.result()

    def _request(self) -> None:
        """Keep the next blocks requested, up to the limit in flight."""
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(RANGES_IN_FLIGHT, "kmsflow-range")
        while len(self._pending) < RANGES_IN_FLIGHT and self._next < self._size:
            start, end = self._next, min(self._next + RANGE_BLOCK, self._size)
            self._pending.append(self._pool.submit(self._fetch, start, end))
            self._next = end

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending.clear()
        super().close()


def _hex_digest(sha256: Any) -> str:
    if sha256 is None:
        raise ValueError("created without digest=True")
    return str(sha256.hexdigest())


def _as_interrupt(exc: BaseException) -> BaseException | None:
    """``exc`` if it interrupts rather than fails (``KeyboardInterrupt``, a signal's or a task's
    termination: not an ``Exception``), else None."""
    return None if isinstance(exc, Exception) else exc


def _descriptor(inner: BinarySink) -> int | None:
    """The OS file descriptor behind ``inner`` (its Python buffer flushed first, so nothing written
    earlier can follow what goes to the descriptor directly); None for anything else (GCS, memory)."""
    fileno = getattr(inner, "fileno", None)
    flush = getattr(inner, "flush", None)
    if fileno is None or flush is None:
        return None
    try:
        fd = int(fileno())
    except (OSError, ValueError):  # io.UnsupportedOperation: not backed by a descriptor
        return None
    flush()
    return fd


def _write_all(inner: BinarySink, data: bytes) -> None:
    written = inner.write(data)
    if written is not None and written < len(data):  # a raw stream's short write
        view = memoryview(data)
        while written < len(data):
            written += inner.write(view[written:]) or 0


def _writev_all(fd: int, pieces: list[bytes]) -> None:
    done = os.writev(fd, pieces)
    if done < sum(len(p) for p in pieces):  # a short write (rare): finish piece by piece
        rest = memoryview(b"".join(pieces))[done:]
        while rest:
            rest = rest[os.write(fd, rest) :]


@contextlib.contextmanager
def write_behind(inner: BinarySink, *, checksum: bool = False, digest: bool = False) -> Iterator[WriteBehind]:
    """A :class:`WriteBehind` over ``inner``: drained (errors raised) on a normal exit, aborted on an
    exception, so the helper thread never outlives the block and never writes after a failure."""
    behind = WriteBehind(inner, checksum=checksum, digest=digest)
    try:
        yield behind
    except BaseException:
        behind.abort()
        raise
    behind.finish()
