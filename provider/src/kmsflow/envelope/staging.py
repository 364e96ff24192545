"""Atomic outputs: nothing appears at a destination name until every byte of it is complete.

Three strategies, chosen by :func:`stage`:

* **local tree** (a dataset directory): everything is built in a hidden sibling directory
  ``.<name>.kmsflow-<random>.tmp`` (``.plain`` for decrypted data) and renamed onto the destination
  in one ``rename(2)``;
* **local files** (a single file and its sidecar record): each file is written to a hidden sibling
  ``.<name>.kmsflow-<random>.part`` (``.plain`` for decrypted data) and hard-linked to its final
  name (which fails if the name was taken meanwhile: no clobbering), data first and record last;
* **remote** (fsspec, e.g. GCS): an object only becomes visible when its upload is finalized on
  close, so a failed stream is discarded (resumable upload cancelled) instead of closed; objects
  already finalized are deleted on failure; the record is written last, so a reader never sees a
  record whose data is incomplete.

On any failure (exception, KMS error, authentication failure, disk full, Ctrl-C, and SIGTERM or
SIGHUP through the CLI's handlers) the staged files are removed. Temp files hold only what their
final name would hold: ciphertext when encrypting; plaintext when decrypting, removed unless the
whole envelope authenticated. Failing to create or publish them (a parent that is a regular file,
a read-only directory, a full disk) is an :class:`EnvelopeIOError` naming the path and the reason.

**Plaintext** (``plaintext=True``, decrypt) is staged with owner-only modes whatever the umask:
files 0600, directories 0700, created with ``O_EXCL``, so no other user can read decrypted bytes at
any instant. The published output keeps those modes: a security tool does not widen access to
decrypted data (``chmod`` it if others must read it). Its temps carry their own suffix,
``.plain``, so a leftover is recognisable as decrypted data by its name, and the live decrypt holds
an exclusive ``flock`` on its temp (the tree's directory, or the file) until it is published or
removed: ``kmsflow clean`` removes an unlocked plaintext temp at once and never a locked one.

**Aborting from outside**: an Airflow task's ``on_kill`` runs in a signal handler or another thread
while ``execute`` is writing. Stagings opened inside :func:`abort_scope` register there;
:meth:`AbortScope.abort` removes their temps at once and makes their next step (a new file, the
publication) raise :class:`StagingAbortedError`, so nothing is published afterwards either. A tree
staging creates everything relative to its directory's descriptor, so once that directory is
removed nothing can be created in it again (the kernel refuses new entries in a deleted directory).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import IO, Any

from kmsflow.envelope.errors import DestinationExistsError, EnvelopeIOError, StagingAbortedError, os_reason
from kmsflow.envelope.layout import PART_SUFFIX, PLAINTEXT_TEMP_SUFFIX, TEMP_SUFFIX, temp_name
from kmsflow.envelope.storage import Location, fs_open_write

PLAINTEXT_FILE_MODE = 0o600
PLAINTEXT_DIR_MODE = 0o700
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


class Staging:
    """Collects the outputs of one operation and publishes them together (or not at all).

    Thread-safe against :meth:`abort`: it may come from another thread or from a signal handler
    interrupting this object's own methods (hence a re-entrant lock).
    """

    def __init__(self, root: Location, *, tree: bool, plaintext: bool = False) -> None:
        self._root = root
        self._tree = tree and root.is_local
        self._plaintext = plaintext
        self._lock = threading.RLock()
        self._aborted = False
        self._committed = False
        self._tmpdir: str | None = None
        self._dirfd: int | None = None  # the tree's directory: creations are relative to it
        self._held: list[int] = []  # descriptors keeping plaintext temps flock'ed until publish/abort
        self._pending: list[tuple[str, str]] = []  # local files: (temp path, final path)
        self._written: list[Location] = []  # remote: finalized objects, deleted on abort
        self._made_dirs: list[str] = []  # local parent directories we created, removed on abort

    def start(self) -> None:
        """Create the tree's staging directory (local trees only; files are staged one by one)."""
        self._check_live()
        if not self._tree:
            return
        parent, name = os.path.split(self._root.path.rstrip(os.sep))
        self._makedirs(parent)
        suffix = PLAINTEXT_TEMP_SUFFIX if self._plaintext else TEMP_SUFFIX
        path = os.path.join(parent, temp_name(name, suffix))
        with self._lock:
            self._check_live()
            try:
                os.mkdir(path, PLAINTEXT_DIR_MODE if self._plaintext else 0o777)
            except OSError as exc:
                raise self._unwritable(parent, exc, "a temporary directory") from None
            self._tmpdir = path
            try:
                self._dirfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                if self._plaintext:
                    os.fchmod(self._dirfd, PLAINTEXT_DIR_MODE)  # exact, whatever the umask
                    fcntl.flock(self._dirfd, fcntl.LOCK_EX)
            except OSError as exc:
                raise self._unwritable(parent, exc, "a temporary directory") from None

    def _check_live(self) -> None:
        if self._aborted:
            raise StagingAbortedError(f"{self._root.url}: output aborted (task killed); nothing was kept")

    def _unwritable(self, where: str, exc: OSError, what: str) -> EnvelopeIOError:
        return EnvelopeIOError(
            f"{self._root.url}: cannot create {what} in {where or '.'} ({os_reason(exc)}); "
            "the destination's parent must be a writable directory"
        )

    def _create_local(self, target: Location) -> int:
        """Create the temp for ``target`` (``O_EXCL``) and return its descriptor, open for writing."""
        if self._tmpdir is not None:
            rel = os.path.relpath(target.path, self._root.path)
            if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
                raise ValueError(f"{target.url} is outside {self._root.url}")
            with self._lock:
                self._check_live()
                try:
                    return self._create_in_tree(rel)
                except OSError as exc:
                    raise self._unwritable(self._tmpdir, exc, "a temporary file") from None
        parent, name = os.path.split(target.path)
        self._makedirs(parent or ".")
        suffix = PLAINTEXT_TEMP_SUFFIX if self._plaintext else PART_SUFFIX
        temp = os.path.join(parent, temp_name(name, suffix))
        with self._lock:
            self._check_live()
            try:
                fd = os.open(temp, _CREATE, PLAINTEXT_FILE_MODE if self._plaintext else 0o666)
            except OSError as exc:
                raise self._unwritable(parent, exc, "a temporary file") from None
            self._pending.append((temp, target.path))
            if self._plaintext:
                try:
                    os.fchmod(fd, PLAINTEXT_FILE_MODE)
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    self._held.append(os.dup(fd))  # the lock outlives the writer's close
                except OSError as exc:
                    os.close(fd)
                    raise self._unwritable(parent, exc, "a temporary file") from None
            return fd

    def _create_in_tree(self, rel: str) -> int:
        """Create ``rel`` and its directories relative to the tree's descriptor (never by path:
        once an abort removed the tree, nothing can be created in it again)."""
        assert self._dirfd is not None
        parts = rel.split(os.sep)
        for i in range(1, len(parts)):
            sub = os.path.join(*parts[:i])
            try:
                os.mkdir(sub, PLAINTEXT_DIR_MODE if self._plaintext else 0o777, dir_fd=self._dirfd)
            except FileExistsError:
                continue
            if self._plaintext:
                os.chmod(sub, PLAINTEXT_DIR_MODE, dir_fd=self._dirfd)
        fd = os.open(rel, _CREATE, PLAINTEXT_FILE_MODE if self._plaintext else 0o666, dir_fd=self._dirfd)
        if self._plaintext:
            os.fchmod(fd, PLAINTEXT_FILE_MODE)
        return fd

    def _makedirs(self, path: str) -> None:
        """``mkdir -p``, remembering which directories did not exist before (for ``abort``)."""
        missing = []
        while path and not os.path.isdir(path):
            missing.append(path)
            path = os.path.dirname(path)
        for d in reversed(missing):
            try:
                os.mkdir(d)
            except FileExistsError:
                continue  # another writer's, or a regular file (the temp's creation then says so)
            except OSError as exc:
                raise self._unwritable(os.path.dirname(d), exc, f"directory {d}") from None
            self._made_dirs.append(d)

    @contextlib.contextmanager
    def writer(self, target: Location) -> Iterator[IO[bytes]]:
        """A writable stream for ``target``; finalized when the block exits normally."""
        if target.is_local:
            local = os.fdopen(self._create_local(target), "wb")
            try:
                yield local
            except BaseException:
                with contextlib.suppress(OSError):
                    local.close()
                raise
            try:
                local.close()
            except OSError as exc:  # the last buffered bytes (a full disk)
                raise write_failure(target.url, exc, "writing") from None
            return
        with self._lock:
            self._check_live()
        remote: Any = fs_open_write(target.fs, target.path)
        try:
            yield remote
            remote.close()
        except FileExistsError:  # GCS refused the create-only upload: someone else wrote the name
            _discard(remote)
            raise DestinationExistsError(appeared(target.url)) from None
        except BaseException:
            _discard(remote)
            raise
        with self._lock:
            self._written.append(target)  # an abort meanwhile: the caller's abort deletes it
            self._check_live()

    def commit(self) -> None:
        """Publish every output under its final name."""
        with self._lock:
            self._check_live()
            if self._tmpdir is not None:
                try:
                    os.rename(self._tmpdir, self._root.path)
                except OSError as exc:
                    if os.path.lexists(self._root.path):
                        raise DestinationExistsError(appeared(self._root.url)) from None
                    raise EnvelopeIOError(
                        f"{self._root.url}: cannot publish output ({os_reason(exc)})"
                    ) from None
                self._tmpdir = None
            else:
                self._publish_files()
            self._committed = True
            self._written, self._made_dirs = [], []
            self._release()

    def _publish_files(self) -> None:
        published: list[str] = []
        try:
            for temp, final in self._pending:
                try:
                    _publish_no_clobber(temp, final)
                except OSError as exc:
                    raise EnvelopeIOError(f"{final}: cannot publish output ({os_reason(exc)})") from None
                published.append(final)
        except BaseException:
            for final in published:
                with contextlib.suppress(OSError):
                    os.unlink(final)
            raise
        self._pending = []

    def abort(self) -> None:
        """Remove everything staged so far and refuse any further step; never raises. A no-op once
        committed; safe to call again, from another thread or from a signal handler."""
        with self._lock:
            self._aborted = True
            if self._committed:
                return
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
                self._tmpdir = None
            for temp, _ in self._pending:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
            self._pending = []
            for loc in reversed(self._written):
                loc.remove()
            self._written = []
            for d in reversed(self._made_dirs):
                with contextlib.suppress(OSError):
                    os.rmdir(d)  # only if still empty
            self._made_dirs = []
            self._release()

    def _release(self) -> None:
        """Close the tree's descriptor and the held plaintext locks (the temps are gone or renamed)."""
        for fd in [*self._held, *([self._dirfd] if self._dirfd is not None else [])]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._held, self._dirfd = [], None


def _publish_no_clobber(temp: str, final: str) -> None:
    """Give ``temp`` the name ``final`` unless ``final`` exists (hard link, else checked rename)."""
    try:
        os.link(temp, final)
    except FileExistsError:
        raise DestinationExistsError(appeared(final)) from None
    except OSError:  # filesystem without hard links: fall back to rename after a check
        if os.path.lexists(final):
            raise DestinationExistsError(appeared(final)) from None
        os.replace(temp, final)
        return
    os.unlink(temp)


def appeared(url: str) -> str:
    """The message for a destination another writer created while this one was writing it."""
    return f"{url}: appeared while writing; not replaced"


def write_failure(url: str, exc: OSError, doing: str) -> DestinationExistsError | EnvelopeIOError:
    """The error for a failed write of ``url``. A ``FileExistsError`` is another writer's object:
    GCS answers the create-only (``ifGenerationMatch=0``) upload with 412, which gcsfs raises as
    ``FileExistsError``, possibly from a write that opened the resumable upload, far from ``close``."""
    if isinstance(exc, FileExistsError):
        return DestinationExistsError(appeared(url))
    return EnvelopeIOError(f"{url}: {os_reason(exc)} while {doing}")


def _discard(f: Any) -> None:
    """Cancel a remote upload so that the object is never created."""
    with contextlib.suppress(Exception):
        f.discard()
    # fsspec's __del__ closes (i.e. uploads) unclosed files: mark it closed without uploading.
    with contextlib.suppress(Exception):
        f.closed = True


class AbortScope:
    """The stagings opened inside one ``with abort_scope()`` block (an Airflow task's ``execute``),
    so that code running elsewhere (``on_kill`` in a signal handler or another thread) can abort
    them. Once aborted, a staging that starts later in the scope is refused too."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # re-entered when a signal handler interrupts add/discard
        self._live: list[Staging] = []
        self._aborted = False

    def add(self, staging: Staging) -> None:
        with self._lock:
            if self._aborted:
                staging.abort()  # its first step raises StagingAbortedError
            else:
                self._live.append(staging)

    def discard(self, staging: Staging) -> None:
        with self._lock:
            if staging in self._live:
                self._live.remove(staging)

    def abort(self) -> bool:
        """Abort every live staging of the scope (and refuse new ones); True if one was live."""
        with self._lock:
            self._aborted = True
            live, self._live = self._live, []
        for staging in live:
            staging.abort()
        return bool(live)


_SCOPE: ContextVar[AbortScope | None] = ContextVar("kmsflow_abort_scope", default=None)


@contextlib.contextmanager
def abort_scope() -> Iterator[AbortScope]:
    """Register every :func:`stage` opened in this block (same thread / context) with a new
    :class:`AbortScope`, which another thread or a signal handler may abort."""
    scope = AbortScope()
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


@contextlib.contextmanager
def stage(root: Location, *, tree: bool, plaintext: bool = False) -> Iterator[Staging]:
    """Stage outputs under ``root``; commit on success, abort on any exception (``BaseException``:
    Ctrl-C and the CLI's SIGTERM/SIGHUP too). ``plaintext`` for decrypted data (see the module
    docstring: owner-only modes, ``.plain`` temps, ``flock``)."""
    staging = Staging(root, tree=tree, plaintext=plaintext)
    scope = _SCOPE.get()
    if scope is not None:
        scope.add(staging)
    try:
        staging.start()
        yield staging
        staging.commit()
    except BaseException:
        staging.abort()
        raise
    finally:
        if scope is not None:
            scope.discard(staging)
