"""Full re-encrypt for a suspected data-key compromise: new data key, new envelope id, new ciphertext.

Rewrap (:mod:`kmsflow.lifecycle.rewrap`) protects against a compromised *KMS key version*: the
data key stays, only its wrapping changes. When a *data key* may have leaked (a process dump, a
debugger, a keyset in a log) every byte it encrypted must be re-encrypted under a fresh one. Per
envelope, on local paths and on ``gs://``:

1. resolve what an interrupted earlier run left (:func:`kmsflow.lifecycle.reencrypt_local.recover`,
   :func:`kmsflow.lifecycle.reencrypt_gcs.recover`);
2. read the record (exact bytes; on GCS also its generation), KMS Decrypt the old keyset and
   authenticate the record against its manifest: a tampered envelope is refused before anything
   is written;
3. generate a fresh Tink keyset and a new envelope id, wrap the keyset with ONE KMS Encrypt under
   the CryptoKey (its current primary), before any data is read;
4. stream every file: old ciphertext -> Tink decrypting stream (old key, old AAD) -> Tink
   encrypting stream (new key, new AAD) -> a staged file in ``.<name>.kmsflow-<hex>.tmp`` beside
   the envelope (a directory locally, a prefix on GCS). Constant memory; plaintext exists only in
   in-memory blocks, never in a file, temp file, object or log. The old ciphertext is read to EOF
   and must match the record's size and CRC32C (authenticated end to end);
5. seal the new record's manifest and write it into the staging area (last);
6. **verify before replacing**: one KMS Decrypt of the new wrapped keyset, the new manifest
   checked, every staged file decrypted under the new key to EOF, its size and CRC32C checked, and
   the SHA-256 of its plaintext compared (in memory) with that of the plaintext read in step 4;
7. replace the old envelope by the staged one: locally with the rename protocol of
   :mod:`kmsflow.lifecycle.reencrypt_local` (rolls *back* after a kill), on GCS with the
   commit-marker protocol of :mod:`kmsflow.lifecycle.reencrypt_gcs` (rolls *forward* after a kill;
   readers fail authentication, never get wrong plaintext, while it copies). Either way every
   instant is recoverable by a rerun, and the inventory blocks shredding until it happened.

Steps 2-6 are one storage-agnostic job (:class:`_Job`) over a *store* (the live envelope: read
old ciphertext, list data) and a *stage* (write, read back and commit the new one); the two
modules above provide those for local paths and GCS. Other fsspec schemes fail with a one-line
reason (:data:`NOT_SUPPORTED`): without rename or generation preconditions there is no safe
replacement.

KMS calls per envelope: Decrypt (old key), Encrypt (new key), Decrypt (verification). Transient
KMS errors are retried in ``kmsflow.kms.crypto``; an envelope that still fails is reported and left
untouched (its staging removed, unless a GCS run already committed: then the next run rolls it
forward). Every run re-encrypts every envelope it is given (there is no "already done": a new key
is the point); an interrupted run is simply run again.

**Test seam.** ``on_step(step, envelope_url)`` is called after each protocol step (the ``STEP_*``
names of :mod:`~kmsflow.lifecycle.reencrypt_local` and :mod:`~kmsflow.lifecycle.reencrypt_gcs`, in
the order listed there); the crash tests run re-encrypt in a subprocess whose hook SIGKILLs itself
at a chosen step. Production callers pass nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

import tink
from google.cloud import kms_v1

from kmsflow.clock import format_time, record_time, utc_now
from kmsflow.envelope import manifest
from kmsflow.envelope.aad import data_aad
from kmsflow.envelope.encrypt import new_envelope_id
from kmsflow.envelope.errors import EnvelopeError, EnvelopeIOError, TamperedError, os_reason
from kmsflow.envelope.keyset import DataKey
from kmsflow.envelope.layout import DATASET_RECORD, SIDECAR_SUFFIX, TEMP_SUFFIX, locate, owner_name
from kmsflow.envelope.progress import Progress
from kmsflow.envelope.record import EnvelopeRecord, FileEntry
from kmsflow.envelope.record_io import parse_record, read_record_bytes
from kmsflow.envelope.storage import TINK_CHUNK_SIZE, Location, resolve
from kmsflow.envelope.streams import ChecksumReader, plaintext_pieces, write_behind, write_through
from kmsflow.envelope.wrap import unwrap_key, wrap_key
from kmsflow.inventory import Finding, FindingKind
from kmsflow.lifecycle import reencrypt_gcs as gcs
from kmsflow.lifecycle import reencrypt_local as local
from kmsflow.lifecycle.cas import RecordConflictError, RecordSnapshot, read_snapshot
from kmsflow.lifecycle.reencrypt_progress import ByteMeter, EnvelopeMeter
from kmsflow.lifecycle.rewrap import PrimaryCache
from kmsflow.lifecycle.seconds import check_seconds
from kmsflow.lifecycle.targets import EnvelopeTarget, Issue, RunReport, Targets, collect, one_line
from kmsflow.pools import ContextThreadPool

log = logging.getLogger(__name__)

StepHook = local.StepHook

PROGRESS_EVERY_S = 30.0
"""How often a run logs its progress (bytes and envelopes done) at INFO. Each envelope's own line
is DEBUG, like rewrap's: the report lists every envelope, and the log stays readable at 100,000."""

NOT_SUPPORTED = (
    "re-encrypt supports local paths and gs:// only: other object stores offer neither rename nor "
    "generation preconditions to replace an envelope crash-safely; copy it to a local path, "
    "re-encrypt, copy it back"
)
_LOCAL_SCHEMES = ("file", "local")
_GCS_SCHEMES = ("gs", "gcs")


class ReencryptNotSupportedError(EnvelopeError):
    """The target lives where re-encrypt cannot replace an envelope crash-safely (not local, not GCS)."""


@dataclass(frozen=True)
class EnvelopeOutcome:
    """What happened to one envelope. No key material: ids, version names, counts."""

    url: str
    kind: str
    status: str  # reencrypted | would_reencrypt | failed | conflict
    old_envelope_id: str | None = None
    new_envelope_id: str | None = None
    old_version: str | None = None
    new_version: str | None = None
    files: int = 0
    plaintext_bytes: int = 0
    error: str = ""
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "kind": self.kind,
            "status": self.status,
            "old_envelope_id": self.old_envelope_id,
            "new_envelope_id": self.new_envelope_id,
            "old_version": self.old_version,
            "new_version": self.new_version,
            "files": self.files,
            "plaintext_bytes": self.plaintext_bytes,
            "error": self.error,
            "reason": self.reason,
        }


@dataclass
class ReencryptReport(RunReport):
    """What a re-encrypt run found and did (``results`` per envelope, in target order)."""

    results: list[EnvelopeOutcome] = field(default_factory=list)
    recovered: list[Issue] = field(default_factory=list)  # interrupted runs resolved (error = "")
    removed_temps: list[str] = field(default_factory=list)  # staging directories of killed runs

    def _count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def envelopes(self) -> int:
        return len(self.results)

    @property
    def reencrypted(self) -> int:
        return self._count("reencrypted")

    @property
    def would_reencrypt(self) -> int:
        return self._count("would_reencrypt")

    @property
    def files(self) -> int:
        return sum(r.files for r in self.results if r.status in ("reencrypted", "would_reencrypt"))

    @property
    def plaintext_bytes(self) -> int:
        return sum(r.plaintext_bytes for r in self.results if r.status in ("reencrypted", "would_reencrypt"))

    def to_dict(self) -> dict[str, Any]:
        return {
            **self._run_dict(
                envelopes=self.envelopes,
                reencrypted=self.reencrypted,
                would_reencrypt=self.would_reencrypt,
                files=self.files,
                plaintext_bytes=self.plaintext_bytes,
                recovered=[r.to_dict() for r in self.recovered],
                removed_temps=list(self.removed_temps),
            ),
            "results": [r.to_dict() for r in self.results],
        }


def reencrypt(
    client: kms_v1.KeyManagementServiceClient,
    targets: Sequence[str],
    *,
    max_workers: int = 4,
    dry_run: bool = False,
    on_step: StepHook | None = None,
    stale_after: float = gcs.DEFAULT_STALE_AFTER,
    progress: Progress | None = None,
) -> ReencryptReport:
    """Re-encrypt every envelope under ``targets`` (envelopes or roots) under a fresh data key.

    ``dry_run`` resolves nothing, makes no KMS Encrypt/Decrypt and writes nothing: it lists what
    would be re-encrypted (and under which primary). ``max_workers`` envelopes are processed at a
    time (each streams its files in order). ``stale_after`` (seconds) is when a GCS staging prefix
    without COMMIT counts as left by a killed run (GCS has no lock to tell; see
    :mod:`~kmsflow.lifecycle.reencrypt_gcs`). ``progress`` (e.g. the CLI's bar) is started with
    twice the plaintext bytes to go (each is read to re-encrypt it and again to verify it) and
    advanced from the worker threads; the INFO log has the same every :data:`PROGRESS_EVERY_S`. A
    dry run reads no data and reports no progress. ``on_step`` is the test seam (module docstring).
    """
    if max_workers < 1:
        raise ValueError("max_workers must be at least 1")
    check_seconds(stale_after, "stale_after")
    start = time.monotonic()
    report = ReencryptReport(dry_run=dry_run, started_at=format_time(utc_now()))
    supported: list[str] = []
    for target in targets:
        if _scheme(target) in ("", *_LOCAL_SCHEMES, *_GCS_SCHEMES):
            supported.append(target)
        else:
            report.failures.append(Issue(target, ReencryptNotSupportedError.__name__, NOT_SUPPORTED))

    # Resolve what killed runs left before reading anything (a dry run only reports it): first the
    # envelopes named directly (a local one missing mid-swap is found by its name only), then
    # whatever the scan of the roots reports; rescan if that changed anything.
    if not dry_run:
        for target in supported:
            if _scheme(target) in _GCS_SCHEMES:
                envelope = _gcs_envelope(target)
                if envelope is not None:
                    _recover_gcs_into(report, envelope, stale_after)
                continue
            envelope = _envelope_path(target)
            _recover_into(report, envelope)
            for path in local.orphan_candidates(envelope):
                _remove_orphan_into(report, path)
    found = collect(supported, max_workers=max_workers) if supported else Targets()
    if not dry_run:
        changed = False
        for finding in found.findings:
            changed |= _resolve_finding(report, finding, stale_after)
        if changed:
            found = collect(supported, max_workers=max_workers)
    report.failures.extend(Issue(i.url, i.error, i.reason) for i in found.issues)
    report.scan_findings = list(found.findings)
    report.scan_complete = found.scan_complete
    primaries = PrimaryCache(client)
    sizes = [_plaintext_bytes(t, read=progress is not None and not dry_run) for t in found.envelopes]
    meter = None
    if not dry_run:
        total = None if None in sizes else sum(s for s in sizes if s is not None)
        meter = ByteMeter(
            progress, plaintext_bytes=total, envelopes=len(sizes), log=log, every_s=PROGRESS_EVERY_S
        )

    def one(target: EnvelopeTarget, size: int | None) -> EnvelopeOutcome:
        share = meter.for_envelope(size) if meter is not None else None
        try:
            return _reencrypt_one(client, primaries, target, dry_run, on_step, stale_after, share)
        finally:
            if share is not None:
                share.finish()

    with ContextThreadPool(max_workers=max_workers, thread_name_prefix="kmsflow-reencrypt") as pool:
        for result in pool.map(one, found.envelopes, sizes):
            report.results.append(result)
            if result.status == "failed":
                report.failures.append(Issue(result.url, result.error, result.reason))
            elif result.status == "conflict":
                report.conflicts.append(Issue(result.url, result.error, result.reason))
    report.finished_at = format_time(utc_now())
    report.elapsed_s = time.monotonic() - start
    log.info(
        "reencrypt%s: %d envelope(s), %d re-encrypted, %d would be, %d recovered, %d conflict(s), "
        "%d failure(s); %.1f MiB of plaintext in %.1f s",
        " (dry run)" if dry_run else "",
        report.envelopes,
        report.reencrypted,
        report.would_reencrypt,
        len(report.recovered),
        len(report.conflicts),
        len(report.failures),
        report.plaintext_bytes / (1 << 20),
        report.elapsed_s,
    )
    return report


def _plaintext_bytes(target: EnvelopeTarget, *, read: bool) -> int | None:
    """The target's plaintext size for the progress total: from the scan; else (an envelope named
    directly) from its record if ``read`` (a bar needs a total; the log does without, and an
    Airflow batch of envelopes would pay a GET each on GCS); 0 if the record cannot be read -- the
    envelope's job reports why."""
    if target.plaintext_bytes is not None or not read:
        return target.plaintext_bytes
    try:
        return parse_record(read_record_bytes(target.record), target.record.url, target.kind).plaintext_size
    except Exception:  # reported by the envelope's own job, which reads the record again
        return 0


def _scheme(target: str) -> str:
    """The URL scheme, lowercased ("" for a plain local path)."""
    return target.partition("://")[0].lower() if "://" in target else ""


def _resolve_finding(report: ReencryptReport, finding: Finding, stale_after: float) -> bool:
    """Act on a scan finding that an interrupted re-encrypt explains; True if anything changed."""
    remote = _scheme(finding.url) in _GCS_SCHEMES
    if finding.kind is FindingKind.REENCRYPT_BACKUP:
        return _recover_into(report, _backup_owner(finding.url))
    if finding.kind is FindingKind.REENCRYPT_COMMITTED or (finding.kind is FindingKind.STALE_TEMP and remote):
        owner = _staging_owner(finding.url)
        return owner is not None and _recover_gcs_into(report, owner, stale_after)
    if finding.kind is FindingKind.STALE_TEMP:
        return _remove_orphan_into(report, finding.url)
    return False


def _envelope_path(target: str) -> Location:
    """The envelope a local target names (its record's path is accepted, like ``locate``)."""
    loc = resolve(target)
    path = loc.path.rstrip(os.sep)
    dataset_suffix = os.sep + DATASET_RECORD.replace("/", os.sep)
    if path.endswith(dataset_suffix):
        return Location(path[: -len(dataset_suffix)])
    if path.endswith(SIDECAR_SUFFIX) and os.path.isfile(path):
        return Location(path[: -len(SIDECAR_SUFFIX)])
    return Location(path)


def _gcs_envelope(target: str) -> Location | None:
    """The envelope a gs:// target names (its record always exists on GCS: the protocol never
    removes it); None for a root or a non-envelope (``collect`` reports those)."""
    try:
        loc = resolve(target)
        if loc.isdir() and not loc.child(DATASET_RECORD).isfile():
            return None
        return locate(loc)[1]
    except (EnvelopeError, OSError):
        return None


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


def _reencrypt_one(
    client: kms_v1.KeyManagementServiceClient,
    primaries: PrimaryCache,
    target: EnvelopeTarget,
    dry_run: bool,
    on_step: StepHook | None,
    stale_after: float,
    meter: EnvelopeMeter | None,
) -> EnvelopeOutcome:
    """One envelope, start to finish; every error becomes an outcome (one bad envelope never
    aborts the run) and leaves the envelope as it was (or, past a GCS commit, to a rerun).
    ``meter`` is None only for a dry run, which reads no data."""
    record: EnvelopeRecord | None = None
    new_id: str | None = None
    new_version: str | None = None
    try:
        snapshot = read_snapshot(target.record)
        record = parse_record(snapshot.data, target.record.url, target.kind)
        store = _store_of(target, stale_after)
        store.check()
        primary = primaries.get(record.key.crypto_key)
        if dry_run or meter is None:
            return _outcome(target, "would_reencrypt", record, None, primary)
        new_record = _Job(client, store, target.url, record, on_step or _noop, meter).run(snapshot)
        new_id, new_version = new_record.envelope_id, new_record.key.crypto_key_version
    except Exception as exc:  # reported per envelope
        status = "conflict" if isinstance(exc, RecordConflictError) else "failed"
        return _outcome(target, status, record, None, None, exc)
    log.debug("re-encrypted %s: envelope %s -> %s (%s)", target.url, record.envelope_id, new_id, new_version)
    return _outcome(target, "reencrypted", record, new_id, new_version)


def _noop(step: str, url: str) -> None:
    pass


def _store_of(target: EnvelopeTarget, stale_after: float) -> _Store:
    """The live side of ``target``: a local envelope, or one on GCS (the only remote kind)."""
    rec = target.record
    if rec.is_local:
        suffix = SIDECAR_SUFFIX if target.kind == "file" else os.sep + DATASET_RECORD.replace("/", os.sep)
        return local.LocalStore(rec.path[: -len(suffix)], target.kind)
    if rec.protocol not in _GCS_SCHEMES:
        raise ReencryptNotSupportedError(f"{target.url}: {NOT_SUPPORTED}")
    suffix = SIDECAR_SUFFIX if target.kind == "file" else "/" + DATASET_RECORD
    return gcs.GcsStore(Location(rec.path[: -len(suffix)], rec.fs, rec.protocol), target.kind, stale_after)


def _outcome(
    target: EnvelopeTarget,
    status: str,
    record: EnvelopeRecord | None,
    new_id: str | None,
    new_version: str | None,
    exc: Exception | None = None,
) -> EnvelopeOutcome:
    return EnvelopeOutcome(
        url=target.url,
        kind=target.kind,
        status=status,
        old_envelope_id=record.envelope_id if record else None,
        new_envelope_id=new_id,
        old_version=record.key.crypto_key_version if record else None,
        new_version=new_version,
        files=len(record.files) if record else 0,
        plaintext_bytes=record.plaintext_size if record else 0,
        error=exc.__class__.__name__ if exc else "",
        reason=one_line(str(exc)) if exc else "",
    )


class _Stage(Protocol):
    """Where one job builds the new envelope (``LocalStage``, ``GcsStage``) and how it commits."""

    def data_url(self, relpath: str) -> str: ...
    def tick(self) -> None: ...
    def writer(self, relpath: str) -> AbstractContextManager[IO[bytes]]: ...
    def write_record(self, data: bytes) -> None: ...
    def read_record(self) -> bytes: ...
    def open_staged(self, relpath: str) -> AbstractContextManager[IO[bytes]]: ...
    def staged_files(self) -> set[str]: ...
    def commit(
        self,
        snapshot: RecordSnapshot,
        idents: Mapping[str, object],
        old: EnvelopeRecord,
        new: EnvelopeRecord,
        on_step: StepHook,
    ) -> None: ...


class _Store(Protocol):
    """The live envelope (``LocalStore``, ``GcsStore``): old ciphertext and a staging area.

    An *identity* is whatever tells that a data file was rewritten since it was read (local:
    device, inode, size, mtime; GCS: the generation); the stage re-checks them before replacing.
    """

    def check(self) -> None: ...
    def data_url(self, relpath: str) -> str: ...
    def data_files(self) -> dict[str, object]: ...
    def open_source(self, relpath: str) -> AbstractContextManager[tuple[IO[bytes], object]]: ...
    def staging(self) -> AbstractContextManager[_Stage]: ...


class _Job:
    """Re-encrypt one envelope: stage, verify, commit. Holds both data keys in memory only."""

    def __init__(
        self,
        client: kms_v1.KeyManagementServiceClient,
        store: _Store,
        url: str,
        record: EnvelopeRecord,
        on_step: StepHook,
        meter: EnvelopeMeter,
    ) -> None:
        self.client = client
        self.store = store
        self.url = url
        self.record = record
        self.on_step = on_step
        self.meter = meter
        self.dataset = record.kind == "dataset"

    def run(self, snapshot: RecordSnapshot) -> EnvelopeRecord:
        where = snapshot.location.url
        old_key = unwrap_key(self.client, self.record.key, self.record.envelope_id, where)
        manifest.check(old_key, self.record, where)
        idents: dict[str, object] = {}
        if self.dataset:
            idents = self.store.data_files()
            self._check_listing(set(idents))
        new_key = DataKey.generate()
        new_id = new_envelope_id()
        wrap = wrap_key(self.client, self.record.key.crypto_key, new_key, new_id)  # fail fast
        with self.store.staging() as stage:
            entries: list[FileEntry] = []
            digests: dict[str, bytes] = {}
            for entry in self.record.files:
                new_entry, digest, seen = self._restream(old_key, new_key, new_id, entry, stage)
                entries.append(new_entry)
                digests[entry.path] = digest
                if not self.dataset:
                    idents[""] = seen
                elif idents.get(entry.path) != seen:
                    raise RecordConflictError(f"{self.url}: {entry.path!r} changed while reading")
            fields = {
                "envelope_id": new_id,
                "kind": self.record.kind,
                "created": record_time(),
                "key": wrap.model_dump(mode="json"),
                "files": [e.model_dump(mode="json") for e in entries],
            }
            new_record = manifest.seal(new_key, fields)
            stage.write_record(new_record.to_json())
            self.on_step(local.STEP_STAGED, self.url)
            self._verify(stage, new_record, digests)
            self.on_step(local.STEP_VERIFIED, self.url)
            stage.commit(snapshot, idents, self.record, new_record, self.on_step)
        return new_record

    def _check_listing(self, present: set[str]) -> None:
        """A dataset holding files its record does not list (or missing some) is not re-encrypted:
        the new envelope would silently drop or lose them."""
        listed = {f.path for f in self.record.files}
        if present != listed:
            odd = sorted(present ^ listed)
            raise TamperedError(f"{self.url}: files differ from the envelope record, e.g. {odd[0]!r}")

    def _restream(
        self, old_key: DataKey, new_key: DataKey, new_id: str, entry: FileEntry, stage: _Stage
    ) -> tuple[FileEntry, bytes, object]:
        """Old ciphertext -> old key's decrypting stream -> new key's encrypting stream -> staging.

        Returns the new file entry, the SHA-256 of the plaintext that went through (memory only,
        for the verification pass) and the identity of the old file as read.
        """
        src = self.store.data_url(entry.path)
        plain = 0
        plain_sha = _Sha256()
        with (
            write_behind(plain_sha) as hashing,
            self.store.open_source(entry.path) as (raw, seen),
            stage.writer(entry.path) as out,
            write_behind(out, checksum=True) as sink,
        ):
            reader = ChecksumReader(raw)
            try:
                with (
                    old_key.primitive.new_decrypting_stream(
                        reader, data_aad(self.record.envelope_id, entry.path)
                    ) as dec,
                    new_key.primitive.new_encrypting_stream(sink, data_aad(new_id, entry.path)) as enc,
                ):
                    for block in plaintext_pieces(dec, TINK_CHUNK_SIZE):
                        plain += len(block)
                        if plain > entry.size:
                            raise TamperedError(f"{src}: longer than recorded (appended or swapped)")
                        hashing.write(block)
                        write_through(enc, block)
                        stage.tick()
                        self.meter.advance(len(block))
                        if plain == len(block):
                            self.on_step(local.STEP_STREAMING, self.url)
                reader.drain()
            except tink.TinkError:
                if reader.error is not None or sink.error is not None:
                    io_error = reader.error or sink.error
                    assert io_error is not None
                    raise EnvelopeIOError(f"{src}: {os_reason(io_error)} while re-encrypting") from None
                raise TamperedError(
                    f"{src}: failed authentication (modified, truncated, extended, renamed or "
                    "from another envelope); not re-encrypted"
                ) from None
        if plain != entry.size or reader.count != entry.ciphertext_size:
            raise TamperedError(f"{src}: size differs from the envelope record; not re-encrypted")
        if reader.crc32c() != entry.ciphertext_crc32c:
            raise TamperedError(f"{src}: ciphertext CRC32C differs from the record; not re-encrypted")
        new_entry = FileEntry(
            path=entry.path, size=plain, ciphertext_size=sink.count, ciphertext_crc32c=sink.crc32c()
        )
        return new_entry, plain_sha.digest(), seen

    def _verify(self, stage: _Stage, record: EnvelopeRecord, digests: dict[str, bytes]) -> None:
        """Authenticate the staged envelope end to end as a reader will: KMS unwrap of the new
        wrapped keyset, manifest, listing, every file to EOF, and the same plaintext as the old."""
        where = f"{self.url} (staged record)"
        if EnvelopeRecord.from_json(stage.read_record(), where) != record:
            raise EnvelopeIOError(f"{where}: does not read back as written")
        key = unwrap_key(self.client, record.key, record.envelope_id, where)
        manifest.check(key, record, where)
        if stage.staged_files() != {f.path for f in record.files}:
            raise EnvelopeIOError(f"{self.url}: staged files differ from the new record")

        def on_block(n: int) -> None:
            stage.tick()
            self.meter.advance(n)

        for entry in record.files:
            path = stage.data_url(entry.path)
            with stage.open_staged(entry.path) as raw:
                digest = _plaintext_digest(key, record.envelope_id, entry, raw, path, on_block)
            if digest != digests[entry.path]:
                raise EnvelopeIOError(f"{path}: staged ciphertext does not decrypt to the original")


def _plaintext_digest(
    key: DataKey,
    envelope_id: str,
    entry: FileEntry,
    raw: IO[bytes],
    where: str,
    on_block: Callable[[int], None],
) -> bytes:
    """Decrypt ``raw`` to EOF (nothing written anywhere); check sizes and CRC32C; SHA-256 of the
    plaintext. ``on_block`` hears the size of each plaintext block."""
    plain = 0
    reader = ChecksumReader(raw)
    sha = _Sha256()
    try:
        with (
            write_behind(sha) as hashing,
            key.primitive.new_decrypting_stream(reader, data_aad(envelope_id, entry.path)) as dec,
        ):
            for block in plaintext_pieces(dec, TINK_CHUNK_SIZE):
                plain += len(block)
                hashing.write(block)
                on_block(len(block))
            reader.drain()
    except tink.TinkError:
        raise EnvelopeIOError(f"{where}: staged ciphertext failed authentication (new key)") from None
    expected = (entry.size, entry.ciphertext_size, entry.ciphertext_crc32c)
    if (plain, reader.count, reader.crc32c()) != expected:
        raise EnvelopeIOError(f"{where}: staged ciphertext differs from the new record")
    return sha.digest()


class _Sha256:
    """A :class:`~kmsflow.envelope.streams.BinarySink` that SHA-256es what is written to it.

    Why behind ``write_behind``: re-encrypt hashes every plaintext byte twice (as it re-encrypts,
    and as it verifies the staged copy), ~38 % of its time when inline even at ~1.4 GB/s with
    SHA-NI (docs/BENCHMARKS.md, "Re-encrypt"). ``hashlib`` releases the GIL while it hashes, so on
    the write-behind thread the hashing overlaps Tink's work on the next piece."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()

    def write(self, data: bytes | memoryview, /) -> int:
        self._sha.update(data)
        return len(data)

    def digest(self) -> bytes:
        return self._sha.digest()
