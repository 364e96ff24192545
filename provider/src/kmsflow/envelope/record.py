"""The envelope record: the JSON beside the data that says how to decrypt it (docs/FORMAT.md).

The record is small and rewritable in place: re-wrapping replaces only ``key`` (wrapped keyset and
CryptoKeyVersion), never the data, because data ciphertexts depend only on the keyset, the envelope
id and their paths. Every field a reader trusts is also inside ``manifest``, a Tink ciphertext
under the data key (see :func:`authenticated_view`), so a record whose file list, sizes, key version
name or dates were edited is rejected although the JSON itself carries no signature; the wrapped
keyset is authenticated by Cloud KMS. A rewrap re-seals the manifest (it holds the data key anyway).

No plaintext digests are stored: a digest of plaintext lets anyone holding the record confirm a
guess of the content (model weights from a public checkpoint, a known dataset) without any key.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import itertools
import json
import re
from datetime import datetime
from typing import Any, ClassVar, Literal, get_args

from kmsflow.envelope.aad import FORMAT_VERSION
from kmsflow.envelope.errors import RecordInvalidError, UnsupportedFormatError
from kmsflow.envelope.record_caps import ENTRY_BOUND as ENTRY_BOUND
from kmsflow.envelope.record_caps import MAX_RECORD_FILES as MAX_RECORD_FILES
from kmsflow.envelope.record_caps import MAX_RECORD_SIZE as MAX_RECORD_SIZE
from kmsflow.envelope.record_caps import RECORD_BOUND as RECORD_BOUND
from kmsflow.envelope.record_caps import record_size_bound as record_size_bound
from kmsflow.envelope.record_caps import record_too_large as record_too_large
from kmsflow.envelope.strict import (
    FieldError,
    StrictRecord,
    byte_count,
    indented_json,
    items,
    load_json,
    one_of,
    text,
)

FORMAT_NAME = "kmsflow.envelope"
RECORD_MEDIA_TYPE = "application/json"
ENVELOPE_ID = re.compile(r"^[0-9a-f]{32}$")
"""An envelope id: 32 lowercase hex characters (128 random bits)."""
VERSION_NAME = re.compile(
    r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+/cryptoKeyVersions/[^/]+$"
)
"""A full CryptoKeyVersion resource name."""
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_TIMESTAMP_PROBLEM = "must be a valid UTC time spelled YYYY-MM-DDTHH:MM:SSZ"


def timestamp(raw: Any) -> str:
    """The one spelling a record's times have (``kmsflow.clock.record_time``): inventory compares
    them as strings.

    The pattern pins the spelling; ``fromisoformat`` (in C, a tenth of ``strptime``'s cost:
    rewrap and inventory parse every record) requires a real date and time.
    """
    value = text(raw)
    if _TIMESTAMP.fullmatch(value) is None:
        raise ValueError(_TIMESTAMP_PROBLEM)
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(_TIMESTAMP_PROBLEM) from None
    return value


def version_name(raw: Any) -> str:
    """A full CryptoKeyVersion resource name: the exact version records and signatures name."""
    value = text(raw)
    if not VERSION_NAME.match(value):
        raise ValueError("must be a full CryptoKeyVersion resource name")
    return value


def envelope_id_hex(raw: Any) -> str:
    value = text(raw)
    if not ENVELOPE_ID.match(value):
        raise ValueError("must be 32 lowercase hex characters")
    return value


def base64_text(raw: Any) -> str:
    value = text(raw)
    decode_b64(value)
    return value


def _crc32c(raw: Any) -> str:
    value = text(raw)
    if len(decode_b64(value)) != 4:
        raise ValueError("must be a CRC32C as GCS writes it: base64 of 4 big-endian bytes")
    return value


def sorted_paths(entries: tuple[Any, ...]) -> tuple[Any, ...]:
    """``entries`` (each with a ``path``), refused unless sorted: one order, so two readers walk the
    files alike and a path cannot be listed twice (Python compares strings by code point, which is
    UTF-8 byte order)."""
    for before, after in itertools.pairwise(entries):
        if not before.path < after.path:
            raise ValueError("must be sorted by path, each path once")
    return entries


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FileEntry(StrictRecord):
    """One data file: its path relative to the envelope root, its sizes and its ciphertext CRC32C."""

    path: str
    size: int
    ciphertext_size: int
    ciphertext_crc32c: str

    CHECKS: ClassVar = {
        "path": text,
        "size": byte_count,
        "ciphertext_size": byte_count,
        "ciphertext_crc32c": _crc32c,
    }


_entries = items(FileEntry.model_validate, MAX_RECORD_FILES)


def _files(value: Any) -> tuple[FileEntry, ...]:
    return sorted_paths(_entries(value))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _Wrap(StrictRecord):
    """What every record's ``key`` holds: the exact version that wrapped the data key, and how."""

    crypto_key: str
    crypto_key_version: str
    wrapped_keyset: str
    wrapped_at: str

    CHECKS: ClassVar = {
        "crypto_key": text,
        "crypto_key_version": version_name,
        "wrapped_keyset": base64_text,
        "wrapped_at": timestamp,
    }

    def wrapped_bytes(self) -> bytes:
        return decode_b64(self.wrapped_keyset)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class KeyWrap(_Wrap):
    """The data key wrapped by Cloud KMS (Encrypt), and the exact version that wrapped it."""


WrapKind = Literal["rsa-oaep-sha256", "rsa-oaep-sha512", "ml-kem-768", "ml-kem-1024", "x-wing"]
"""How a recipient envelope's data key was wrapped for a public key (docs/FORMAT.md §12)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RecipientWrap(_Wrap):
    """The data key wrapped locally for the public key of an ASYMMETRIC_DECRYPT or KEY_ENCAPSULATION
    version: ``encapsulated_key`` is what KMS's AsymmetricDecrypt/Decapsulate turns back into the
    shared secret, ``wrapped_keyset`` the AES-256-GCM wrap of the keyset under a key derived from
    it (``kmsflow.envelope.recipient``)."""

    wrap: WrapKind
    encapsulated_key: str

    CHECKS: ClassVar = {
        **_Wrap.CHECKS,
        "wrap": one_of(*get_args(WrapKind)),
        "encapsulated_key": base64_text,
    }

    def encapsulated_bytes(self) -> bytes:
        return decode_b64(self.encapsulated_key)


def _wrap(value: Any) -> KeyWrap | RecipientWrap:
    """A record's ``key``: a recipient wrap (public key) names its ``wrap`` kind, a KMS Encrypt wrap
    (symmetric key) does not."""
    if isinstance(value, KeyWrap | RecipientWrap):
        return value
    if isinstance(value, dict) and "wrap" in value:
        return RecipientWrap.model_validate(value)
    return KeyWrap.model_validate(value)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class EnvelopeRecord(StrictRecord):
    """Format version 1 of the record (see docs/FORMAT.md for every field)."""

    format: Literal["kmsflow.envelope"] = "kmsflow.envelope"
    version: Literal[1] = 1
    envelope_id: str
    kind: Literal["file", "dataset"]
    created: str
    key: KeyWrap | RecipientWrap
    manifest: str
    files: tuple[FileEntry, ...]

    CHECKS: ClassVar = {
        "format": one_of(FORMAT_NAME),
        "version": one_of(FORMAT_VERSION),
        "envelope_id": envelope_id_hex,
        "kind": one_of("file", "dataset"),
        "created": timestamp,
        "key": _wrap,
        "manifest": base64_text,
        "files": _files,
    }

    @property
    def plaintext_size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def ciphertext_size(self) -> int:
        return sum(f.ciphertext_size for f in self.files)

    def to_json(self) -> bytes:
        """Pretty, stable JSON (keys in :attr:`CHECKS` order), UTF-8, trailing newline: exactly what
        ``json.dumps(..., indent=2, ensure_ascii=False)`` writes (:func:`indented_json`)."""
        return (indented_json(self.model_dump()) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> EnvelopeRecord:
        """Parse and validate; ``where`` names the record in error messages.

        Every failure is a :class:`RecordInvalidError` (or :class:`UnsupportedFormatError`): a
        record is input from whoever may encrypt. Only a record that fails validation is looked at
        again, to say that it is not a record at all, or one from a newer kmsflow.
        """
        if len(data) > MAX_RECORD_SIZE:
            raise RecordInvalidError(record_too_large(where))
        try:
            raw = load_json(data)
        except ValueError as exc:
            raise RecordInvalidError(f"{where}: not a JSON envelope record ({exc})") from None
        try:
            return cls.model_validate(raw)
        except FieldError as exc:
            invalid = exc
        if not isinstance(raw, dict):
            raise RecordInvalidError(f"{where}: not a JSON envelope record (top level is not an object)")
        if raw.get("format") != FORMAT_NAME:
            raise RecordInvalidError(
                f"{where}: not a kmsflow envelope record (format is not {FORMAT_NAME!r})"
            )
        version = raw.get("version")
        if type(version) is int and version > FORMAT_VERSION:
            raise UnsupportedFormatError(
                f"{where}: envelope format version {version} is newer than this kmsflow "
                f"(supports {FORMAT_VERSION}); upgrade kmsflow"
            )
        loc = ".".join(map(str, invalid.loc))
        raise RecordInvalidError(f"{where}: invalid envelope record field {loc!r}: {invalid.problem}")


_UNSEALED_KEY_FIELDS = ("wrapped_keyset", "encapsulated_key")


def authenticated_view(record: dict[str, Any]) -> dict[str, Any]:
    """The part of a record the manifest seals: everything except ``manifest`` itself and the
    wrapped key: ``key.wrapped_keyset`` (authenticated by Cloud KMS, or for a recipient by AES-GCM,
    bound to the envelope id by its AAD) and a recipient's ``key.encapsulated_key`` (any change to
    it changes the secret it yields, so that GCM fails). Leaving them out keeps a post-quantum
    encapsulation (up to 1.5 KiB) out of the manifest."""
    view = {k: v for k, v in record.items() if k != "manifest"}
    key = view.get("key")
    if isinstance(key, dict):
        view["key"] = {k: v for k, v in key.items() if k not in _UNSEALED_KEY_FIELDS}
    return view


def manifest_plaintext(record_fields: dict[str, Any]) -> bytes:
    """The bytes sealed into ``manifest``: compact, key-sorted JSON of ``authenticated_view``."""
    body = authenticated_view(record_fields)
    return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def parse_manifest(data: bytes) -> dict[str, Any]:
    """The manifest as a dict (compared field by field with the record, never re-serialized)."""
    value = json.loads(data.decode("utf-8"))
    if not isinstance(value, dict):
        raise ValueError("manifest is not a JSON object")
    return value


def encode_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_b64(value: str) -> bytes:
    """Strict, canonical standard base64: one spelling per byte string, so no bit of the record is
    "don't care" (lenient decoders ignore the unused low bits of the last character)."""
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ValueError("must be standard base64") from None
    if base64.b64encode(raw).decode("ascii") != value:
        raise ValueError("must be canonical base64")
    return raw
