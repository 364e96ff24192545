"""Atomic outputs: nothing appears at a destination name until every byte of it is complete.

Three strategies, chosen by :func:`stage`:

* **local tree** (a dataset directory): everything is built in a hidden sibling directory
  ``.<name>.kmsflow-<random>.tmp`` and renamed onto the destination in one ``rename(2)``;
* **local files** (a single file and its sidecar record): each file is written to a hidden sibling
  ``.<name>.kmsflow-<random>.part`` and hard-linked to its final name (which fails if the name was
  taken meanwhile: no clobbering), data first and record last;
* **remote** (fsspec, e.g. GCS): an object only becomes visible when its upload is finalized on
  close, so a failed stream is discarded (resumable upload cancelled) instead of closed; objects
  already finalized are deleted on failure; the record is written last, so a reader never sees a
  record whose data is incomplete.

On any failure (exception, KMS error, authentication failure, disk full, Ctrl-C) the staged files
are removed. Temp files hold only what their final name would hold: ciphertext when encrypting;
plaintext when decrypting, under the destination's own directory and permissions, removed unless
the whole envelope authenticated.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from typing import IO, Any

from kmsflow.envelope.errors import DestinationExistsError, EnvelopeIOError, os_reason
from kmsflow.envelope.storage import Location, fs_open_write


class Staging:
    """Collects the outputs of one operation and publishes them together (or not at all)."""

    def __init__(self, root: Location, *, tree: bool) -> None:
        self._root = root
        self._tree = tree and root.is_local
        self._tmpdir: str | None = None
        self._pending: list[tuple[str, str]] = []  # local files: (temp path, final path)
        self._written: list[Location] = []  # remote: finalized objects, deleted on abort
        self._made_dirs: list[str] = []  # local parent directories we created, removed on abort
        if self._tree:
            parent, name = os.path.split(root.path.rstrip(os.sep))
            self._makedirs(parent)
            self._tmpdir = os.path.join(parent, f".{name}.kmsflow-{secrets.token_hex(6)}.tmp")
            os.mkdir(self._tmpdir)  # default mode: the temp dir exposes nothing the result will not

    def _local_target(self, target: Location) -> str:
        if self._tmpdir is not None:
            rel = os.path.relpath(target.path, self._root.path)
            if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
                raise ValueError(f"{target.url} is outside {self._root.url}")
            path = os.path.join(self._tmpdir, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            return path
        parent, name = os.path.split(target.path)
        self._makedirs(parent or ".")
        temp = os.path.join(parent, f".{name}.kmsflow-{secrets.token_hex(6)}.part")
        self._pending.append((temp, target.path))
        return temp

    def _makedirs(self, path: str) -> None:
        """``mkdir -p``, remembering which directories did not exist before (for ``abort``)."""
        missing = []
        while path and not os.path.isdir(path):
            missing.append(path)
            path = os.path.dirname(path)
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(d)
                self._made_dirs.append(d)

    @contextlib.contextmanager
    def writer(self, target: Location) -> Iterator[IO[bytes]]:
        """A writable stream for ``target``; finalized when the block exits normally."""
        if target.is_local:
            path = self._local_target(target)
            with open(path, "xb") as local:
                yield local
            return
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
        self._written.append(target)

    def commit(self) -> None:
        """Publish every output under its final name."""
        if self._tmpdir is not None:
            try:
                os.rename(self._tmpdir, self._root.path)
            except OSError as exc:
                if os.path.lexists(self._root.path):
                    raise DestinationExistsError(appeared(self._root.url)) from None
                raise EnvelopeIOError(f"{self._root.url}: cannot publish output ({exc.strerror})") from None
            self._tmpdir = None
            return
        published: list[str] = []
        try:
            for temp, final in self._pending:
                _publish_no_clobber(temp, final)
                published.append(final)
        except BaseException:
            for final in published:
                with contextlib.suppress(OSError):
                    os.unlink(final)
            raise
        self._pending = []

    def abort(self) -> None:
        """Remove everything staged so far; never raises."""
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


@contextlib.contextmanager
def stage(root: Location, *, tree: bool) -> Iterator[Staging]:
    """Stage outputs under ``root``; commit on success, abort on any exception."""
    staging = Staging(root, tree=tree)
    try:
        yield staging
    except BaseException:
        staging.abort()
        raise
    try:
        staging.commit()
    except BaseException:
        staging.abort()
        raise
