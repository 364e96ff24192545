"""Remove the temps that interrupted kmsflow writes left behind (``kmsflow clean``).

A killed encrypt, decrypt, rewrap or re-encrypt can leave a ``.<name>.kmsflow-<hex>.part`` file or
a ``.<name>.kmsflow-<hex>.tmp`` directory (a prefix on GCS). Nothing else ever removes them, the
inventory reports them forever as informational ``stale_temp`` findings, and on GCS they cost
money. This module removes them, and only them, without ever risking a live writer or an
envelope (architecture invariant 1):

* The candidates are the ``stale_temp`` findings of a fresh :func:`kmsflow.inventory.scan` and
  nothing else. A ``reencrypt_backup`` or ``reencrypt_committed`` may hold the only copy of an
  envelope's data or record; only ``kmsflow reencrypt`` resolves those.
* A temp inside a dataset envelope (outside its ``_kmsflow/``) is kept: kmsflow never stages
  there, so it may be a data file the dataset's record lists under a temp-like name.
* A temp is removed only when its newest content is at least ``older_than`` seconds old, measured
  right before the removal (not at scan time): local, the newest mtime of the file or of any file
  or directory in its tree; GCS, the newest ``updated`` of its objects. A younger one may still
  be written by a live run.
* A local re-encrypt staging directory (one with the ``flock`` marker) is removed only through
  :func:`kmsflow.lifecycle.reencrypt_local.remove_if_orphan`: a live run holds the lock, so its
  directory is kept whatever its age.
* A GCS staging prefix is removed only by re-encrypt's own take-over rule
  (:func:`kmsflow.lifecycle.reencrypt_gcs.take_over_refusal` with ``stale_after = older_than``):
  no COMMIT, a LEASE, and no object newer than the threshold. A live run refreshes its LEASE
  every minute, so a threshold under a minute can take a live run's staging; like
  ``reencrypt --stale-after 0``, use one only when no re-encrypt of those envelopes is running.

One temp that cannot be removed is reported (``failed``) and never stops the others.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from kmsflow.envelope.layout import DATASET_RECORD, RESERVED_DIR
from kmsflow.envelope.storage import Location, resolve
from kmsflow.inventory import Finding, FindingKind, Inventory, scan
from kmsflow.lifecycle import reencrypt_gcs as gcs
from kmsflow.lifecycle import reencrypt_local as local
from kmsflow.lifecycle.seconds import check_seconds

log = logging.getLogger(__name__)

DEFAULT_OLDER_THAN = 3600.0
"""Seconds: well past the 30 min after which re-encrypt takes over a GCS staging prefix itself."""

REMOVED = "removed"
WOULD_REMOVE = "would_remove"  # dry run
KEPT = "kept"
GONE = "gone"  # disappeared between the scan and its turn (its writer finished, or another clean)
FAILED = "failed"
STATUSES = (REMOVED, WOULD_REMOVE, KEPT, GONE, FAILED)


@dataclass(frozen=True)
class TempOutcome:
    """What happened to one temp. ``kind``: ``file``, ``directory`` (a prefix on GCS), or
    ``unknown`` when it was gone or failed before it could be looked at; ``age`` in seconds."""

    url: str
    kind: str
    age: float | None
    status: str
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "age": None if self.age is None else round(self.age, 1)}


@dataclass(frozen=True)
class CleanReport:
    """The temps found under ``roots`` and what became of each; ``unscanned`` are the roots or
    directories that could not be listed (their temps, if any, were not seen)."""

    roots: tuple[str, ...]
    older_than: float
    dry_run: bool
    temps: tuple[TempOutcome, ...]
    unscanned: tuple[Finding, ...]

    def with_status(self, status: str) -> list[TempOutcome]:
        return [t for t in self.temps if t.status == status]

    @property
    def failures(self) -> list[TempOutcome]:
        return self.with_status(FAILED)

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
            **{status: len(self.with_status(status)) for status in STATUSES},
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
    datasets = _dataset_dirs(inv)
    temps = tuple(
        _clean_one(f.url, older_than, dry_run, datasets)
        for f in inv.findings
        if f.kind == FindingKind.STALE_TEMP
    )
    unscanned = tuple(f for f in inv.findings if f.kind == FindingKind.UNREACHABLE_ROOT)
    return CleanReport(tuple(roots), older_than, dry_run, temps, unscanned)


def _dataset_dirs(inv: Inventory) -> set[str]:
    """URLs of the dataset envelopes the scan found, with a usable record or not."""
    suffix = "/" + DATASET_RECORD
    unusable = (FindingKind.UNREADABLE_RECORD, FindingKind.INVALID_RECORD)
    return {r.url for r in inv.envelopes if r.kind == "dataset"} | {
        f.url[: -len(suffix)] for f in inv.findings if f.kind in unusable and f.url.endswith(suffix)
    }


def _clean_one(url: str, older_than: float, dry_run: bool, datasets: set[str]) -> TempOutcome:
    owner = _dataset_owner(url, datasets)
    if owner is not None:
        reason = f"inside dataset envelope {owner}: may be its data; check by hand"
        return TempOutcome(url, "unknown", None, KEPT, reason)
    try:
        loc = resolve(url)
        if loc.is_local:
            outcome = _clean_local(loc.path, older_than, dry_run)
        else:
            outcome = _clean_remote(loc, older_than, dry_run)
    except Exception as exc:  # one bad temp (permission, network) must not stop the others
        reason = " ".join(f"{exc.__class__.__name__}: {exc}".split())
        return TempOutcome(url, "unknown", None, FAILED, reason)
    if outcome.status == REMOVED:
        log.info("clean: removed %s (%s, %.0f s old)", url, outcome.kind, outcome.age or 0.0)
    return outcome


def _dataset_owner(url: str, datasets: set[str]) -> str | None:
    """The innermost dataset envelope holding ``url`` as (possible) data; None when there is none
    or the temp lies in its ``_kmsflow/`` (an interrupted rewrap of its record)."""
    parts = url.split("/")
    for i in range(len(parts) - 1, 0, -1):
        head = "/".join(parts[:i])
        if head in datasets:
            return None if parts[i] == RESERVED_DIR else head
    return None


def _young(url: str, kind: str, age: float, older_than: float) -> TempOutcome | None:
    if age < older_than:
        reason = f"written {age:.0f} s ago (< {older_than:.0f} s): its writer may still be alive"
        return TempOutcome(url, kind, age, KEPT, reason)
    return None


def _clean_local(path: str, older_than: float, dry_run: bool) -> TempOutcome:
    if not os.path.lexists(path):
        return TempOutcome(path, "unknown", None, GONE)
    is_dir = os.path.isdir(path) and not os.path.islink(path)
    kind = "directory" if is_dir else "file"
    age = time.time() - (_newest_mtime(path) if is_dir else os.lstat(path).st_mtime)
    young = _young(path, kind, age, older_than)
    if young is not None:
        return young
    if is_dir and os.path.lexists(_marker(path)):
        return _clean_reencrypt_staging(path, age, dry_run)
    if dry_run:
        return TempOutcome(path, kind, age, WOULD_REMOVE)
    if is_dir:
        shutil.rmtree(path)  # encrypt/decrypt staging tree: no lock to respect, age is the guard
    else:
        os.unlink(path)
    return TempOutcome(path, kind, age, REMOVED)


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
    live = TempOutcome(path, "directory", age, KEPT, "a live re-encrypt run holds its lock")
    if dry_run:
        return TempOutcome(path, "directory", age, WOULD_REMOVE) if local.is_orphan(path) else live
    if local.remove_if_orphan(path):
        return TempOutcome(path, "directory", age, REMOVED)
    if not os.path.lexists(path):
        return TempOutcome(path, "directory", age, GONE)
    if os.path.lexists(_marker(path)) and not local.is_orphan(path):
        return live
    return TempOutcome(path, "directory", age, FAILED, "could not remove all of it (permissions?)")


def _clean_remote(loc: Location, older_than: float, dry_run: bool) -> TempOutcome:
    prefix = gcs.relist(loc)
    if prefix.objects:
        age = prefix.age()
        refusal = gcs.take_over_refusal(prefix, older_than)
        if refusal is not None:
            return TempOutcome(loc.url, "directory", age, KEPT, refusal)
        if not dry_run:
            gcs.take_over(prefix)
        return TempOutcome(loc.url, "directory", age, WOULD_REMOVE if dry_run else REMOVED)
    fs = loc.fs
    assert fs is not None
    fs.invalidate_cache(loc.path)
    try:
        info = fs.info(loc.path)
    except FileNotFoundError:
        return TempOutcome(loc.url, "unknown", None, GONE)
    age = gcs.newest_age([info])
    young = _young(loc.url, "file", age, older_than)
    if young is not None:
        return young
    if not dry_run:
        fs.rm(loc.path)
        fs.invalidate_cache(loc.path)
    return TempOutcome(loc.url, "file", age, WOULD_REMOVE if dry_run else REMOVED)
