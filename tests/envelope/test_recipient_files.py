"""Public key files and the recipient wrap without a KMS: the file format's checks (Hypothesis over
every one-byte corruption), and the local wrap's invariants (fresh secret per wrap, binding)."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mlkem, rsa, x25519
from hypothesis import given, settings
from hypothesis import strategies as st

from kmsflow.envelope import recipient
from kmsflow.envelope.keyset import DataKey
from kmsflow.kms.public_key import PublicKey, PublicKeyError

VERSION = "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=3072)
ML_KEM_KEY = mlkem.MLKEM768PrivateKey.generate()
XWING_KEY = (
    mlkem.MLKEM768PrivateKey.generate().public_key().public_bytes_raw()
    + x25519.X25519PrivateKey.generate().public_key().public_bytes_raw()
)
PUBLIC_KEYS = {
    "RSA_DECRYPT_OAEP_3072_SHA256": PublicKey(
        VERSION,
        "RSA_DECRYPT_OAEP_3072_SHA256",
        RSA_KEY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "PEM",
    ),
    "ML_KEM_768": PublicKey(VERSION, "ML_KEM_768", ML_KEM_KEY.public_key().public_bytes_raw(), "NIST_PQC"),
    "KEM_XWING": PublicKey(VERSION, "KEM_XWING", XWING_KEY, "XWING_RAW_BYTES"),
}


@pytest.mark.parametrize("algorithm", sorted(PUBLIC_KEYS))
def test_a_public_key_file_round_trips(algorithm: str) -> None:
    public = PUBLIC_KEYS[algorithm]
    data = public.to_file_bytes()
    assert PublicKey.from_file_bytes(data, "f") == public
    assert json.loads(data)["format"] == "kmsflow.public-key"


@settings(max_examples=300, deadline=None)
@given(
    algorithm=st.sampled_from(sorted(PUBLIC_KEYS)),
    at=st.floats(0, 1, exclude_max=True),
    bit=st.integers(0, 7),
)
def test_any_flipped_bit_is_refused_or_changes_nothing(algorithm: str, at: float, bit: int) -> None:
    """A file with one bit flipped anywhere is refused, or (JSON whitespace, say) reads as the same
    key: never as another version, algorithm or key."""
    public = PUBLIC_KEYS[algorithm]
    data = bytearray(public.to_file_bytes())
    data[int(at * len(data))] ^= 1 << bit
    try:
        parsed = PublicKey.from_file_bytes(bytes(data), "f")
    except PublicKeyError:
        return
    assert parsed == public


def test_a_wrong_key_for_the_algorithm_is_refused() -> None:
    rsa_2048 = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem = rsa_2048.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(PublicKeyError, match="RSA-3072"):
        PublicKey.checked(VERSION, "RSA_DECRYPT_OAEP_3072_SHA256", pem, "PEM", "f")
    with pytest.raises(PublicKeyError, match="ML_KEM_1024"):
        PublicKey.checked(VERSION, "ML_KEM_1024", PUBLIC_KEYS["ML_KEM_768"].key, "NIST_PQC", "f")
    with pytest.raises(PublicKeyError, match="neither wraps for nor signs with"):
        PublicKey.checked(VERSION, "RSA_DECRYPT_OAEP_3072_SHA1", pem, "PEM", "f")
    with pytest.raises(PublicKeyError, match="comes as XWING_RAW_BYTES, not NIST_PQC"):
        PublicKey.checked(VERSION, "KEM_XWING", XWING_KEY, "NIST_PQC", "f")
    ml_kem_only = PUBLIC_KEYS["ML_KEM_768"].key
    low_order = XWING_KEY[:1184] + bytes(32)  # an X25519 point whose shared secret is all zeros
    for bad in (ml_kem_only, low_order, b"\xff" * 1184 + XWING_KEY[1184:]):
        with pytest.raises(PublicKeyError, match="not an X-Wing public key"):
            PublicKey.checked(VERSION, "KEM_XWING", bad, "XWING_RAW_BYTES", "f")


@settings(max_examples=20, deadline=None)
@given(algorithm=st.sampled_from(sorted(PUBLIC_KEYS)))
def test_every_wrap_is_fresh_and_bound(algorithm: str) -> None:
    """Two wraps of one keyset share no secret, nonce or ciphertext; the record names the version."""
    keyset = DataKey.generate().serialize()
    first = recipient.wrap_keyset(PUBLIC_KEYS[algorithm], keyset, "a" * 32)
    second = recipient.wrap_keyset(PUBLIC_KEYS[algorithm], keyset, "a" * 32)
    assert first.encapsulated_key != second.encapsulated_key
    assert first.wrapped_keyset[:16] != second.wrapped_keyset[:16]
    assert first.crypto_key_version == VERSION and first.crypto_key == VERSION.split("/cryptoKeyVersions/")[0]
    assert keyset.hex() not in json.dumps(first.model_dump())
