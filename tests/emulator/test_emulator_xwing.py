"""KEM_XWING: the emulator's X-Wing (draft-connolly-cfrg-xwing-kem-08) against the draft's test
vector, and through the real client with the producer's own encapsulation (``kmsflow.kms.xwing``)."""

from __future__ import annotations

import hashlib
import os
import uuid

import pytest
from google.api_core import exceptions
from google.cloud import kms_v1
from xwing_vectors import VECTOR_CT, VECTOR_PK_HEAD, VECTOR_PK_SHA256, VECTOR_SEED, VECTOR_SS

from kmsflow.kms import crc32c
from kmsflow.kms.xwing import XWingPublicKey
from kmsflow_emulator import algorithms

KeyFormat = kms_v1.PublicKey.PublicKeyFormat


def test_xwing_matches_the_draft_test_vector() -> None:
    spec = algorithms.SPECS[kms_v1.CryptoKeyVersion.CryptoKeyVersionAlgorithm.KEM_XWING]
    public = algorithms.public_key(spec, VECTOR_SEED, KeyFormat.XWING_RAW_BYTES)
    assert len(public) == 1216 and public.hex().startswith(VECTOR_PK_HEAD)
    assert hashlib.sha256(public).hexdigest() == VECTOR_PK_SHA256
    assert algorithms.decapsulate(spec, VECTOR_SEED, VECTOR_CT) == VECTOR_SS


def test_xwing_through_the_client(kms: kms_v1.KeyManagementServiceClient, ring: str) -> None:
    key = kms.create_crypto_key(
        request={
            "parent": ring,
            "crypto_key_id": f"xw-{uuid.uuid4().hex[:8]}",
            "crypto_key": {"purpose": "KEY_ENCAPSULATION", "version_template": {"algorithm": "KEM_XWING"}},
        }
    )
    name = f"{key.name}/cryptoKeyVersions/1"
    served = kms.get_public_key(request={"name": name, "public_key_format": "XWING_RAW_BYTES"})
    assert served.public_key_format == KeyFormat.XWING_RAW_BYTES
    assert len(served.public_key.data) == 1216
    assert served.public_key.crc32c_checksum == crc32c(served.public_key.data)
    for wrong in ("NIST_PQC", "PEM", "DER"):
        with pytest.raises(exceptions.InvalidArgument, match="supported: XWING_RAW_BYTES"):
            kms.get_public_key(request={"name": name, "public_key_format": wrong})
    with pytest.raises(exceptions.InvalidArgument, match="XWING_RAW_BYTES format only"):
        kms.get_public_key(request={"name": name})

    # the producer's encapsulation (kmsflow.kms.xwing), written apart from the emulator's decapsulation
    secret, ciphertext = XWingPublicKey.from_public_bytes(served.public_key.data).encapsulate()
    opened = kms.decapsulate(
        request={"name": name, "ciphertext": ciphertext, "ciphertext_crc32c": crc32c(ciphertext)}
    )
    assert opened.shared_secret == secret and opened.verified_ciphertext_crc32c
    with pytest.raises(exceptions.InvalidArgument, match="1120 bytes"):
        kms.decapsulate(request={"name": name, "ciphertext": ciphertext[:-1]})
    tampered = ciphertext[:1088] + os.urandom(32)
    assert kms.decapsulate(request={"name": name, "ciphertext": tampered}).shared_secret != secret
