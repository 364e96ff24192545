"""The per-envelope data key: a fresh Tink streaming AEAD keyset (AES256_GCM_HKDF_1MB).

Only Tink's public API touches key bytes: ``tink.new_keyset_handle`` generates,
``tink.proto_keyset_format.serialize/parse`` with ``tink.secret_key_access.TOKEN`` converts to and
from the binary keyset that KMS wraps. The serialized keyset lives in memory only (it is wrapped
before anything is written); ``DataKey`` deliberately has no ``__repr__`` showing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import tink
from tink import secret_key_access, streaming_aead
from tink.proto import aes_gcm_hkdf_streaming_pb2, tink_pb2

from kmsflow.envelope.errors import TamperedError

TEMPLATE_NAME = "AES256_GCM_HKDF_1MB"
_KEY_TYPE_URL = "type.googleapis.com/google.crypto.tink.AesGcmHkdfStreamingKey"
# Tink's AES-GCM-HKDF streaming wire format: the header is one length byte, a salt as long as the
# derived key, and a 7-byte nonce prefix; every segment carries a 16-byte GCM tag.
_NONCE_PREFIX_SIZE = 7
_TAG_SIZE = 16


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

    __slots__ = ("_handle", "_primitive")

    def __init__(self, handle: tink.KeysetHandle) -> None:
        _register()
        self._handle = handle
        self._primitive: streaming_aead.StreamingAead = handle.primitive(streaming_aead.StreamingAead)

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
        """The keyset from its Tink binary serialization (as unwrapped by KMS)."""
        _register()
        try:
            keyset = tink_pb2.Keyset.FromString(serialized)
            if len(keyset.key) != 1 or keyset.key[0].key_data.type_url != _KEY_TYPE_URL:
                raise TamperedError("the unwrapped data key is not a single AES-GCM-HKDF streaming key")
            return cls(tink.proto_keyset_format.parse(serialized, secret_key_access.TOKEN))
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
        return self._primitive

    def layout(self) -> SegmentLayout:
        """Segment sizes read from the key's own parameters (not assumed)."""
        keyset = tink_pb2.Keyset.FromString(self.serialize())
        key = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey.FromString(keyset.key[0].key_data.value)
        params = key.params
        return SegmentLayout(
            ciphertext_segment_size=params.ciphertext_segment_size,
            header_size=1 + params.derived_key_size + _NONCE_PREFIX_SIZE,
            tag_size=_TAG_SIZE,
        )
