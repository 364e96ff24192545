"""The lifecycle DAGs' inventory snapshot: each scan of every root, kept for the Key Lifecycle page.

``kmsflow_rotate_rewrap``'s ``inventory`` task and ``kmsflow_shred``'s proof scan hand their
:class:`~kmsflow.inventory.Inventory` to :func:`snapshot_writer`'s callable, which writes
:mod:`kmsflow.inventory.snapshot` next to the run's audit log. The snapshot is a view for people,
not evidence (shred proves with its own scan, made in its run): failing to write it is a warning,
never a failed run, and a scan that did not cover every root of the spec is not written at all (its
counts would understate what depends on a version).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from kmsflow.airflow.hooks.kms import KmsHook
from kmsflow.airflow.tasks.common import audit_location, distributed_executors
from kmsflow.inventory.model import Inventory
from kmsflow.inventory.snapshot import (
    SnapshotError,
    build_snapshot,
    covers,
    snapshot_location,
    write_snapshot,
)
from kmsflow.spec import KeySpec

log = logging.getLogger(__name__)

SnapshotWriter = Callable[[Inventory], None]


def snapshot_writer(spec: KeySpec, hook: KmsHook, run: str) -> SnapshotWriter:
    """A callable that keeps ``inventory`` as the latest snapshot beside the run's audit log.

    Nothing is written without an audit log, for a scan that missed a root of the spec, or -- with
    a distributed executor -- beside a local audit log not under ``shared_paths:`` (the API server
    would never see it; the lifecycle steps that need that log refuse it anyway).
    """
    location = audit_location(spec, hook)
    spec_roots = spec.roots()

    def write(inventory: Inventory) -> None:
        if not location:
            log.info("no audit log configured: no inventory snapshot for the Key Lifecycle page")
            return
        if distributed_executors() and spec.unshared([location]):
            log.warning("audit log %s is local and not shared: no inventory snapshot written", location)
            return
        if not covers(inventory.roots, spec_roots):
            log.info("scan %s missed a root of the spec: snapshot left as it was", inventory.scan_id)
            return
        target = snapshot_location(location)
        try:
            write_snapshot(target, build_snapshot(inventory, run=run))
        except SnapshotError as exc:
            log.warning("inventory snapshot not written: %s", exc)
            return
        log.info("inventory snapshot of scan %s written to %s", inventory.scan_id, target)

    return write
