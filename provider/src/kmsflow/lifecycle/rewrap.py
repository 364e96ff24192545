"""Re-wrap envelope data keys under their CryptoKey's current primary version; data never touched.

For every envelope whose record names a version other than its key's primary (one GetCryptoKey per
distinct key per run, cached):

1. read the record's exact bytes (and, on GCS, its generation) -- see :mod:`kmsflow.lifecycle.cas`;
2. KMS Decrypt the wrapped keyset (AAD ``keyset_aad(envelope_id)``) and authenticate the record
   against its manifest *before* re-sealing it, so a tampered record is refused, not laundered;
3. KMS Encrypt the same keyset under the CryptoKey (its primary), same AAD;
4. re-seal the manifest (it authenticates the key version name) and compare-and-swap the record.

Why this is safe (architecture invariant 1): data ciphertexts depend only on the keyset, the
envelope id and relative paths, none of which change, so data files are never opened. Both the old
and the new record decrypt the same data as long as the old version is not destroyed, and the swap
is atomic, so a kill -9 at any instant leaves one of the two; rerunning converges (records already
under the primary are skipped without any KMS crypto call). The unwrapped keyset lives only in
memory for the duration of one envelope; reports and logs carry names, ids and error messages.

Transient KMS errors are retried inside ``kmsflow.kms.crypto``; an envelope that still fails is
reported with its error type and a one-line reason and never aborts the run. A record changed by
someone else between read and swap is a *conflict*: left untouched, reported, picked up by a rerun.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from google.cloud import kms_v1

from kmsflow.envelope import manifest
from kmsflow.envelope.record import EnvelopeRecord
from kmsflow.envelope.wrap import unwrap_key, wrap_key
from kmsflow.inventory import Finding, Inventory
from kmsflow.inventory.scanner import now_rfc3339, parse_record
from kmsflow.kms import resources
from kmsflow.kms.errors import KmsError
from kmsflow.lifecycle.cas import DirSync, RecordConflictError, RecordSnapshot, read_snapshot, swap
from kmsflow.lifecycle.targets import EnvelopeTarget, collect, one_line
from kmsflow.pools import ContextThreadPool

log = logging.getLogger(__name__)

BeforeSwap = Callable[[str], None]
"""Hook called with the record URL after the new record is built, just before the swap (tests)."""


@dataclass(frozen=True)
class Issue:
    """An envelope (or target) rewrap could not handle: where, the error type, a one-line reason."""

    url: str
    error: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"url": self.url, "error": self.error, "reason": self.reason}


@dataclass
class RewrapReport:
    """What a rewrap run found and did. ``versions_after`` is what the records name after the run
    (for a dry run: what they would name)."""

    dry_run: bool
    started_at: str
    finished_at: str = ""
    elapsed_s: float = 0.0
    envelopes: int = 0
    rewrapped: int = 0
    would_rewrap: int = 0
    already_current: int = 0
    versions_before: dict[str, int] = field(default_factory=dict)
    versions_after: dict[str, int] = field(default_factory=dict)
    conflicts: list[Issue] = field(default_factory=list)
    failures: list[Issue] = field(default_factory=list)
    scan_complete: bool = True
    scan_findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every targeted envelope is (or, dry run, could be made) current and every root was seen."""
        return not self.failures and not self.conflicts and self.scan_complete

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "ok": self.ok,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "elapsed_s": round(self.elapsed_s, 3),
            "envelopes": self.envelopes,
            "rewrapped": self.rewrapped,
            "would_rewrap": self.would_rewrap,
            "already_current": self.already_current,
            "versions_before": dict(sorted(self.versions_before.items())),
            "versions_after": dict(sorted(self.versions_after.items())),
            "conflicts": [c.to_dict() for c in self.conflicts],
            "failures": [f.to_dict() for f in self.failures],
            "scan_complete": self.scan_complete,
            "scan_findings": [f.to_dict() for f in self.scan_findings],
        }


class PrimaryCache:
    """The primary version of each CryptoKey, fetched once per run (errors are cached too)."""

    def __init__(self, client: kms_v1.KeyManagementServiceClient) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._values: dict[str, str | KmsError] = {}

    def get(self, crypto_key: str) -> str:
        with self._lock:
            value = self._values.get(crypto_key)
            if value is None:
                try:
                    primary = resources.get_key(self._client, crypto_key).primary.name
                    value = primary or KmsError(f"{crypto_key} has no primary version (cannot wrap)")
                except KmsError as exc:
                    value = exc
                self._values[crypto_key] = value
        if isinstance(value, KmsError):
            raise type(value)(str(value))
        return value


@dataclass(frozen=True)
class _Result:
    url: str
    status: str  # rewrapped | current | would_rewrap | conflict | failed
    before: str | None = None
    after: str | None = None
    error: str = ""
    reason: str = ""


def rewrap(
    client: kms_v1.KeyManagementServiceClient,
    targets: Sequence[str],
    *,
    max_workers: int = 16,
    dry_run: bool = False,
    inventory: Inventory | None = None,
    before_swap: BeforeSwap | None = None,
) -> RewrapReport:
    """Re-wrap every envelope under ``targets`` (envelopes or roots) onto its key's primary version.

    ``inventory`` (from :func:`kmsflow.inventory.scan`) supplies the envelopes of the roots it
    covers without rescanning; with no ``targets`` it supplies all of them. ``dry_run`` makes no
    KMS Encrypt/Decrypt and writes nothing: it only counts what would be re-wrapped.
    ``max_workers`` bounds KMS concurrency (and, separately, concurrent record writes).
    ``before_swap`` is a test hook (see :data:`BeforeSwap`).
    """
    if max_workers < 1:
        raise ValueError("max_workers must be at least 1")
    start = time.monotonic()
    report = RewrapReport(dry_run=dry_run, started_at=now_rfc3339())
    found = collect(targets, inventory=inventory, max_workers=max_workers)
    report.failures.extend(Issue(i.url, i.error, i.reason) for i in found.issues)
    report.scan_findings = list(found.findings)
    report.scan_complete = found.scan_complete
    primaries = PrimaryCache(client)
    dir_sync = DirSync()

    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    # Two stages, each bounded by max_workers threads: KMS work (read, unwrap, wrap, re-seal) and
    # record writes (lock, compare, write, fsync, rename). A slow fsync then never holds a KMS slot,
    # so KMS concurrency stays at max_workers; the unwrapped key never leaves the first stage.
    with (
        ContextThreadPool(max_workers=max_workers, thread_name_prefix="kmsflow-rewrap") as kms_pool,
        ContextThreadPool(max_workers=max_workers, thread_name_prefix="kmsflow-rewrap-io") as io_pool,
    ):

        def one(target: EnvelopeTarget) -> _Result | Future[_Result]:
            prepared = _prepare(client, primaries, target, dry_run)
            if isinstance(prepared, _Result):
                return prepared
            return io_pool.submit(_commit, prepared, before_swap, dir_sync)

        for outcome in kms_pool.map(one, found.envelopes):
            result = outcome if isinstance(outcome, _Result) else outcome.result()
            report.envelopes += 1
            if result.before:
                before[result.before] += 1
            if result.after:
                after[result.after] += 1
            if result.status == "rewrapped":
                report.rewrapped += 1
            elif result.status == "would_rewrap":
                report.would_rewrap += 1
            elif result.status == "current":
                report.already_current += 1
            elif result.status == "conflict":
                report.conflicts.append(Issue(result.url, result.error, result.reason))
            else:
                report.failures.append(Issue(result.url, result.error, result.reason))
    for directory, reason in dir_sync.flush():  # every rename durable before the report says so
        report.failures.append(Issue(directory, "OSError", reason))
    report.versions_before = dict(before)
    report.versions_after = dict(after)
    report.finished_at = now_rfc3339()
    report.elapsed_s = time.monotonic() - start
    log.info(
        "rewrap%s: %d envelope(s), %d rewrapped, %d would be, %d current, %d conflict(s), %d failure(s)",
        " (dry run)" if dry_run else "",
        report.envelopes,
        report.rewrapped,
        report.would_rewrap,
        report.already_current,
        len(report.conflicts),
        len(report.failures),
    )
    return report


@dataclass(frozen=True)
class _Pending:
    """A re-wrapped record waiting for its compare-and-swap (no key material in here)."""

    url: str
    snapshot: RecordSnapshot
    new_record: bytes
    before: str
    after: str


def _failed(url: str, exc: Exception, record: EnvelopeRecord | None) -> _Result:
    version = record.key.crypto_key_version if record else None
    status = "conflict" if isinstance(exc, RecordConflictError) else "failed"
    return _Result(url, status, version, version, exc.__class__.__name__, one_line(str(exc)))


def _prepare(
    client: kms_v1.KeyManagementServiceClient,
    primaries: PrimaryCache,
    target: EnvelopeTarget,
    dry_run: bool,
) -> _Result | _Pending:
    """Stage 1: read the record; if stale, build its successor (two KMS calls). No writes."""
    record: EnvelopeRecord | None = None
    try:
        snapshot = read_snapshot(target.record)
        record = parse_record(snapshot.data, target.record.url, target.kind)
        old = record.key.crypto_key_version
        primary = primaries.get(record.key.crypto_key)
        if old == primary:
            return _Result(target.url, "current", old, old)
        if dry_run:
            return _Result(target.url, "would_rewrap", old, primary)
        new_record = _rewrapped_record(client, record, target.record.url)
    except Exception as exc:  # reported per envelope; one bad envelope never aborts the run
        return _failed(target.url, exc, record)
    return _Pending(target.url, snapshot, new_record.to_json(), old, new_record.key.crypto_key_version)


def _commit(pending: _Pending, before_swap: BeforeSwap | None, dir_sync: DirSync) -> _Result:
    """Stage 2: compare-and-swap the record; a conflict leaves it untouched."""
    try:
        if before_swap is not None:
            before_swap(pending.snapshot.location.url)
        swap(pending.snapshot, pending.new_record, dir_sync=dir_sync)
    except Exception as exc:
        result = _failed(pending.url, exc, None)
        return _Result(result.url, result.status, pending.before, pending.before, result.error, result.reason)
    log.info("rewrapped %s: %s -> %s", pending.url, pending.before, pending.after)
    return _Result(pending.url, "rewrapped", pending.before, pending.after)


def _rewrapped_record(
    client: kms_v1.KeyManagementServiceClient, record: EnvelopeRecord, where: str
) -> EnvelopeRecord:
    """The record with its keyset re-wrapped under the key's primary and its manifest re-sealed.

    Two KMS calls (Decrypt, Encrypt). The manifest is checked first: re-sealing an edited record
    would make the edit authentic.
    """
    key = unwrap_key(client, record.key, record.envelope_id, where)
    manifest.check(key, record, where)
    wrap = wrap_key(client, record.key.crypto_key, key, record.envelope_id)
    fields = record.model_dump(mode="json", exclude={"manifest"})
    fields["key"] = wrap.model_dump(mode="json")
    return manifest.seal(key, fields)


def verify_unwraps(
    client: kms_v1.KeyManagementServiceClient,
    inventory_or_targets: Inventory | Sequence[str],
    *,
    max_workers: int = 16,
) -> list[Issue]:
    """Check that every envelope's wrapped key unwraps (one KMS Decrypt each) and names the primary.

    Returns the problems (empty = all good): envelopes whose key does not unwrap or whose record is
    not wrapped by the current primary, targets that are not envelopes, and blocking scan findings
    (what was not seen was not verified).
    """
    if isinstance(inventory_or_targets, Inventory):
        found = collect([], inventory=inventory_or_targets, max_workers=max_workers)
    else:
        found = collect(inventory_or_targets, max_workers=max_workers)
    issues = [Issue(i.url, i.error, i.reason) for i in found.issues]
    issues.extend(Issue(f.url, f"scan:{f.kind}", f.detail) for f in found.findings if f.blocking)
    primaries = PrimaryCache(client)

    def one(target: EnvelopeTarget) -> Issue | None:
        try:
            record = parse_record(read_snapshot(target.record).data, target.record.url, target.kind)
            unwrap_key(client, record.key, record.envelope_id, target.record.url)
            primary = primaries.get(record.key.crypto_key)
        except Exception as exc:
            return Issue(target.url, exc.__class__.__name__, one_line(str(exc)))
        if record.key.crypto_key_version != primary:
            return Issue(
                target.url,
                "NotPrimary",
                f"wrapped by {record.key.crypto_key_version}, primary is {primary}",
            )
        return None

    with ContextThreadPool(max_workers=max_workers, thread_name_prefix="kmsflow-verify") as pool:
        issues.extend(i for i in pool.map(one, found.envelopes) if i is not None)
    return issues
