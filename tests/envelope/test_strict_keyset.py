"""A data key from a hostile record: only the format's exact AES256_GCM_HKDF_1MB keyset is parsed.

Whoever may encrypt may write any keyset and have KMS wrap it; Tink allocates per stream whatever
segment size the key names, so a 1 GiB segment made a 3-byte file cost 1.1 GiB to decrypt.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import tink
from tink import secret_key_access, streaming_aead
from tink.proto import aes_gcm_hkdf_streaming_pb2, common_pb2, tink_pb2

from kmsflow.envelope.errors import TamperedError
from kmsflow.envelope.keyset import FORMAT_PARAMS, KEY_SIZE, SEGMENT_SIZE, DataKey

StreamingKey = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey
KEY = DataKey.generate()


def crafted(mutate: Callable[[StreamingKey, tink_pb2.Keyset], None]) -> bytes:
    """A genuine data key's serialized keyset, changed by ``mutate`` (its key, the keyset)."""
    keyset = tink_pb2.Keyset.FromString(KEY.serialize())
    key = StreamingKey.FromString(keyset.key[0].key_data.value)
    mutate(key, keyset)
    keyset.key[0].key_data.value = key.SerializeToString()
    return keyset.SerializeToString()


def test_the_constants_are_what_tinks_template_generates() -> None:
    streaming_aead.register()
    template = streaming_aead.streaming_aead_key_templates.AES256_GCM_HKDF_1MB
    handle = tink.new_keyset_handle(template)
    keyset = tink_pb2.Keyset.FromString(tink.proto_keyset_format.serialize(handle, secret_key_access.TOKEN))
    entry = keyset.key[0]
    key = StreamingKey.FromString(entry.key_data.value)

    assert key.params == FORMAT_PARAMS
    assert (SEGMENT_SIZE, KEY_SIZE, len(key.key_value), key.version) == (1048576, 32, 32, 0)
    assert key.params.hkdf_hash_type == common_pb2.SHA256
    assert entry.status == tink_pb2.ENABLED and entry.output_prefix_type == tink_pb2.RAW
    assert entry.key_id == keyset.primary_key_id
    assert entry.key_data.key_material_type == tink_pb2.KeyData.SYMMETRIC
    DataKey.parse(keyset.SerializeToString())  # and it is accepted


def _segment(size: int) -> Callable[[StreamingKey, tink_pb2.Keyset], None]:
    def mutate(key: StreamingKey, _keyset: tink_pb2.Keyset) -> None:
        key.params.ciphertext_segment_size = size

    return mutate


def _set(**changes: object) -> Callable[[StreamingKey, tink_pb2.Keyset], None]:
    def mutate(key: StreamingKey, keyset: tink_pb2.Keyset) -> None:
        for name, value in changes.items():
            if name == "derived_key_size":
                key.params.derived_key_size = value  # type: ignore[assignment]
            elif name == "hkdf_hash_type":
                key.params.hkdf_hash_type = value  # type: ignore[assignment]
            elif name in ("version", "key_value"):
                setattr(key, name, value)
            elif name == "primary_key_id":
                keyset.primary_key_id = value  # type: ignore[assignment]
            elif name == "key_material_type":
                keyset.key[0].key_data.key_material_type = value  # type: ignore[assignment]
            else:
                setattr(keyset.key[0], name, value)

    return mutate


def _unknown_params_field(key: StreamingKey, _keyset: tink_pb2.Keyset) -> None:
    extra = key.params.SerializeToString() + b"\x28\x01"  # field 5, varint 1: unknown to Tink
    key.params.CopyFrom(aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingParams.FromString(extra))


def _two_keys(_key: StreamingKey, keyset: tink_pb2.Keyset) -> None:
    keyset.key.append(keyset.key[0])


HOSTILE = {
    "1 GiB segments": (_segment(1 << 30), "ciphertext segment size"),
    "4 KiB segments": (_segment(4096), "ciphertext segment size"),
    "16-byte derived keys": (_set(derived_key_size=16), "parameters"),
    "HKDF-SHA1": (_set(hkdf_hash_type=common_pb2.SHA1), "parameters"),
    "HKDF-SHA512": (_set(hkdf_hash_type=common_pb2.SHA512), "parameters"),
    "unknown parameter field": (_unknown_params_field, "parameters"),
    "64-byte key": (_set(key_value=b"k" * 64), "key size"),
    "16-byte key": (_set(key_value=b"k" * 16), "key size"),
    "key version 1": (_set(version=1), "key version"),
    "disabled": (_set(status=tink_pb2.DISABLED), "key status"),
    "TINK prefix": (_set(output_prefix_type=tink_pb2.TINK), "output prefix"),
    "other primary": (_set(primary_key_id=12345), "key id"),
    "asymmetric material": (_set(key_material_type=tink_pb2.KeyData.ASYMMETRIC_PRIVATE), "key material"),
    "two keys": (_two_keys, "single AES-GCM-HKDF streaming key"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_crafted_keyset_is_refused_in_one_line_without_its_content(case: str) -> None:
    mutate, reason = HOSTILE[case]
    serialized = crafted(mutate)

    with pytest.raises(TamperedError, match=reason) as info:
        DataKey.parse(serialized)

    message = str(info.value)
    assert "\n" not in message
    key_value = StreamingKey.FromString(
        tink_pb2.Keyset.FromString(serialized).key[0].key_data.value
    ).key_value
    assert key_value.hex() not in message and repr(key_value) not in message
    assert info.value.__cause__ is None and info.value.__context__ is None  # nothing chained


def test_an_unknown_field_on_the_keyset_is_refused() -> None:
    serialized = KEY.serialize() + b"\x18\x07"  # field 3 of Keyset, varint: unknown to Tink

    with pytest.raises(TamperedError, match="unknown fields"):
        DataKey.parse(serialized)


def test_the_genuine_key_still_parses_and_decrypts() -> None:
    parsed = DataKey.parse(KEY.serialize())

    assert parsed.layout().ciphertext_segment_size == SEGMENT_SIZE
