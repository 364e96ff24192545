"""Full re-encrypt for a suspected data-key compromise: new data key, new envelope id, new ciphertext.

Rewrap (:mod:`kmsflow.lifecycle.rewrap`) protects against a compromised *KMS key version*: the
data key stays, only its wrapping changes. When a *data key* may have leaked (a process dump, a
debugger, a keyset in a log) every byte it encrypted must be re-encrypted under a fresh one. Per
envelope (local paths only, see "Object stores" below):

1. resolve what an interrupted earlier run left (:func:`kmsflow.lifecycle.reencrypt_local.recover`);
2. read the record (exact bytes), KMS Decrypt the old keyset and authenticate the record against
   its manifest: a tampered envelope is refused before anything is written;
3. generate a fresh Tink keyset and a new envelope id, wrap the keyset with ONE KMS Encrypt under
   the CryptoKey (its current primary), before any data is read;
4. stream every file: old ciphertext -> Tink decrypting stream (old key, old AAD) -> Tink
   encrypting stream (new key, new AAD) -> a file in the hidden staging directory
   ``.<name>.kmsflow-<hex>.tmp`` beside the envelope. Constant memory (1 MiB blocks); plaintext
   exists only in those in-memory blocks, never in a file, temp file or log. The old ciphertext is
   read to EOF and must match the record's size and CRC32C (authenticated end to end);
5. seal the new record's manifest, write the record into the staging directory, fsync everything;
6. **verify before replacing**: one KMS Decrypt of the new wrapped keyset, the new manifest
   checked, every staged file decrypted under the new key to EOF, its size and digest checked, and
   the SHA-256 of its plaintext compared (in memory) with that of the plaintext read in step 4;
7. replace the old envelope by the staged one with the rename protocol of
   :mod:`kmsflow.lifecycle.reencrypt_local` (file: backup hard link, data, record; dataset:
   directory aside, new directory in place), which keeps the envelope decryptable if the process
   is killed between any two steps, and lets a rerun converge.

KMS calls per envelope: Decrypt (old key), Encrypt (new key), Decrypt (verification). Transient
KMS errors are retried in ``kmsflow.kms.crypto``; an envelope that still fails is reported and left
untouched (its staging directory removed). Every run re-encrypts every envelope it is given (there
is no "already done": a new key is the point); an interrupted run is simply run again.

**Object stores (gs://).** Not supported yet: a run fails such targets with a one-line reason. GCS
has no rename and no multi-object transaction; a file envelope's data and record (or a dataset's
shards and record) would be overwritten object by object, so a kill in between leaves new data
beside an old record, and a correct protocol needs either a format-level indirection (records
naming a data generation) or object versioning to roll back. That is a separate design.

**Test seam.** ``on_step(step, envelope_url)`` is called after each protocol step (the ``STEP_*``
names in :mod:`~kmsflow.lifecycle.reencrypt_local`, in the order listed there); the crash tests run
re-encrypt in a subprocess whose hook SIGKILLs itself at a chosen step. Production callers pass
nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import tink
from google.cloud import kms_v1

from kmsflow.envelope import manifest
from kmsflow.envelope.aad import data_aad
from kmsflow.envelope.encrypt import new_envelope_id
from kmsflow.envelope.errors import EnvelopeError, EnvelopeIOError, TamperedError
from kmsflow.envelope.keyset import DataKey
from kmsflow.envelope.layout import DATASET_RECORD, REENCRYPT_BACKUP_NAME, SIDECAR_SUFFIX
from kmsflow.envelope.record import EnvelopeRecord, FileEntry, utc_now
from kmsflow.envelope.storage import TINK_CHUNK_SIZE, Location, resolve
from kmsflow.envelope.streams import ChecksumReader, ChecksumWriter
from kmsflow.envelope.wrap import unwrap_key, wrap_key
from kmsflow.inventory import Finding, FindingKind
from kmsflow.inventory.scanner import now_rfc3339, parse_record
from kmsflow.lifecycle import reencrypt_local as local
from kmsflow.lifecycle.cas import RecordConflictError, fsync_dir, read_snapshot
from kmsflow.lifecycle.rewrap import Issue, PrimaryCache
from kmsflow.lifecycle.targets import EnvelopeTarget, Targets, collect, one_line

log = logging.getLogger(__name__)

StepHook = local.StepHook

NOT_SUPPORTED = (
    "re-encrypt on object stores (gs://) isn't supported yet: their objects cannot be replaced "
    "together crash-safely; copy the envelope to a local path, re-encrypt, copy it back"
)


class ReencryptNotSupportedError(EnvelopeError):
    """The target lives where re-encrypt cannot replace an envelope crash-safely (object stores)."""


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
class ReencryptReport:
    """What a re-encrypt run found and did (``results`` per envelope, in target order)."""

    dry_run: bool
    started_at: str
    finished_at: str = ""
    elapsed_s: float = 0.0
    results: list[EnvelopeOutcome] = field(default_factory=list)
    recovered: list[Issue] = field(default_factory=list)  # interrupted runs resolved (error = "")
    removed_temps: list[str] = field(default_factory=list)  # staging directories of killed runs
    failures: list[Issue] = field(default_factory=list)
    conflicts: list[Issue] = field(default_factory=list)
    scan_complete: bool = True
    scan_findings: list[Finding] = field(default_factory=list)

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

    @property
    def ok(self) -> bool:
        """Every target was (or, dry run, could be) re-encrypted and every root was fully seen."""
        return not self.failures and not self.conflicts and self.scan_complete

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "ok": self.ok,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "elapsed_s": round(self.elapsed_s, 3),
            "envelopes": self.envelopes,
            "reencrypted": self.reencrypted,
            "would_reencrypt": self.would_reencrypt,
            "files": self.files,
            "plaintext_bytes": self.plaintext_bytes,
            "recovered": [r.to_dict() for r in self.recovered],
            "removed_temps": list(self.removed_temps),
            "conflicts": [c.to_dict() for c in self.conflicts],
            "failures": [f.to_dict() for f in self.failures],
            "scan_complete": self.scan_complete,
            "scan_findings": [f.to_dict() for f in self.scan_findings],
            "results": [r.to_dict() for r in self.results],
        }


def reencrypt(
    client: kms_v1.KeyManagementServiceClient,
    targets: Sequence[str],
    *,
    max_workers: int = 4,
    dry_run: bool = False,
    on_step: StepHook | None = None,
) -> ReencryptReport:
    """Re-encrypt every envelope under ``targets`` (envelopes or roots) under a fresh data key.

    ``dry_run`` resolves nothing, makes no KMS Encrypt/Decrypt and writes nothing: it lists what
    would be re-encrypted (and under which primary). ``max_workers`` envelopes are processed at a
    time (each streams its files in order). ``on_step`` is the test seam (module docstring).
    """
    if max_workers < 1:
        raise ValueError("max_workers must be at least 1")
    start = time.monotonic()
    report = ReencryptReport(dry_run=dry_run, started_at=now_rfc3339())
    local_targets: list[str] = []
    for target in targets:
        if _is_remote(target):
            report.failures.append(Issue(target, ReencryptNotSupportedError.__name__, NOT_SUPPORTED))
        else:
            local_targets.append(target)

    # Resolve what killed runs left before reading anything (a dry run only reports it): first the
    # envelopes named directly (one missing mid-swap is found by its name only), then whatever the
    # scan of the roots reports; rescan if that changed anything.
    if not dry_run:
        for target in local_targets:
            envelope = _envelope_path(target)
            _recover_into(report, envelope)
            for path in local.orphan_candidates(envelope):
                _remove_orphan_into(report, path)
    found = collect(local_targets, max_workers=max_workers) if local_targets else Targets()
    if not dry_run:
        changed = False
        for finding in found.findings:
            if finding.kind is FindingKind.REENCRYPT_BACKUP:
                changed |= _recover_into(report, _backup_owner(finding.url))
            elif finding.kind is FindingKind.STALE_TEMP:
                changed |= _remove_orphan_into(report, finding.url)
        if changed:
            found = collect(local_targets, max_workers=max_workers)
    report.failures.extend(Issue(i.url, i.error, i.reason) for i in found.issues)
    report.scan_findings = list(found.findings)
    report.scan_complete = found.scan_complete
    primaries = PrimaryCache(client)

    def one(target: EnvelopeTarget) -> EnvelopeOutcome:
        return _reencrypt_one(client, primaries, target, dry_run, on_step)

    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="kmsflow-reencrypt") as pool:
        for result in pool.map(one, found.envelopes):
            report.results.append(result)
            if result.status == "failed":
                report.failures.append(Issue(result.url, result.error, result.reason))
            elif result.status == "conflict":
                report.conflicts.append(Issue(result.url, result.error, result.reason))
    report.finished_at = now_rfc3339()
    report.elapsed_s = time.monotonic() - start
    log.info(
        "reencrypt%s: %d envelope(s), %d re-encrypted, %d would be, %d recovered, %d conflict(s), "
        "%d failure(s)",
        " (dry run)" if dry_run else "",
        report.envelopes,
        report.reencrypted,
        report.would_reencrypt,
        len(report.recovered),
        len(report.conflicts),
        len(report.failures),
    )
    return report


def _is_remote(target: str) -> bool:
    """True for URLs on anything but the local filesystem (``file://`` is local)."""
    if "://" not in target:
        return False
    return target.partition("://")[0].lower() not in ("file", "local")


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


def _backup_owner(backup_url: str) -> Location:
    """The envelope a re-encrypt backup belongs to (its name without ``.`` / ``.kmsflow-<id>.old``)."""
    parent, name = os.path.split(backup_url.rstrip(os.sep))
    m = REENCRYPT_BACKUP_NAME.match(name)
    return Location(os.path.join(parent, m.group("name") if m else name))


def _recover_into(report: ReencryptReport, envelope: Location) -> bool:
    try:
        note = local.recover(envelope)
    except (EnvelopeError, OSError) as exc:
        report.failures.append(Issue(envelope.url, exc.__class__.__name__, one_line(str(exc))))
        return False
    if note is None:
        return False
    log.info("reencrypt %s: %s", envelope.url, note)
    if all(r.url != envelope.url for r in report.recovered):
        report.recovered.append(Issue(envelope.url, "", note))
    return True


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
) -> EnvelopeOutcome:
    """One envelope, start to finish; every error becomes an outcome (one bad envelope never
    aborts the run) and leaves the envelope as it was."""
    record: EnvelopeRecord | None = None
    new_id: str | None = None
    new_version: str | None = None
    try:
        snapshot = read_snapshot(target.record)
        record = parse_record(snapshot.data, target.record.url, target.kind)
        root = _root_of(target)
        local.check_local(root, target.kind)
        primary = primaries.get(record.key.crypto_key)
        if dry_run:
            return _outcome(target, "would_reencrypt", record, None, primary)
        job = _Job(client, target, root, record, on_step or _noop)
        new_record = job.run(snapshot.data)
        new_id, new_version = new_record.envelope_id, new_record.key.crypto_key_version
    except Exception as exc:  # reported per envelope
        status = "conflict" if isinstance(exc, RecordConflictError) else "failed"
        return _outcome(target, status, record, None, None, exc)
    log.info("re-encrypted %s: envelope %s -> %s (%s)", target.url, record.envelope_id, new_id, new_version)
    return _outcome(target, "reencrypted", record, new_id, new_version)


def _noop(step: str, url: str) -> None:
    pass


def _root_of(target: EnvelopeTarget) -> str:
    rec = target.record.path
    if target.kind == "file":
        return rec[: -len(SIDECAR_SUFFIX)]
    return rec[: -len(os.sep + DATASET_RECORD.replace("/", os.sep))]


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


class _Job:
    """Re-encrypt one local envelope: stage, verify, replace. Holds both data keys in memory only."""

    def __init__(
        self,
        client: kms_v1.KeyManagementServiceClient,
        target: EnvelopeTarget,
        root: str,
        record: EnvelopeRecord,
        on_step: StepHook,
    ) -> None:
        self.client = client
        self.target = target
        self.root = root
        self.record = record
        self.on_step = on_step
        self.dataset = record.kind == "dataset"

    def run(self, snapshot: bytes) -> EnvelopeRecord:
        where = self.target.record.url
        old_key = unwrap_key(self.client, self.record.key, self.record.envelope_id, where)
        manifest.check(old_key, self.record, where)
        idents: dict[str, local.Ident] = {}
        if self.dataset:
            idents = local.dataset_idents(self.root)
            self._check_listing(set(idents))
        new_key = DataKey.generate()
        new_id = new_envelope_id()
        wrap = wrap_key(self.client, self.record.key.crypto_key, new_key, new_id)  # fail fast
        with local.staging_dir(self.root) as staging:
            entries: list[FileEntry] = []
            digests: dict[str, bytes] = {}
            for entry in self.record.files:
                new_entry, digest, seen = self._restream(old_key, new_key, new_id, entry, staging)
                entries.append(new_entry)
                digests[entry.path] = digest
                if not self.dataset:
                    idents[""] = seen
                elif idents.get(entry.path) != seen:
                    raise RecordConflictError(f"{self.target.url}: {entry.path!r} changed while reading")
            fields = {
                "envelope_id": new_id,
                "kind": self.record.kind,
                "created": utc_now(),
                "key": wrap.model_dump(mode="json"),
                "files": [e.model_dump(mode="json") for e in entries],
            }
            new_record = manifest.seal(new_key, fields)
            record_path = self._staged_record(staging)
            _write_synced(record_path, new_record.to_json(), _mode(self.target.record.path))
            _fsync_tree(staging)
            self.on_step(local.STEP_STAGED, self.target.url)
            self._verify(staging, record_path, new_record, digests)
            self.on_step(local.STEP_VERIFIED, self.target.url)
            if self.dataset:
                local.commit_dataset(
                    self.root, snapshot, idents, staging, self.record.envelope_id, self.on_step
                )
            else:
                local.commit_file(
                    self.root,
                    snapshot,
                    idents[""],
                    self._staged_data(staging, ""),
                    record_path,
                    self.record.envelope_id,
                    self.on_step,
                )
        return new_record

    def _check_listing(self, present: set[str]) -> None:
        """A dataset holding files its record does not list (or missing some) is not re-encrypted:
        the new envelope would silently drop or lose them."""
        listed = {f.path for f in self.record.files}
        if present != listed:
            odd = sorted(present ^ listed)
            raise TamperedError(
                f"{self.target.url}: files on disk differ from the envelope record, e.g. {odd[0]!r}"
            )

    def _staged_data(self, staging: str, relpath: str) -> str:
        if not self.dataset:
            return os.path.join(staging, "data")
        return os.path.join(staging, *relpath.split("/"))

    def _staged_record(self, staging: str) -> str:
        if not self.dataset:
            return os.path.join(staging, "record")
        path = os.path.join(staging, *DATASET_RECORD.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def _restream(
        self, old_key: DataKey, new_key: DataKey, new_id: str, entry: FileEntry, staging: str
    ) -> tuple[FileEntry, bytes, local.Ident]:
        """Old ciphertext -> old key's decrypting stream -> new key's encrypting stream -> staging.

        Returns the new file entry, the SHA-256 of the plaintext that went through (memory only,
        for the verification pass) and the identity of the old file as read.
        """
        src = self.root if not self.dataset else os.path.join(self.root, *entry.path.split("/"))
        dst = self._staged_data(staging, entry.path)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        plain = 0
        plain_sha = hashlib.sha256()
        with open(src, "rb") as raw:
            seen = local.ident(os.fstat(raw.fileno()))
            fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                reader, sink = ChecksumReader(raw), ChecksumWriter(out)
                try:
                    with (
                        old_key.primitive.new_decrypting_stream(
                            reader, data_aad(self.record.envelope_id, entry.path)
                        ) as dec,
                        new_key.primitive.new_encrypting_stream(sink, data_aad(new_id, entry.path)) as enc,
                    ):
                        while block := dec.read1(TINK_CHUNK_SIZE):
                            plain += len(block)
                            if plain > entry.size:
                                raise TamperedError(f"{src}: longer than recorded (appended or swapped)")
                            plain_sha.update(block)
                            enc.write(block)
                            if plain == len(block):
                                self.on_step(local.STEP_STREAMING, self.target.url)
                    reader.drain()
                except tink.TinkError:
                    if reader.error is not None or sink.error is not None:
                        io_error = reader.error or sink.error
                        assert io_error is not None
                        raise EnvelopeIOError(f"{src}: {_reason(io_error)} while re-encrypting") from None
                    raise TamperedError(
                        f"{src}: failed authentication (modified, truncated, extended, renamed or "
                        "from another envelope); not re-encrypted"
                    ) from None
                out.flush()
                os.fchmod(out.fileno(), os.fstat(raw.fileno()).st_mode & 0o7777)
                os.fsync(out.fileno())
        if plain != entry.size or reader.count != entry.ciphertext_size:
            raise TamperedError(f"{src}: size differs from the envelope record; not re-encrypted")
        if reader.crc32c() != entry.ciphertext_crc32c:
            raise TamperedError(f"{src}: ciphertext CRC32C differs from the record; not re-encrypted")
        new_entry = FileEntry(
            path=entry.path, size=plain, ciphertext_size=sink.count, ciphertext_crc32c=sink.crc32c()
        )
        return new_entry, plain_sha.digest(), seen

    def _verify(
        self, staging: str, record_path: str, record: EnvelopeRecord, digests: dict[str, bytes]
    ) -> None:
        """Authenticate the staged envelope end to end as a reader will: KMS unwrap of the new
        wrapped keyset, manifest, listing, every file to EOF, and the same plaintext as the old."""
        with open(record_path, "rb") as f:
            on_disk = EnvelopeRecord.from_json(f.read(), record_path)
        if on_disk != record:
            raise EnvelopeIOError(f"{record_path}: staged record does not read back as written")
        key = unwrap_key(self.client, record.key, record.envelope_id, record_path)
        manifest.check(key, record, record_path)
        if self.dataset:
            present = set(local.dataset_idents(staging))
            if present != {f.path for f in record.files}:
                raise EnvelopeIOError(f"{staging}: staged files differ from the new record")
        for entry in record.files:
            path = self._staged_data(staging, entry.path)
            if _plaintext_digest(key, record.envelope_id, entry, path) != digests[entry.path]:
                raise EnvelopeIOError(f"{path}: staged ciphertext does not decrypt to the original")


def _mode(path: str) -> int:
    return os.stat(path).st_mode & 0o7777


def _plaintext_digest(key: DataKey, envelope_id: str, entry: FileEntry, path: str) -> bytes:
    """Decrypt ``path`` to EOF (nothing written anywhere); check sizes and digest; SHA-256 of the
    plaintext."""
    sha = hashlib.sha256()
    plain = 0
    with open(path, "rb") as raw:
        reader = ChecksumReader(raw)
        try:
            with key.primitive.new_decrypting_stream(reader, data_aad(envelope_id, entry.path)) as dec:
                while block := dec.read1(TINK_CHUNK_SIZE):
                    plain += len(block)
                    sha.update(block)
            reader.drain()
        except tink.TinkError:
            raise EnvelopeIOError(f"{path}: staged ciphertext failed authentication (new key)") from None
    expected = (entry.size, entry.ciphertext_size, entry.ciphertext_crc32c)
    if (plain, reader.count, reader.crc32c()) != expected:
        raise EnvelopeIOError(f"{path}: staged ciphertext differs from the new record")
    return sha.digest()


def _write_synced(path: str, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(top: str) -> None:
    """fsync every directory of the staging tree (files were fsynced as written): the renames that
    follow must never publish a name whose directory entry a power loss could forget."""
    for dirpath, _, _ in os.walk(top, topdown=False):
        fsync_dir(dirpath)


def _reason(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__
