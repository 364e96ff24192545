"""Remove the temps that interrupted kmsflow writes left behind (``kmsflow clean``).

A killed encrypt, decrypt, rewrap or re-encrypt can leave a ``.<name>.kmsflow-<hex>.part`` file or
a ``.<name>.kmsflow-<hex>.tmp`` directory (a prefix on GCS), a killed decrypt a
``.<name>.kmsflow-<hex>.plain`` file or directory. Nothing else ever removes them, the
inventory reports them forever as informational ``stale_temp`` findings, and on GCS they cost
money. This module removes them, and only them, without ever risking a live writer or an
envelope (architecture invariant 1):

* The candidates are the ``stale_temp`` and ``plaintext_temp`` findings of a fresh
  :func:`kmsflow.inventory.scan` and nothing else. A ``reencrypt_backup`` or
  ``reencrypt_committed`` may hold the only copy of an envelope's data or record; only
  ``kmsflow reencrypt`` resolves those.
* A temp-like name inside a dataset envelope (outside its ``_kmsflow/``) is that dataset's data:
  kmsflow never stages there, so the scan never reports it as a temp.
* A decrypt's plaintext temp (``.<name>.kmsflow-<hex>.plain``, a ``plaintext_temp`` finding) is
  removed at once, whatever ``older_than`` says, unless the live decrypt writing it holds its
  ``flock``: it is never needed to recover anything, and it is decrypted data outside any envelope.
  (A decrypt whose temp is removed in the instant between its creation and its lock fails with
  an I/O error and publishes nothing.)
* Any other temp is removed only when its newest content is at least ``older_than`` seconds old,
  measured right before the removal (not at scan time): local, the newest mtime of the file or of
  any file or directory in its tree; GCS, the newest ``updated`` of its objects. A younger one may still
  be written by a live run.
* A local re-encrypt staging directory (one with the ``flock`` marker) is removed only through
  :func:`kmsflow.lifecycle.reencryption.local.remove_if_orphan`: a live run holds the lock, so its
  directory is kept whatever its age.
* A GCS staging prefix is removed only by re-encrypt's own take-over rule
  (:func:`kmsflow.lifecycle.reencryption.gcs.take_over_refusal` with ``stale_after = older_than``):
  no COMMIT, a LEASE, and no object newer than the threshold. A live run refreshes its LEASE
  every minute, so a threshold under a minute can take a live run's staging; like
  ``reencrypt --stale-after 0``, use one only when no re-encrypt of those envelopes is running.

One temp that cannot be removed is reported (``failed``) and never stops the others.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from kmsflow.envelope.storage import Location, resolve
from kmsflow.inventory import UNSEEN, Finding, FindingKind, scan
from kmsflow.lifecycle.outcomes import TempStatus
from kmsflow.lifecycle.reencryption import gcs, local
from kmsflow.lifecycle.seconds import check_seconds

log = logging.getLogger(__name__)

DEFAULT_OLDER_THAN = 3600.0
"""Seconds: well past the 30 min after which re-encrypt takes over a GCS staging prefix itself."""


@dataclass(frozen=True)
class TempOutcome:
    """What happened to one temp. ``kind``: ``file``, ``directory`` (a prefix on GCS), or
    ``unknown`` when it was gone or failed before it could be looked at; ``age`` in seconds."""

    url: str
    kind: str
    age: float | None
    status: TempStatus
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "status": str(self.status),
            "age": None if self.age is None else round(self.age, 1),
        }


@dataclass(frozen=True)
class CleanReport:
    """The temps found under ``roots`` and what became of each; ``unscanned`` are the roots,
    directories and symbolic links the scan could not see into (their temps, if any, were not
    seen)."""

    roots: tuple[str, ...]
    older_than: float
    dry_run: bool
    temps: tuple[TempOutcome, ...]
    unscanned: tuple[Finding, ...]

    def with_status(self, status: TempStatus) -> list[TempOutcome]:
        return [t for t in self.temps if t.status == status]

    @property
    def failures(self) -> list[TempOutcome]:
        return self.with_status(TempStatus.FAILED)

    @property
    def ok(self) -> bool:
        """Every root scanned and no temp failed (kept ones are fine: they are not stale yet)."""
        return not self.unscanned and not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "roots": list(self.roots),
            "older_than": self.older_than,
            "dry_run": self.dry_run,
            **{str(status): len(self.with_status(status)) for status in TempStatus},
            "temps": [t.to_dict() for t in self.temps],
            "unscanned": [f.to_dict() for f in self.unscanned],
        }


def clean_stale_temps(
    roots: Sequence[str], *, older_than: float = DEFAULT_OLDER_THAN, dry_run: bool = False
) -> CleanReport:
    """Scan ``roots`` and remove every kmsflow temp whose newest content is ``older_than`` seconds
    old (the module docstring says which are never removed). Never raises for storage problems."""
    check_seconds(older_than, "older_than")
    inv = scan(roots)
    temps = tuple(
        _clean_one(f.url, older_than, dry_run, plaintext=f.kind == FindingKind.PLAINTEXT_TEMP)
        for f in inv.findings
        if f.kind in (FindingKind.STALE_TEMP, FindingKind.PLAINTEXT_TEMP)
    )
    unscanned = tuple(f for f in inv.findings if f.kind in UNSEEN)
    return CleanReport(tuple(roots), older_than, dry_run, temps, unscanned)


def _clean_one(url: str, older_than: float, dry_run: bool, *, plaintext: bool) -> TempOutcome:
    try:
        loc = resolve(url)
        if loc.is_local and plaintext:
            outcome = _clean_plaintext(loc.path, dry_run)
        elif loc.is_local:
            outcome = _clean_local(loc.path, older_than, dry_run)
        else:
            outcome = _clean_remote(loc, older_than, dry_run)
    except Exception as exc:  # one bad temp (permission, network) must not stop the others
        reason = " ".join(f"{exc.__class__.__name__}: {exc}".split())
        return TempOutcome(url, "unknown", None, TempStatus.FAILED, reason)
    if outcome.status == TempStatus.REMOVED:
        log.info("clean: removed %s (%s, %.0f s old)", url, outcome.kind, outcome.age or 0.0)
    return outcome


def _young(url: str, kind: str, age: float, older_than: float) -> TempOutcome | None:
    if age < older_than:
        reason = f"written {age:.0f} s ago (< {older_than:.0f} s): its writer may still be alive"
        return TempOutcome(url, kind, age, TempStatus.KEPT, reason)
    return None


def _clean_local(path: str, older_than: float, dry_run: bool) -> TempOutcome:
    if not os.path.lexists(path):
        return TempOutcome(path, "unknown", None, TempStatus.GONE)
    is_dir = os.path.isdir(path) and not os.path.islink(path)
    kind = "directory" if is_dir else "file"
    age = time.time() - (_newest_mtime(path) if is_dir else os.lstat(path).st_mtime)
    young = _young(path, kind, age, older_than)
    if young is not None:
        return young
    if is_dir and os.path.lexists(_marker(path)):
        return _clean_reencrypt_staging(path, age, dry_run)
    if dry_run:
        return TempOutcome(path, kind, age, TempStatus.WOULD_REMOVE)
    if is_dir:
        shutil.rmtree(path)  # encrypt/decrypt staging tree: no lock to respect, age is the guard
    else:
        os.unlink(path)
    return TempOutcome(path, kind, age, TempStatus.REMOVED)


def _clean_plaintext(path: str, dry_run: bool) -> TempOutcome:
    """A decrypt's ``.plain`` temp, whatever its age: it is never needed to recover anything, and
    while it stays, decrypted data sits outside any envelope. Kept only while the decrypt that
    writes it holds its ``flock`` (``kmsflow.envelope.staging``); removed while holding that lock,
    so a decrypt can never take it back (it only ever locks a temp it has just created)."""
    if not os.path.lexists(path):
        return TempOutcome(path, "unknown", None, TempStatus.GONE)
    is_dir = os.path.isdir(path) and not os.path.islink(path)
    kind = "directory" if is_dir else "file"
    age = time.time() - (_newest_mtime(path) if is_dir else os.lstat(path).st_mtime)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_DIRECTORY if is_dir else 0))
    except FileNotFoundError:
        return TempOutcome(path, kind, age, TempStatus.GONE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return TempOutcome(path, kind, age, TempStatus.KEPT, "a live decrypt holds its lock")
        if dry_run:
            return TempOutcome(path, kind, age, TempStatus.WOULD_REMOVE)
        if is_dir:
            shutil.rmtree(path)
        else:
            os.unlink(path)
    finally:
        os.close(fd)
    return TempOutcome(path, kind, age, TempStatus.REMOVED)


def _newest_mtime(top: str) -> float:
    """Newest mtime of ``top`` and of every file and directory below it (a run writing anywhere
    in the tree, or removing something from it, keeps the whole tree young)."""
    newest = os.lstat(top).st_mtime
    for dirpath, dirnames, filenames in os.walk(top, onerror=_unless_gone):
        for name in dirnames + filenames:
            try:
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
            except FileNotFoundError:
                continue  # removed meanwhile: the directory's own mtime moved with it
    return newest


def _unless_gone(exc: OSError) -> None:
    """A directory that cannot be listed hides its ages: fail rather than guess it is old."""
    if not isinstance(exc, FileNotFoundError):
        raise exc


def _marker(path: str) -> str:
    return os.path.join(path, *local.STAGING_MARKER.split("/"))


def _clean_reencrypt_staging(path: str, age: float, dry_run: bool) -> TempOutcome:
    """A local re-encrypt staging directory: its run's ``flock`` on the marker decides."""
    live = TempOutcome(path, "directory", age, TempStatus.KEPT, "a live re-encrypt run holds its lock")
    if dry_run:
        return TempOutcome(path, "directory", age, TempStatus.WOULD_REMOVE) if local.is_orphan(path) else live
    if local.remove_if_orphan(path):
        return TempOutcome(path, "directory", age, TempStatus.REMOVED)
    if not os.path.lexists(path):
        return TempOutcome(path, "directory", age, TempStatus.GONE)
    if os.path.lexists(_marker(path)) and not local.is_orphan(path):
        return live
    return TempOutcome(path, "directory", age, TempStatus.FAILED, "could not remove all of it (permissions?)")


def _clean_remote(loc: Location, older_than: float, dry_run: bool) -> TempOutcome:
    prefix = gcs.relist(loc)
    if prefix.objects:
        age = prefix.age()
        refusal = gcs.take_over_refusal(prefix, older_than)
        if refusal is not None:
            return TempOutcome(loc.url, "directory", age, TempStatus.KEPT, refusal)
        if not dry_run:
            gcs.take_over(prefix)
        return TempOutcome(
            loc.url, "directory", age, TempStatus.WOULD_REMOVE if dry_run else TempStatus.REMOVED
        )
    fs = loc.fs
    assert fs is not None
    fs.invalidate_cache(loc.path)
    try:
        info = fs.info(loc.path)
    except FileNotFoundError:
        return TempOutcome(loc.url, "unknown", None, TempStatus.GONE)
    age = gcs.newest_age([info])
    young = _young(loc.url, "file", age, older_than)
    if young is not None:
        return young
    if not dry_run:
        fs.rm(loc.path)
        fs.invalidate_cache(loc.path)
    return TempOutcome(loc.url, "file", age, TempStatus.WOULD_REMOVE if dry_run else TempStatus.REMOVED)
