"""Re-wrap envelope data keys under their CryptoKey's current primary version; data never touched.

Recipient (public-key) envelopes go the same way with their own calls: their key has no primary,
so they move to its *current* version (the newest ENABLED one, ``kmsflow.kms.asymmetric``); step 2
is one AsymmetricDecrypt/Decapsulate, and step 3 wraps locally for that version's public key
(fetched and checked once per run), with no KMS call.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.cloud import kms_v1

from kmsflow.clock import format_time, utc_now
from kmsflow.envelope import manifest, recipient
from kmsflow.envelope.keyset import DataKey
from kmsflow.envelope.progress import Progress
from kmsflow.envelope.record import EnvelopeRecord, KeyWrap, RecipientWrap
from kmsflow.envelope.record_io import parse_record
from kmsflow.envelope.wrap import key_wrap, unwrap_key, unwrap_keyset, wrap_keyset
from kmsflow.inventory import Inventory
from kmsflow.kms import asymmetric, crypto, resources
from kmsflow.kms.errors import KmsError
from kmsflow.kms.public_key import PublicKey, fetch_public_key
from kmsflow.lifecycle.cas import DirSync, RecordConflictError, RecordSnapshot, read_snapshot, swap
from kmsflow.lifecycle.outcomes import EnvelopeStatus
from kmsflow.lifecycle.targets import EnvelopeTarget, Issue, RunReport, collect, one_line
from kmsflow.pools import ContextThreadPool, chunks

log = logging.getLogger(__name__)

BeforeSwap = Callable[[str], None]
"""Hook called with the record URL after the new record is built, just before the swap (tests)."""

CHUNK_SIZE = 64
"""Envelopes one KMS worker takes through the phases of :func:`_prepare_chunk` together."""

PROGRESS_EVERY_S = 30.0
"""How often a run logs its progress at INFO. Each envelope's own line is DEBUG: an Airflow batch
of 100,000 envelopes would otherwise write 100,000 task-log lines, which the record itself (key
version, ``wrapped_at``) already states; failures and conflicts are in the report."""


@dataclass
class RewrapReport(RunReport):
    """What a rewrap run found and did. ``versions_after`` is what the records name after the run
    (for a dry run: what they would name)."""

    envelopes: int = 0
    rewrapped: int = 0
    would_rewrap: int = 0
    already_current: int = 0
    versions_before: dict[str, int] = field(default_factory=dict)
    versions_after: dict[str, int] = field(default_factory=dict)

    def add(self, result: _Result) -> None:
        """Count one envelope's outcome: its status, and the versions naming it before and after."""
        self.envelopes += 1
        if result.before:
            self.versions_before[result.before] = self.versions_before.get(result.before, 0) + 1
        if result.after:
            self.versions_after[result.after] = self.versions_after.get(result.after, 0) + 1
        if result.status == EnvelopeStatus.REWRAPPED:
            self.rewrapped += 1
        elif result.status == EnvelopeStatus.WOULD_REWRAP:
            self.would_rewrap += 1
        elif result.status == EnvelopeStatus.CURRENT:
            self.already_current += 1
        elif result.status == EnvelopeStatus.CONFLICT:
            self.conflicts.append(Issue(result.url, result.error, result.reason))
        else:
            self.failures.append(Issue(result.url, result.error, result.reason))

    def to_dict(self) -> dict[str, Any]:
        return self._run_dict(
            envelopes=self.envelopes,
            rewrapped=self.rewrapped,
            would_rewrap=self.would_rewrap,
            already_current=self.already_current,
            versions_before=dict(sorted(self.versions_before.items())),
            versions_after=dict(sorted(self.versions_after.items())),
        )


class PrimaryCache:
    """The version each CryptoKey wraps under now, fetched once per run (errors are cached too):
    its primary, or for a recipient key (no primary) its current version, the newest ENABLED one
    (``kms.asymmetric``), whose public key is fetched (checked) once as well."""

    def __init__(self, client: kms_v1.KeyManagementServiceClient) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._values: dict[str, str | KmsError] = {}
        self._public_keys: dict[str, PublicKey] = {}

    def get(self, crypto_key: str) -> str:
        with self._lock:
            value = self._values.get(crypto_key)
            if value is None:
                try:
                    value = self._fetch(crypto_key)
                except KmsError as exc:
                    value = exc
                self._values[crypto_key] = value
        if isinstance(value, KmsError):
            raise type(value)(str(value))
        return value

    def public_key(self, crypto_key: str) -> PublicKey:
        """The current version's public key of the recipient key ``crypto_key``."""
        self.get(crypto_key)
        public = self._public_keys.get(crypto_key)
        if public is None:
            raise KmsError(f"{crypto_key} is not a recipient key (it has a primary version)")
        return public

    def _fetch(self, crypto_key: str) -> str:
        key = resources.get_key(self._client, crypto_key)
        if key.purpose in asymmetric.RECIPIENT_PURPOSES:
            current = asymmetric.current_version(self._client, crypto_key)
            self._public_keys[crypto_key] = fetch_public_key(
                self._client, current.name, algorithm=current.algorithm.name
            )
            return str(current.name)
        if not key.primary.name:
            raise KmsError(f"{crypto_key} has no primary version (cannot wrap)")
        return str(key.primary.name)


@dataclass(frozen=True)
class _Result:
    url: str
    status: EnvelopeStatus
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
    progress: Progress | None = None,
) -> RewrapReport:
    """Re-wrap every envelope under ``targets`` (envelopes or roots) onto its key's primary version.

    ``inventory`` (from :func:`kmsflow.inventory.scan`) supplies the envelopes of the roots it
    covers without rescanning; with no ``targets`` it supplies all of them. ``dry_run`` makes no
    KMS Encrypt/Decrypt and writes nothing: it only counts what would be re-wrapped.
    ``max_workers`` bounds KMS concurrency (and, separately, concurrent record writes).
    ``progress`` (e.g. the CLI's bar) is started with the number of envelopes found and advanced as
    they are done; the INFO log has the same every :data:`PROGRESS_EVERY_S`.
    ``before_swap`` is a test hook (see :data:`BeforeSwap`).
    """
    if max_workers < 1:
        raise ValueError("max_workers must be at least 1")
    start = time.monotonic()
    report = RewrapReport(dry_run=dry_run, started_at=format_time(utc_now()))
    found = collect(targets, inventory=inventory, max_workers=max_workers)
    report.failures.extend(Issue(i.url, i.error, i.reason) for i in found.issues)
    report.scan_findings = list(found.findings)
    report.scan_complete = found.scan_complete
    primaries = PrimaryCache(client)
    dir_sync = DirSync()

    # Two pools, each of max_workers threads: KMS work (read, unwrap, wrap, re-seal; a chunk of
    # envelopes per task, see _prepare_chunk) and record writes (lock, compare, write, fsync, rename).
    # A slow fsync then never holds a KMS slot, so KMS concurrency stays at max_workers; the
    # unwrapped keys never leave the first stage.
    with (
        ContextThreadPool(max_workers=max_workers, thread_name_prefix="kmsflow-rewrap") as kms_pool,
        ContextThreadPool(max_workers=max_workers, thread_name_prefix="kmsflow-rewrap-io") as io_pool,
    ):

        def one_chunk(chunk: list[EnvelopeTarget]) -> Callable[[], list[_Result]]:
            prepared = _prepare_chunk(client, primaries, chunk, dry_run)
            pending = [p for p in prepared if isinstance(p, _Pending)]
            if not pending:
                return lambda: [p for p in prepared if isinstance(p, _Result)]
            swapped = io_pool.submit(lambda: [_commit(p, before_swap, dir_sync) for p in pending])

            def results() -> list[_Result]:
                done = iter(swapped.result())
                return [p if isinstance(p, _Result) else next(done) for p in prepared]

            return results

        total = len(found.envelopes)
        next_progress = start + PROGRESS_EVERY_S
        if progress is not None:
            progress.start(total, "rewrap dry run" if dry_run else "rewrap")
        for results in kms_pool.map(one_chunk, chunks(found.envelopes, max_workers, CHUNK_SIZE)):
            done = results()
            for result in done:
                report.add(result)
            if progress is not None:
                progress.advance(len(done))
            now = time.monotonic()
            if now >= next_progress and report.envelopes < total:
                _log_progress(report, total, now - start)
                next_progress = now + PROGRESS_EVERY_S
    for directory, reason in dir_sync.flush():  # every rename durable before the report says so
        report.failures.append(Issue(directory, "OSError", reason))
    report.finished_at = format_time(utc_now())
    report.elapsed_s = time.monotonic() - start
    _log_progress(report, report.envelopes, report.elapsed_s)
    return report


def _log_progress(report: RewrapReport, total: int, elapsed_s: float) -> None:
    """One INFO line: how far the run is (``total`` envelopes targeted), by outcome, and its rate."""
    log.info(
        "rewrap%s: %d of %d envelope(s) done (%d rewrapped, %d would be, %d current, %d conflict(s), "
        "%d failure(s)), %.0f/s",
        " (dry run)" if report.dry_run else "",
        report.envelopes,
        total,
        report.rewrapped,
        report.would_rewrap,
        report.already_current,
        len(report.conflicts),
        len(report.failures),
        report.envelopes / elapsed_s if elapsed_s > 0 else 0.0,
    )


@dataclass(frozen=True)
class _Pending:
    """A re-wrapped record waiting for its compare-and-swap (no key material in here)."""

    url: str
    snapshot: RecordSnapshot
    new_record: bytes
    before: str
    after: str


@dataclass
class _InFlight:
    """One envelope on its way through the phases; ``outcome`` is set once it is done with them.

    ``keyset`` (as KMS unwrapped it) and ``key`` (parsed from it) are the data key: in memory
    only, dropped as soon as they are no longer needed or the envelope fails.
    """

    target: EnvelopeTarget
    snapshot: RecordSnapshot | None = None
    record: EnvelopeRecord | None = None
    keyset: bytes | None = field(default=None, repr=False)  # secret: never in a repr or traceback
    key: DataKey | None = None
    wrapped: crypto.Wrapped | None = None
    recipient_wrap: RecipientWrap | None = None
    outcome: _Result | _Pending | None = None


def _failed(url: str, exc: Exception, record: EnvelopeRecord | None) -> _Result:
    version = record.key.crypto_key_version if record else None
    status = EnvelopeStatus.CONFLICT if isinstance(exc, RecordConflictError) else EnvelopeStatus.FAILED
    return _Result(url, status, version, version, exc.__class__.__name__, one_line(str(exc)))


def _prepare_chunk(
    client: kms_v1.KeyManagementServiceClient,
    primaries: PrimaryCache,
    chunk: list[EnvelopeTarget],
    dry_run: bool,
) -> list[_Result | _Pending]:
    """Stage 1 for a chunk of envelopes: read each record; for the stale ones, build its successor
    (two KMS calls each). No writes. Returns one outcome per envelope, in order.

    Why phase by phase over the chunk rather than envelope by envelope: the work is the same, but
    running each piece of Python (record parsing, Tink, the gRPC client) back to back keeps it warm
    in the CPU caches between KMS calls; interleaved, the client spends markedly more CPU per
    envelope, and rewrap is bound by the client's CPU (figures: docs/BENCHMARKS.md, "Rewrap and inventory").
    For the same reason the two KMS phases do nothing but their KMS calls: the keyset is parsed in
    the check phase, and the record's new ``key`` is built in the re-seal phase.
    Each thread still has one KMS call in flight at a time, so KMS concurrency is unchanged.
    """
    envelopes = [_InFlight(target) for target in chunk]

    def read(e: _InFlight) -> None:
        e.snapshot = read_snapshot(e.target.record)
        e.record = parse_record(e.snapshot.data, e.target.record.url, e.target.kind)
        old = e.record.key.crypto_key_version
        primary = primaries.get(e.record.key.crypto_key)
        if old == primary:
            e.outcome = _Result(e.target.url, EnvelopeStatus.CURRENT, old, old)
        elif dry_run:
            e.outcome = _Result(e.target.url, EnvelopeStatus.WOULD_REWRAP, old, primary)

    def unwrap(e: _InFlight) -> None:
        assert e.record is not None
        e.keyset = unwrap_keyset(client, e.record.key, e.record.envelope_id, e.target.record.url)

    def check(e: _InFlight) -> None:
        # Re-sealing an edited record would make the edit authentic: check the manifest first.
        assert e.keyset is not None and e.record is not None
        e.key = DataKey.parse(e.keyset)
        manifest.check(e.key, e.record, e.target.record.url)

    def wrap(e: _InFlight) -> None:
        # The very bytes KMS unwrapped (and the check parsed) are wrapped again: nothing between.
        # A recipient envelope is wrapped locally for the current version's public key (no KMS call).
        assert e.keyset is not None and e.record is not None
        if isinstance(e.record.key, RecipientWrap):
            public = primaries.public_key(e.record.key.crypto_key)
            e.recipient_wrap = recipient.wrap_keyset(public, e.keyset, e.record.envelope_id)
        else:
            e.wrapped = wrap_keyset(client, e.record.key.crypto_key, e.keyset, e.record.envelope_id)
        e.keyset = None

    def reseal(e: _InFlight) -> None:
        assert e.key is not None and e.record is not None and e.snapshot
        new_wrap: KeyWrap | RecipientWrap
        if e.recipient_wrap is not None:
            new_wrap = e.recipient_wrap
        else:
            assert e.wrapped is not None
            new_wrap = key_wrap(e.wrapped)
        new = manifest.reseal(e.key, e.record, new_wrap)
        e.key = None
        old, now = e.record.key.crypto_key_version, new_wrap.crypto_key_version
        e.outcome = _Pending(e.target.url, e.snapshot, new.to_json(), old, now)

    for phase in (read, unwrap, check, wrap, reseal):
        for e in envelopes:
            if e.outcome is not None:
                continue
            try:
                phase(e)
            except Exception as exc:  # reported per envelope; one bad envelope never aborts the run
                e.keyset = e.key = None
                e.outcome = _failed(e.target.url, exc, e.record)
    return [e.outcome for e in envelopes if e.outcome is not None]


def _commit(pending: _Pending, before_swap: BeforeSwap | None, dir_sync: DirSync) -> _Result:
    """Stage 2: compare-and-swap the record; a conflict leaves it untouched."""
    try:
        if before_swap is not None:
            before_swap(pending.snapshot.location.url)
        swap(pending.snapshot, pending.new_record, dir_sync=dir_sync)
    except Exception as exc:
        result = _failed(pending.url, exc, None)
        return _Result(result.url, result.status, pending.before, pending.before, result.error, result.reason)
    log.debug("rewrapped %s: %s -> %s", pending.url, pending.before, pending.after)
    return _Result(pending.url, EnvelopeStatus.REWRAPPED, pending.before, pending.after)


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
            return Issue.of(target.url, exc)
        if record.key.crypto_key_version != primary:
            return Issue(
                target.url,
                "NotPrimary",
                f"wrapped by {record.key.crypto_key_version}, primary is {primary}",
            )
        return None

    with ContextThreadPool(max_workers=max_workers, thread_name_prefix="kmsflow-verify") as pool:
        checked = pool.map(
            lambda chunk: [one(t) for t in chunk], chunks(found.envelopes, max_workers, CHUNK_SIZE)
        )
        issues.extend(i for chunk in checked for i in chunk if i is not None)
    return issues
