"""Resolve what an interrupted re-encrypt left behind, from the scan's findings: a local backup
is rolled back (:mod:`.local`), a GCS staging prefix rolled forward or taken over (:mod:`.gcs`), a
dead run's local staging removed."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from kmsflow.envelope.errors import EnvelopeError
from kmsflow.envelope.layout import DATASET_RECORD, SIDECAR_SUFFIX, TEMP_SUFFIX, locate, owner_name
from kmsflow.envelope.storage import Location, resolve
from kmsflow.inventory import Finding, FindingKind
from kmsflow.lifecycle.cas import RecordConflictError
from kmsflow.lifecycle.reencryption import gcs, local
from kmsflow.lifecycle.reencryption.job import GCS_SCHEMES
from kmsflow.lifecycle.reencryption.report import ReencryptReport
from kmsflow.lifecycle.targets import Issue

log = logging.getLogger("kmsflow.lifecycle.reencrypt")


def scheme(target: str) -> str:
    """The URL scheme, lowercased ("" for a plain local path)."""
    return target.partition("://")[0].lower() if "://" in target else ""


def resolve_finding(report: ReencryptReport, finding: Finding, stale_after: float) -> bool:
    """Act on a scan finding that an interrupted re-encrypt explains; True if anything changed."""
    remote = scheme(finding.url) in GCS_SCHEMES
    if finding.kind is FindingKind.REENCRYPT_BACKUP:
        return _recover_into(report, _backup_owner(finding.url))
    if finding.kind is FindingKind.REENCRYPT_COMMITTED or (finding.kind is FindingKind.STALE_TEMP and remote):
        owner = _staging_owner(finding.url)
        return owner is not None and _recover_gcs_into(report, owner, stale_after)
    if finding.kind is FindingKind.STALE_TEMP:
        return _remove_orphan_into(report, finding.url)
    return False


def _backup_owner(backup_url: str) -> Location:
    """The envelope a re-encrypt backup belongs to (its name without ``.`` / ``.kmsflow-<id>.old``)."""
    parent, name = os.path.split(backup_url.rstrip(os.sep))
    return Location(os.path.join(parent, owner_name(name) or name))


def _staging_owner(staging_url: str) -> Location | None:
    """The gs:// envelope a re-encrypt staging prefix ``.<name>.kmsflow-<hex>.tmp`` belongs to."""
    loc = resolve(staging_url)
    owner = owner_name(loc.name)
    if owner is None or not loc.name.endswith(TEMP_SUFFIX):
        return None
    return loc.sibling(owner)


def _recover_into(report: ReencryptReport, envelope: Location) -> bool:
    try:
        note = local.recover(envelope)
    except (EnvelopeError, OSError) as exc:
        report.failures.append(Issue.of(envelope.url, exc))
        return False
    if note is None:
        return False
    _note_recovered(report, envelope, note)
    return True


def _recover_gcs_into(report: ReencryptReport, envelope: Location, stale_after: float) -> bool:
    try:
        done = gcs.recover(envelope, stale_after)
    except Exception as exc:  # reported per envelope; storage client errors are not all OSError
        issues = report.conflicts if isinstance(exc, RecordConflictError) else report.failures
        if all(i.url != envelope.url for i in issues):
            issues.append(Issue.of(envelope.url, exc))
        return False
    for note in done.notes:
        _note_recovered(report, envelope, note)
    for url in done.removed:
        log.info("reencrypt: removed %s (staging prefix of a killed run)", url)
        report.removed_temps.append(url)
    return bool(done.notes or done.removed)


def _note_recovered(report: ReencryptReport, envelope: Location, note: str) -> None:
    log.info("reencrypt %s: %s", envelope.url, note)
    if all(r.url != envelope.url for r in report.recovered):
        report.recovered.append(Issue(envelope.url, "", note))


def _remove_orphan_into(report: ReencryptReport, path: str) -> bool:
    try:
        removed = local.remove_if_orphan(path)
    except OSError as exc:  # left for the next run; it is only ciphertext
        log.warning("reencrypt: cannot remove %s (%s)", path, exc.strerror or exc)
        return False
    if removed:
        log.info("reencrypt: removed %s (staging directory of a killed run)", path)
        report.removed_temps.append(path)
    return removed


def recover_named(report: ReencryptReport, targets: Sequence[str], stale_after: float) -> None:
    """Resolve what killed runs left beside the envelopes named in ``targets`` before anything is
    read (a local dataset missing mid-swap is found by its name only; roots are left to the scan)."""
    for target in targets:
        if scheme(target) in GCS_SCHEMES:
            envelope = gcs_envelope(target)
            if envelope is not None:
                _recover_gcs_into(report, envelope, stale_after)
            continue
        envelope = envelope_path(target)
        _recover_into(report, envelope)
        for path in local.orphan_candidates(envelope):
            _remove_orphan_into(report, path)


def envelope_path(target: str) -> Location:
    """The envelope a local target names (its record's path is accepted, like ``locate``)."""
    loc = resolve(target)
    path = loc.path.rstrip(os.sep)
    dataset_suffix = os.sep + DATASET_RECORD.replace("/", os.sep)
    if path.endswith(dataset_suffix):
        return Location(path[: -len(dataset_suffix)])
    if path.endswith(SIDECAR_SUFFIX) and os.path.isfile(path):
        return Location(path[: -len(SIDECAR_SUFFIX)])
    return Location(path)


def gcs_envelope(target: str) -> Location | None:
    """The envelope a gs:// target names (its record always exists on GCS: the protocol never
    removes it); None for a root or a non-envelope (``collect`` reports those)."""
    try:
        loc = resolve(target)
        if loc.isdir() and not loc.child(DATASET_RECORD).isfile():
            return None
        return locate(loc)[1]
    except (EnvelopeError, OSError):
        return None
