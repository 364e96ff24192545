"""Where bytes live: local paths and fsspec URLs (file://, gs://, ...) behind one small interface.

Local paths use the ``os`` module directly (atomic ``rename``/``link`` need it). Everything with a
scheme other than ``file://`` goes through fsspec; ``gs://`` goes through gcsfs, built by
:func:`gcs_filesystem` so that the GCS emulator (``STORAGE_EMULATOR_HOST``) is honoured in one
place. All reads and writes of data are streams: only a record is ever read whole, and never more
than ``record_caps.MAX_RECORD_SIZE`` + 1 bytes of it (:func:`read_file`, :func:`read_object`).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, cast

from kmsflow.envelope.errors import EnvelopeIOError, RecordInvalidError
from kmsflow.envelope.record_caps import MAX_RECORD_SIZE, record_too_large
from kmsflow.envelope.walk import Tree, walk

if TYPE_CHECKING:  # fsspec (and asyncio under it) is imported for a URL with a scheme, not for local paths
    import fsspec

STORAGE_EMULATOR_HOST_ENV = "STORAGE_EMULATOR_HOST"
GCSFS_ZB_HNS_ENV = "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"
CHUNK_SIZE = 1 << 20  # streaming granularity: memory per stream is a small multiple of this
# Plaintext piece size written into / read from Tink's streams: deliberately below 1 MiB. With
# 1 MiB pieces each step holds two fresh 1 MiB blocks (ours, plus Tink's copy of it on encrypt or
# its decrypted segment on decrypt); glibc frees them together at the top of the heap, trims the
# heap and grows it again, so every byte streamed is page-faulted in twice (~500k faults per GiB,
# Tink alone 3-4x slower). 256 KiB pieces are reused from the heap. Ciphertext is identical.
TINK_CHUNK_SIZE = 256 << 10
PROBES_AT_ONCE = 16  # existence probes in flight at once (:func:`concurrently`)


def gcs_filesystem() -> fsspec.AbstractFileSystem:
    """A gcsfs filesystem for real GCS, or for the GCS emulator when STORAGE_EMULATOR_HOST is set.

    Emulator mode: ``endpoint_url`` is the emulator and ``token="anon"``. We also force
    ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` and use the classic ``gcsfs.core.GCSFileSystem``:
    recent gcsfs first probes every bucket's type over gRPC (zonal / hierarchical namespace), which
    emulators do not serve, and each probe stalls ~60 s before falling back. gcsfs reads that
    variable at import time, so it is set before the import and the class is chosen explicitly in
    case gcsfs was imported earlier. Against real GCS nothing is overridden (ADC credentials).
    """
    host = os.environ.get(STORAGE_EMULATOR_HOST_ENV, "").strip()
    if host:
        os.environ[GCSFS_ZB_HNS_ENV] = "false"
        import gcsfs.core

        endpoint = host if "://" in host else f"http://{host}"
        fs: fsspec.AbstractFileSystem = gcsfs.core.GCSFileSystem(endpoint_url=endpoint, token="anon")
        return fs
    import gcsfs

    real: fsspec.AbstractFileSystem = gcsfs.GCSFileSystem()
    return real


@dataclass(frozen=True)
class Stat:
    """What :meth:`Location.stat` found: a directory, or a file with its size (and on GCS the
    generation it was found at, so a read can be pinned to those same bytes)."""

    is_dir: bool
    size: int = 0
    generation: str | None = None


def concurrently(checks: Sequence[Callable[[], bool]]) -> list[bool]:
    """Run independent checks (existence probes) at once, results in order.

    On an object store each probe is a round trip or two (gcsfs asks for a missing object twice),
    so a destination check of a few names costs that many round trips in sequence; at once it
    costs about one. The first exception, in order, propagates.
    """
    if len(checks) < 2:
        return [check() for check in checks]
    from concurrent.futures import ThreadPoolExecutor

    workers = min(len(checks), PROBES_AT_ONCE)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kmsflow-probe") as pool:
        futures = [pool.submit(check) for check in checks]
        return [future.result() for future in futures]


@dataclass(frozen=True)
class Location:
    """A file or directory: a local path (``fs is None``) or a path on an fsspec filesystem."""

    path: str
    fs: fsspec.AbstractFileSystem | None = None
    protocol: str = ""

    @property
    def is_local(self) -> bool:
        return self.fs is None

    @property
    def url(self) -> str:
        """The user-facing name used in messages and reports."""
        return self.path if self.fs is None else f"{self.protocol}://{self.path}"

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def child(self, relpath: str) -> Location:
        """The location ``relpath`` (``/``-separated) below this directory."""
        if not relpath:
            return self
        sep = os.sep if self.is_local else "/"
        native = relpath.replace("/", sep)
        return Location(self.path.rstrip(sep) + sep + native, self.fs, self.protocol)

    def sibling(self, name: str) -> Location:
        """The location ``name`` in the same directory as this one."""
        sep = os.sep if self.is_local else "/"
        head = self.path.rstrip(sep).rsplit(sep, 1)
        parent = head[0] + sep if len(head) == 2 else ""
        return Location(parent + name, self.fs, self.protocol)

    def exists(self) -> bool:
        return os.path.lexists(self.path) if self.fs is None else bool(self.fs.exists(self.path))

    def isdir(self) -> bool:
        return os.path.isdir(self.path) if self.fs is None else bool(self.fs.isdir(self.path))

    def isfile(self) -> bool:
        return os.path.isfile(self.path) if self.fs is None else bool(self.fs.isfile(self.path))

    def stat(self) -> Stat | None:
        """A directory, a file and its size, or None when neither is here (links followed, like
        :meth:`isdir` and :meth:`isfile`). One request on an object store, where asking whether
        it is a directory, a file, and how large costs a round trip each."""
        if self.fs is None:
            if os.path.isdir(self.path):
                return Stat(is_dir=True)
            if os.path.isfile(self.path):
                return Stat(is_dir=False, size=os.path.getsize(self.path))
            return None
        try:
            info = self.fs.info(self.path)
        except FileNotFoundError:
            return None
        if info.get("type", "file") != "file":
            return Stat(is_dir=True)
        generation = info.get("generation") if self.protocol == "gs" else None
        return Stat(is_dir=False, size=int(info["size"]), generation=str(generation) if generation else None)

    def open_read(self) -> IO[bytes]:
        if self.fs is None:
            return open(self.path, "rb")
        # readahead of 8 MiB: large sequential GETs, bounded memory
        return self.fs.open(self.path, "rb", block_size=CHUNK_SIZE * 8, cache_type="readahead")  # type: ignore[no-any-return]

    def open_sequential(self, found: Stat | None = None) -> IO[bytes]:
        """Open for one pass from start to end (encrypt's plaintext, decrypt's ciphertext).

        A remote object is read with several ranged GETs in flight ahead of the reader
        (:class:`kmsflow.envelope.streams.RangedReader`), each pinned to the generation found when
        it was opened on GCS, or to ``found``'s (what :meth:`stat` said a moment ago, saving its
        request), so a concurrent overwrite fails the read instead of mixing two objects. A local
        file is :meth:`open_read` (the kernel reads ahead already).
        """
        if self.fs is None:
            return self.open_read()
        from kmsflow.envelope.streams import RangedReader

        fs, path = self.fs, self.path
        found = self.stat() if found is None else found
        if found is None:
            raise FileNotFoundError(errno.ENOENT, "no such object", self.path)
        if found.is_dir:
            raise IsADirectoryError(errno.EISDIR, "is a directory", self.url)
        pin = {"generation": found.generation} if found.generation else {}

        def fetch(start: int, end: int) -> bytes:
            return bytes(fs.cat_file(path, start=start, end=end, **pin))

        return cast("IO[bytes]", RangedReader(fetch, found.size))

    def read_bytes(self) -> bytes:
        """An envelope record, whole: :func:`read_file` or :func:`read_object` (so at most
        ``MAX_RECORD_SIZE`` + 1 bytes are read; a larger one is a :class:`RecordInvalidError`)."""
        if self.fs is None:
            return read_file(self.path)
        return read_object(self.fs, self.path, self.url)

    def tree(self) -> Tree:
        """Every regular file below this directory (``/``-separated relative path -> size, sorted)
        and, locally, every entry that is neither a regular file nor a directory the walk enters
        (:mod:`kmsflow.envelope.walk`). One listing call on object stores, where every object is a
        file. Symbolic links to files count as the files they point to; empty directories are not
        represented (an envelope is a set of files).
        """
        if self.fs is None:
            found = walk(self.path)
            found.files = dict(sorted(found.files.items()))
            return found
        files: dict[str, int] = {}
        root = self.path.rstrip("/")
        for p, info in self.fs.find(root, detail=True).items():
            rel = p[len(root) + 1 :] if p.startswith(root + "/") else ""
            if rel and not rel.endswith("/") and info.get("type", "file") == "file":
                files[rel] = int(info.get("size") or 0)
        return Tree(files=dict(sorted(files.items())))

    def remove(self) -> None:
        """Best-effort delete of a file (used only to clean up our own partial outputs)."""
        try:
            if self.fs is None:
                os.unlink(self.path)
            else:
                self.fs.rm(self.path)
        except (OSError, FileNotFoundError):
            pass


def resolve(url: str) -> Location:
    """A ``Location`` for a local path, ``file://`` URL, ``gs://`` URL or any fsspec URL."""
    if "://" not in url:
        return Location(os.path.abspath(url))
    protocol, _, rest = url.partition("://")
    protocol = protocol.lower()
    if protocol in ("file", "local"):
        return Location(os.path.abspath(rest))
    fs: fsspec.AbstractFileSystem
    if protocol in ("gs", "gcs"):
        fs = gcs_filesystem()
        protocol = "gs"
    else:
        import fsspec

        try:
            fs = fsspec.filesystem(protocol)
        except (ImportError, ValueError) as exc:
            raise EnvelopeIOError(f"{url}: unsupported storage scheme {protocol!r} ({exc})") from None
    return Location(rest.rstrip("/") or rest, fs, protocol)


READ_BLOCK = 1 << 16  # a record is a few KiB; a dataset's with many files, more


def read_file(path: str, limit: int = MAX_RECORD_SIZE) -> bytes:
    """The whole local file at ``path`` (a record), with only open, read and close calls, reading
    at most ``limit`` + 1 bytes: a longer file is a :class:`RecordInvalidError`, not read on.

    Why not ``open(path, "rb").read()``: that also issues two fstat, two lseek and an ioctl, and
    every system call releases the GIL. Inventory and rewrap read records from many threads while
    others wait on KMS or the network and want the GIL back; on tmpfs the handoffs, not the reads,
    were the cost. Why the limit: a record is input from whoever may encrypt (docs/FORMAT.md §2).
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        parts = []
        left = limit + 1
        while left and (block := os.read(fd, min(READ_BLOCK, left))):
            parts.append(block)
            left -= len(block)
    finally:
        os.close(fd)
    if not left:
        raise RecordInvalidError(record_too_large(path))
    return b"".join(parts)


def read_object(fs: Any, path: str, url: str, limit: int = MAX_RECORD_SIZE, **kwargs: Any) -> bytes:
    """The whole object ``path`` on fsspec filesystem ``fs`` (a record), in one ranged GET of at
    most ``limit`` + 1 bytes: a longer object is a :class:`RecordInvalidError` (named ``url``).

    ``kwargs`` go to ``cat_file`` (``generation=`` on GCS).
    """
    data = bytes(fs.cat_file(path, start=0, end=limit + 1, **kwargs))
    if len(data) > limit:
        raise RecordInvalidError(record_too_large(url))
    return data


def chunks(stream: IO[bytes], size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Read ``stream`` to EOF in pieces of at most ``size`` bytes."""
    while True:
        block = stream.read(size)
        if not block:
            return
        yield block


UPLOAD_BLOCK = CHUNK_SIZE * 16  # gcsfs's upload block: memory per remote writer


def fs_open_write(fs: Any, path: str) -> Any:
    """Open a remote object for writing without clobbering: ``xb`` where the filesystem supports it.

    On GCS ``xb`` becomes an ``ifGenerationMatch=0`` precondition, so two writers racing for the
    same name cannot silently replace each other's object; and the object goes through
    :class:`CreateOnlyUpload`, so that a small one (a record, an audit event) costs one request.
    """
    if "gs" in _protocols(fs):
        return CreateOnlyUpload(fs, path)
    try:
        return fs.open(path, "xb", block_size=UPLOAD_BLOCK)
    except (ValueError, NotImplementedError):
        return fs.open(path, "wb", block_size=UPLOAD_BLOCK)


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = getattr(fs, "protocol", ())
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


class CreateOnlyUpload(io.RawIOBase):
    """A new GCS object, written once (``ifGenerationMatch=0``; an existing name fails the close
    with ``FileExistsError``).

    gcsfs's writable file always makes a resumable upload: one request to start it, then one per
    16 MiB block, so even a 1 KiB record costs two round trips. This holds the first block: an
    object that ends within it is created by one request (GCS's single-request upload, gcsfs's
    ``pipe_file(mode="create")``), a larger one streams on through gcsfs's resumable upload.
    ``discard`` drops what was written and creates nothing.
    """

    def __init__(self, fs: Any, path: str) -> None:
        super().__init__()
        self._fs, self._path = fs, path
        self._held = bytearray()
        self._stream: Any = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError("write to a closed upload")
        if self._stream is not None:
            return int(self._stream.write(data))
        self._held += data
        if len(self._held) >= UPLOAD_BLOCK:
            self._stream = self._fs.open(self._path, "xb", block_size=UPLOAD_BLOCK)
            self._stream.write(self._held)  # copied into gcsfs's buffer
            self._held = bytearray()
        return memoryview(data).nbytes

    def close(self) -> None:
        """Create the object (what ``close`` does to any writable file): its last bytes are sent."""
        if self.closed:
            return
        try:
            if self._stream is not None:
                self._stream.close()
            else:
                data = bytes(self._held)
                try:
                    self._fs.pipe_file(self._path, data, mode="create")
                except FileExistsError:
                    if not self._landed(data):
                        raise
        finally:
            self._held = bytearray()
            super().close()

    def _landed(self, data: bytes) -> bool:
        """Whether a create refused because the name exists was ours all along.

        gcsfs retries a request that timed out or got a 5xx; if the server had created the object
        before the answer was lost, the retry is refused (412) by our own object. (A resumable
        upload has no such gap: GCS answers a repeated last chunk with the object.) The live
        object is ours if it is the bytes sent: same size, CRC32C and MD5; what kmsflow writes
        holds a fresh random identifier or key, so another writer's object never matches.
        """
        import base64
        import hashlib

        from kmsflow.envelope.streams import crc32c_of

        self._fs.invalidate_cache(self._path)
        try:
            info = self._fs.info(self._path)
        except FileNotFoundError:
            return False
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")
        return (
            int(info.get("size", -1)) == len(data)
            and info.get("crc32c") == crc32c_of(data)
            and info.get("md5Hash") == md5
        )

    def discard(self) -> None:
        """Cancel: nothing is created (a resumable upload under way is cancelled)."""
        stream, self._stream, self._held = self._stream, None, bytearray()
        super().close()
        if stream is not None:
            try:
                stream.discard()
            finally:
                with contextlib.suppress(Exception):
                    stream.closed = True  # fsspec's __del__ would upload an unclosed file
