"""The latest inventory, kept as a small JSON document next to the audit log (no Airflow).

The Key Lifecycle page (``kmsflow.airflow.plugin``) must be fast and true without scanning on a
request: the lifecycle DAGs already scan every root (``kmsflow_rotate_rewrap``'s inventory,
``kmsflow_shred``'s proof), so each such scan is summarized here and replaces the previous snapshot.
A snapshot holds names, counts and times only -- per key version: envelopes, files, bytes, the first
:data:`MAX_BLOCKERS` record URLs referencing it and their count -- plus the scan's completeness, its
blocking findings (first few, and how many) and the run that made it. Never a wrapped key.

**Where**: beside the audit log, because that location is already the one every worker and the API
server agree on (``gs://`` or a shared volume, docs/AIRFLOW.md): ``<audit log>.inventory.json`` --
for a local log ``/var/lib/kmsflow/audit.jsonl.inventory.json``, for an object-store prefix
``gs://bucket/kmsflow/audit`` the sibling object ``gs://bucket/kmsflow/audit.inventory.json``
(outside the prefix, so the log's reader never takes it for an event).

**Atomic**: a reader sees the previous snapshot or the new one, never a torn one: locally an
fsynced temp renamed over the old file; on an object store a single-object upload (GCS replaces an
object atomically). Two runs finishing together: the last one wins, and each is a whole scan.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from typing import Any

from kmsflow.envelope.layout import PART_SUFFIX, temp_name
from kmsflow.envelope.storage import resolve
from kmsflow.inventory.model import Inventory

FORMAT = "kmsflow-inventory-snapshot/v1"
SUFFIX = ".inventory.json"
MAX_BLOCKERS = 20
"""Record URLs kept per version (and blocking findings per scan); the count is always exact."""
MAX_SNAPSHOT_BYTES = 4 << 20
"""A snapshot is a few KiB per key version; anything larger is not one of ours."""


class SnapshotError(Exception):
    """A snapshot could not be written or read (the message says where and why)."""


def snapshot_location(audit_location: str) -> str:
    """Where the snapshot of the lifecycle DAGs using the audit log ``audit_location`` lives."""
    return audit_location.rstrip("/") + SUFFIX


def covers(scanned_roots: Iterable[str], spec_roots: Iterable[str]) -> bool:
    """True when a scan of ``scanned_roots`` saw every root of the spec (what a snapshot claims)."""
    return set(spec_roots) <= set(scanned_roots)


def build_snapshot(inventory: Inventory, *, run: str, max_blockers: int = MAX_BLOCKERS) -> dict[str, Any]:
    """The JSON-safe summary of ``inventory`` made by ``run`` (``dag_id/run_id``).

    ``versions`` maps every key version the scan found referenced to its counts and blockers (the
    envelopes referencing it: what keeps it from being retired). ``complete`` is the scan's own
    flag: with blocking findings a count may be short, and the page says so.
    """
    urls: dict[str, list[str]] = {}
    for ref in inventory.envelopes:
        urls.setdefault(ref.crypto_key_version, []).append(ref.url)
    versions: dict[str, dict[str, Any]] = {}
    for name, stats in inventory.by_version().items():
        refs = sorted(urls[name])
        versions[name] = {
            "key": name.split("/cryptoKeyVersions/")[0],
            "envelopes": stats.envelopes,
            "files": stats.files,
            "plaintext_bytes": stats.plaintext_bytes,
            "ciphertext_bytes": stats.ciphertext_bytes,
            "blockers": {"count": len(refs), "first": refs[:max_blockers]},
        }
    blocking = inventory.blocking_findings
    return {
        "format": FORMAT,
        "run": run,
        "scan_id": inventory.scan_id,
        "started_at": inventory.started_at,
        "finished_at": inventory.finished_at,
        "roots": list(inventory.roots),
        "complete": inventory.complete,
        "envelopes": len(inventory.envelopes),
        "blocking_findings": {
            "count": len(blocking),
            "first": [
                {"kind": str(f.kind), "url": f.url, "detail": f.detail} for f in blocking[:max_blockers]
            ],
        },
        "versions": versions,
    }


def write_snapshot(location: str, snapshot: dict[str, Any]) -> None:
    """Replace the snapshot at ``location`` with ``snapshot``, atomically (see the module doc)."""
    data = json.dumps(snapshot, sort_keys=True, separators=(",", ":")).encode("utf-8")
    loc = resolve(location)
    try:
        if loc.fs is None:
            from kmsflow.lifecycle.cas import fsync_dir, write_synced

            parent, name = os.path.split(loc.path)
            os.makedirs(parent or ".", exist_ok=True)
            temp = os.path.join(parent, temp_name(name, PART_SUFFIX))
            try:
                write_synced(temp, data, 0o640)
                os.replace(temp, loc.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise
            fsync_dir(parent)
        else:
            loc.fs.pipe_file(loc.path, data)
    except OSError as exc:
        raise SnapshotError(f"{location}: cannot write the inventory snapshot ({exc})") from exc


def read_snapshot(location: str) -> dict[str, Any] | None:
    """The snapshot at ``location``; None when no lifecycle run has written one yet."""
    loc = resolve(location)
    try:
        if loc.fs is None:
            with open(loc.path, "rb") as f:
                data = f.read(MAX_SNAPSHOT_BYTES + 1)
        else:
            with contextlib.suppress(Exception):
                loc.fs.invalidate_cache(loc.path)
            data = bytes(loc.fs.cat_file(loc.path, start=0, end=MAX_SNAPSHOT_BYTES + 1))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SnapshotError(f"{location}: cannot read the inventory snapshot ({exc})") from exc
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise SnapshotError(f"{location}: larger than {MAX_SNAPSHOT_BYTES} bytes: not an inventory snapshot")
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise SnapshotError(f"{location}: not an inventory snapshot ({exc})") from None
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        raise SnapshotError(f"{location}: not an inventory snapshot (format is not {FORMAT})")
    return value
