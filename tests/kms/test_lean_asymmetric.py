"""The lean client's asymmetric calls (GetPublicKey, AsymmetricSign, AsymmetricDecrypt,
Decapsulate) against the emulator: answers checked with ``cryptography``, and equal to what
``google-cloud-kms``'s client gets for the same request."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mlkem, padding
from google.api_core import exceptions as gexc
from google.cloud import kms_v1

from kmsflow.kms import KmsDataClient, new_data_client
from kmsflow.kms._proto import kms_dataplane_pb2 as pb
from kmsflow.kms.crc import crc32c

LOCATION = "projects/kmsflow-test/locations/us-central1"


def _version(kms: kms_v1.KeyManagementServiceClient, purpose: str, algorithm: str) -> str:
    ring = f"ring-{uuid.uuid4().hex[:12]}"
    kms.create_key_ring(request={"parent": LOCATION, "key_ring_id": ring, "key_ring": {}})
    key = kms.create_crypto_key(
        request={
            "parent": f"{LOCATION}/keyRings/{ring}",
            "crypto_key_id": "k",
            "crypto_key": {"purpose": purpose, "version_template": {"algorithm": algorithm}},
        }
    )
    return f"{key.name}/cryptoKeyVersions/1"


@pytest.fixture
def lean(emulator: Any) -> Any:
    with new_data_client(endpoint=emulator.endpoint) as client:
        yield client


def test_sign_with_a_public_key_equal_to_gapics(kms: Any, lean: KmsDataClient) -> None:
    name = _version(kms, "ASYMMETRIC_SIGN", "EC_SIGN_P256_SHA256")
    served = lean.get_public_key({"name": name})
    assert served.pem == kms.get_public_key(request={"name": name}).pem
    assert served.pem_crc32c.value == crc32c(served.pem.encode())
    assert served.algorithm == pb.CryptoKeyVersion.EC_SIGN_P256_SHA256
    digest = hashlib.sha256(b"model weights").digest()
    signed = lean.asymmetric_sign(
        {"name": name, "digest": {"sha256": digest}, "digest_crc32c": {"value": crc32c(digest)}}
    )
    assert signed.verified_digest_crc32c and signed.name == name
    assert signed.signature_crc32c.value == crc32c(signed.signature)
    key = serialization.load_pem_public_key(served.pem.encode())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(signed.signature, b"model weights", ec.ECDSA(hashes.SHA256()))


def test_asymmetric_decrypt(kms: Any, lean: KmsDataClient) -> None:
    name = _version(kms, "ASYMMETRIC_DECRYPT", "RSA_DECRYPT_OAEP_2048_SHA256")
    key = serialization.load_pem_public_key(lean.get_public_key({"name": name}).pem.encode())
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    ciphertext = key.encrypt(b"data key", oaep)  # type: ignore[union-attr]
    opened = lean.asymmetric_decrypt(
        {"name": name, "ciphertext": ciphertext, "ciphertext_crc32c": {"value": crc32c(ciphertext)}}
    )
    assert opened.plaintext == b"data key" and opened.verified_ciphertext_crc32c
    assert opened.plaintext_crc32c.value == crc32c(b"data key")
    with pytest.raises(gexc.InvalidArgument, match="ciphertext_crc32c did not match"):
        lean.asymmetric_decrypt({"name": name, "ciphertext": ciphertext, "ciphertext_crc32c": {"value": 1}})


def test_decapsulate_gives_the_encapsulated_secret_as_gapic_does(kms: Any, lean: KmsDataClient) -> None:
    name = _version(kms, "KEY_ENCAPSULATION", "ML_KEM_768")
    served = lean.get_public_key({"name": name, "public_key_format": pb.PublicKey.NIST_PQC})
    assert served.public_key.crc32c_checksum.value == crc32c(served.public_key.data)
    secret, ciphertext = mlkem.MLKEM768PublicKey.from_public_bytes(served.public_key.data).encapsulate()
    opened = lean.decapsulate(
        {"name": name, "ciphertext": ciphertext, "ciphertext_crc32c": {"value": crc32c(ciphertext)}}
    )
    assert opened.shared_secret == secret and opened.verified_ciphertext_crc32c
    assert opened.HasField("shared_secret_crc32c") and opened.shared_secret_crc32c == crc32c(secret)
    assert kms.decapsulate(request={"name": name, "ciphertext": ciphertext}).shared_secret == secret
