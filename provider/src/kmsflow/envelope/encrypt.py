"""Encrypt a file or a directory dataset into one envelope (docs/FORMAT.md).

Order of work, and why:

1. list and validate the source -- anything in it that cannot go into the envelope as a file fails
   the command unless the caller asked to leave it out, and a dataset whose record readers would
   refuse (too many files, docs/FORMAT.md §2) is refused -- and refuse a destination that exists
   (nothing is overwritten), lies inside the source, or inside another envelope;
2. generate a fresh Tink keyset and wrap it with ONE KMS Encrypt *before* streaming, so a wrong
   key, a missing permission or a disabled primary fails in milliseconds, not after an hour (or,
   for a recipient, locally for its public key: :func:`encrypt_for`);
3. stream every file through Tink streaming AEAD (AAD = envelope id + relative path) into staged
   outputs, counting and checksumming (CRC32C) the ciphertext on the way (one pass, constant memory);
4. seal the record's fields into the manifest, write the record last, publish atomically.

With ``sign_with`` the signing key is resolved and its public key fetched in step 2 (a wrong key
fails before any byte is streamed), step 3 also hashes each ciphertext (SHA-256, on the same
write-behind thread as the CRC32C), and step 4 signs the statement (one KMS AsymmetricSign) and
writes the signature record before the envelope record, in the same staging: a signed envelope
appears with its signature or not at all (``kmsflow.envelope.signature``).
"""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

import tink

from kmsflow.clock import record_time
from kmsflow.envelope import manifest, signature
from kmsflow.envelope.aad import data_aad
from kmsflow.envelope.errors import (
    DatasetTooLargeError,
    DestinationExistsError,
    EnvelopeIOError,
    InvalidDestinationError,
    SourceIncompleteError,
    SourceNotFoundError,
    os_reason,
)
from kmsflow.envelope.keyset import DataKey
from kmsflow.envelope.layout import (
    SIGNATURE_SUFFIX,
    check_normalization,
    check_relpath,
    data_location,
    probe_destination,
    record_location,
    signature_location,
)
from kmsflow.envelope.progress import NoProgress, Progress
from kmsflow.envelope.record import (
    MAX_RECORD_FILES,
    MAX_RECORD_SIZE,
    EnvelopeRecord,
    FileEntry,
    KeyWrap,
    RecipientWrap,
    record_size_bound,
)
from kmsflow.envelope.staging import Staging, stage, write_failure
from kmsflow.envelope.storage import TINK_CHUNK_SIZE, Location, Stat, chunks, resolve
from kmsflow.envelope.streams import WriteBehind, write_behind, write_through
from kmsflow.envelope.walk import Obstacle, inside
from kmsflow.envelope.wrap import wrap_key

if TYPE_CHECKING:
    from google.api_core.retry import Retry
    from google.cloud import kms_v1

    from kmsflow.kms.crypto import CryptoClient
    from kmsflow.kms.public_key import PublicKey


def new_envelope_id() -> str:
    """128 random bits as 32 lowercase hex characters."""
    return secrets.token_hex(16)


Wrap = Callable[[DataKey, str], KeyWrap | RecipientWrap]
"""Wraps an envelope's fresh data key (given the envelope id): by KMS, or locally for a recipient."""


def encrypt(
    client: CryptoClient,
    key_name: str,
    src: str | Location,
    dst: str | Location,
    *,
    progress: Progress | None = None,
    retry: Retry | None = None,
    omitted: list[Obstacle] | None = None,
    sign_with: str | None = None,
) -> EnvelopeRecord:
    """Encrypt ``src`` (a file or a directory) into a new envelope at ``dst``; return its record.

    ``key_name`` is a CryptoKey (its primary version wraps) or a specific CryptoKeyVersion.
    Exactly one KMS call is made, however many files the dataset has; ``retry`` bounds how long its
    transient errors are retried (None: ``crypto.default_retry()``, 60 s).

    A source directory holding anything that cannot go in as a file (a link to a directory, a
    FIFO, a broken link, a directory that cannot be listed) fails with
    :class:`SourceIncompleteError` before any KMS call, because a user who deletes the plaintext
    after a successful encrypt would lose what was left out. Pass a list as ``omitted`` to leave
    such entries out instead: each is appended to it, for the caller to report.

    ``sign_with`` (a signing CryptoKey or CryptoKeyVersion) also signs the new envelope: two more
    KMS calls (GetPublicKey, once per version and process, and AsymmetricSign) through
    google-cloud-kms's client, which ``client`` must then be.
    """

    def wrap(key: DataKey, envelope_id: str) -> KeyWrap:
        return wrap_key(client, key_name, key, envelope_id, retry=retry)

    signing = signature.signing_client(client) if sign_with is not None else None
    return _encrypt(src, dst, wrap, progress, omitted, signing, sign_with, retry)


def encrypt_for(
    recipient: PublicKey,
    src: str | Location,
    dst: str | Location,
    *,
    progress: Progress | None = None,
    omitted: list[Obstacle] | None = None,
    client: CryptoClient | None = None,
    sign_with: str | None = None,
    retry: Retry | None = None,
) -> EnvelopeRecord:
    """:func:`encrypt` for a recipient: the data key is wrapped locally for ``recipient``'s public
    key (``kmsflow.envelope.recipient``), with no KMS call and no credentials. Only a holder of the
    KMS decrypt/decapsulate permission on ``recipient.version_name`` can open the envelope.

    ``sign_with`` also signs the new envelope, as for :func:`encrypt`: the producer made the data
    key, so it commits to it as any signer does. The signing key lives in KMS, so this needs
    ``client`` (google-cloud-kms's) for its GetPublicKey and AsymmetricSign only; the wrap still
    makes no KMS call. ``retry`` bounds those two calls."""
    from kmsflow.envelope import recipient as recipients

    def wrap(key: DataKey, envelope_id: str) -> RecipientWrap:
        return recipients.wrap_key(recipient, key, envelope_id)

    signing = None
    if sign_with is not None:
        if client is None:
            raise TypeError("sign_with needs a google-cloud-kms client (kmsflow.kms.client.new_kms_client)")
        signing = signature.signing_client(client)
    return _encrypt(src, dst, wrap, progress, omitted, signing, sign_with, retry)


def _encrypt(
    src: str | Location,
    dst: str | Location,
    wrap: Wrap,
    progress: Progress | None,
    omitted: list[Obstacle] | None,
    signing: kms_v1.KeyManagementServiceClient | None,
    sign_with: str | None,
    retry: Retry | None,
) -> EnvelopeRecord:
    """Step 1 of the module docstring for a file or directory source, then :func:`_seal`."""
    source = resolve(src) if isinstance(src, str) else src
    dest = resolve(dst) if isinstance(dst, str) else dst
    progress = progress or NoProgress()
    try:
        found = source.stat()
    except OSError as exc:
        raise EnvelopeIOError(f"{source.url}: cannot read ({os_reason(exc)})") from None
    if found is None:
        raise SourceNotFoundError(f"{source.url}: no such file or directory")
    if found.is_dir:
        kind = "dataset"
        sizes = _dataset_files(source, omitted)
    else:
        kind, sizes = "file", {"": found.size}
    _check_destination(source, dest, kind)
    label = f"encrypt {source.name}"
    source_files = _LocationSource(source, None if found.is_dir else found)
    return _seal(wrap, kind, sizes, source_files, dest, progress, label, signing, sign_with, retry)


def encrypt_bytes(
    client: CryptoClient,
    key_name: str,
    data: bytes,
    dst: str | Location,
    *,
    retry: Retry | None = None,
) -> EnvelopeRecord:
    """Encrypt ``data`` (held in memory) into a new file envelope at ``dst``; return its record.

    The envelope is exactly what :func:`encrypt` makes of a file holding ``data`` (``kmsflow
    decrypt`` reads it, inventory and rewrap handle it), and the plaintext never touches storage:
    for values that only ever exist in memory, such as the XCom backend's.
    """

    def wrap(key: DataKey, envelope_id: str) -> KeyWrap:
        return wrap_key(client, key_name, key, envelope_id, retry=retry)

    dest = resolve(dst) if isinstance(dst, str) else dst
    _check_destination(None, dest, "file")
    sizes = {"": len(data)}
    return _seal(wrap, "file", sizes, _BytesSource(data), dest, NoProgress(), "", None, None, retry)


class _LocationSource:
    """The plaintext files of :func:`encrypt`: read from storage (a single file at the size and,
    on GCS, the generation found when the source was looked at)."""

    def __init__(self, root: Location, found: Stat | None = None) -> None:
        self.root = root
        self.found = found

    def url(self, rel: str) -> str:
        return data_location(self.root, rel).url

    def open(self, rel: str) -> IO[bytes]:
        return data_location(self.root, rel).open_sequential(self.found if rel == "" else None)

    def owns(self, exc: OSError, rel: str) -> bool:
        """Whether ``exc`` was raised reading this source (else it came from the destination)."""
        return exc.filename is None or exc.filename == data_location(self.root, rel).path


class _BytesSource:
    """The plaintext of :func:`encrypt_bytes`: one file, in memory."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def url(self, rel: str) -> str:
        return "(memory)"

    def open(self, rel: str) -> IO[bytes]:
        return io.BytesIO(self.data)

    def owns(self, exc: OSError, rel: str) -> bool:
        return False


def _seal(
    wrap: Wrap,
    kind: str,
    sizes: dict[str, int],
    source: _LocationSource | _BytesSource,
    dest: Location,
    progress: Progress,
    label: str,
    signing: kms_v1.KeyManagementServiceClient | None,
    sign_with: str | None,
    retry: Retry | None,
) -> EnvelopeRecord:
    """Steps 2-4 of the module docstring: wrap a fresh key, stream every file, write the record
    (and with ``sign_with``, its signature record, signed through ``signing``)."""
    envelope_id = new_envelope_id()
    key = DataKey.generate()
    wrapped = wrap(key, envelope_id)
    signer = signature.signing_key(signing, sign_with) if signing is not None and sign_with else None

    progress.start(sum(sizes.values()), label)
    entries: list[FileEntry] = []
    sha256: dict[str, str] = {}
    with stage(dest, tree=(kind == "dataset")) as staging:
        for rel in sizes:
            entry, digest = _encrypt_file(
                key, envelope_id, rel, source, dest, staging, progress, digest=signer is not None
            )
            entries.append(entry)
            if digest is not None:
                sha256[rel] = digest
        fields = {
            "envelope_id": envelope_id,
            "kind": kind,
            "created": record_time(),
            "key": wrapped.model_dump(mode="json"),
            "files": [e.model_dump(mode="json") for e in entries],
        }
        record = manifest.seal(key, fields)
        if signing is not None and signer is not None:
            statement = signature.make_statement(record, sha256, key, signer)
            signed = signature.sign_statement(signing, signer, statement, retry=retry)
            with staging.writer(signature_location(dest, kind)) as f:
                f.write(signed.to_json())
        with staging.writer(record_location(dest, kind)) as f:
            f.write(record.to_json())
    return record


def _dataset_files(source: Location, omitted: list[Obstacle] | None) -> dict[str, int]:
    """The source directory's files (relative path -> size), checked for what they will become."""
    tree = source.tree()
    if tree.obstacles:
        if omitted is None:
            first = sorted(tree.obstacles, key=lambda o: o.rel)[0]
            raise SourceIncompleteError(
                f"{source.url}: {len(tree.obstacles)} entr{'y' if len(tree.obstacles) == 1 else 'ies'} "
                f"cannot be encrypted as files, e.g. {first.rel!r}: {first.detail}; copy the data in "
                "(or fix the permissions), or leave them out explicitly (kmsflow encrypt --skip-unsupported)"
            )
        omitted.extend(sorted(tree.obstacles, key=lambda o: o.rel))
    sizes = {check_relpath(p, dataset=True): n for p, n in tree.files.items()}
    check_normalization(sizes)
    check_record_fits(source.url, list(sizes))
    return sizes


def _check_destination(source: Location | None, dest: Location, kind: str) -> None:
    """Refuse a destination that exists, is named like a signature record, lies inside the source,
    or lies inside an envelope."""
    if dest.name.endswith(SIGNATURE_SUFFIX):
        raise InvalidDestinationError(
            f"{dest.url}: names ending in {SIGNATURE_SUFFIX} are kmsflow signature records; choose another"
        )
    probe = probe_destination(dest, (dest, record_location(dest, kind), signature_location(dest, kind)))
    if probe.taken is not None:
        taken = probe.taken.url
        raise DestinationExistsError(f"{taken}: already exists; choose a new destination or remove it")
    if (
        kind == "dataset"
        and source is not None
        and source.is_local == dest.is_local
        and _inside(dest, source)
    ):
        raise InvalidDestinationError(
            f"{dest.url}: inside the source {source.url}; choose a destination outside it"
        )
    if probe.enclosing is not None:
        raise InvalidDestinationError(
            f"{dest.url}: inside the dataset envelope {probe.enclosing.url}, whose files must all be in its "
            "record; choose a destination outside it"
        )


def _inside(path: Location, directory: Location) -> bool:
    if path.is_local:
        return inside(os.path.realpath(path.path), os.path.realpath(directory.path))
    return path.protocol == directory.protocol and inside(path.path, directory.path.rstrip("/"))


def check_record_fits(where: str, paths: list[str]) -> None:
    """Refuse, before any KMS call or byte streamed, a dataset whose record readers would refuse
    (:data:`MAX_RECORD_FILES`, :data:`MAX_RECORD_SIZE`): kmsflow never writes such a record."""
    if len(paths) > MAX_RECORD_FILES:
        raise DatasetTooLargeError(
            f"{where}: {len(paths)} files, more than the {MAX_RECORD_FILES} one envelope may hold; "
            "split it into several envelopes, or pack the files into fewer shards"
        )
    if record_size_bound(paths) > MAX_RECORD_SIZE:
        raise DatasetTooLargeError(
            f"{where}: its file paths are too long for one envelope record (at most "
            f"{MAX_RECORD_SIZE >> 20} MiB); split it into several envelopes, or pack the files "
            "into fewer shards"
        )


def _encrypt_file(
    key: DataKey,
    envelope_id: str,
    rel: str,
    source: _LocationSource | _BytesSource,
    dest: Location,
    staging: Staging,
    progress: Progress,
    *,
    digest: bool,
) -> tuple[FileEntry, str | None]:
    """One file through Tink into ``staging``: its record entry, and its ciphertext SHA-256 (hex)
    with ``digest``."""
    dst_loc = data_location(dest, rel)
    plain = 0
    sink: WriteBehind | None = None
    try:
        with (
            source.open(rel) as fin,
            staging.writer(dst_loc) as fout,
            write_behind(fout, checksum=True, digest=digest) as sink,
            key.primitive.new_encrypting_stream(sink, data_aad(envelope_id, rel)) as enc,
        ):
            for block in chunks(fin, TINK_CHUNK_SIZE):
                write_through(enc, block)
                plain += len(block)
                progress.advance(len(block))
    except tink.TinkError as exc:  # Tink wraps failures of its output stream
        if sink is not None and sink.interrupt is not None:  # Ctrl-C or a signal inside its write
            raise sink.interrupt from None
        cause = sink.error if sink is not None else None
        if cause is not None:
            raise write_failure(dst_loc.url, cause, "writing ciphertext") from None
        raise EnvelopeIOError(
            f"{dst_loc.url}: Tink error {exc.__class__.__name__} while writing ciphertext"
        ) from None
    except OSError as exc:
        written = sink is not None and sink.error is exc
        if written or not source.owns(exc, rel):
            raise write_failure(dst_loc.url, exc, "encrypting") from None
        raise EnvelopeIOError(f"{source.url(rel)}: {os_reason(exc)} while encrypting") from None
    assert sink is not None
    entry = FileEntry(path=rel, size=plain, ciphertext_size=sink.count, ciphertext_crc32c=sink.crc32c())
    return entry, sink.sha256() if digest else None
