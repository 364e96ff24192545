"""``DataKey.one_segment_primitive``: the manifest is sealed and checked with the data key under a
smaller segment size, and that must be invisible -- the same ciphertext format both ways."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
import tink
from hypothesis import given, settings
from hypothesis import strategies as st
from tink import streaming_aead
from tink.proto import aes_gcm_hkdf_streaming_pb2, tink_pb2

from kmsflow.envelope import TamperedError, manifest
from kmsflow.envelope.keyset import ONE_SEGMENT_OVERHEAD, SMALL_SEGMENT, DataKey

StreamingKey = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey

KEY = DataKey.generate()
AAD = b"kmsflow-test-aad"
FIELDS = {
    "envelope_id": "cd" * 16,
    "kind": "file",
    "created": "2026-12-01T10:00:00Z",
    "key": {
        "crypto_key": "projects/p/locations/l/keyRings/r/cryptoKeys/k",
        "crypto_key_version": "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
        "wrapped_keyset": "QUFB",
        "wrapped_at": "2026-12-01T10:00:00Z",
    },
    "files": [{"path": "model.bin", "size": 5, "ciphertext_size": 61, "ciphertext_crc32c": "AAAAAA=="}],
}


def seal(primitive: streaming_aead.StreamingAead, plaintext: bytes, aad: bytes = AAD) -> bytes:
    out = io.BytesIO()
    out.close = lambda: None  # type: ignore[method-assign]  # Tink closes its sink
    with primitive.new_encrypting_stream(out, aad) as enc:
        enc.write(plaintext)
    return out.getvalue()


def open_(primitive: streaming_aead.StreamingAead, ciphertext: bytes, aad: bytes = AAD) -> bytes:
    with primitive.new_decrypting_stream(io.BytesIO(ciphertext), aad) as dec:
        return bytes(dec.read())


# Around the smallest segment and the next one, where a ciphertext stops fitting in one segment.
sizes = st.one_of(
    st.integers(0, 600),
    st.integers(SMALL_SEGMENT - ONE_SEGMENT_OVERHEAD - 8, SMALL_SEGMENT + 8),
    st.integers(2 * SMALL_SEGMENT - ONE_SEGMENT_OVERHEAD - 8, 2 * SMALL_SEGMENT + 8),
    st.integers(0, 40_000),
)


@settings(max_examples=60, deadline=None)
@given(size=sizes, seed=st.binary(min_size=1, max_size=16))
def test_what_the_small_segments_seal_the_key_opens_and_back(size: int, seed: bytes) -> None:
    plaintext = (seed * (size // len(seed) + 1))[:size]
    small = KEY.one_segment_primitive(size + ONE_SEGMENT_OVERHEAD)

    sealed = seal(small, plaintext)
    assert len(sealed) <= size + ONE_SEGMENT_OVERHEAD  # one segment: header and one tag
    assert open_(KEY.primitive, sealed) == plaintext

    sealed_by_key = seal(KEY.primitive, plaintext)
    assert open_(KEY.one_segment_primitive(len(sealed_by_key)), sealed_by_key) == plaintext


def test_segments_are_longer_than_promised_and_shorter_than_the_keys() -> None:
    assert KEY.one_segment_primitive(500) is not KEY.primitive
    assert KEY.one_segment_primitive(500) is KEY.one_segment_primitive(SMALL_SEGMENT - 1)  # one per size
    assert KEY.one_segment_primitive(SMALL_SEGMENT) is not KEY.one_segment_primitive(SMALL_SEGMENT - 1)
    assert KEY.one_segment_primitive(KEY.layout().ciphertext_segment_size) is KEY.primitive
    assert KEY.one_segment_primitive(10**9) is KEY.primitive


def test_a_ciphertext_longer_than_promised_fails_rather_than_reading_differently() -> None:
    plaintext = b"m" * (3 * SMALL_SEGMENT)
    sealed = seal(KEY.primitive, plaintext)  # one 1 MiB segment; three 4 KiB ones would differ

    with pytest.raises(tink.TinkError):
        open_(KEY.one_segment_primitive(100), sealed)


def test_other_aad_or_another_key_still_fails() -> None:
    sealed = seal(KEY.primitive, b"manifest")

    with pytest.raises(tink.TinkError):
        open_(KEY.one_segment_primitive(len(sealed)), sealed, aad=b"other")
    with pytest.raises(tink.TinkError):
        open_(DataKey.generate().one_segment_primitive(len(sealed)), sealed)


def test_a_key_with_small_segments_already_uses_its_own() -> None:
    streaming_aead.register()
    key = DataKey(tink.new_keyset_handle(streaming_aead.streaming_aead_key_templates.AES256_GCM_HKDF_4KB))

    assert key.one_segment_primitive(100) is key.primitive


def test_a_parsed_key_seals_what_the_generated_one_opens() -> None:
    parsed = DataKey.parse(KEY.serialize())
    sealed = seal(parsed.one_segment_primitive(8 + ONE_SEGMENT_OVERHEAD), b"manifest")

    assert open_(KEY.primitive, sealed) == b"manifest"


def test_every_size_around_a_segment_boundary_opens() -> None:
    for size in range(SMALL_SEGMENT - ONE_SEGMENT_OVERHEAD - 4, SMALL_SEGMENT + 4):
        plaintext = bytes([size % 251]) * size
        sealed = seal(KEY.primitive, plaintext)
        assert open_(KEY.one_segment_primitive(len(sealed)), sealed) == plaintext
        small = KEY.one_segment_primitive(size + ONE_SEGMENT_OVERHEAD)
        assert open_(KEY.primitive, seal(small, plaintext)) == plaintext


def _with_key(mutate: Callable[[StreamingKey, tink_pb2.Keyset], None]) -> bytes:
    """KEY's serialized keyset, changed by ``mutate`` (its key proto, the keyset proto)."""
    keyset = tink_pb2.Keyset.FromString(KEY.serialize())
    key = StreamingKey.FromString(keyset.key[0].key_data.value)
    mutate(key, keyset)
    return keyset.SerializeToString()


def test_an_unreadable_key_is_refused_when_parsed() -> None:
    def garbage(_key: StreamingKey, keyset: tink_pb2.Keyset) -> None:
        keyset.key[0].key_data.value = b"\xff\xff\xff"

    with pytest.raises(TamperedError, match="not a valid Tink keyset"):
        DataKey.parse(_with_key(garbage))


def test_a_key_with_impossible_parameters_never_checks_a_manifest() -> None:
    def tiny_segments(key: StreamingKey, keyset: tink_pb2.Keyset) -> None:
        key.params.ciphertext_segment_size = 20  # Tink requires more than the header and a tag
        keyset.key[0].key_data.value = key.SerializeToString()

    record = manifest.seal(KEY, FIELDS)

    # Refused as soon as it is parsed now: only the format's exact parameters are accepted.
    with pytest.raises(TamperedError, match="ciphertext segment size"):
        manifest.check(DataKey.parse(_with_key(tiny_segments)), record, "r")
