"""One envelope's re-encrypt, start to finish, over a *store*: read and authenticate the old
envelope, wrap a fresh key, stream old ciphertext to new through Tink into a staging area, verify
the staged envelope under the new key, then let the store swap it in (:mod:`.local`, :mod:`.gcs`)."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import IO, Protocol

import tink
from google.cloud import kms_v1

from kmsflow.clock import record_time
from kmsflow.envelope import manifest, recipient
from kmsflow.envelope.aad import data_aad
from kmsflow.envelope.encrypt import new_envelope_id
from kmsflow.envelope.errors import EnvelopeIOError, TamperedError, os_reason
from kmsflow.envelope.keyset import DataKey
from kmsflow.envelope.layout import DATASET_RECORD, SIDECAR_SUFFIX
from kmsflow.envelope.record import EnvelopeRecord, FileEntry, KeyWrap, RecipientWrap
from kmsflow.envelope.record_io import parse_record
from kmsflow.envelope.storage import TINK_CHUNK_SIZE, Location
from kmsflow.envelope.streams import ChecksumReader, plaintext_pieces, write_behind, write_through
from kmsflow.envelope.wrap import unwrap_key, wrap_key
from kmsflow.lifecycle.cas import RecordConflictError, RecordSnapshot, read_snapshot
from kmsflow.lifecycle.outcomes import EnvelopeStatus
from kmsflow.lifecycle.reencryption import gcs, local
from kmsflow.lifecycle.reencryption.progress import EnvelopeMeter
from kmsflow.lifecycle.reencryption.report import (
    NOT_SUPPORTED,
    EnvelopeOutcome,
    ReencryptNotSupportedError,
    outcome,
)
from kmsflow.lifecycle.rewrap import PrimaryCache
from kmsflow.lifecycle.targets import EnvelopeTarget

log = logging.getLogger("kmsflow.lifecycle.reencrypt")

StepHook = local.StepHook

LOCAL_SCHEMES = ("file", "local")
GCS_SCHEMES = ("gs", "gcs")


def reencrypt_one(
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
            return outcome(target, EnvelopeStatus.WOULD_REENCRYPT, record, None, primary)
        new_record = _Job(client, store, target.url, record, on_step or _noop, meter, primaries).run(snapshot)
        new_id, new_version = new_record.envelope_id, new_record.key.crypto_key_version
    except Exception as exc:  # reported per envelope
        status = EnvelopeStatus.CONFLICT if isinstance(exc, RecordConflictError) else EnvelopeStatus.FAILED
        return outcome(target, status, record, None, None, exc)
    log.debug("re-encrypted %s: envelope %s -> %s (%s)", target.url, record.envelope_id, new_id, new_version)
    return outcome(target, EnvelopeStatus.REENCRYPTED, record, new_id, new_version)


def _noop(step: str, url: str) -> None:
    pass


def _store_of(target: EnvelopeTarget, stale_after: float) -> _Store:
    """The live side of ``target``: a local envelope, or one on GCS (the only remote kind)."""
    rec = target.record
    if rec.is_local:
        suffix = SIDECAR_SUFFIX if target.kind == "file" else os.sep + DATASET_RECORD.replace("/", os.sep)
        return local.LocalStore(rec.path[: -len(suffix)], target.kind)
    if rec.protocol not in GCS_SCHEMES:
        raise ReencryptNotSupportedError(f"{target.url}: {NOT_SUPPORTED}")
    suffix = SIDECAR_SUFFIX if target.kind == "file" else "/" + DATASET_RECORD
    return gcs.GcsStore(Location(rec.path[: -len(suffix)], rec.fs, rec.protocol), target.kind, stale_after)


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
        primaries: PrimaryCache,
    ) -> None:
        self.client = client
        self.primaries = primaries
        self.store = store
        self.url = url
        self.record = record
        self.on_step = on_step
        self.meter = meter
        self.dataset = record.kind == "dataset"

    def _wrap(self, key: DataKey, envelope_id: str) -> KeyWrap | RecipientWrap:
        """The new data key wrapped as the old one was: by one KMS Encrypt under the CryptoKey, or
        for a recipient envelope locally for the public key of the key's current version."""
        crypto_key = self.record.key.crypto_key
        if isinstance(self.record.key, RecipientWrap):
            return recipient.wrap_key(self.primaries.public_key(crypto_key), key, envelope_id)
        return wrap_key(self.client, crypto_key, key, envelope_id)

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
        wrap = self._wrap(new_key, new_id)  # fail fast
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
