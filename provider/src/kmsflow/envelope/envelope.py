"""Read side: open an envelope by its record, unlock it with one KMS call, verify or decrypt it.

Authentication covers every byte: the wrapped keyset is bound (by KMS AAD) to the envelope id; the
manifest (a Tink ciphertext) authenticates every other field of the record; every data file is a
Tink stream whose AAD binds the envelope id and its relative path, read to EOF so that truncation
and appended bytes are caught, and whose size must match the record. A dataset directory holding
files the record does not list is rejected too.

``verify`` also requires each file's CRC32C to match the record; ``decrypt`` does not compute it.
Once Tink authenticated a file and its size matches, its bytes are exactly the ones the writer
produced and checksummed, so the CRC32C could only confirm what is already proved, at ~10 % of
decrypt's time (docs/FORMAT.md §2). ``verify`` is the audit: there it also catches a record whose
checksum a faulty writer got wrong, which storage-level checks (``inventory`` on gs://) rely on.

Decrypted output is staged (see ``staging``) and published only after *every* file of the envelope
authenticated, so a failure at the last byte of the last shard leaves nothing at the destination.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from kmsflow.envelope.aad import data_aad
from kmsflow.envelope.errors import (
    DestinationExistsError,
    EnvelopeError,
    EnvelopeIOError,
    InvalidDestinationError,
    RecordNotFoundError,
    TamperedError,
    os_reason,
)
from kmsflow.envelope.layout import (
    DATASET_RECORD,
    RESERVED_DIR,
    SIDECAR_SUFFIX,
    check_relpath,
    data_location,
    locate,
    probe_destination,
    record_location,
    reencrypt_backup,
    reencrypt_backups,
    renamed_by_normalization,
    reserved_entry_allowed,
)
from kmsflow.envelope.progress import NoProgress, Progress
from kmsflow.envelope.record import EnvelopeRecord, FileEntry, RecipientWrap
from kmsflow.envelope.staging import stage, write_failure
from kmsflow.envelope.storage import TINK_CHUNK_SIZE, Location, resolve
from kmsflow.envelope.streams import BinarySink, ChecksumReader, plaintext_pieces, write_behind

if TYPE_CHECKING:  # gRPC, the KMS client and Tink are loaded to unlock a key, not by inspect
    from google.api_core.retry import Retry

    from kmsflow.envelope.keyset import DataKey
    from kmsflow.kms.crypto import CryptoClient


class _NullSink:
    """Discards plaintext (verify): authenticates without writing anything anywhere."""

    def write(self, b: Any) -> int:
        return len(b)


class Envelope:
    """An envelope found at a path: its record, and (once unlocked) its data key in memory."""

    def __init__(self, root: Location, record_location: Location, record: EnvelopeRecord) -> None:
        self.root = root
        self.record_location = record_location
        self.record = record
        self._key: DataKey | None = None

    @classmethod
    def open(cls, src: str | Location) -> Envelope:
        """Find and parse the record for ``src`` (the path encrypt was given as its destination).

        An envelope caught half-way through a local re-encrypt (killed between its renames, see
        ``kmsflow.lifecycle.reencrypt``) is read from the backup that still matches its record, so
        it decrypts at every instant; nothing is written here (readers may be read-only).
        """
        location = resolve(src) if isinstance(src, str) else src
        found = _remote_record(location)
        record_bytes: bytes | None
        if found is not None:
            kind, root, record_loc, record_bytes = found
        else:
            try:
                kind, root, record_loc = locate(location)
            except RecordNotFoundError:
                # A dataset is absent only between "old -> backup" and "new -> place": read the backup.
                backups = [b for b, _ in reencrypt_backups(location) if b.isdir()]
                if location.exists() or len(backups) != 1 or not backups[0].child(DATASET_RECORD).isfile():
                    raise
                kind, root, record_loc = "dataset", backups[0], backups[0].child(DATASET_RECORD)
            record_bytes = _read_record(record_loc)
            if record_bytes is None:  # found a moment ago
                raise EnvelopeIOError(f"{record_loc.url}: cannot read record (it was removed)")
        record = EnvelopeRecord.from_json(record_bytes, record_loc.url)
        if record.kind != kind:
            raise TamperedError(f"{record_loc.url}: record of a {record.kind} envelope found beside a {kind}")
        for entry in record.files:
            check_relpath(entry.path, dataset=(kind == "dataset"))
        if kind == "file" and len(record.files) != 1:
            raise TamperedError(f"{record_loc.url}: a file envelope must list exactly one file")
        if kind == "file" and root.is_local:
            # Between "new data -> X" and "new record -> X.kmsflow.json" the record still names the
            # old id and the old data is the backup carrying that id (a hard link, same bytes).
            backup = reencrypt_backup(root, record.envelope_id)
            if backup.isfile():
                root = backup
        return cls(root, record_loc, record)

    @property
    def url(self) -> str:
        return self.root.url

    def inspect(self) -> dict[str, Any]:
        """JSON-safe summary (no KMS call, nothing secret): ids, exact key version, files, sizes, and
        who the signature record (if any) says signed it, unverified (``signature``: None if unsigned,
        see :func:`kmsflow.envelope.signature.claimed_signer`)."""
        from kmsflow.envelope.signature import claimed_signer

        r = self.record
        wrap = {"wrap": r.key.wrap} if isinstance(r.key, RecipientWrap) else {}
        return {
            "envelope": self.root.url,
            "record": self.record_location.url,
            "format": r.format,
            "format_version": r.version,
            "envelope_id": r.envelope_id,
            "kind": r.kind,
            "created": r.created,
            "crypto_key": r.key.crypto_key,
            "crypto_key_version": r.key.crypto_key_version,
            **wrap,
            "wrapped_at": r.key.wrapped_at,
            "file_count": len(r.files),
            "plaintext_size": r.plaintext_size,
            "ciphertext_size": r.ciphertext_size,
            "signature": claimed_signer(self),
            "files": [f.model_dump(mode="json") for f in r.files],
        }

    def unlock(self, client: CryptoClient, *, retry: Retry | None = None) -> DataKey:
        """Unwrap the data key (one KMS Decrypt, cached in memory) and authenticate the record.

        ``retry`` bounds how long transient KMS errors are retried (None: ``crypto.default_retry()``),
        so callers with their own deadline (an Airflow connection's) are not held to 60 s.
        """
        if self._key is None:
            from kmsflow.envelope import manifest
            from kmsflow.envelope.wrap import unwrap_key

            key = unwrap_key(
                client, self.record.key, self.record.envelope_id, self.record_location.url, retry=retry
            )
            manifest.check(key, self.record, self.record_location.url)
            self._key = key
        return self._key

    def check_listing(self) -> None:
        """A dataset's directory holds exactly the files its record lists, plus its record, its
        signature record (and the temp of an interrupted write of either) under ``_kmsflow/``:
        nothing missing, nothing smuggled in, nothing a reader cannot open as a file; else
        :class:`TamperedError`."""
        if self.record.kind != "dataset":
            return
        tree = self.root.tree()
        if tree.obstacles:
            first = sorted(tree.obstacles, key=lambda o: o.rel)[0]
            raise TamperedError(f"{self.url}: {first.rel!r} is not part of the envelope: {first.detail}")
        reserved = RESERVED_DIR + "/"
        stray = [
            p for p in tree.files if p.startswith(reserved) and not reserved_entry_allowed(p[len(reserved) :])
        ]
        if stray:
            raise TamperedError(
                f"{self.url}: {stray[0]!r} is not part of the format (only the record may be there)"
            )
        listed = {f.path for f in self.record.files}
        present = {p for p in tree.files if not p.startswith(reserved)}
        missing = sorted(listed - present)
        extra = sorted(present - listed)
        renamed = renamed_by_normalization(missing, extra)
        if renamed is not None:
            raise TamperedError(
                f"{self.url}: {renamed[0]!r} is named {renamed[1]!r} here (the same name in another Unicode "
                "normalization): a filesystem or copy tool that normalizes names renamed it; copy the "
                "envelope with a tool that keeps names byte for byte, or rename it back"
            )
        if missing:
            raise TamperedError(
                f"{self.url}: {len(missing)} file(s) of the envelope missing, e.g. {missing[0]!r}"
            )
        if extra:
            raise TamperedError(f"{self.url}: {len(extra)} file(s) not in the envelope, e.g. {extra[0]!r}")

    def verify(
        self,
        client: CryptoClient,
        *,
        progress: Progress | None = None,
        retry: Retry | None = None,
        digests: dict[str, str] | None = None,
    ) -> None:
        """Authenticate every byte of the envelope; write no plaintext anywhere.

        ``retry`` as for :meth:`unlock`. With ``digests``, each file's ciphertext SHA-256 (hex) is
        put there under its path, computed on the same read (what signing needs).
        """
        key = self.unlock(client, retry=retry)
        self.check_listing()
        progress = progress or NoProgress()
        progress.start(self.record.plaintext_size, f"verify {self.root.name}")
        for entry in self.record.files:
            digest = self._decrypt_file(
                key, entry, _NullSink(), "(verify)", progress, check_crc=True, digest=digests is not None
            )
            if digests is not None and digest is not None:
                digests[entry.path] = digest

    def decrypt(
        self,
        client: CryptoClient,
        dst: str | Location,
        *,
        progress: Progress | None = None,
        retry: Retry | None = None,
    ) -> None:
        """Decrypt to ``dst`` (a file for a file envelope, a directory for a dataset), atomically.

        ``retry`` as for :meth:`unlock`.
        """
        dest = resolve(dst) if isinstance(dst, str) else dst
        probe = probe_destination(dest, (dest,))
        if probe.taken is not None:
            raise DestinationExistsError(f"{dest.url}: already exists; choose a new destination or remove it")
        if probe.enclosing is not None:
            raise InvalidDestinationError(
                f"{dest.url}: inside the dataset envelope {probe.enclosing.url}; plaintext written there "
                "would break it (and sit among ciphertext): choose a destination outside it"
            )
        key = self.unlock(client, retry=retry)
        self.check_listing()
        progress = progress or NoProgress()
        progress.start(self.record.plaintext_size, f"decrypt {self.root.name}")
        with stage(dest, tree=(self.record.kind == "dataset"), plaintext=True) as staging:
            for entry in self.record.files:
                target = data_location(dest, entry.path)
                with staging.writer(target) as out:
                    try:
                        with write_behind(out) as behind:
                            self._decrypt_file(key, entry, behind, target.url, progress, check_crc=False)
                    except OSError as exc:  # the last pieces failed to write (a full disk, a 412)
                        raise write_failure(target.url, exc, "writing plaintext") from None

    def read_bytes(self, client: CryptoClient, *, retry: Retry | None = None) -> bytes:
        """Decrypt a file envelope into memory; return its plaintext once every byte authenticated.

        For values that must never touch storage as plaintext (the XCom backend's); the size held
        in memory is the authenticated record's. ``retry`` as for :meth:`unlock`.
        """
        if self.record.kind != "file":
            raise EnvelopeError(f"{self.url}: a dataset envelope; only a file envelope reads into memory")
        key = self.unlock(client, retry=retry)
        (entry,) = self.record.files
        out = io.BytesIO()
        self._decrypt_file(key, entry, out, "(memory)", NoProgress(), check_crc=False)
        return out.getvalue()

    def _decrypt_file(
        self,
        key: DataKey,
        entry: FileEntry,
        out: BinarySink,
        out_name: str,
        progress: Progress,
        *,
        check_crc: bool,
        digest: bool = False,
    ) -> str | None:
        """Decrypt one file to ``out``, reading the ciphertext to EOF; raise unless all of it checks
        (its CRC32C too with ``check_crc``, see the module docstring). Returns the ciphertext's
        SHA-256 (hex) with ``digest``, else None."""
        import tink  # loaded already: the key was unlocked

        src = data_location(self.root, entry.path)
        name = src.url
        try:
            raw = src.open_sequential()
        except FileNotFoundError:
            raise TamperedError(f"{name}: file of the envelope is missing") from None
        except OSError as exc:
            raise EnvelopeIOError(f"{name}: cannot read ({os_reason(exc)})") from None
        plain = 0
        with raw:
            reader = ChecksumReader(raw, checksum=check_crc, digest=digest)
            aad = data_aad(self.record.envelope_id, entry.path)
            try:
                with key.primitive.new_decrypting_stream(reader, aad) as dec:
                    for block in plaintext_pieces(dec, TINK_CHUNK_SIZE):
                        plain += len(block)
                        if plain > entry.size:
                            raise TamperedError(
                                f"{name}: longer than recorded (bytes appended or file swapped)"
                            )
                        try:
                            out.write(block)
                        except OSError as exc:
                            raise write_failure(out_name, exc, "writing plaintext") from None
                        progress.advance(len(block))
                reader.drain()
            except tink.TinkError:
                if reader.interrupt is not None:  # Ctrl-C or a signal inside Tink's read callback
                    raise reader.interrupt from None
                if reader.error is not None:
                    raise EnvelopeIOError(f"{name}: {os_reason(reader.error)} while reading") from None
                raise TamperedError(
                    f"{name}: failed authentication "
                    "(modified, truncated, extended, renamed or from another envelope)"
                ) from None
            except OSError as exc:
                raise EnvelopeIOError(f"{name}: {os_reason(exc)} while reading") from None
        if plain != entry.size or reader.count != entry.ciphertext_size:
            raise TamperedError(f"{name}: size differs from the envelope record")
        if check_crc and reader.crc32c() != entry.ciphertext_crc32c:
            raise TamperedError(f"{name}: ciphertext CRC32C differs from the envelope record")
        return reader.sha256() if digest else None


def _read_record(location: Location) -> bytes | None:
    """The record at ``location``; None if there is nothing there."""
    try:
        return location.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise EnvelopeIOError(f"{location.url}: cannot read record ({os_reason(exc)})") from None


def _remote_record(location: Location) -> tuple[str, Location, Location, bytes] | None:
    """On an object store, (kind, root, record location, record bytes) of the envelope at
    ``location``, found by reading its records directly: the file envelope's sidecar first, then
    the dataset's record. None if neither exists (or ``location`` is local, or names a record
    itself): :func:`~kmsflow.envelope.layout.locate` then says what is there.

    Every request to a store is a round trip (tens of milliseconds to Cloud Storage), and
    ``locate`` asks three (is it a directory? is there a record? then the read) before a record is
    in hand; here a file envelope takes one and a dataset two. Read differently from ``locate``: a
    path with both a sidecar and a dataset under it is taken as the file envelope (whose data, if
    missing, then fails the read; give the dataset's record path to read the dataset), and a
    dataset under a path that is also an object is found rather than refused.
    """
    if location.is_local or location.path.endswith((SIDECAR_SUFFIX, "/" + DATASET_RECORD)):
        return None
    for kind, record_loc in (
        ("file", record_location(location, "file")),
        ("dataset", location.child(DATASET_RECORD)),
    ):
        data = _read_record(record_loc)
        if data is not None:
            return kind, location, record_loc, data
    return None


def inspect(src: str | Location) -> dict[str, Any]:
    """Summary of the envelope at ``src`` as a JSON-safe dict (no KMS call)."""
    return Envelope.open(src).inspect()


def verify(
    client: CryptoClient,
    src: str | Location,
    *,
    progress: Progress | None = None,
    retry: Retry | None = None,
) -> EnvelopeRecord:
    """Authenticate the whole envelope at ``src`` (one KMS Decrypt, ``retry`` as for ``unlock``)."""
    env = Envelope.open(src)
    env.verify(client, progress=progress, retry=retry)
    return env.record


def decrypt(
    client: CryptoClient,
    src: str | Location,
    dst: str | Location,
    *,
    progress: Progress | None = None,
    retry: Retry | None = None,
) -> EnvelopeRecord:
    """Decrypt the envelope at ``src`` to ``dst`` (one KMS Decrypt, ``retry`` as for ``unlock``).

    Nothing appears at ``dst`` unless every byte of the envelope authenticated.
    """
    env = Envelope.open(src)
    env.decrypt(client, dst, progress=progress, retry=retry)
    return env.record
