"""Compare-and-swap of an envelope record: replace it only if nobody changed it since we read it.

Rewrap reads a record, spends two KMS round trips building its successor, then writes it. Another
writer (a second rewrap, an operator restoring a backup) may have replaced the record meanwhile;
blindly writing would silently undo their change, so the write is conditional on the record still
being exactly what was read (:class:`RecordConflictError` otherwise, record untouched).

**Local files.** The record is opened and ``fcntl.flock(LOCK_EX)`` is taken on that descriptor;
the *path* is then re-read and compared byte for byte with the snapshot (a writer that replaced the
file before we locked is caught by the comparison, one that comes after waits for the lock and is
caught by its own comparison, since ``os.replace`` gives the path a new inode with new bytes). The
new record is written to a hidden sibling ``.<name>.kmsflow-<hex>.part`` (the staging naming, so an
inventory reports a leftover as a stale temp), fsynced, and ``os.replace``d onto the record; the
directory is fsynced (once per directory per run, see :class:`DirSync`). A kill at any instant
leaves the old or the new record, never a torn one. ``flock`` only excludes kmsflow writers that
follow this protocol (it is advisory) and is not reliable on some network filesystems (old NFS, SMB).

**GCS (and other fsspec stores).** The snapshot carries the object's *generation* (read with
``fs.info`` and the bytes fetched *at that generation*). The swap re-reads the generation and
refuses on change, then uploads the new record in one JSON-API multipart request with
``ifGenerationMatch=<generation>``, which real GCS enforces atomically (HTTP 412 ->
:class:`RecordConflictError`): no window remains. The tests run against
:mod:`kmsflow_emulator.gcs`, which enforces preconditions as GCS does, and let a writer in after
the explicit check to show that the server-side 412 keeps its bytes.
A record replaced between ``info`` and the pinned read (404 for the old generation) is read again.
gcsfs exposes only ``ifGenerationMatch=0`` publicly; the conditional upload uses its
``call``/``split_path`` helpers (see :func:`_gcs_put_if_generation_match`). Other fsspec stores get
the check-then-write with a small race window (documented; no kmsflow store uses them today).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import threading
from dataclasses import dataclass
from typing import Any

from kmsflow.envelope.errors import EnvelopeError
from kmsflow.envelope.layout import PART_SUFFIX, temp_name
from kmsflow.envelope.storage import Location, read_file, read_object


class RecordConflictError(EnvelopeError):
    """The record changed between our read and our write; ours was not written."""


@dataclass(frozen=True)
class RecordSnapshot:
    """The exact bytes of a record as read, and (on GCS) the object generation they came from."""

    location: Location
    data: bytes
    generation: str | None = None


_PINNED_READ_ATTEMPTS = 5  # a record rewritten faster than it can be read is a conflict


def read_snapshot(loc: Location) -> RecordSnapshot:
    """Read the record at ``loc`` for a later :func:`swap`."""
    if loc.fs is None:
        return RecordSnapshot(loc, read_file(loc.path))
    fs = loc.fs
    for _ in range(_PINNED_READ_ATTEMPTS):
        fs.invalidate_cache(loc.path)
        generation = _generation(fs.info(loc.path))  # FileNotFoundError: no record at all
        if generation is None:
            return RecordSnapshot(loc, read_object(fs, loc.path, loc.url))
        try:
            return RecordSnapshot(loc, read_object(fs, loc.path, loc.url, generation=generation), generation)
        except FileNotFoundError:  # replaced between info and read: that generation is gone
            continue
    raise RecordConflictError(f"{loc.url}: record kept changing while it was read; left as is")


class DirSync:
    """Directories whose renames still need an fsync, synced together by :meth:`flush`.

    The file's own bytes are always fsynced before the rename (a power loss must never leave an
    empty record: that would lose the data key). Syncing the *directory* only makes the rename
    itself durable; until then a power loss can only bring back the old record, which still
    decrypts (its version cannot be destroyed before a later complete scan). So a batch of swaps
    may share one directory fsync per directory, done before the batch reports success.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dirs: set[str] = set()

    def add(self, path: str) -> None:
        with self._lock:
            self._dirs.add(path)

    def flush(self) -> list[tuple[str, str]]:
        """fsync every collected directory; returns (directory, reason) for those that failed."""
        with self._lock:
            dirs, self._dirs = sorted(self._dirs), set()
        failed = []
        for path in dirs:
            try:
                fsync_dir(path)
            except OSError as exc:
                failed.append((path, f"cannot fsync directory ({exc.strerror or exc})"))
        return failed


def swap(snapshot: RecordSnapshot, new: bytes, *, dir_sync: DirSync | None = None) -> None:
    """Replace the record with ``new`` iff it is still ``snapshot``; else :class:`RecordConflictError`.

    Locally the parent directory is fsynced before returning, unless ``dir_sync`` collects it for
    a later :meth:`DirSync.flush`.
    """
    if snapshot.location.fs is None:
        _swap_local(snapshot, new, dir_sync)
    else:
        _swap_remote(snapshot, new)


def _swap_local(snapshot: RecordSnapshot, new: bytes, dir_sync: DirSync | None) -> None:
    path = snapshot.location.path
    url = snapshot.location.url
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise RecordConflictError(f"{url}: record was removed while rewrapping; left as is") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            current = read_file(path)
        except FileNotFoundError:
            current = None
        if current != snapshot.data:
            raise RecordConflictError(
                f"{url}: record changed while rewrapping (concurrent writer); left as is"
            )
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        parent, name = os.path.split(path)
        temp = os.path.join(parent, temp_name(name, PART_SUFFIX))
        try:
            write_synced(temp, new, mode)
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        if dir_sync is None:
            fsync_dir(parent)
        else:
            dir_sync.add(parent)
    finally:
        os.close(fd)  # releases the lock


def write_synced(path: str, data: bytes, mode: int) -> None:
    """Create ``path`` (never an existing file) holding ``data`` with ``mode``, fsynced before it is
    closed: a rename that publishes it can then never publish an empty or torn file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    """Make the renames in directory ``path`` durable."""
    dfd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _generation(info: dict[str, Any]) -> str | None:
    value = info.get("generation")
    return None if value in (None, "") else str(value)


def _swap_remote(snapshot: RecordSnapshot, new: bytes) -> None:
    loc = snapshot.location
    fs = loc.fs
    assert fs is not None
    fs.invalidate_cache(loc.path)
    try:
        info = fs.info(loc.path)
    except FileNotFoundError:
        raise RecordConflictError(f"{loc.url}: record was removed while rewrapping; left as is") from None
    if _generation(info) != snapshot.generation:
        raise RecordConflictError(
            f"{loc.url}: record changed while rewrapping (generation {snapshot.generation} -> "
            f"{_generation(info)}); left as is"
        )
    if snapshot.generation is None:
        if read_object(fs, loc.path, loc.url) != snapshot.data:
            raise RecordConflictError(f"{loc.url}: record changed while rewrapping; left as is")
        fs.pipe_file(loc.path, new)  # no generations on this store: check-then-write (small window)
        return
    try:
        _gcs_put_if_generation_match(fs, loc.path, new, snapshot.generation)
    except FileExistsError:  # gcsfs maps HTTP 412 Precondition Failed to FileExistsError
        raise RecordConflictError(
            f"{loc.url}: record changed while rewrapping (generation precondition failed); left as is"
        ) from None
    fs.invalidate_cache(loc.path)


_BOUNDARY = "kmsflow-record-boundary"


def _gcs_put_if_generation_match(fs: Any, path: str, data: bytes, generation: str) -> None:
    """One multipart JSON-API upload of ``data`` to ``path`` with ``ifGenerationMatch``.

    This is what ``gcsfs.core.simple_upload`` sends, with the precondition it does not expose.
    """
    from gcsfs.core import quote

    bucket, key, _ = fs.split_path(path)
    metadata = json.dumps({"name": key, "contentType": "application/json"})
    body = (
        (
            f"--{_BOUNDARY}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n"
            f"--{_BOUNDARY}\r\nContent-Type: application/json\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{_BOUNDARY}--".encode()
    )
    fs.call(
        "POST",
        f"{fs._location}/upload/storage/v1/b/{quote(bucket)}/o",
        uploadType="multipart",
        ifGenerationMatch=generation,
        headers={"Content-Type": f'multipart/related; boundary="{_BOUNDARY}"'},
        data=body,
        json_out=True,
    )
