"""The producer's X-Wing encapsulation (``kmsflow.kms.xwing``) against the draft's test vector, and
against the emulator's independent decapsulation for random keys."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from google.cloud import kms_v1
from hypothesis import given, settings
from hypothesis import strategies as st
from xwing_vectors import VECTOR_CT, VECTOR_ESEED, VECTOR_PK_SHA256, VECTOR_SEED, VECTOR_SS

from kmsflow.kms import xwing
from kmsflow_emulator import algorithms

SPEC = algorithms.SPECS[kms_v1.CryptoKeyVersion.CryptoKeyVersionAlgorithm.KEM_XWING]
RAW = kms_v1.PublicKey.PublicKeyFormat.XWING_RAW_BYTES


def test_encapsulation_matches_the_draft_test_vector() -> None:
    public = algorithms.public_key(SPEC, VECTOR_SEED, RAW)
    assert hashlib.sha256(public).hexdigest() == VECTOR_PK_SHA256
    key = xwing.XWingPublicKey.from_public_bytes(public)
    # ML-KEM's encapsulation takes no caller randomness in cryptography, so the vector's ss_M comes
    # from decapsulating its ct_M; the X25519 half and the combiner run exactly as in encapsulate().
    expanded = hashlib.shake_256(VECTOR_SEED).digest(96)
    ct_m = VECTOR_CT[:1088]
    ss_m = mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64]).decapsulate(ct_m)
    ephemeral = x25519.X25519PrivateKey.from_private_bytes(VECTOR_ESEED[32:])
    assert key.encapsulate_with(ss_m, ct_m, ephemeral) == (VECTOR_SS, VECTOR_CT)


@settings(max_examples=20, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32))
def test_the_emulator_decapsulates_what_the_producer_encapsulates(seed: bytes) -> None:
    key = xwing.XWingPublicKey.from_public_bytes(algorithms.public_key(SPEC, seed, RAW))
    secret, ciphertext = key.encapsulate()
    assert len(secret) == xwing.SHARED_SECRET_SIZE and len(ciphertext) == xwing.CIPHERTEXT_SIZE
    assert algorithms.decapsulate(SPEC, seed, ciphertext) == secret
    again, other = key.encapsulate()
    assert again != secret and other != ciphertext  # fresh randomness each time


def test_unusable_public_keys_are_refused_on_load() -> None:
    good = algorithms.public_key(SPEC, bytes(32), RAW)
    low_order = good[:1184] + bytes(32)  # X25519 with the zero point: an all-zero ss_X
    not_ml_kem = b"\xff" * 1184 + good[1184:]  # coefficients above q: fails FIPS 203's check
    why: str | None
    for bad, why in (
        (good[:-1], "1216 bytes"),
        (good + b"\0", "1216 bytes"),
        (low_order, None),
        (not_ml_kem, None),
    ):
        with pytest.raises(ValueError, match=why):
            xwing.XWingPublicKey.from_public_bytes(bad)
