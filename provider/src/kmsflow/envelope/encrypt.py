"""Encrypt a file or a directory dataset into one envelope (docs/FORMAT.md).

Order of work, and why:

1. list and validate the source, refuse a dataset whose record readers would refuse (too many
   files, docs/FORMAT.md §2) and an existing destination (nothing is overwritten);
2. generate a fresh Tink keyset and wrap it with ONE KMS Encrypt *before* streaming, so a wrong
   key, a missing permission or a disabled primary fails in milliseconds, not after an hour;
3. stream every file through Tink streaming AEAD (AAD = envelope id + relative path) into staged
   outputs, counting and checksumming (CRC32C) the ciphertext on the way (one pass, constant memory);
4. seal the record's fields into the manifest, write the record last, publish atomically.
"""

from __future__ import annotations

import secrets

import tink
from google.api_core.retry import Retry
from google.cloud import kms_v1

from kmsflow.envelope import manifest
from kmsflow.envelope.aad import data_aad
from kmsflow.envelope.errors import (
    DatasetTooLargeError,
    DestinationExistsError,
    EnvelopeIOError,
    SourceNotFoundError,
    os_reason,
)
from kmsflow.envelope.keyset import DataKey
from kmsflow.envelope.layout import check_relpath, data_location, record_location
from kmsflow.envelope.progress import NoProgress, Progress
from kmsflow.envelope.record import (
    MAX_RECORD_FILES,
    MAX_RECORD_SIZE,
    EnvelopeRecord,
    FileEntry,
    record_size_bound,
    utc_now,
)
from kmsflow.envelope.staging import Staging, stage, write_failure
from kmsflow.envelope.storage import TINK_CHUNK_SIZE, Location, chunks, resolve
from kmsflow.envelope.streams import WriteBehind, write_behind, write_through
from kmsflow.envelope.wrap import wrap_key


def new_envelope_id() -> str:
    """128 random bits as 32 lowercase hex characters."""
    return secrets.token_hex(16)


def encrypt(
    client: kms_v1.KeyManagementServiceClient,
    key_name: str,
    src: str | Location,
    dst: str | Location,
    *,
    progress: Progress | None = None,
    retry: Retry | None = None,
) -> EnvelopeRecord:
    """Encrypt ``src`` (a file or a directory) into a new envelope at ``dst``; return its record.

    ``key_name`` is a CryptoKey (its primary version wraps) or a specific CryptoKeyVersion.
    Exactly one KMS call is made, however many files the dataset has; ``retry`` bounds how long its
    transient errors are retried (None: ``crypto.default_retry()``, 60 s).
    """
    source = resolve(src) if isinstance(src, str) else src
    dest = resolve(dst) if isinstance(dst, str) else dst
    progress = progress or NoProgress()
    if source.isdir():
        kind = "dataset"
        sizes = {check_relpath(p, dataset=True): n for p, n in source.list_files().items()}
        check_record_fits(source.url, list(sizes))
    elif source.isfile():
        kind, sizes = "file", {"": source.size()}
    else:
        raise SourceNotFoundError(f"{source.url}: no such file or directory")
    record_loc = record_location(dest, kind)
    for out in (dest, record_loc):
        if out.exists():
            raise DestinationExistsError(f"{out.url}: already exists; choose a new destination or remove it")

    envelope_id = new_envelope_id()
    key = DataKey.generate()
    wrap = wrap_key(client, key_name, key, envelope_id, retry=retry)

    progress.start(sum(sizes.values()), f"encrypt {source.name}")
    entries: list[FileEntry] = []
    with stage(dest, tree=(kind == "dataset")) as staging:
        for rel in sizes:
            entries.append(_encrypt_file(key, envelope_id, rel, source, dest, staging, progress))
        fields = {
            "envelope_id": envelope_id,
            "kind": kind,
            "created": utc_now(),
            "key": wrap.model_dump(mode="json"),
            "files": [e.model_dump(mode="json") for e in entries],
        }
        record = manifest.seal(key, fields)
        with staging.writer(record_loc) as f:
            f.write(record.to_json())
    return record


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
    source: Location,
    dest: Location,
    staging: Staging,
    progress: Progress,
) -> FileEntry:
    src_loc = data_location(source, rel)
    dst_loc = data_location(dest, rel)
    plain = 0
    sink: WriteBehind | None = None
    try:
        with (
            src_loc.open_read() as fin,
            staging.writer(dst_loc) as fout,
            write_behind(fout, checksum=True) as sink,
            key.primitive.new_encrypting_stream(sink, data_aad(envelope_id, rel)) as enc,
        ):
            for block in chunks(fin, TINK_CHUNK_SIZE):
                write_through(enc, block)
                plain += len(block)
                progress.advance(len(block))
    except tink.TinkError as exc:  # Tink wraps failures of its output stream
        cause = sink.error if sink is not None else None
        if cause is not None:
            raise write_failure(dst_loc.url, cause, "writing ciphertext") from None
        raise EnvelopeIOError(
            f"{dst_loc.url}: Tink error {exc.__class__.__name__} while writing ciphertext"
        ) from None
    except OSError as exc:
        ours = exc.filename is not None and exc.filename != src_loc.path
        written = sink is not None and sink.error is exc
        if ours or written:
            raise write_failure(dst_loc.url, exc, "encrypting") from None
        raise EnvelopeIOError(f"{src_loc.url}: {os_reason(exc)} while encrypting") from None
    assert sink is not None
    return FileEntry(path=rel, size=plain, ciphertext_size=sink.count, ciphertext_crc32c=sink.crc32c())
