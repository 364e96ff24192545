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
import itertools
import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

import pydantic_core
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
)

from kmsflow.envelope.aad import FORMAT_VERSION
from kmsflow.envelope.errors import RecordInvalidError, UnsupportedFormatError
from kmsflow.envelope.record_caps import ENTRY_BOUND as ENTRY_BOUND
from kmsflow.envelope.record_caps import MAX_RECORD_FILES as MAX_RECORD_FILES
from kmsflow.envelope.record_caps import MAX_RECORD_SIZE as MAX_RECORD_SIZE
from kmsflow.envelope.record_caps import RECORD_BOUND as RECORD_BOUND
from kmsflow.envelope.record_caps import record_size_bound as record_size_bound
from kmsflow.envelope.record_caps import record_too_large as record_too_large

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


def _timestamp(value: str) -> str:
    """The one spelling a record's times have (``kmsflow.clock.record_time``): inventory compares
    them as strings.

    The pattern pins the spelling; ``fromisoformat`` (in C, a tenth of ``strptime``'s cost:
    rewrap and inventory parse every record) requires a real date and time.
    """
    if _TIMESTAMP.fullmatch(value) is None:
        raise ValueError(_TIMESTAMP_PROBLEM)
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(_TIMESTAMP_PROBLEM) from None
    return value


Timestamp = Annotated[str, AfterValidator(_timestamp)]


def _version_name(value: str) -> str:
    if not VERSION_NAME.match(value):
        raise ValueError("must be a full CryptoKeyVersion resource name")
    return value


VersionName = Annotated[str, AfterValidator(_version_name)]
"""A full CryptoKeyVersion resource name: the exact version records and signatures name."""


class FileEntry(BaseModel):
    """One data file: its path relative to the envelope root, its sizes and its ciphertext CRC32C."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    size: int = Field(ge=0)
    ciphertext_size: int = Field(ge=0)
    ciphertext_crc32c: str

    @field_validator("ciphertext_crc32c")
    @classmethod
    def _crc32c(cls, value: str) -> str:
        if len(decode_b64(value)) != 4:
            raise ValueError("must be a CRC32C as GCS writes it: base64 of 4 big-endian bytes")
        return value


class _Wrap(BaseModel):
    """What every record's ``key`` holds: the exact version that wrapped the data key, and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    crypto_key: str
    crypto_key_version: VersionName
    wrapped_keyset: str
    wrapped_at: Timestamp

    @field_validator("wrapped_keyset")
    @classmethod
    def _b64(cls, value: str) -> str:
        decode_b64(value)
        return value

    def wrapped_bytes(self) -> bytes:
        return decode_b64(self.wrapped_keyset)


class KeyWrap(_Wrap):
    """The data key wrapped by Cloud KMS (Encrypt), and the exact version that wrapped it."""


WrapKind = Literal["rsa-oaep-sha256", "rsa-oaep-sha512", "ml-kem-768", "ml-kem-1024", "x-wing"]
"""How a recipient envelope's data key was wrapped for a public key (docs/FORMAT.md §12)."""


class RecipientWrap(_Wrap):
    """The data key wrapped locally for the public key of an ASYMMETRIC_DECRYPT or KEY_ENCAPSULATION
    version: ``encapsulated_key`` is what KMS's AsymmetricDecrypt/Decapsulate turns back into the
    shared secret, ``wrapped_keyset`` the AES-256-GCM wrap of the keyset under a key derived from
    it (``kmsflow.envelope.recipient``)."""

    wrap: WrapKind
    encapsulated_key: str

    @field_validator("encapsulated_key")
    @classmethod
    def _encapsulated_b64(cls, value: str) -> str:
        decode_b64(value)
        return value

    def encapsulated_bytes(self) -> bytes:
        return decode_b64(self.encapsulated_key)


def _wrap_tag(value: Any) -> str:
    """Which model a record's ``key`` is: a recipient wrap names its ``wrap`` kind."""
    if isinstance(value, dict):
        return "recipient" if "wrap" in value else "kms"
    return "recipient" if isinstance(value, RecipientWrap) else "kms"


_WRAP_TAGS = ("kms", "recipient")
AnyWrap = Annotated[
    Annotated[KeyWrap, Tag("kms")] | Annotated[RecipientWrap, Tag("recipient")],
    Discriminator(_wrap_tag),
]
"""A record's ``key``: a KMS Encrypt wrap (symmetric key), or a recipient wrap (public key)."""


class EnvelopeRecord(BaseModel):
    """Format version 1 of the record (see docs/FORMAT.md for every field)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["kmsflow.envelope"] = "kmsflow.envelope"
    version: Literal[1] = 1
    envelope_id: str
    kind: Literal["file", "dataset"]
    created: Timestamp
    key: AnyWrap
    manifest: str
    files: tuple[FileEntry, ...] = Field(max_length=MAX_RECORD_FILES)

    @field_validator("envelope_id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not ENVELOPE_ID.match(value):
            raise ValueError("must be 32 lowercase hex characters")
        return value

    @field_validator("manifest")
    @classmethod
    def _manifest_b64(cls, value: str) -> str:
        decode_b64(value)
        return value

    @field_validator("files")
    @classmethod
    def _sorted(cls, value: tuple[FileEntry, ...]) -> tuple[FileEntry, ...]:
        """One order, so two readers walk the files alike and a path cannot be listed twice
        (Python compares strings by code point, which is UTF-8 byte order)."""
        for before, after in itertools.pairwise(value):
            if not before.path < after.path:
                raise ValueError("must be sorted by path, each path once")
        return value

    @property
    def plaintext_size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def ciphertext_size(self) -> int:
        return sum(f.ciphertext_size for f in self.files)

    def to_json(self) -> bytes:
        """Pretty, stable JSON (keys in model order), UTF-8, trailing newline.

        pydantic's serializer writes exactly what ``json.dumps(..., indent=2, ensure_ascii=False)``
        would, 5x faster (``json``'s C encoder does not do indentation): rewrap writes one record
        per envelope, so this is on its hot path."""
        return self.model_dump_json(indent=2).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes, where: str) -> EnvelopeRecord:
        """Parse and validate; ``where`` names the record in error messages.

        Every failure is a :class:`RecordInvalidError` (or :class:`UnsupportedFormatError`): a
        record is input from whoever may encrypt. A valid record is parsed and validated in one
        pass by pydantic's own JSON parser (a third faster; inventory and rewrap parse every
        record). Only a record that fails it is parsed again step by step, by the same parser
        (its nesting limit refuses a record of 100,000 ``[`` where ``json`` hit RecursionError),
        to say precisely what is wrong with it.
        """
        if len(data) > MAX_RECORD_SIZE:
            raise RecordInvalidError(record_too_large(where))
        try:
            return cls.model_validate_json(data)
        except ValidationError:
            pass
        try:
            raw = pydantic_core.from_json(data)
        except ValueError as exc:  # invalid UTF-8 or JSON; says where, never what
            raise RecordInvalidError(f"{where}: not a JSON envelope record ({exc})") from None
        if not isinstance(raw, dict):
            raise RecordInvalidError(f"{where}: not a JSON envelope record (top level is not an object)")
        if raw.get("format") != FORMAT_NAME:
            raise RecordInvalidError(
                f"{where}: not a kmsflow envelope record (format is not {FORMAT_NAME!r})"
            )
        version = raw.get("version")
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise UnsupportedFormatError(
                f"{where}: envelope format version {version} is newer than this kmsflow "
                f"(supports {FORMAT_VERSION}); upgrade kmsflow"
            )
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            # "key.recipient.wrap" -> "key.wrap": the union's tag is not a field of the record
            loc = ".".join(str(p) for i, p in enumerate(first["loc"]) if not (i == 1 and p in _WRAP_TAGS))
            raise RecordInvalidError(
                f"{where}: invalid envelope record field {loc!r}: {first['msg']}"
            ) from None


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
