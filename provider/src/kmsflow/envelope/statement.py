"""The signed statement: what a signature over an envelope vouches for (docs/FORMAT.md §10).

Signed is what never changes for the life of the envelope's data: its id, kind and creation time,
each data file's path, sizes and the SHA-256 of its **ciphertext**, and a commitment to the data
key. Not signed is what a rewrap replaces (the wrapped keyset, the KMS version that wrapped it, the
manifest re-sealed under it), so a signature stays valid through every rewrap. A re-encrypt makes a
new envelope (new id, key and ciphertexts): the old signature does not apply to it.

Why ciphertext digests: a plaintext digest lets anyone holding the record confirm a guess of the
content without a key (docs/FORMAT.md §2); a ciphertext digest says nothing about the plaintext
and can be checked offline, by whoever can read the files, with the public key alone.

Why a key commitment: the ciphertexts are fixed by their digests, but the record's wrapped keyset
is not signed (it must change on rewrap). AES-GCM is not key-committing: a writer can craft a
ciphertext that authenticates under two keys, so without the commitment a record could be given a
second wrapped key that decrypts the same signed ciphertexts to other plaintext. The commitment
(:meth:`DataKey.commitment`) names the one key the signer meant; whoever unwraps it checks it.

Encoding: compact JSON, keys sorted, UTF-8 (``ensure_ascii=False``), no floats; :func:`parse`
accepts exactly what :meth:`Statement.encode` writes, nothing else (one byte string per statement).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any, ClassVar, Literal

from kmsflow.envelope.aad import SIGNATURE_LABEL
from kmsflow.envelope.errors import RecordInvalidError
from kmsflow.envelope.record import (
    MAX_RECORD_FILES,
    EnvelopeRecord,
    decode_b64,
    envelope_id_hex,
    sorted_paths,
    timestamp,
    version_name,
)
from kmsflow.envelope.strict import StrictRecord, byte_count, items, one_of, text

STATEMENT_FORMAT = "kmsflow.signed-envelope"
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def _sha256_hex(raw: Any) -> str:
    value = text(raw)
    if not _SHA256_HEX.match(value):
        raise ValueError("must be 64 lowercase hex characters")
    return value


def _commitment(raw: Any) -> str:
    value = text(raw)
    if len(decode_b64(value)) != 32:
        raise ValueError("must be base64 of 32 bytes")
    return value


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SignedFile(StrictRecord):
    """One data file as signed: path, plaintext and ciphertext sizes, ciphertext SHA-256 (hex)."""

    path: str
    size: int
    ciphertext_size: int
    ciphertext_sha256: str

    CHECKS: ClassVar = {
        "path": text,
        "size": byte_count,
        "ciphertext_size": byte_count,
        "ciphertext_sha256": _sha256_hex,
    }


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Signer(StrictRecord):
    """The CryptoKeyVersion that signs, and its Cloud KMS algorithm name."""

    crypto_key_version: str
    algorithm: str

    CHECKS: ClassVar = {"crypto_key_version": version_name, "algorithm": text}


_signed_files = items(SignedFile.model_validate, MAX_RECORD_FILES)


def _files(value: Any) -> tuple[SignedFile, ...]:
    return sorted_paths(_signed_files(value))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Statement(StrictRecord):
    """Version 1 of the signed statement."""

    format: Literal["kmsflow.signed-envelope"] = "kmsflow.signed-envelope"
    version: Literal[1] = 1
    envelope_id: str
    kind: Literal["file", "dataset"]
    created: str
    files: tuple[SignedFile, ...]
    data_key_commitment: str
    signer: Signer

    CHECKS: ClassVar = {
        "format": one_of(STATEMENT_FORMAT),
        "version": one_of(1),
        "envelope_id": envelope_id_hex,
        "kind": one_of("file", "dataset"),
        "created": timestamp,
        "files": _files,
        "data_key_commitment": _commitment,
        "signer": Signer.model_validate,
    }

    def encode(self) -> bytes:
        """The canonical bytes: compact, key-sorted JSON, UTF-8."""
        return json.dumps(
            self.model_dump(), separators=(",", ":"), sort_keys=True, ensure_ascii=False
        ).encode()

    def differences(self, record: EnvelopeRecord) -> str | None:
        """What in ``record`` is not what was signed (one line), or None.

        Only what a rewrap keeps is compared; file digests are checked against the files, not here.
        """
        if self.envelope_id != record.envelope_id:
            return f"it signs envelope {self.envelope_id}, this is envelope {record.envelope_id}"
        if (self.kind, self.created) != (record.kind, record.created):
            return "the record's kind or creation time differs from what was signed"
        signed = [(f.path, f.size, f.ciphertext_size) for f in self.files]
        listed = [(f.path, f.size, f.ciphertext_size) for f in record.files]
        if signed != listed:
            return "the record's file list (paths or sizes) differs from what was signed"
        return None


def parse(data: bytes, where: str) -> Statement:
    """The statement ``data`` encodes; :class:`RecordInvalidError` unless it is exactly the
    canonical encoding of a valid statement."""
    try:
        raw = json.loads(data.decode("utf-8"))
        statement = Statement.model_validate(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError and FieldError are ValueErrors
        raise RecordInvalidError(f"{where}: the signed statement is not a valid {STATEMENT_FORMAT}") from None
    if statement.encode() != data:
        raise RecordInvalidError(f"{where}: the signed statement is not in canonical form")
    return statement


def signed_message(statement: bytes) -> bytes:
    """The message the signing key signs: the label, then the SHA-512 of the statement bytes.

    Why a digest: Cloud KMS signs at most 64 KiB of data, and a dataset's statement can be megabytes;
    EC and RSA keys sign a digest of this message anyway (computed here, sent as ``digest``), ML-DSA
    signs the message itself (sent as ``data``)."""
    return SIGNATURE_LABEL + hashlib.sha512(statement).digest()
