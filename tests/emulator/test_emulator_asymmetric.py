"""Asymmetric, post-quantum and MAC keys through the real ``google-cloud-kms`` client (issue 21).

Every signature is verified, and every ciphertext or encapsulation made, with ``cryptography`` on
the public key ``GetPublicKey`` serves: the emulator's private half must match the public half a
real client would use.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa, mlkem, padding, utils
from google.api_core import exceptions
from google.cloud import kms_v1
from google.cloud.kms_v1.services.key_management_service.transports import (
    KeyManagementServiceGrpcTransport,
)
from pqcrypto.sign import slh_dsa_sha2_128s

from kmsflow.kms import crc32c

Algorithm = kms_v1.CryptoKeyVersion.CryptoKeyVersionAlgorithm
Purpose = kms_v1.CryptoKey.CryptoKeyPurpose
State = kms_v1.CryptoKeyVersion.CryptoKeyVersionState
KeyFormat = kms_v1.PublicKey.PublicKeyFormat
Client = kms_v1.KeyManagementServiceClient

_HASH = {"SHA256": hashes.SHA256, "SHA384": hashes.SHA384, "SHA512": hashes.SHA512}
_ML_DSA = {"44": mldsa.MLDSA44PublicKey, "65": mldsa.MLDSA65PublicKey, "87": mldsa.MLDSA87PublicKey}
_ML_KEM = {"768": mlkem.MLKEM768PublicKey, "1024": mlkem.MLKEM1024PublicKey}

SIGN_ALGORITHMS = [
    "EC_SIGN_P256_SHA256",
    "EC_SIGN_P384_SHA384",
    "EC_SIGN_SECP256K1_SHA256",
    "EC_SIGN_ED25519",
    "RSA_SIGN_PSS_2048_SHA256",
    "RSA_SIGN_PSS_3072_SHA256",
    "RSA_SIGN_PSS_4096_SHA256",
    "RSA_SIGN_PSS_4096_SHA512",
    "RSA_SIGN_PKCS1_2048_SHA256",
    "RSA_SIGN_PKCS1_3072_SHA256",
    "RSA_SIGN_PKCS1_4096_SHA256",
    "RSA_SIGN_PKCS1_4096_SHA512",
    "RSA_SIGN_RAW_PKCS1_2048",
    "RSA_SIGN_RAW_PKCS1_3072",
    "RSA_SIGN_RAW_PKCS1_4096",
    "PQ_SIGN_ML_DSA_44",
    "PQ_SIGN_ML_DSA_65",
    "PQ_SIGN_ML_DSA_87",
    "PQ_SIGN_ML_DSA_44_EXTERNAL_MU",
    "PQ_SIGN_ML_DSA_65_EXTERNAL_MU",
    "PQ_SIGN_ML_DSA_87_EXTERNAL_MU",
    "PQ_SIGN_SLH_DSA_SHA2_128S",
]
DECRYPT_ALGORITHMS = [
    "RSA_DECRYPT_OAEP_2048_SHA256",
    "RSA_DECRYPT_OAEP_3072_SHA256",
    "RSA_DECRYPT_OAEP_4096_SHA256",
    "RSA_DECRYPT_OAEP_4096_SHA512",
    "RSA_DECRYPT_OAEP_2048_SHA1",
    "RSA_DECRYPT_OAEP_3072_SHA1",
    "RSA_DECRYPT_OAEP_4096_SHA1",
]
MAC_ALGORITHMS = ["HMAC_SHA1", "HMAC_SHA224", "HMAC_SHA256", "HMAC_SHA384", "HMAC_SHA512"]


def create(kms: Client, ring: str, purpose: str, algorithm: str, **fields: Any) -> kms_v1.CryptoKey:
    return kms.create_crypto_key(
        request={
            "parent": ring,
            "crypto_key_id": f"k-{uuid.uuid4().hex[:10]}",
            "crypto_key": {"purpose": purpose, "version_template": {"algorithm": algorithm}, **fields},
        }
    )


def first_version(key: kms_v1.CryptoKey) -> str:
    return f"{key.name}/cryptoKeyVersions/1"


def public_key(kms: Client, name: str, key_format: Any = KeyFormat.PUBLIC_KEY_FORMAT_UNSPECIFIED) -> Any:
    return kms.get_public_key(request={"name": name, "public_key_format": key_format})


def key_format(algorithm: str) -> Any:
    """NIST_PQC for post-quantum algorithms (required), else the default (PEM in ``pem``)."""
    if algorithm.startswith(("PQ_", "ML_KEM")):
        return KeyFormat.NIST_PQC
    return KeyFormat.PUBLIC_KEY_FORMAT_UNSPECIFIED


def served_key(kms: Client, name: str, algorithm: str) -> bytes:
    """The public key bytes: NIST_PQC raw bytes or the PEM text."""
    fmt = key_format(algorithm)
    return bytes(public_key(kms, name, fmt or KeyFormat.PEM).public_key.data)


def verify(algorithm: str, served: kms_v1.PublicKey, signature: bytes, message: bytes) -> None:
    """Verify ``signature`` over ``message`` with ``cryptography`` and the served public key."""
    if algorithm.startswith("PQ_SIGN_ML_DSA"):
        level = algorithm.split("_")[4]
        key = _ML_DSA[level].from_public_bytes(served.public_key.data)
        if algorithm.endswith("EXTERNAL_MU"):
            key.verify_mu(signature, message)
        else:
            key.verify(signature, message)
        return
    if algorithm == "PQ_SIGN_SLH_DSA_SHA2_128S":
        slh_dsa_sha2_128s.verify(served.public_key.data, message, signature)  # raises if invalid
        return
    key = serialization.load_pem_public_key(served.pem.encode())
    if algorithm == "EC_SIGN_ED25519":
        key.verify(signature, message)
    elif algorithm.startswith("EC_SIGN"):
        key.verify(signature, message, ec.ECDSA(_HASH[algorithm.rsplit("_", 1)[1]]()))
    elif algorithm.startswith("RSA_SIGN_RAW_PKCS1"):
        key.verify(signature, message, padding.PKCS1v15(), utils.NoDigestInfo())
    elif algorithm.startswith("RSA_SIGN_PSS"):
        digest = _HASH[algorithm.rsplit("_", 1)[1]]()
        key.verify(signature, message, padding.PSS(padding.MGF1(digest), digest.digest_size), digest)
    else:
        key.verify(signature, message, padding.PKCS1v15(), _HASH[algorithm.rsplit("_", 1)[1]]())


# ----------------------------------------------------------------------------- key creation


def test_asymmetric_key_has_no_primary_and_version_is_generated(kms: Client, ring: str) -> None:
    key = create(kms, ring, "ASYMMETRIC_SIGN", "EC_SIGN_P256_SHA256")
    assert key.purpose == Purpose.ASYMMETRIC_SIGN
    assert not key.primary.name
    assert key.version_template.algorithm == Algorithm.EC_SIGN_P256_SHA256
    assert not key.rotation_period and not key.next_rotation_time
    version = kms.get_crypto_key_version(name=first_version(key))
    assert version.state == State.ENABLED
    assert version.algorithm == Algorithm.EC_SIGN_P256_SHA256
    assert version.generate_time
    # A second version is generated the same way; the key still has no primary.
    v2 = kms.create_crypto_key_version(parent=key.name, crypto_key_version={})
    assert v2.state == State.PENDING_GENERATION
    assert not v2.generate_time
    assert kms.get_crypto_key_version(name=v2.name).state == State.ENABLED
    assert not kms.get_crypto_key(name=key.name).primary.name
    with pytest.raises(exceptions.FailedPrecondition):
        kms.update_crypto_key_primary_version(name=key.name, crypto_key_version_id="2")


def test_creation_errors(kms: Client, ring: str) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="algorithm must be specified"):
        kms.create_crypto_key(
            request={"parent": ring, "crypto_key_id": "no-alg", "crypto_key": {"purpose": "ASYMMETRIC_SIGN"}}
        )
    with pytest.raises(exceptions.InvalidArgument, match="not compatible with purpose ASYMMETRIC_DECRYPT"):
        create(kms, ring, "ASYMMETRIC_DECRYPT", "EC_SIGN_P256_SHA256")
    with pytest.raises(exceptions.InvalidArgument, match="not compatible with purpose ENCRYPT_DECRYPT"):
        create(kms, ring, "ENCRYPT_DECRYPT", "RSA_DECRYPT_OAEP_2048_SHA256")
    with pytest.raises(exceptions.InvalidArgument, match="not compatible with purpose MAC"):
        create(kms, ring, "MAC", "GOOGLE_SYMMETRIC_ENCRYPTION")
    with pytest.raises(exceptions.InvalidArgument, match="rotation is not supported"):
        create(
            kms,
            ring,
            "ASYMMETRIC_SIGN",
            "EC_SIGN_P256_SHA256",
            rotation_period={"seconds": 86400 * 30},
            next_rotation_time={"seconds": 2_000_000_000},
        )
    key = create(kms, ring, "ASYMMETRIC_SIGN", "EC_SIGN_P256_SHA256")
    with pytest.raises(exceptions.InvalidArgument, match="rotation is not supported"):
        kms.update_crypto_key(
            request={
                "crypto_key": {
                    "name": key.name,
                    "rotation_period": {"seconds": 86400 * 30},
                    "next_rotation_time": {"seconds": 2_000_000_000},
                },
                "update_mask": {"paths": ["rotation_period", "next_rotation_time"]},
            }
        )
    with pytest.raises(exceptions.InvalidArgument, match="not compatible with purpose ASYMMETRIC_SIGN"):
        kms.update_crypto_key(
            request={
                "crypto_key": {"name": key.name, "version_template": {"algorithm": "HMAC_SHA256"}},
                "update_mask": {"paths": ["version_template.algorithm"]},
            }
        )
    # Changing the template to another signing algorithm is allowed; new versions use it.
    kms.update_crypto_key(
        request={
            "crypto_key": {"name": key.name, "version_template": {"algorithm": "EC_SIGN_P384_SHA384"}},
            "update_mask": {"paths": ["version_template.algorithm"]},
        }
    )
    v2 = kms.create_crypto_key_version(parent=key.name, crypto_key_version={})
    assert public_key(kms, v2.name).algorithm == Algorithm.EC_SIGN_P384_SHA384
    assert public_key(kms, first_version(key)).algorithm == Algorithm.EC_SIGN_P256_SHA256


# ----------------------------------------------------------------------------- AsymmetricSign


@pytest.mark.parametrize("algorithm", SIGN_ALGORITHMS)
def test_sign_and_verify_with_cryptography(kms: Client, ring: str, algorithm: str) -> None:
    key = create(kms, ring, "ASYMMETRIC_SIGN", algorithm)
    name = first_version(key)
    served = public_key(kms, name, key_format(algorithm))
    assert (served.name, served.algorithm) == (name, Algorithm[algorithm])
    assert served.protection_level == kms_v1.ProtectionLevel.SOFTWARE

    message = b"model-artifact sha256 manifest"
    if algorithm.endswith("EXTERNAL_MU"):
        level = algorithm.split("_")[4]
        pk = _ML_DSA[level].from_public_bytes(served.public_key.data)
        mu = mldsa.MLDSAMuHasher(pk, None)  # type: ignore[attr-defined]
        mu.update(message)
        to_sign = mu.finalize()
        request: dict[str, Any] = {"digest": {"external_mu": to_sign}, "digest_crc32c": crc32c(to_sign)}
        signed_over = to_sign
    elif algorithm.startswith("RSA_SIGN_RAW_PKCS1"):
        # Raw PKCS#1: the caller sends the DigestInfo-encoded digest as data.
        prefix = bytes.fromhex("3031300d060960864801650304020105000420")
        data = prefix + hashlib.sha256(message).digest()
        request = {"data": data, "data_crc32c": crc32c(data)}
        signed_over = data
    else:
        request = {"data": message, "data_crc32c": crc32c(message)}
        signed_over = message
    signed = kms.asymmetric_sign(request={"name": name, **request})
    assert signed.name == name
    assert signed.signature_crc32c == crc32c(signed.signature)
    assert signed.verified_data_crc32c is ("data" in request)
    assert signed.verified_digest_crc32c is ("digest" in request)
    assert signed.protection_level == kms_v1.ProtectionLevel.SOFTWARE
    verify(algorithm, served, signed.signature, signed_over)

    # Hashed algorithms also sign a digest the caller computed.
    if algorithm.startswith(("EC_SIGN_P", "EC_SIGN_SECP", "RSA_SIGN_PSS", "RSA_SIGN_PKCS1")):
        hash_name = algorithm.rsplit("_", 1)[1].lower()
        digest = hashlib.new(hash_name, message).digest()
        by_digest = kms.asymmetric_sign(
            request={"name": name, "digest": {hash_name: digest}, "digest_crc32c": crc32c(digest)}
        )
        assert by_digest.verified_digest_crc32c and not by_digest.verified_data_crc32c
        verify(algorithm, served, by_digest.signature, message)


def test_sign_errors(kms: Client, ring: str) -> None:
    p256 = first_version(create(kms, ring, "ASYMMETRIC_SIGN", "EC_SIGN_P256_SHA256"))
    ed = first_version(create(kms, ring, "ASYMMETRIC_SIGN", "EC_SIGN_ED25519"))
    mu = first_version(create(kms, ring, "ASYMMETRIC_SIGN", "PQ_SIGN_ML_DSA_44_EXTERNAL_MU"))
    digest = hashlib.sha256(b"x").digest()
    with pytest.raises(exceptions.InvalidArgument, match="must be a sha256 digest"):
        kms.asymmetric_sign(request={"name": p256, "digest": {"sha384": hashlib.sha384(b"x").digest()}})
    with pytest.raises(exceptions.InvalidArgument, match="must be 32 bytes"):
        kms.asymmetric_sign(request={"name": p256, "digest": {"sha256": b"short"}})
    with pytest.raises(exceptions.InvalidArgument, match="Only one of digest and data"):
        kms.asymmetric_sign(request={"name": p256, "digest": {"sha256": digest}, "data": b"x"})
    with pytest.raises(exceptions.InvalidArgument, match="digest_crc32c did not match"):
        kms.asymmetric_sign(
            request={"name": p256, "digest": {"sha256": digest}, "digest_crc32c": crc32c(digest) ^ 1}
        )
    with pytest.raises(exceptions.InvalidArgument, match="data_crc32c did not match"):
        kms.asymmetric_sign(request={"name": p256, "data": b"x", "data_crc32c": crc32c(b"y")})
    with pytest.raises(exceptions.InvalidArgument, match="at most 65536 bytes"):
        kms.asymmetric_sign(request={"name": p256, "data": b"x" * (64 * 1024 + 1)})
    with pytest.raises(exceptions.InvalidArgument, match="a digest is not accepted"):
        kms.asymmetric_sign(request={"name": ed, "digest": {"sha256": digest}})
    with pytest.raises(exceptions.InvalidArgument, match="external_mu, not data"):
        kms.asymmetric_sign(request={"name": mu, "data": b"x"})
    with pytest.raises(exceptions.InvalidArgument, match="must be 64 bytes"):
        kms.asymmetric_sign(request={"name": mu, "digest": {"external_mu": b"\x00" * 32}})
    with pytest.raises(exceptions.NotFound):
        kms.asymmetric_sign(request={"name": p256[:-1] + "9", "data": b"x"})
    with pytest.raises(exceptions.InvalidArgument, match="Malformed"):
        kms.asymmetric_sign(request={"name": p256.rsplit("/cryptoKeyVersions", 1)[0], "data": b"x"})
    # Disabled, then destroyed: FAILED_PRECONDITION with the state.
    kms.update_crypto_key_version(
        request={
            "crypto_key_version": {"name": p256, "state": State.DISABLED},
            "update_mask": {"paths": ["state"]},
        }
    )
    with pytest.raises(exceptions.FailedPrecondition, match="current state is: DISABLED"):
        kms.asymmetric_sign(request={"name": p256, "data": b"x"})
    with pytest.raises(exceptions.FailedPrecondition, match="current state is: DISABLED"):
        public_key(kms, p256)
    kms.destroy_crypto_key_version(name=p256)
    with pytest.raises(exceptions.FailedPrecondition, match="DESTROY_SCHEDULED"):
        kms.asymmetric_sign(request={"name": p256, "data": b"x"})


def test_wrong_purpose_for_the_rpc(kms: Client, ring: str, key: kms_v1.CryptoKey) -> None:
    signing = first_version(create(kms, ring, "ASYMMETRIC_SIGN", "EC_SIGN_P256_SHA256"))
    decrypting = first_version(create(kms, ring, "ASYMMETRIC_DECRYPT", "RSA_DECRYPT_OAEP_2048_SHA256"))
    mac = first_version(create(kms, ring, "MAC", "HMAC_SHA256"))
    symmetric = key.primary.name
    with pytest.raises(exceptions.FailedPrecondition, match="AsymmetricSign is not supported"):
        kms.asymmetric_sign(request={"name": decrypting, "data": b"x"})
    with pytest.raises(exceptions.FailedPrecondition, match="AsymmetricDecrypt is not supported"):
        kms.asymmetric_decrypt(request={"name": signing, "ciphertext": b"x" * 256})
    with pytest.raises(exceptions.FailedPrecondition, match="GetPublicKey is not supported"):
        public_key(kms, symmetric)
    with pytest.raises(exceptions.FailedPrecondition, match="GetPublicKey is not supported"):
        public_key(kms, mac)
    with pytest.raises(exceptions.FailedPrecondition, match="MacSign is not supported"):
        kms.mac_sign(request={"name": signing, "data": b"x"})
    with pytest.raises(exceptions.FailedPrecondition, match="Decapsulate is not supported"):
        kms.decapsulate(request={"name": decrypting, "ciphertext": b"x"})
    with pytest.raises(exceptions.FailedPrecondition, match="Encrypt is not supported"):
        kms.encrypt(request={"name": signing.rsplit("/cryptoKeyVersions", 1)[0], "plaintext": b"x"})
    with pytest.raises(exceptions.FailedPrecondition, match="Encrypt is not supported"):
        kms.encrypt(request={"name": signing, "plaintext": b"x"})
    with pytest.raises(exceptions.FailedPrecondition, match="Decrypt is not supported"):
        kms.decrypt(request={"name": decrypting.rsplit("/cryptoKeyVersions", 1)[0], "ciphertext": b"x" * 64})


# ----------------------------------------------------------------------------- GetPublicKey


def test_public_key_formats(kms: Client, ring: str) -> None:
    name = first_version(create(kms, ring, "ASYMMETRIC_DECRYPT", "RSA_DECRYPT_OAEP_2048_SHA256"))
    default = public_key(kms, name)
    assert default.pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert default.pem_crc32c == crc32c(default.pem.encode())
    pem = public_key(kms, name, KeyFormat.PEM)
    assert pem.public_key_format == KeyFormat.PEM
    assert pem.public_key.data == default.pem.encode()
    assert pem.public_key.crc32c_checksum == crc32c(pem.public_key.data)
    der = public_key(kms, name, KeyFormat.DER)
    assert der.public_key_format == KeyFormat.DER
    assert der.public_key.crc32c_checksum == crc32c(der.public_key.data)
    assert not der.pem
    from_pem = serialization.load_pem_public_key(default.pem.encode())
    assert serialization.load_der_public_key(der.public_key.data) == from_pem
    with pytest.raises(exceptions.InvalidArgument, match="NIST_PQC is not supported"):
        public_key(kms, name, KeyFormat.NIST_PQC)
    with pytest.raises(exceptions.InvalidArgument, match="XWING_RAW_BYTES is not supported"):
        public_key(kms, name, KeyFormat.XWING_RAW_BYTES)

    pq = first_version(create(kms, ring, "ASYMMETRIC_SIGN", "PQ_SIGN_ML_DSA_65"))
    with pytest.raises(exceptions.InvalidArgument, match="public_key_format is required"):
        public_key(kms, pq)
    for key_format in (KeyFormat.PEM, KeyFormat.DER):
        with pytest.raises(exceptions.InvalidArgument, match="is not supported for PQ_SIGN_ML_DSA_65"):
            public_key(kms, pq, key_format)
    raw = public_key(kms, pq, KeyFormat.NIST_PQC)
    assert len(raw.public_key.data) == 1952  # FIPS 204 ML-DSA-65 public key
    assert not raw.pem


# ----------------------------------------------------------------------------- AsymmetricDecrypt


@pytest.mark.parametrize("algorithm", DECRYPT_ALGORITHMS)
def test_asymmetric_decrypt(kms: Client, ring: str, algorithm: str) -> None:
    name = first_version(create(kms, ring, "ASYMMETRIC_DECRYPT", algorithm))
    served = serialization.load_pem_public_key(public_key(kms, name).pem.encode())
    hash_name = algorithm.rsplit("_", 1)[1]
    digest = {"SHA1": hashes.SHA1, "SHA256": hashes.SHA256, "SHA512": hashes.SHA512}[hash_name]
    sealed = served.encrypt(  # type: ignore[union-attr]
        b"dataset key", padding.OAEP(mgf=padding.MGF1(digest()), algorithm=digest(), label=None)
    )
    opened = kms.asymmetric_decrypt(
        request={"name": name, "ciphertext": sealed, "ciphertext_crc32c": crc32c(sealed)}
    )
    assert opened.plaintext == b"dataset key"
    assert opened.plaintext_crc32c == crc32c(b"dataset key")
    assert opened.verified_ciphertext_crc32c is True
    assert opened.protection_level == kms_v1.ProtectionLevel.SOFTWARE
    unchecked = kms.asymmetric_decrypt(request={"name": name, "ciphertext": sealed})
    assert unchecked.verified_ciphertext_crc32c is False

    tampered = bytes([sealed[0] ^ 1]) + sealed[1:]
    with pytest.raises(exceptions.InvalidArgument, match="Decryption failed"):
        kms.asymmetric_decrypt(request={"name": name, "ciphertext": tampered})
    with pytest.raises(exceptions.InvalidArgument, match="ciphertext_crc32c did not match"):
        kms.asymmetric_decrypt(
            request={"name": name, "ciphertext": sealed, "ciphertext_crc32c": crc32c(tampered)}
        )


# ----------------------------------------------------------------------------- Decapsulate


@pytest.mark.parametrize("algorithm", ["ML_KEM_768", "ML_KEM_1024"])
def test_decapsulate(kms: Client, ring: str, algorithm: str) -> None:
    key = create(kms, ring, "KEY_ENCAPSULATION", algorithm)
    assert key.purpose == Purpose.KEY_ENCAPSULATION and not key.primary.name
    name = first_version(key)
    served = public_key(kms, name, KeyFormat.NIST_PQC)
    assert served.public_key.crc32c_checksum == crc32c(served.public_key.data)
    encapsulator = _ML_KEM[algorithm.rsplit("_", 1)[1]].from_public_bytes(served.public_key.data)
    secret, ciphertext = encapsulator.encapsulate()
    opened = kms.decapsulate(
        request={"name": name, "ciphertext": ciphertext, "ciphertext_crc32c": crc32c(ciphertext)}
    )
    assert opened.shared_secret == secret
    assert opened.shared_secret_crc32c == crc32c(secret)
    assert opened.verified_ciphertext_crc32c is True
    assert opened.name == name

    # ML-KEM rejects implicitly: a tampered ciphertext yields a different secret, not an error.
    tampered = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    assert kms.decapsulate(request={"name": name, "ciphertext": tampered}).shared_secret != secret
    with pytest.raises(exceptions.InvalidArgument, match="Decapsulation failed"):
        kms.decapsulate(request={"name": name, "ciphertext": ciphertext[:-1]})
    with pytest.raises(exceptions.InvalidArgument, match="ciphertext_crc32c did not match"):
        kms.decapsulate(request={"name": name, "ciphertext": ciphertext, "ciphertext_crc32c": 1})


# ----------------------------------------------------------------------------- MAC


@pytest.mark.parametrize("algorithm", MAC_ALGORITHMS)
def test_mac_sign_and_verify(kms: Client, ring: str, algorithm: str) -> None:
    key = create(kms, ring, "MAC", algorithm)
    assert not key.primary.name
    name = first_version(key)
    assert kms.get_crypto_key_version(name=name).state == State.ENABLED
    data = b"dataset shard 0007"
    tagged = kms.mac_sign(request={"name": name, "data": data, "data_crc32c": crc32c(data)})
    assert tagged.name == name and tagged.verified_data_crc32c is True
    assert tagged.mac_crc32c == crc32c(tagged.mac)
    assert len(tagged.mac) == hashlib.new(algorithm.split("_")[1].lower()).digest_size
    assert kms.mac_sign(request={"name": name, "data": data}).mac == tagged.mac  # deterministic

    ok = kms.mac_verify(
        request={
            "name": name,
            "data": data,
            "data_crc32c": crc32c(data),
            "mac": tagged.mac,
            "mac_crc32c": crc32c(tagged.mac),
        }
    )
    assert (ok.success, ok.verified_success_integrity) == (True, True)
    assert (ok.verified_data_crc32c, ok.verified_mac_crc32c) == (True, True)
    bad = kms.mac_verify(request={"name": name, "data": data + b"!", "mac": tagged.mac})
    assert (bad.success, bad.verified_success_integrity) == (False, False)
    assert (bad.verified_data_crc32c, bad.verified_mac_crc32c) == (False, False)
    assert not kms.mac_verify(request={"name": name, "data": data, "mac": tagged.mac[:-1]}).success
    with pytest.raises(exceptions.InvalidArgument, match="mac_crc32c did not match"):
        kms.mac_verify(request={"name": name, "data": data, "mac": tagged.mac, "mac_crc32c": 7})
    with pytest.raises(exceptions.InvalidArgument, match="at most 65536 bytes"):
        kms.mac_sign(request={"name": name, "data": b"x" * (64 * 1024 + 1)})
    # Another version of the key has another secret.
    v2 = kms.create_crypto_key_version(parent=key.name, crypto_key_version={})
    assert kms.mac_sign(request={"name": v2.name, "data": data}).mac != tagged.mac
    assert not hmac.compare_digest(kms.mac_sign(request={"name": v2.name, "data": data}).mac, tagged.mac)


# ----------------------------------------------------------------------------- generation, restart


def test_pending_generation_until_the_delay_passes(
    launch: Callable[..., Any], clients: Callable[..., Client], new_ring: Callable[..., str]
) -> None:
    running = launch("--generation-delay", "3600")
    kms = clients(running)
    ring = new_ring(kms)
    name = first_version(create(kms, ring, "ASYMMETRIC_SIGN", "EC_SIGN_P256_SHA256"))
    version = kms.get_crypto_key_version(name=name)
    assert version.state == State.PENDING_GENERATION and not version.generate_time
    with pytest.raises(exceptions.FailedPrecondition, match="current state is: PENDING_GENERATION"):
        public_key(kms, name)
    with pytest.raises(exceptions.FailedPrecondition, match="PENDING_GENERATION"):
        kms.asymmetric_sign(request={"name": name, "data": b"x"})
    running.admin.advance(3600)
    version = kms.get_crypto_key_version(name=name)
    assert version.state == State.ENABLED
    assert version.generate_time.timestamp() >= version.create_time.timestamp() + 3600  # type: ignore[attr-defined]
    signed = kms.asymmetric_sign(request={"name": name, "data": b"x"})
    verify("EC_SIGN_P256_SHA256", public_key(kms, name), signed.signature, b"x")


def test_private_keys_persist_across_restart(
    launch: Callable[..., Any], clients: Callable[..., Client], new_ring: Callable[..., str], tmp_path: Any
) -> None:
    data_dir = tmp_path / "kms"
    first = launch("--data-dir", str(data_dir))
    kms = clients(first)
    ring = new_ring(kms)
    names = {
        algorithm: first_version(create(kms, ring, purpose, algorithm))
        for purpose, algorithm in (
            ("ASYMMETRIC_SIGN", "EC_SIGN_P256_SHA256"),
            ("ASYMMETRIC_SIGN", "PQ_SIGN_ML_DSA_44"),
            ("KEY_ENCAPSULATION", "ML_KEM_768"),
            ("MAC", "HMAC_SHA256"),
        )
    }
    before = {a: served_key(kms, n, a) for a, n in names.items() if a != "HMAC_SHA256"}
    tag = kms.mac_sign(request={"name": names["HMAC_SHA256"], "data": b"d"}).mac
    assert first.stop() == 0
    state = (data_dir / "state.json").read_text()
    assert before["EC_SIGN_P256_SHA256"].decode() not in state  # the private half only, base64

    kms = clients(launch("--data-dir", str(data_dir)))
    for algorithm, name in names.items():
        if algorithm == "HMAC_SHA256":
            continue
        assert served_key(kms, name, algorithm) == before[algorithm]
    signed = kms.asymmetric_sign(request={"name": names["PQ_SIGN_ML_DSA_44"], "data": b"m"})
    mldsa.MLDSA44PublicKey.from_public_bytes(before["PQ_SIGN_ML_DSA_44"]).verify(signed.signature, b"m")
    secret, ct = mlkem.MLKEM768PublicKey.from_public_bytes(before["ML_KEM_768"]).encapsulate()
    assert kms.decapsulate(request={"name": names["ML_KEM_768"], "ciphertext": ct}).shared_secret == secret
    assert kms.mac_verify(request={"name": names["HMAC_SHA256"], "data": b"d", "mac": tag}).success


def test_plain_client_pointed_at_the_emulator(emulator: Any, location: str) -> None:
    """Client code written for Cloud KMS, with only the transport pointed at the emulator."""
    transport = KeyManagementServiceGrpcTransport(channel=grpc.insecure_channel(emulator.endpoint))
    client = kms_v1.KeyManagementServiceClient(transport=transport)
    try:
        ring = client.create_key_ring(
            request={"parent": location, "key_ring_id": f"plain-{uuid.uuid4().hex[:8]}", "key_ring": {}}
        )
        key = client.create_crypto_key(
            request={
                "parent": ring.name,
                "crypto_key_id": "signer",
                "crypto_key": {
                    "purpose": kms_v1.CryptoKey.CryptoKeyPurpose.ASYMMETRIC_SIGN,
                    "version_template": {"algorithm": Algorithm.EC_SIGN_P256_SHA256},
                },
            }
        )
        version = client.crypto_key_version_path(*client.parse_crypto_key_path(key.name).values(), "1")
        digest = hashlib.sha256(b"release.tar.gz").digest()
        signed = client.asymmetric_sign(request={"name": version, "digest": {"sha256": digest}})
        pem = client.get_public_key(request={"name": version}).pem
        key_obj = serialization.load_pem_public_key(pem.encode())
        key_obj.verify(signed.signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))  # type: ignore[call-arg, union-attr]
    finally:
        transport.close()


# ----------------------------------------------------------------------------- IAM


def _member() -> str:
    return f"serviceAccount:sa-{uuid.uuid4().hex[:8]}@proj.iam.gserviceaccount.com"


def _grant(client: Client, resource: str, role: str, member: str) -> None:
    policy = client.get_iam_policy(request={"resource": resource})
    policy.bindings.add(role=role, members=[member])
    client.set_iam_policy(request={"resource": resource, "policy": policy})


def test_iam_roles_for_the_new_rpcs(
    iam_emulator: Any, owner: str, clients: Callable[..., Client], new_ring: Callable[..., str]
) -> None:
    admin = clients(iam_emulator, owner)
    ring = new_ring(admin)
    signing = create(admin, ring, "ASYMMETRIC_SIGN", "EC_SIGN_P256_SHA256")
    decrypting = create(admin, ring, "ASYMMETRIC_DECRYPT", "RSA_DECRYPT_OAEP_2048_SHA256")
    kem = create(admin, ring, "KEY_ENCAPSULATION", "ML_KEM_768")
    mac = create(admin, ring, "MAC", "HMAC_SHA256")
    sign_v, decrypt_v, kem_v, mac_v = (first_version(k) for k in (signing, decrypting, kem, mac))
    # The owner can do all of it.
    pem = public_key(admin, sign_v).pem
    tag = admin.mac_sign(request={"name": mac_v, "data": b"d"}).mac

    roles = {
        "signerVerifier": "roles/cloudkms.signerVerifier",
        "signer": "roles/cloudkms.signer",
        "publicKeyViewer": "roles/cloudkms.publicKeyViewer",
        "decrypter": "roles/cloudkms.cryptoKeyDecrypter",
        "decapsulator": "roles/cloudkms.decapsulator",
        "operator": "roles/cloudkms.cryptoOperator",
        "viewer": "roles/cloudkms.viewer",
    }
    who = {label: _member() for label in roles}
    for label, role in roles.items():
        _grant(admin, ring, role, who[label])  # on the key ring: inherited by every key
    ciphertext = serialization.load_pem_public_key(public_key(admin, decrypt_v).pem.encode()).encrypt(  # type: ignore[union-attr]
        b"s", padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    )
    secret, encapsulated = mlkem.MLKEM768PublicKey.from_public_bytes(
        public_key(admin, kem_v, KeyFormat.NIST_PQC).public_key.data
    ).encapsulate()

    calls: dict[str, Callable[[Client], Any]] = {
        "sign": lambda c: c.asymmetric_sign(request={"name": sign_v, "data": b"x"}),
        "public_key": lambda c: public_key(c, sign_v),
        "decrypt": lambda c: c.asymmetric_decrypt(request={"name": decrypt_v, "ciphertext": ciphertext}),
        "decapsulate": lambda c: c.decapsulate(request={"name": kem_v, "ciphertext": encapsulated}),
        "mac_sign": lambda c: c.mac_sign(request={"name": mac_v, "data": b"d"}),
        "mac_verify": lambda c: c.mac_verify(request={"name": mac_v, "data": b"d", "mac": tag}),
    }
    allowed = {
        "signerVerifier": {"sign", "public_key", "mac_sign", "mac_verify"},
        "signer": {"sign", "mac_sign"},
        "publicKeyViewer": {"public_key"},
        "decrypter": {"decrypt"},
        "decapsulator": {"decapsulate", "public_key"},
        "operator": set(calls),
        "viewer": set(),
    }
    for label in roles:
        client = clients(iam_emulator, who[label])
        for call, run in calls.items():
            if call in allowed[label]:
                run(client)
            else:
                with pytest.raises(exceptions.PermissionDenied):
                    run(client)
    operator = clients(iam_emulator, who["operator"])
    assert public_key(operator, sign_v).pem == pem
    opened = operator.asymmetric_decrypt(request={"name": decrypt_v, "ciphertext": ciphertext})
    assert opened.plaintext == b"s"
    assert operator.decapsulate(request={"name": kem_v, "ciphertext": encapsulated}).shared_secret == secret
    asked = [
        "cloudkms.cryptoKeyVersions.useToSign",
        "cloudkms.cryptoKeyVersions.useToVerify",
        "cloudkms.cryptoKeyVersions.viewPublicKey",
        "cloudkms.cryptoKeyVersions.useToDecapsulate",
    ]
    held = clients(iam_emulator, who["signerVerifier"]).test_iam_permissions(
        request={"resource": signing.name, "permissions": asked}
    )
    assert list(held.permissions) == asked[:3]
    # Without an identity nothing works, and a stranger cannot probe for names.
    with pytest.raises(exceptions.PermissionDenied):
        public_key(clients(iam_emulator, None), sign_v)
    with pytest.raises(exceptions.PermissionDenied):
        public_key(clients(iam_emulator, _member()), sign_v[:-1] + "7")
