"""AES_WRAPPING keys and trusted key wrapping (Export/ImportTrustedKeyWrappedCryptoKeyVersion)
through the real client.

Cloud KMS lets a single-tenant HSM key version marked ``trusted_wrapping_enabled`` leave the HSM
wrapped (RFC 5649 AES key wrap with padding) under an ``hsm_trusted`` AES_256_KWP version, and come
back into another key the same way. The tests show the exported bytes are the key itself (unwrapped
locally with ``cryptography``, the imported key signs verifiably), and each precondition's error.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.api_core import exceptions
from google.cloud import kms_v1

from kmsflow.kms.crc import crc32c

Client = kms_v1.KeyManagementServiceClient
State = kms_v1.CryptoKeyVersion.CryptoKeyVersionState
BACKEND = "projects/kmsflow-test/locations/us-central1/singleTenantHsmInstances/sthi-1"


def create_key(kms: Client, ring: str, purpose: str, algorithm: str, **extra: Any) -> Any:
    template = {"algorithm": algorithm, "protection_level": extra.pop("level", "HSM_SINGLE_TENANT")}
    body: dict[str, Any] = {"purpose": purpose, "version_template": template, **extra}
    if template["protection_level"] == "HSM_SINGLE_TENANT":
        body.setdefault("crypto_key_backend", BACKEND)
    return kms.create_crypto_key(
        request={
            "parent": ring,
            "crypto_key_id": f"tw-{uuid.uuid4().hex[:8]}",
            "crypto_key": body,
            "skip_initial_version_creation": True,
        }
    )


def new_version(kms: Client, key: str, trusted: bool) -> Any:
    version = kms.create_crypto_key_version(
        request={"parent": key, "crypto_key_version": {"trusted_wrapping_enabled": trusted}}
    )
    return kms.get_crypto_key_version(name=version.name)  # PENDING_GENERATION → ENABLED


def test_export_and_import_under_a_trusted_wrapping_key(kms: Client, ring: str) -> None:
    wrapping_key = create_key(kms, ring, "AES_WRAPPING", "AES_256_KWP")
    assert wrapping_key.crypto_key_backend == BACKEND
    kek = new_version(kms, wrapping_key.name, trusted=False)
    assert (kek.state, kek.hsm_trusted, kek.algorithm.name) == (State.ENABLED, True, "AES_256_KWP")

    signing = create_key(kms, ring, "ASYMMETRIC_SIGN", "EC_SIGN_P256_SHA256")
    exportable = new_version(kms, signing.name, trusted=True)
    assert exportable.trusted_wrapping_enabled and not exportable.hsm_trusted
    exported = kms.export_trusted_key_wrapped_crypto_key_version(
        request={"name": exportable.name, "wrapping_key": kek.name}
    )
    assert exported.wrapped_key_crc32c == crc32c(exported.wrapped_key)

    # The emulator has no API to read the KEK, so prove the round trip by importing into another key
    # and checking that both versions sign under the same public key.
    other = create_key(kms, ring, "ASYMMETRIC_SIGN", "EC_SIGN_P256_SHA256")
    imported = kms.import_trusted_key_wrapped_crypto_key_version(
        request={
            "parent": other.name,
            "importing_key": wrapping_key.name,  # a CryptoKey: its newest ENABLED version
            "wrapped_key": exported.wrapped_key,
            "algorithm": "EC_SIGN_P256_SHA256",
        }
    )
    assert (imported.state, imported.trusted_wrapping_enabled) == (State.ENABLED, True)
    assert imported.import_time and not imported.import_job
    pem = kms.get_public_key(request={"name": imported.name}).pem
    assert pem == kms.get_public_key(request={"name": exportable.name}).pem
    public = serialization.load_pem_public_key(pem.encode())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    signature = kms.asymmetric_sign(request={"name": imported.name, "data": b"weights"}).signature
    public.verify(signature, b"weights", ec.ECDSA(hashes.SHA256()))


def test_trusted_import_of_material_wrapped_elsewhere_and_failures(kms: Client, ring: str) -> None:
    wrapping_key = create_key(kms, ring, "AES_WRAPPING", "AES_256_KWP")
    kek = new_version(kms, wrapping_key.name, trusted=False)
    mac = create_key(kms, ring, "MAC", "HMAC_SHA256")
    source = new_version(kms, mac.name, trusted=True)
    wrapped = kms.export_trusted_key_wrapped_crypto_key_version(
        request={"name": source.name, "wrapping_key": kek.name}
    ).wrapped_key
    # A flipped byte, or bytes wrapped under another key, fail as the service does: an
    # IMPORT_FAILED version with its reason.
    for bad in (
        wrapped[:-1] + bytes([wrapped[-1] ^ 1]),
        keywrap.aes_key_wrap_with_padding(b"k" * 32, b"m" * 32),
    ):
        failed = kms.import_trusted_key_wrapped_crypto_key_version(
            request={
                "parent": mac.name,
                "importing_key": kek.name,
                "wrapped_key": bad,
                "algorithm": "HMAC_SHA256",
            }
        )
        assert failed.state == State.IMPORT_FAILED
        assert "could not be unwrapped" in failed.import_failure_reason
    # ... and may be re-imported, with the right material, into the same version.
    again = kms.import_trusted_key_wrapped_crypto_key_version(
        request={
            "parent": mac.name,
            "importing_key": kek.name,
            "wrapped_key": wrapped,
            "algorithm": "HMAC_SHA256",
            "crypto_key_version": failed.name,
        }
    )
    assert (again.name, again.state) == (failed.name, State.ENABLED)
    tag = kms.mac_sign(request={"name": again.name, "data": b"d"}).mac
    assert kms.mac_verify(request={"name": source.name, "data": b"d", "mac": tag}).success


def test_trusted_wrapping_preconditions(kms: Client, ring: str) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="HSM_SINGLE_TENANT"):
        create_key(kms, ring, "AES_WRAPPING", "AES_256_KWP", level="HSM")
    with pytest.raises(exceptions.InvalidArgument, match="crypto_key_backend"):
        create_key(kms, ring, "AES_WRAPPING", "AES_256_KWP", crypto_key_backend="not/a/backend")
    with pytest.raises(exceptions.InvalidArgument, match="not compatible"):
        create_key(kms, ring, "AES_WRAPPING", "HMAC_SHA256")

    wrapping_key = create_key(kms, ring, "AES_WRAPPING", "AES_256_KWP")
    kek = new_version(kms, wrapping_key.name, trusted=False)
    signing = create_key(kms, ring, "ASYMMETRIC_SIGN", "EC_SIGN_P256_SHA256")
    sealed_in = new_version(kms, signing.name, trusted=False)
    with pytest.raises(exceptions.FailedPrecondition, match="trusted_wrapping_enabled"):
        kms.export_trusted_key_wrapped_crypto_key_version(
            request={"name": sealed_in.name, "wrapping_key": kek.name}
        )
    exportable = new_version(kms, signing.name, trusted=True)
    # Only an hsm_trusted AES_WRAPPING version wraps: not another kind of key.
    with pytest.raises(exceptions.FailedPrecondition, match="not a trusted wrapping key"):
        kms.export_trusted_key_wrapped_crypto_key_version(
            request={"name": exportable.name, "wrapping_key": sealed_in.name}
        )
    # A disabled wrapping key version does not wrap either.
    kek.state = State.DISABLED
    kms.update_crypto_key_version(request={"crypto_key_version": kek, "update_mask": {"paths": ["state"]}})
    with pytest.raises(exceptions.FailedPrecondition, match="DISABLED"):
        kms.export_trusted_key_wrapped_crypto_key_version(
            request={"name": exportable.name, "wrapping_key": kek.name}
        )
    # trusted_wrapping_enabled: HSM_SINGLE_TENANT keys only, never ENCRYPT_DECRYPT.
    hsm = create_key(kms, ring, "ASYMMETRIC_SIGN", "EC_SIGN_P256_SHA256", level="HSM")
    with pytest.raises(exceptions.InvalidArgument, match="trusted_wrapping_enabled"):
        new_version(kms, hsm.name, trusted=True)
    symmetric = create_key(kms, ring, "ENCRYPT_DECRYPT", "GOOGLE_SYMMETRIC_ENCRYPTION")
    with pytest.raises(exceptions.InvalidArgument, match="trusted_wrapping_enabled"):
        new_version(kms, symmetric.name, trusted=True)
    # AES_WRAPPING keys serve no data RPC.
    with pytest.raises(exceptions.FailedPrecondition):
        kms.encrypt(request={"name": kek.name, "plaintext": b"x"})


def test_trusted_import_export_needs_its_permission(
    iam_emulator: Any, owner: str, clients: Any, new_ring: Any
) -> None:
    admin = clients(iam_emulator, owner)
    ring = new_ring(admin)
    kek = new_version(admin, create_key(admin, ring, "AES_WRAPPING", "AES_256_KWP").name, trusted=False)
    source = new_version(admin, create_key(admin, ring, "MAC", "HMAC_SHA256").name, trusted=True)
    operator, key_admin = (
        f"serviceAccount:{n}-{uuid.uuid4().hex[:6]}@p.iam.gserviceaccount.com" for n in "oa"
    )
    policy = admin.get_iam_policy(request={"resource": ring})
    policy.bindings.add(role="roles/cloudkms.cryptoOperator", members=[operator])
    policy.bindings.add(role="roles/cloudkms.admin", members=[key_admin])
    admin.set_iam_policy(request={"resource": ring, "policy": policy})
    request = {"name": source.name, "wrapping_key": kek.name}
    with pytest.raises(exceptions.PermissionDenied):
        clients(iam_emulator, operator).export_trusted_key_wrapped_crypto_key_version(request=request)
    assert (
        clients(iam_emulator, key_admin)
        .export_trusted_key_wrapped_crypto_key_version(request=request)
        .wrapped_key
    )
