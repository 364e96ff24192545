"""KEM_XWING: the emulator's X-Wing (draft-connolly-cfrg-xwing-kem-08) against the draft's test
vector, and through the real client with a client-side encapsulation composed from cryptography."""

from __future__ import annotations

import hashlib
import os
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from google.api_core import exceptions
from google.cloud import kms_v1

from kmsflow.kms import crc32c
from kmsflow_emulator import algorithms

KeyFormat = kms_v1.PublicKey.PublicKeyFormat
LABEL = bytes.fromhex("5c2e2f2f5e5c")

# draft-connolly-cfrg-xwing-kem-08, appendix C, first vector (as in OpenJDK's X-Wing conformance test).
VECTOR_SEED = bytes.fromhex("7f9c2ba4e88f827d616045507605853ed73b8093f6efbc88eb1a6eacfa66ef26")
VECTOR_PK_SHA256 = "2e816deebcd76c5c80d0cd2d174478871658e8e2ff42bc9d4a6e486372e856bb"
VECTOR_PK_HEAD = "e2236b35a8c24b39b10aa1323a96a919a2ced88400633a7b07131713fc14b2b5"
VECTOR_CT = bytes.fromhex(
    "b83aa828d4d62b9a83ceffe1d3d3bb1ef31264643c070c5798927e41fb07914a273f8f96e7826cd5375a283d7da88530"
    "4c5de0516a0f0654243dc5b97f8bfeb831f68251219aabdd723bc6512041acbaef8af44265524942b902e68ffd23221c"
    "da70b1b55d776a92d1143ea3a0c475f63ee6890157c7116dae3f62bf72f60acd2bb8cc31ce2ba0de364f52b8ed38c79d"
    "719715963a5dd3842d8e8b43ab704e4759b5327bf027c63c8fa857c4908d5a8a7b88ac7f2be394d93c3706ddd4e698cc"
    "6ce370101f4d0213254238b4a2e8821b6e414a1cf20f6c1244b699046f5a01caa0a1a55516300b40d2048c77cc73afba"
    "79afeea9d2c0118bdf2adb8870dc328c5516cc45b1a2058141039e2c90a110a9e16b318dfb53bd49a126d6b73f215787"
    "517b8917cc01cabd107d06859854ee8b4f9861c226d3764c87339ab16c3667d2f49384e55456dd40414b70a6af841585"
    "f4c90c68725d57704ee8ee7ce6e2f9be582dbee985e038ffc346ebfb4e22158b6c84374a9ab4a44e1f91de5aac5197f8"
    "9bc5e5442f51f9a5937b102ba3beaebf6e1c58380a4a5fedce4a4e5026f88f528f59ffd2db41752b3a3d90efabe46389"
    "9b7d40870c530c8841e8712b733668ed033adbfafb2d49d37a44d4064e5863eb0af0a08d47b3cc888373bc05f7a33b84"
    "1bc2587c57eb69554e8a3767b7506917b6b70498727f16eac1a36ec8d8cfaf751549f2277db277e8a55a9a5106b23a02"
    "06b4721fa9b3048552c5bd5b594d6e247f38c18c591aea7f56249c72ce7b117afcc3a8621582f9cf71787e183dee0936"
    "7976e98409ad9217a497df888042384d7707a6b78f5f7fb8409e3b535175373461b776002d799cbad62860be70573ecb"
    "e13b246e0da7e93a52168e0fb6a9756b895ef7f0147a0dc81bfa644b088a9228160c0f9acf1379a2941cd28c06ebc80e"
    "44e17aa2f8177010afd78a97ce0868d1629ebb294c5151812c583daeb88685220f4da9118112e07041fcc24d5564a99f"
    "dbde28869fe0722387d7a9a4d16e1cc8555917e09944aa5ebaaaec2cf62693afad42a3f518fce67d273cc6c9fb5472b3"
    "80e8573ec7de06a3ba2fd5f931d725b493026cb0acbd3fe62d00e4c790d965d7a03a3c0b4222ba8c2a9a16e2ac658f57"
    "2ae0e746eafc4feba023576f08942278a041fb82a70a595d5bacbf297ce2029898a71e5c3b0d1c6228b485b1ade509b3"
    "5fbca7eca97b2132e7cb6bc465375146b7dceac969308ac0c2ac89e7863eb8943015b24314cafb9c7c0e85fe543d5665"
    "8c213632599efabfc1ec49dd8c88547bb2cc40c9d38cbd3099b4547840560531d0188cd1e9c23a0ebee0a03d5577d66b"
    "1d2bcb4baaf21cc7fef1e03806ca96299df0dfbc56e1b2b43e4fc20c37f834c4af62127e7dae86c3c25a2f696ac8b589"
    "dec71d595bfbe94b5ed4bc07d800b330796fda89edb77be0294136139354eb8cd37591578f9c600dd9be8ec6219fdd50"
    "7adf3397ed4d68707b8d13b24ce4cd8fb22851bfe9d632407f31ed6f7cb1600de56f17576740ce2a32fc5145030145cf"
    "b97e63e0e41d354274a079d3e6fb2e15"
)
VECTOR_SS = bytes.fromhex("d2df0522128f09dd8e2c92b1e905c793d8f57a54c3da25861f10bf4ca613e384")


def test_xwing_matches_the_draft_test_vector() -> None:
    spec = algorithms.SPECS[kms_v1.CryptoKeyVersion.CryptoKeyVersionAlgorithm.KEM_XWING]
    public = algorithms.public_key(spec, VECTOR_SEED, KeyFormat.XWING_RAW_BYTES)
    assert len(public) == 1216 and public.hex().startswith(VECTOR_PK_HEAD)
    assert hashlib.sha256(public).hexdigest() == VECTOR_PK_SHA256
    assert algorithms.decapsulate(spec, VECTOR_SEED, VECTOR_CT) == VECTOR_SS


def encapsulate(public: bytes) -> tuple[bytes, bytes]:
    """X-Wing encapsulation on the client side: ML-KEM-768 to pk_M, ephemeral X25519 to pk_X."""
    pk_m, pk_x = public[:1184], public[1184:]
    ss_m, ct_m = mlkem.MLKEM768PublicKey.from_public_bytes(pk_m).encapsulate()
    ephemeral = x25519.X25519PrivateKey.generate()
    ct_x = ephemeral.public_key().public_bytes_raw()
    ss_x = ephemeral.exchange(x25519.X25519PublicKey.from_public_bytes(pk_x))
    return hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + LABEL).digest(), ct_m + ct_x


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

    secret, ciphertext = encapsulate(served.public_key.data)
    opened = kms.decapsulate(
        request={"name": name, "ciphertext": ciphertext, "ciphertext_crc32c": crc32c(ciphertext)}
    )
    assert opened.shared_secret == secret and opened.verified_ciphertext_crc32c
    with pytest.raises(exceptions.InvalidArgument, match="1120 bytes"):
        kms.decapsulate(request={"name": name, "ciphertext": ciphertext[:-1]})
    tampered = ciphertext[:1088] + os.urandom(32)
    assert kms.decapsulate(request={"name": name, "ciphertext": tampered}).shared_secret != secret
