"""Pass-through streams that count and SHA-256 the ciphertext as Tink writes or reads it.

Hashing on the way through keeps every file to a single pass: no re-read for the digest, constant
memory. SHA-256 costs about as much CPU as Tink's AES-GCM plus the copies, so once a file is large
enough to matter the digest is computed on a helper thread (``hashlib`` releases the GIL for large
updates): on a multi-core machine encryption, I/O and hashing overlap. The queue between them is
bounded, so memory stays constant however large the file.

Each wrapper remembers the ``OSError`` it passed on (``.error``): Tink reports I/O failures of its
source or destination as a generic ``TinkError``, and the caller needs to tell a full disk or a
network error from a failed authentication. Both wrappers own nothing: closing them (Tink closes
its destination/source when its stream closes) leaves the underlying file open for the staging
layer to finalize or discard.
"""

from __future__ import annotations

import hashlib
import io
import queue
import threading
from typing import IO, Any

# Below this many bytes a file is hashed inline: a thread would cost more than it saves.
_THREAD_THRESHOLD = 4 << 20
_QUEUE_DEPTH = 32  # pieces in flight (Tink hands over <= 1 MiB at a time): bounded memory


class Sha256Pipe:
    """SHA-256 fed in order, computed on a helper thread once the input is large.

    Only immutable ``bytes`` are queued (Tink's and file objects' reads and writes produce new
    ``bytes``), so the producer may reuse nothing and no copy is needed.
    """

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._seen = 0
        self._queue: queue.Queue[bytes | None] | None = None
        self._thread: threading.Thread | None = None

    def update(self, data: bytes) -> None:
        self._seen += len(data)
        if self._queue is None and self._seen > _THREAD_THRESHOLD:
            self._queue = queue.Queue(_QUEUE_DEPTH)
            self._thread = threading.Thread(target=self._run, name="kmsflow-sha256", daemon=True)
            self._thread.start()
        if self._queue is None:
            self._sha.update(data)
        else:
            self._queue.put(data)

    def _run(self) -> None:
        assert self._queue is not None
        while (data := self._queue.get()) is not None:
            self._sha.update(data)

    def hexdigest(self) -> str:
        """Finish (wait for the helper thread) and return the digest."""
        self.close()
        return self._sha.hexdigest()

    def close(self) -> None:
        """Stop the helper thread; safe to call more than once (and on error paths)."""
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None


class HashingWriter(io.RawIOBase):
    """Writes through to ``inner`` while counting bytes and hashing them."""

    def __init__(self, inner: IO[bytes]) -> None:
        super().__init__()
        self._inner = inner
        self._sha = Sha256Pipe()
        self.count = 0
        self.error: OSError | None = None

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = b if isinstance(b, bytes) else bytes(b)
        try:
            view = memoryview(data)
            written = 0
            while written < len(data):
                n = self._inner.write(view[written:])
                written += len(data) - written if n is None else n
        except OSError as exc:
            self.error = exc
            raise
        self._sha.update(data)
        self.count += len(data)
        return len(data)

    def close(self) -> None:  # leave ``inner`` open: the staging layer finalizes it
        super().close()

    def finish(self) -> None:
        """Stop the hashing thread (also on failure paths)."""
        self._sha.close()

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


class HashingReader(io.RawIOBase):
    """Reads from ``inner`` while counting bytes and hashing them."""

    def __init__(self, inner: IO[bytes]) -> None:
        super().__init__()
        self._inner = inner
        self._sha = Sha256Pipe()
        self.count = 0
        self.error: OSError | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        try:
            data = self._inner.read(-1 if size is None else size)
        except OSError as exc:
            self.error = exc
            raise
        if data:
            self._sha.update(data if isinstance(data, bytes) else bytes(data))
            self.count += len(data)
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Read (and hash) whatever follows: bytes appended after Tink's final segment count too."""
        while self.read(1 << 20):
            pass

    def close(self) -> None:  # leave ``inner`` open: the caller owns it
        super().close()

    def finish(self) -> None:
        """Stop the hashing thread (also on failure paths)."""
        self._sha.close()

    def hexdigest(self) -> str:
        return self._sha.hexdigest()
