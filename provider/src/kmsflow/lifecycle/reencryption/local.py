"""The local replacement protocol of re-encrypt: swap a verified new envelope in, crash-safe.

:mod:`kmsflow.lifecycle.reencrypt` builds and verifies the new envelope in a hidden staging
directory ``.<name>.kmsflow-<hex>.tmp`` beside the old one; this module puts it in place. An
envelope has at least two names (data + record), and POSIX renames one name at a time, so the
order of the renames is what keeps every instant decryptable. The rule: **the record at the
canonical name always names an envelope whose data can be found** — at the canonical name, or in
the backup ``.<name>.kmsflow-<old id>.old`` that carries the record's envelope id — so recovery
only ever *rolls back* to what that record names, and never needs a key version that no record
references (the inventory counts canonical records only).

File envelope ``X`` + ``X.kmsflow.json`` (``flock`` held on the record throughout)::

    link X -> .X.kmsflow-<old id>.old        backed_up        old record, X = backup = old data
    replace staged data -> X                 data_replaced    old record, old data in the backup
    replace staged record -> X.kmsflow.json  record_replaced  new record, new data; backup garbage
    unlink the backup                        backup_removed

Dataset ``D`` (``flock`` held on ``D/_kmsflow/envelope.json``, which travels with the rename)::

    rename D -> .D.kmsflow-<old id>.old      moved_aside      D absent, old envelope in the backup
    rename staged dir -> D                   placed           new envelope at D; backup garbage
    rmtree the backup                        backup_removed

Resolution of a leftover backup (:func:`recover`, run by re-encrypt before it reads an envelope;
``Envelope.open`` applies the same rule read-only): a file backup whose id equals the id in
``X.kmsflow.json`` is renamed back onto ``X`` (before ``data_replaced`` it is the same inode as
``X`` and is simply unlinked); otherwise it is garbage and removed. A dataset backup is renamed back onto
``D`` when ``D`` is absent; otherwise (``D`` holds a valid record) it is garbage and removed.
Every step is fsynced (the staged files before any rename, the directory after each rename), so
the order also survives a power loss, not only a kill.

Concurrency: the lock is the one :mod:`kmsflow.lifecycle.cas` takes (``flock`` on the record), so
a rewrap and a re-encrypt of the same envelope serialize, and the record bytes and the data files'
identities (device, inode, size, mtime) are re-checked under the lock: a change since they were
read and authenticated is a :class:`~kmsflow.lifecycle.cas.RecordConflictError`, nothing replaced.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from typing import IO

from kmsflow.envelope.errors import EnvelopeError
from kmsflow.envelope.layout import (
    DATASET_RECORD,
    RESERVED_DIR,
    SIDECAR_SUFFIX,
    TEMP_SUFFIX,
    reencrypt_backup,
    temp_name,
)
from kmsflow.envelope.layout import reencrypt_backups as _backups
from kmsflow.envelope.record import EnvelopeRecord
from kmsflow.envelope.storage import Location, read_file
from kmsflow.lifecycle.cas import RecordConflictError, RecordSnapshot, fsync_dir, write_synced

StepHook = Callable[[str, str], None]
"""Called as ``hook(step, envelope_url)`` after each protocol step (the test seam, see below)."""

# Protocol steps, in order, reported to the ``on_step`` hook. The crash tests SIGKILL the process
# at each one and check that the envelope still decrypts and that a rerun converges.
STEP_STREAMING = "streaming"  # first block of a file re-encrypted into the staging directory
STEP_STAGED = "staged"  # new data and record written and fsynced in the staging directory
STEP_VERIFIED = "verified"  # the staged envelope authenticated end to end under the new key
STEP_BACKED_UP = "backed_up"
STEP_DATA_REPLACED = "data_replaced"
STEP_RECORD_REPLACED = "record_replaced"
STEP_MOVED_ASIDE = "moved_aside"
STEP_PLACED = "placed"
STEP_BACKUP_REMOVED = "backup_removed"
FILE_STEPS = (
    STEP_STREAMING,
    STEP_STAGED,
    STEP_VERIFIED,
    STEP_BACKED_UP,
    STEP_DATA_REPLACED,
    STEP_RECORD_REPLACED,
    STEP_BACKUP_REMOVED,
)
DATASET_STEPS = (
    STEP_STREAMING,
    STEP_STAGED,
    STEP_VERIFIED,
    STEP_MOVED_ASIDE,
    STEP_PLACED,
    STEP_BACKUP_REMOVED,
)

Ident = tuple[int, int, int, int]
"""(device, inode, size, mtime_ns) of a data file as it was read: changed => someone wrote it."""


def ident(st: os.stat_result) -> Ident:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _noop(step: str, url: str) -> None:
    pass


STAGING_MARKER = f"{RESERVED_DIR}/reencrypt.lock"
"""Inside a re-encrypt staging directory: a file ``flock``ed by the run that owns the directory for
as long as it lives. The kernel drops the lock when the process dies (kill -9 included), so a
staging directory whose marker can be locked is an orphan; one without a marker is not ours."""
_STAGING_NAME = re.compile(r"^\.(?P<name>.+)\.kmsflow-[0-9a-f]+\.tmp$")


@contextlib.contextmanager
def staging_dir(envelope: str) -> Iterator[str]:
    """A new hidden sibling ``.<name>.kmsflow-<hex>.tmp`` (mode 0700), locked while in use.

    Its name is kmsflow's staging name, so the inventory reports a leftover as an informational
    ``stale_temp``: it is never needed (recovery only rolls back) and holds ciphertext only; the
    next run removes it (:func:`remove_if_orphan`). Removed on exit unless renamed into place.
    """
    parent, name = os.path.split(envelope.rstrip(os.sep))
    path = os.path.join(parent, temp_name(name, TEMP_SUFFIX))
    os.mkdir(path, 0o700)
    marker = os.path.join(path, *STAGING_MARKER.split("/"))
    try:
        os.mkdir(os.path.dirname(marker), 0o700)
        # Locked before it gets its name: whoever finds the marker finds it locked (or orphaned).
        fd = os.open(marker + ".part", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(marker + ".part", marker)
        yield path
    finally:
        try:
            if os.path.lexists(path):
                shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)


def orphan_candidates(envelope: Location) -> list[str]:
    """Staging directories named after the local ``envelope`` (one listing of its parent)."""
    parent = os.path.dirname(envelope.path.rstrip(os.sep)) or "."
    try:
        names = sorted(os.listdir(parent))
    except OSError:
        return []
    out = []
    for name in names:
        m = _STAGING_NAME.match(name)
        if m and m.group("name") == envelope.name:
            out.append(os.path.join(parent, name))
    return out


@contextlib.contextmanager
def _orphan_locked(path: str) -> Iterator[bool]:
    """True inside the block when ``path`` is a re-encrypt staging directory whose marker this
    process now holds locked (so its run is gone and no other can claim it meanwhile); False for
    staging directories of ``encrypt``/``decrypt`` (no marker) and of live runs (marker locked)."""
    if not _STAGING_NAME.match(os.path.basename(path.rstrip(os.sep))) or not os.path.isdir(path):
        yield False
        return
    try:
        fd = os.open(os.path.join(path, *STAGING_MARKER.split("/")), os.O_RDONLY)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except BlockingIOError:
            locked = False
        yield locked
    finally:
        os.close(fd)


def is_orphan(path: str) -> bool:
    """Whether :func:`remove_if_orphan` would remove ``path`` now (for dry runs: the answer may
    change as soon as it is given, so only :func:`remove_if_orphan` may act on it)."""
    with _orphan_locked(path) as orphan:
        return orphan


def remove_if_orphan(path: str) -> bool:
    """Remove ``path`` if it is a re-encrypt staging directory whose run is gone; True if removed.

    Staging directories of ``encrypt``/``decrypt`` (no marker) and of live runs (marker locked)
    are left alone.
    """
    with _orphan_locked(path) as orphan:
        if not orphan:
            return False
        shutil.rmtree(path, ignore_errors=True)
        return not os.path.lexists(path)


@contextlib.contextmanager
def _locked(path: str) -> Iterator[int]:
    """``flock(LOCK_EX)`` on the record at ``path`` for the duration of the block."""
    fd = _lock_current(path)
    try:
        yield fd
    finally:
        os.close(fd)  # releases the lock


def _lock_current(path: str) -> int:
    """Lock ``path``, retrying until the locked inode is still the one at ``path`` (a writer that
    replaced the record while we waited leaves us holding the old inode). ``FileNotFoundError``
    when the record is gone."""
    for _ in range(1000):
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held, now = os.fstat(fd), os.stat(path)
        except FileNotFoundError:
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        if (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino):
            return fd
        os.close(fd)
    raise RecordConflictError(f"{path}: record keeps being replaced; try again")


def _read(path: str) -> bytes:
    """A record, whole, but never more than the format's cap + 1 bytes (``storage.read_file``)."""
    return read_file(path)


def _refuse_symlinks(*paths: str) -> None:
    for path in paths:
        if os.path.islink(path):
            raise EnvelopeError(f"{path}: is a symbolic link; re-encrypt the envelope it points to")


def check_local(envelope: str, kind: str) -> None:
    """Refuse layouts the rename protocol cannot replace faithfully (symbolic links)."""
    if kind == "file":
        _refuse_symlinks(envelope, envelope + SIDECAR_SUFFIX)
    else:
        _refuse_symlinks(envelope, os.path.join(envelope, *DATASET_RECORD.split("/")))


def commit_file(
    envelope: str,
    snapshot: bytes,
    data_ident: object,
    staged_data: str,
    staged_record: str,
    old_id: str,
    on_step: StepHook | None = None,
) -> None:
    """Put the staged file envelope in place of ``envelope`` (see the module docstring)."""
    hook = on_step or _noop
    record = envelope + SIDECAR_SUFFIX
    parent = os.path.dirname(envelope) or "."
    backup = reencrypt_backup(Location(envelope), old_id).path
    with _locked(record):
        _resolve_file_locked(envelope, record)
        if _read(record) != snapshot:
            raise RecordConflictError(f"{record}: record changed while re-encrypting; left as is")
        if ident(os.stat(envelope)) != data_ident:
            raise RecordConflictError(f"{envelope}: data changed while re-encrypting; left as is")
        _link_or_copy(envelope, backup)
        fsync_dir(parent)
        hook(STEP_BACKED_UP, envelope)
        os.replace(staged_data, envelope)
        fsync_dir(parent)
        hook(STEP_DATA_REPLACED, envelope)
        os.replace(staged_record, record)
        fsync_dir(parent)
        hook(STEP_RECORD_REPLACED, envelope)
        os.unlink(backup)
        fsync_dir(parent)
        hook(STEP_BACKUP_REMOVED, envelope)


def _link_or_copy(src: str, dst: str) -> None:
    """The backup: a hard link (no copy, same bytes); a fsynced copy where links are unsupported."""
    try:
        os.link(src, dst)
        return
    except FileExistsError:
        raise RecordConflictError(f"{dst}: a re-encrypt backup appeared meanwhile; left as is") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
    tmp = dst + ".kmsflow-copy.part"  # never the backup name until complete
    shutil.copyfile(src, tmp)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, dst)


def commit_dataset(
    envelope: str,
    snapshot: bytes,
    data_idents: Mapping[str, object],
    staged_dir: str,
    old_id: str,
    on_step: StepHook | None = None,
) -> None:
    """Put the staged dataset directory in place of ``envelope`` (see the module docstring)."""
    hook = on_step or _noop
    record = os.path.join(envelope, *DATASET_RECORD.split("/"))
    parent = os.path.dirname(envelope.rstrip(os.sep)) or "."
    backup = reencrypt_backup(Location(envelope), old_id).path
    with _locked(record):
        _remove_garbage_dataset_backups(envelope)
        if _read(record) != snapshot:
            raise RecordConflictError(f"{record}: record changed while re-encrypting; left as is")
        if dataset_idents(envelope) != data_idents:
            raise RecordConflictError(f"{envelope}: files changed while re-encrypting; left as is")
        if os.path.lexists(backup):
            raise RecordConflictError(f"{backup}: a re-encrypt backup appeared meanwhile; left as is")
        os.chmod(staged_dir, os.stat(envelope).st_mode & 0o7777)
        os.rename(envelope, backup)
        fsync_dir(parent)
        hook(STEP_MOVED_ASIDE, envelope)
        os.unlink(os.path.join(staged_dir, *STAGING_MARKER.split("/")))  # not part of the envelope
        os.rename(staged_dir, envelope)
        fsync_dir(parent)
        hook(STEP_PLACED, envelope)
        shutil.rmtree(backup)
        fsync_dir(parent)
        hook(STEP_BACKUP_REMOVED, envelope)


def dataset_idents(root: str) -> dict[str, Ident]:
    """Identity of every data file of a local dataset (``_kmsflow/`` excluded), by relative path."""
    found: dict[str, Ident] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d != RESERVED_DIR]
        for name in filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            found[rel] = ident(os.stat(full))
    return found


def recover(envelope: Location) -> str | None:
    """Resolve what an interrupted re-encrypt left at ``envelope``; a one-line note, or None.

    Local only (GCS rolls forward instead: :func:`kmsflow.lifecycle.reencryption.gcs.recover`). Safe
    to call at any time, also while another run commits: every decision is taken under the record
    lock and re-checked.
    """
    backups = _backups(envelope)
    if not backups:
        return None
    path = envelope.path
    if any(os.path.isdir(b.path) for b, _ in backups):
        return _recover_dataset(path)
    record = path + SIDECAR_SUFFIX
    if not os.path.isfile(record):
        raise EnvelopeError(
            f"{path}: re-encrypt backup found but no record {os.path.basename(record)}; "
            "resolve by hand (the backup holds ciphertext of the envelope it is named after)"
        )
    with _locked(record):
        return _resolve_file_locked(path, record)


def _resolve_file_locked(envelope: str, record: str) -> str | None:
    """Under the record lock: roll back to the backup the record names, drop the others."""
    current = EnvelopeRecord.from_json(_read(record), record).envelope_id
    note = None
    parent = os.path.dirname(envelope) or "."
    for backup, backup_id in _backups(Location(envelope)):
        if backup_id == current:
            # rename(2) between two links of one inode does nothing: before "data_replaced" X is
            # still the backup's inode, and dropping the extra link is the whole rollback.
            if os.path.lexists(envelope) and os.path.samefile(backup.path, envelope):
                os.unlink(backup.path)
            else:
                os.replace(backup.path, envelope)
            note = f"rolled back an interrupted re-encrypt of envelope {current}"
        else:
            os.unlink(backup.path)
            note = note or f"removed the backup of envelope {backup_id} (re-encrypt had finished)"
        fsync_dir(parent)
    return note


def _recover_dataset(envelope: str) -> str | None:
    note = None
    parent = os.path.dirname(envelope.rstrip(os.sep)) or "."
    for backup, backup_id in _backups(Location(envelope)):
        backup_record = os.path.join(backup.path, *DATASET_RECORD.split("/"))
        try:
            fd = _lock_current(backup_record)  # a committing run holds it until it is done
        except FileNotFoundError:
            continue  # that run finished and removed the backup while we listed
        try:
            if not os.path.isdir(backup.path):
                continue
            if not os.path.lexists(envelope):
                os.rename(backup.path, envelope)
                note = f"rolled back an interrupted re-encrypt of envelope {backup_id}"
            else:
                _require_dataset_record(envelope)
                shutil.rmtree(backup.path)
                note = note or f"removed the backup of envelope {backup_id} (re-encrypt had finished)"
            fsync_dir(parent)
        finally:
            os.close(fd)
    return note


def _remove_garbage_dataset_backups(envelope: str) -> None:
    """Under the lock of the dataset at ``envelope`` (which exists): its backups are garbage."""
    for backup, _ in _backups(Location(envelope)):
        if os.path.isdir(backup.path):
            shutil.rmtree(backup.path)


def _require_dataset_record(envelope: str) -> None:
    record = os.path.join(envelope, *DATASET_RECORD.split("/"))
    EnvelopeRecord.from_json(_read(record), record)  # raises unless D holds a valid record


# --- the re-encrypt job's view of a local envelope (see kmsflow.lifecycle.reencrypt) -------------


class LocalStore:
    """The live side of a local envelope: where the job reads old ciphertext and stages new.

    A file's identity (device, inode, size, mtime) is taken from the descriptor it is read
    through, so :func:`commit_file` / :func:`commit_dataset` can tell, under the record lock, that
    nobody wrote the data since it was authenticated.
    """

    def __init__(self, root: str, kind: str) -> None:
        self.root = root
        self.dataset = kind == "dataset"
        dataset_record = os.path.join(root, *DATASET_RECORD.split("/"))
        self.record = dataset_record if self.dataset else root + SIDECAR_SUFFIX

    def check(self) -> None:
        check_local(self.root, "dataset" if self.dataset else "file")

    def data_url(self, relpath: str) -> str:
        return os.path.join(self.root, *relpath.split("/")) if relpath else self.root

    def data_files(self) -> dict[str, object]:
        return dict(dataset_idents(self.root))

    @contextlib.contextmanager
    def open_source(self, relpath: str) -> Iterator[tuple[IO[bytes], object]]:
        with open(self.data_url(relpath), "rb") as raw:
            yield raw, ident(os.fstat(raw.fileno()))

    @contextlib.contextmanager
    def staging(self) -> Iterator[LocalStage]:
        with staging_dir(self.root) as path:
            yield LocalStage(self, path)


class LocalStage:
    """A locked staging directory: files created exclusively, fsynced, with the live files' modes."""

    def __init__(self, store: LocalStore, path: str) -> None:
        self.store = store
        self.path = path
        dataset_record = os.path.join(path, *DATASET_RECORD.split("/"))
        self.record_path = dataset_record if store.dataset else os.path.join(path, "record")

    def data_url(self, relpath: str) -> str:
        if not self.store.dataset:
            return os.path.join(self.path, "data")
        return os.path.join(self.path, *relpath.split("/"))

    def tick(self) -> None:
        """Nothing to refresh: the ``flock`` on the staging marker lives as long as the process."""

    @contextlib.contextmanager
    def writer(self, relpath: str) -> Iterator[IO[bytes]]:
        dst = self.data_url(relpath)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fchmod(out.fileno(), _mode(self.store.data_url(relpath)))
            os.fsync(out.fileno())

    def write_record(self, data: bytes) -> None:
        """Write the staged record (last), then fsync every staging directory: the renames that
        follow must never publish a name whose directory entry a power loss could forget."""
        os.makedirs(os.path.dirname(self.record_path), exist_ok=True)
        write_synced(self.record_path, data, _mode(self.store.record))
        for dirpath, _, _ in os.walk(self.path, topdown=False):
            fsync_dir(dirpath)

    def read_record(self) -> bytes:
        return _read(self.record_path)

    @contextlib.contextmanager
    def open_staged(self, relpath: str) -> Iterator[IO[bytes]]:
        with open(self.data_url(relpath), "rb") as f:
            yield f

    def staged_files(self) -> set[str]:
        if self.store.dataset:
            return set(dataset_idents(self.path))
        return {""} if os.path.isfile(self.data_url("")) else set()

    def commit(
        self,
        snapshot: RecordSnapshot,
        idents: Mapping[str, object],
        old: EnvelopeRecord,
        new: EnvelopeRecord,
        on_step: StepHook,
    ) -> None:
        """Swap the staged envelope in with the rename protocol of this module."""
        root = self.store.root
        if self.store.dataset:
            commit_dataset(root, snapshot.data, idents, self.path, old.envelope_id, on_step)
        else:
            commit_file(
                root, snapshot.data, idents[""], self.data_url(""), self.record_path, old.envelope_id, on_step
            )


def _mode(path: str) -> int:
    return os.stat(path).st_mode & 0o7777
