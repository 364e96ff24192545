"""The per-envelope data key: a fresh Tink streaming AEAD keyset (AES256_GCM_HKDF_1MB).

Only Tink's public API touches key bytes: ``tink.new_keyset_handle`` generates,
``tink.proto_keyset_format.serialize/parse`` with ``tink.secret_key_access.TOKEN`` converts to and
from the binary keyset that KMS wraps, and Tink's own keyset protos (``tink.proto``) are used to read
the key's parameters and to set a smaller segment size for the manifest
(:meth:`DataKey.one_segment_primitive`). The serialized keyset lives in memory only (it is wrapped
before anything is written); ``DataKey`` deliberately has no ``__repr__`` showing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import tink
from tink import secret_key_access, streaming_aead
from tink.proto import aes_gcm_hkdf_streaming_pb2, common_pb2, tink_pb2

from kmsflow.envelope.errors import TamperedError

TEMPLATE_NAME = "AES256_GCM_HKDF_1MB"
_KEY_TYPE_URL = "type.googleapis.com/google.crypto.tink.AesGcmHkdfStreamingKey"
# Tink's AES-GCM-HKDF streaming wire format: the header is one length byte, a salt as long as the
# derived key, and a 7-byte nonce prefix; every segment carries a 16-byte GCM tag.
_NONCE_PREFIX_SIZE = 7
_TAG_SIZE = 16
ONE_SEGMENT_OVERHEAD = 1 + 32 + _NONCE_PREFIX_SIZE + _TAG_SIZE
"""The most a one-segment ciphertext adds to its plaintext: the header (at most 40 bytes, for a
32-byte derived key) and one tag. A manifest's ciphertext is at most its plaintext plus this."""
SMALL_SEGMENT = 4096
"""The smallest segment size :meth:`DataKey.one_segment_primitive` uses."""
KEY_SIZE = 32
SEGMENT_SIZE = 1 << 20
FORMAT_PARAMS = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingParams(
    ciphertext_segment_size=SEGMENT_SIZE, derived_key_size=KEY_SIZE, hkdf_hash_type=common_pb2.SHA256
)
"""The only parameters a data key may have: what Tink's AES256_GCM_HKDF_1MB template generates
(docs/FORMAT.md §3). Why exact: the keyset comes from whoever wrote the record, and Tink allocates
per stream whatever segment size the key names (a 1 GiB one cost 1.1 GiB to decrypt 3 bytes)."""


@cache
def _register() -> None:
    streaming_aead.register()


@dataclass(frozen=True)
class SegmentLayout:
    """How Tink cuts a stream into segments (plaintext bytes per segment), from the key parameters."""

    ciphertext_segment_size: int
    header_size: int
    tag_size: int

    @property
    def first_segment_plaintext(self) -> int:
        """Plaintext bytes in the first segment (it also carries the header)."""
        return self.ciphertext_segment_size - self.header_size - self.tag_size

    @property
    def segment_plaintext(self) -> int:
        """Plaintext bytes in every later segment."""
        return self.ciphertext_segment_size - self.tag_size

    def ciphertext_size(self, plaintext_size: int) -> int:
        """Exact ciphertext size Tink produces for ``plaintext_size`` bytes."""
        if plaintext_size <= self.first_segment_plaintext:
            segments = 1
        else:
            rest = plaintext_size - self.first_segment_plaintext
            segments = 1 + -(-rest // self.segment_plaintext)
        return self.header_size + plaintext_size + segments * self.tag_size


class DataKey:
    """A Tink streaming AEAD keyset held in memory for one envelope."""

    __slots__ = ("_handle", "_keyset", "_one_segment", "_primitive")

    def __init__(self, handle: tink.KeysetHandle, keyset: tink_pb2.Keyset | None = None) -> None:
        _register()
        self._handle = handle
        self._keyset = keyset  # the same keyset as a proto, kept by parse; built on demand otherwise
        # Made on first use: rewrap never needs it, only the manifest's (one_segment_primitive).
        self._primitive: streaming_aead.StreamingAead | None = None
        self._one_segment: dict[int, streaming_aead.StreamingAead] = {}

    def __repr__(self) -> str:
        return "DataKey(<secret>)"

    @classmethod
    def generate(cls) -> DataKey:
        """A fresh random keyset from Tink's AES256_GCM_HKDF_1MB template."""
        _register()
        template = streaming_aead.streaming_aead_key_templates.AES256_GCM_HKDF_1MB
        return cls(tink.new_keyset_handle(template))

    @classmethod
    def parse(cls, serialized: bytes) -> DataKey:
        """The keyset from its Tink binary serialization (as unwrapped by KMS), refused with
        :class:`TamperedError` unless it is exactly the format's key (:func:`_require_format`)."""
        _register()
        try:
            keyset = tink_pb2.Keyset.FromString(serialized)
            if len(keyset.key) != 1 or keyset.key[0].key_data.type_url != _KEY_TYPE_URL:
                raise TamperedError("the unwrapped data key is not a single AES-GCM-HKDF streaming key")
            _require_format(keyset)  # a key with other parameters is refused here, not when used
            return cls(tink.proto_keyset_format.parse(serialized, secret_key_access.TOKEN), keyset)
        except TamperedError:
            raise
        except Exception as exc:  # protobuf DecodeError, tink.TinkError: content never echoed
            raise TamperedError(
                f"the unwrapped data key is not a valid Tink keyset ({type(exc).__name__})"
            ) from None

    def serialize(self) -> bytes:
        """Tink's binary keyset serialization: secret, to be wrapped by KMS and then dropped."""
        return bytes(tink.proto_keyset_format.serialize(self._handle, secret_key_access.TOKEN))

    @property
    def primitive(self) -> streaming_aead.StreamingAead:
        """The streaming AEAD primitive (encrypting/decrypting streams)."""
        if self._primitive is None:
            self._primitive = self._handle.primitive(streaming_aead.StreamingAead)
        return self._primitive

    def one_segment_primitive(self, max_ciphertext_size: int) -> streaming_aead.StreamingAead:
        """The primitive for one ciphertext of at most ``max_ciphertext_size`` bytes (the manifest):
        the same key, with segments just large enough to hold that ciphertext in one.

        Why: for every stream, Tink allocates and zero-fills buffers a whole ciphertext segment
        long -- 1 MiB for this template -- so sealing or checking a manifest of a few hundred bytes
        cleared megabytes, and evicted the caches of everything else a rewrap does
        (docs/BENCHMARKS.md). Why it is the same ciphertext: in Tink's AES-GCM-HKDF streaming
        format the segment size appears neither in the header, nor in the key derivation, nor in
        the nonces (https://developers.google.com/tink/streaming-aead/aes_gcm_hkdf_streaming), so
        a ciphertext that is one segment under both sizes is the same bytes under both: what this
        seals, the key's own primitive opens, and the other way round. The segment chosen is
        always *longer* than ``max_ciphertext_size`` (a power of two, at least
        :data:`SMALL_SEGMENT`); where that is not shorter than the key's own, the key's own
        primitive is returned. A ciphertext longer than promised fails authentication; it is never
        read differently.
        """
        segment = max(SMALL_SEGMENT, 1 << max(max_ciphertext_size, 0).bit_length())
        primitive = self._one_segment.get(segment)  # the re-seal usually reuses the check's
        if primitive is not None:
            return primitive
        keyset = self._proto()
        if len(keyset.key) != 1:
            return self.primitive
        key = _streaming_key(keyset)
        if segment >= key.params.ciphertext_segment_size:
            return self.primitive
        key.params.ciphertext_segment_size = segment
        small = tink_pb2.Keyset()
        small.CopyFrom(keyset)
        small.key[0].key_data.value = key.SerializeToString()
        handle = tink.proto_keyset_format.parse(small.SerializeToString(), secret_key_access.TOKEN)
        primitive = self._one_segment[segment] = handle.primitive(streaming_aead.StreamingAead)
        return primitive

    def commitment(self, info: bytes) -> bytes:
        """32 bytes that commit to this key without revealing it: HKDF-SHA256 (``cryptography``)
        of the raw AES key of the keyset, no salt, ``info`` (``aad.commitment_info``).

        Why: a signed statement carries it (``kmsflow.envelope.statement``), so whoever unwraps the
        key can tell it is the key the signer encrypted with. HKDF output is pseudorandom: it tells
        nothing about the key, and with a label no Tink stream uses as its ``info`` it is
        independent of every key Tink derives from the same key value. It depends on the key alone,
        so re-wrapping (same keyset under another KMS version) leaves it unchanged.
        """
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        raw = _streaming_key(self._proto()).key_value
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(raw)

    def _proto(self) -> tink_pb2.Keyset:
        if self._keyset is None:
            self._keyset = tink_pb2.Keyset.FromString(self.serialize())
        return self._keyset

    def layout(self) -> SegmentLayout:
        """Segment sizes read from the key's own parameters (not assumed)."""
        params = _streaming_key(self._proto()).params
        return SegmentLayout(
            ciphertext_segment_size=params.ciphertext_segment_size,
            header_size=1 + params.derived_key_size + _NONCE_PREFIX_SIZE,
            tag_size=_TAG_SIZE,
        )


def _streaming_key(keyset: tink_pb2.Keyset) -> aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey:
    """The keyset's (first) key with its parameters, as a proto; a fresh copy on every call."""
    return aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey.FromString(keyset.key[0].key_data.value)


def _require_format(keyset: tink_pb2.Keyset) -> None:
    """Raise :class:`TamperedError` unless ``keyset`` (one streaming key) is exactly what
    :meth:`DataKey.generate` makes: :data:`FORMAT_PARAMS`, a 32-byte key of version 0, ENABLED,
    RAW, SYMMETRIC, its id the primary id, and no field Tink's protos do not know.

    Only the name of the first parameter that differs is reported, never its value.
    """
    entry = keyset.key[0]
    key = _streaming_key(keyset)
    checks = (
        ("ciphertext segment size", key.params.ciphertext_segment_size == SEGMENT_SIZE),
        ("parameters", key.params == FORMAT_PARAMS),
        ("key size", len(key.key_value) == KEY_SIZE),
        ("key version", key.version == 0),
        ("key status", entry.status == tink_pb2.ENABLED),
        ("output prefix", entry.output_prefix_type == tink_pb2.RAW),
        ("key id", entry.key_id == keyset.primary_key_id),
        ("key material type", entry.key_data.key_material_type == tink_pb2.KeyData.SYMMETRIC),
    )
    wrong = next((name for name, ok in checks if not ok), None)
    if wrong is None and not _only_known_fields(keyset, key):
        wrong = "unknown fields"
    if wrong is not None:
        raise TamperedError(f"the unwrapped data key is not the format's {TEMPLATE_NAME} key ({wrong})")


def _only_known_fields(
    keyset: tink_pb2.Keyset, key: aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey
) -> bool:
    """Whether no message of ``keyset`` carries fields unknown to Tink's protos: rebuilt from its
    known fields, each compares equal (protobuf equality includes unknown fields)."""
    entry = keyset.key[0]
    rebuilt_key = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey(
        version=key.version, params=FORMAT_PARAMS, key_value=key.key_value
    )
    rebuilt_data = tink_pb2.KeyData(
        type_url=entry.key_data.type_url,
        value=entry.key_data.value,
        key_material_type=entry.key_data.key_material_type,
    )
    rebuilt_entry = tink_pb2.Keyset.Key(
        key_data=rebuilt_data,
        status=entry.status,
        key_id=entry.key_id,
        output_prefix_type=entry.output_prefix_type,
    )
    rebuilt = tink_pb2.Keyset(primary_key_id=keyset.primary_key_id, key=[rebuilt_entry])
    return bool(key == rebuilt_key and keyset == rebuilt)
