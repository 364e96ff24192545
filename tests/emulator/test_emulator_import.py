"""Import jobs and ImportCryptoKeyVersion (BYOK) through the real client, with real wrapping.

Key material is wrapped on the client side with ``cryptography`` exactly as Cloud KMS documents it
(RSA-OAEP of an ephemeral AES-256 key, then AES-KWP of the key; or RSA-OAEP of the key itself), and
the imported key is shown to be the one we hold: signatures verify under our public key, MACs and
raw ciphertexts equal what we compute locally.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, hpke, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa, mlkem, padding, rsa, x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from google.api_core import exceptions
from google.cloud import kms_v1
from pqcrypto.sign import slh_dsa_sha2_128s

Client = kms_v1.KeyManagementServiceClient
State = kms_v1.CryptoKeyVersion.CryptoKeyVersionState
JobState = kms_v1.ImportJob.ImportJobState
DAY = 24 * 3600

_OAEP_HASH = {"SHA1": hashes.SHA1, "SHA256": hashes.SHA256}


def new_job(
    kms: Client, ring: str, method: str = "RSA_OAEP_3072_SHA256_AES_256", level: str = "SOFTWARE"
) -> Any:
    return kms.create_import_job(
        request={
            "parent": ring,
            "import_job_id": f"job-{uuid.uuid4().hex[:8]}",
            "import_job": {"import_method": method, "protection_level": level},
        }
    )


def import_key(kms: Client, ring: str, purpose: str, algorithm: str, level: str = "SOFTWARE") -> str:
    return kms.create_crypto_key(
        request={
            "parent": ring,
            "crypto_key_id": f"imp-{uuid.uuid4().hex[:8]}",
            "crypto_key": {
                "purpose": purpose,
                "import_only": True,
                "version_template": {"algorithm": algorithm, "protection_level": level},
            },
            "skip_initial_version_creation": True,
        }
    ).name


_HPKE_KEMS = {
    "HPKE_KEM_ML_KEM_768_HKDF_SHA256_AES_256_GCM": hpke.KEM.MLKEM768,
    "HPKE_KEM_ML_KEM_1024_HKDF_SHA256_AES_256_GCM": hpke.KEM.MLKEM1024,
    "HPKE_KEM_XWING_HKDF_SHA256_AES_256_GCM": hpke.KEM.MLKEM768_X25519,
}


def hpke_public_key(method: str, raw: bytes) -> Any:
    """The job's raw public key (FIPS 203 bytes, or X-Wing's pk_M || pk_X) as ``cryptography``'s."""
    if method.startswith("HPKE_KEM_XWING"):
        ml_kem, dh = raw[:1184], raw[1184:]
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(ml_kem), x25519.X25519PublicKey.from_public_bytes(dh)
        )
    if "1024" in method:
        return mlkem.MLKEM1024PublicKey.from_public_bytes(raw)
    return mlkem.MLKEM768PublicKey.from_public_bytes(raw)


def wrap(job: Any, key_bytes: bytes) -> bytes:
    """Wrap ``key_bytes`` for ``job`` as a Cloud KMS client does (CKM_RSA_AES_KEY_WRAP, RSA-OAEP, or
    HPKE base mode with the job's KEM, HKDF-SHA256, AES-256-GCM and an empty info)."""
    method = kms_v1.ImportJob.ImportMethod(job.import_method).name
    if method in _HPKE_KEMS:
        suite = hpke.Suite(_HPKE_KEMS[method], hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
        return suite.encrypt(key_bytes, hpke_public_key(method, job.public_key.data), info=b"")
    digest = _OAEP_HASH[method.split("_")[3]]
    public = serialization.load_pem_public_key(job.public_key.pem.encode())
    assert isinstance(public, rsa.RSAPublicKey)
    oaep = padding.OAEP(mgf=padding.MGF1(digest()), algorithm=digest(), label=None)
    if not method.endswith("AES_256"):
        return public.encrypt(key_bytes, oaep)
    ephemeral = os.urandom(32)
    return public.encrypt(ephemeral, oaep) + keywrap.aes_key_wrap_with_padding(ephemeral, key_bytes)


def do_import(kms: Client, key: str, job: Any, algorithm: str, key_bytes: bytes, **extra: Any) -> Any:
    return kms.import_crypto_key_version(
        request={
            "parent": key,
            "import_job": job.name,
            "algorithm": algorithm,
            "wrapped_key": wrap(job, key_bytes),
            **extra,
        }
    )


def pkcs8(private: Any) -> bytes:
    return bytes(
        private.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


@pytest.mark.parametrize(
    "method",
    [
        "RSA_OAEP_3072_SHA1_AES_256",
        "RSA_OAEP_4096_SHA1_AES_256",
        "RSA_OAEP_3072_SHA256_AES_256",
        "RSA_OAEP_4096_SHA256_AES_256",
        "RSA_OAEP_3072_SHA256",
        "RSA_OAEP_4096_SHA256",
    ],
)
def test_import_symmetric_key_with_every_method(kms: Client, ring: str, method: str) -> None:
    job = new_job(kms, ring, method)
    assert job.state == JobState.ACTIVE
    assert job.public_key.pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert job.expire_time.timestamp() - job.create_time.timestamp() == pytest.approx(3 * DAY)  # type: ignore[attr-defined]
    key = import_key(kms, ring, "ENCRYPT_DECRYPT", "GOOGLE_SYMMETRIC_ENCRYPTION")
    version = do_import(kms, key, job, "GOOGLE_SYMMETRIC_ENCRYPTION", os.urandom(32))
    assert version.state == State.ENABLED
    assert (version.import_job, version.reimport_eligible) == (job.name, True)
    assert version.import_time
    # The first imported version of a symmetric key becomes its primary; it encrypts and decrypts.
    assert kms.get_crypto_key(name=key).primary.name == version.name
    sealed = kms.encrypt(request={"name": key, "plaintext": b"byok"})
    assert kms.decrypt(request={"name": key, "ciphertext": sealed.ciphertext}).plaintext == b"byok"


@pytest.mark.parametrize("method", sorted(_HPKE_KEMS))
def test_import_with_post_quantum_hpke_methods(kms: Client, ring: str, method: str) -> None:
    job = new_job(kms, ring, method)
    assert job.state == JobState.ACTIVE
    # The default wrapping key format of a KEM job is its raw bytes (GetImportJobRequest's reference).
    expected = "XWING_RAW_BYTES" if "XWING" in method else "NIST_PQC"
    assert kms_v1.PublicKey.PublicKeyFormat(job.public_key_format).name == expected
    assert not job.public_key.pem and job.public_key.data
    fetched = kms.get_import_job(request={"name": job.name, "public_key_format": expected})
    assert fetched.public_key.data == job.public_key.data
    with pytest.raises(exceptions.InvalidArgument, match="supported: " + expected):
        kms.get_import_job(request={"name": job.name, "public_key_format": "PEM"})

    key = import_key(kms, ring, "ENCRYPT_DECRYPT", "GOOGLE_SYMMETRIC_ENCRYPTION")
    version = do_import(kms, key, job, "GOOGLE_SYMMETRIC_ENCRYPTION", os.urandom(32))
    assert version.state == State.ENABLED
    sealed = kms.encrypt(request={"name": key, "plaintext": b"pq byok"})
    assert kms.decrypt(request={"name": key, "ciphertext": sealed.ciphertext}).plaintext == b"pq byok"

    # A wrapping for another job's key, or a flipped byte, does not open: the version fails to import.
    other = new_job(kms, ring, method)
    tampered = bytearray(wrap(job, os.urandom(32)))
    tampered[-1] ^= 1
    for wrapped in (wrap(other, os.urandom(32)), bytes(tampered)):
        failed = kms.import_crypto_key_version(
            request={
                "parent": key,
                "import_job": job.name,
                "algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION",
                "wrapped_key": wrapped,
            }
        )
        assert failed.state == State.IMPORT_FAILED
        assert "could not be unwrapped" in failed.import_failure_reason


def test_import_post_quantum_keys_as_seeds(kms: Client, ring: str) -> None:
    """ML-DSA and ML-KEM keys are imported as their FIPS 204/203 seeds and are then the caller's."""
    job = new_job(kms, ring, "HPKE_KEM_ML_KEM_768_HKDF_SHA256_AES_256_GCM")

    signer = mldsa.MLDSA65PrivateKey.generate()
    signing = import_key(kms, ring, "ASYMMETRIC_SIGN", "PQ_SIGN_ML_DSA_65")
    version = do_import(kms, signing, job, "PQ_SIGN_ML_DSA_65", signer.private_bytes_raw())
    assert version.state == State.ENABLED
    public = kms.get_public_key(request={"name": version.name, "public_key_format": "NIST_PQC"})
    assert public.public_key.data == signer.public_key().public_bytes_raw()
    signature = kms.asymmetric_sign(request={"name": version.name, "data": b"model"}).signature
    signer.public_key().verify(signature, b"model")

    kem_key = mlkem.MLKEM768PrivateKey.generate()
    kem = import_key(kms, ring, "KEY_ENCAPSULATION", "ML_KEM_768")
    version = do_import(kms, kem, job, "ML_KEM_768", kem_key.private_bytes_raw())
    shared, ciphertext = kem_key.public_key().encapsulate()
    assert kms.decapsulate(request={"name": version.name, "ciphertext": ciphertext}).shared_secret == shared

    # SLH-DSA keys arrive as their FIPS 205 private key, which carries the public key.
    slh_public, slh_private = slh_dsa_sha2_128s.keygen()
    slh = import_key(kms, ring, "ASYMMETRIC_SIGN", "PQ_SIGN_SLH_DSA_SHA2_128S")
    version = do_import(kms, slh, job, "PQ_SIGN_SLH_DSA_SHA2_128S", slh_private)
    served = kms.get_public_key(request={"name": version.name, "public_key_format": "NIST_PQC"})
    assert served.public_key.data == slh_public
    signature = kms.asymmetric_sign(request={"name": version.name, "data": b"weights"}).signature
    slh_dsa_sha2_128s.verify(slh_public, b"weights", signature)
    # A private half with another key's public half does not verify: refused.
    mixed = slh_private[:32] + slh_dsa_sha2_128s.keygen()[0]
    assert do_import(kms, slh, job, "PQ_SIGN_SLH_DSA_SHA2_128S", mixed).state == State.IMPORT_FAILED

    # A seed of the wrong length (or a PKCS#8 key where a seed is expected) fails to import.
    wrong = do_import(kms, kem, job, "ML_KEM_768", os.urandom(32))
    assert wrong.state == State.IMPORT_FAILED
    assert "64-byte seed" in wrong.import_failure_reason


def test_imported_keys_are_the_caller_s_keys(kms: Client, ring: str) -> None:
    job = new_job(kms, ring, "RSA_OAEP_4096_SHA256_AES_256")

    ec_private = ec.generate_private_key(ec.SECP256R1())
    signing = import_key(kms, ring, "ASYMMETRIC_SIGN", "EC_SIGN_P256_SHA256")
    version = do_import(kms, signing, job, "EC_SIGN_P256_SHA256", pkcs8(ec_private))
    assert version.state == State.ENABLED
    served = serialization.load_pem_public_key(
        kms.get_public_key(request={"name": version.name}).pem.encode()
    )
    assert served == ec_private.public_key()
    signature = kms.asymmetric_sign(request={"name": version.name, "data": b"m"}).signature
    ec_private.public_key().verify(signature, b"m", ec.ECDSA(hashes.SHA256()))

    rsa_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    decrypting = import_key(kms, ring, "ASYMMETRIC_DECRYPT", "RSA_DECRYPT_OAEP_2048_SHA256")
    version = do_import(kms, decrypting, job, "RSA_DECRYPT_OAEP_2048_SHA256", pkcs8(rsa_private))
    sealed = rsa_private.public_key().encrypt(
        b"s", padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    )
    assert kms.asymmetric_decrypt(request={"name": version.name, "ciphertext": sealed}).plaintext == b"s"

    mac_key = os.urandom(32)
    mac = import_key(kms, ring, "MAC", "HMAC_SHA256")
    version = do_import(kms, mac, job, "HMAC_SHA256", mac_key)
    tag = kms.mac_sign(request={"name": version.name, "data": b"d"}).mac
    assert tag == hmac.new(mac_key, b"d", hashlib.sha256).digest()

    aes_key, iv, block = os.urandom(16), os.urandom(16), os.urandom(32)
    raw = import_key(kms, ring, "RAW_ENCRYPT_DECRYPT", "AES_128_CBC")
    version = do_import(kms, raw, job, "AES_128_CBC", aes_key)
    sealed = kms.raw_encrypt(request={"name": version.name, "plaintext": block, "initialization_vector": iv})
    encryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).encryptor()
    assert sealed.ciphertext == encryptor.update(block) + encryptor.finalize()
    # Keys that are not import_only take imports too, next to generated versions.
    assert not kms.get_crypto_key(name=raw).primary.name


def test_import_jobs_get_list_and_errors(kms: Client, ring: str) -> None:
    job = new_job(kms, ring)
    hsm_job = new_job(kms, ring, "RSA_OAEP_4096_SHA1_AES_256", "HSM")
    assert kms.get_import_job(name=job.name).public_key.pem == job.public_key.pem
    der = kms.get_import_job(request={"name": job.name, "public_key_format": "DER"})
    assert serialization.load_der_public_key(der.public_key.data) == serialization.load_pem_public_key(
        job.public_key.pem.encode()
    )
    listed = [j.name for j in kms.list_import_jobs(request={"parent": ring})]
    assert sorted([job.name, hsm_job.name]) == listed
    hsm_only = kms.list_import_jobs(request={"parent": ring, "filter": "protection_level=HSM"})
    assert [j.name for j in hsm_only] == [hsm_job.name]
    with pytest.raises(exceptions.NotFound):
        kms.get_import_job(name=job.name + "x")
    with pytest.raises(exceptions.AlreadyExists):
        kms.create_import_job(
            request={
                "parent": ring,
                "import_job_id": job.name.rsplit("/", 1)[1],
                "import_job": {"import_method": "RSA_OAEP_3072_SHA256", "protection_level": "SOFTWARE"},
            }
        )
    with pytest.raises(exceptions.InvalidArgument, match="not supported"):
        new_job(kms, ring, "IMPORT_METHOD_UNSPECIFIED")
    with pytest.raises(exceptions.InvalidArgument, match="protection_level"):
        new_job(kms, ring, level="EXTERNAL")

    with pytest.raises(exceptions.InvalidArgument, match="skip_initial_version_creation"):
        kms.create_crypto_key(
            request={
                "parent": ring,
                "crypto_key_id": "imp-bad",
                "crypto_key": {"purpose": "ENCRYPT_DECRYPT", "import_only": True},
            }
        )
    key = import_key(kms, ring, "ENCRYPT_DECRYPT", "GOOGLE_SYMMETRIC_ENCRYPTION")
    assert kms.get_crypto_key(name=key).import_only
    with pytest.raises(exceptions.FailedPrecondition, match="import_only"):
        kms.create_crypto_key_version(parent=key, crypto_key_version={})
    with pytest.raises(exceptions.InvalidArgument, match="not compatible with purpose ENCRYPT_DECRYPT"):
        do_import(kms, key, job, "HMAC_SHA256", os.urandom(32))
    with pytest.raises(exceptions.FailedPrecondition, match="protection level HSM"):
        do_import(kms, key, hsm_job, "GOOGLE_SYMMETRIC_ENCRYPTION", os.urandom(32))

    # Wrong material or wrapping: the version is IMPORT_FAILED with a reason, and can be re-imported.
    short = do_import(kms, key, job, "GOOGLE_SYMMETRIC_ENCRYPTION", os.urandom(16))
    assert short.state == State.IMPORT_FAILED and "32-byte" in short.import_failure_reason
    garbage = kms.import_crypto_key_version(
        request={"parent": key, "import_job": job.name, "algorithm": 1, "wrapped_key": os.urandom(600)}
    )
    assert garbage.state == State.IMPORT_FAILED and "unwrapped" in garbage.import_failure_reason
    assert not kms.get_crypto_key(name=key).primary.name
    material = os.urandom(32)
    fixed = do_import(kms, key, job, "GOOGLE_SYMMETRIC_ENCRYPTION", material, crypto_key_version=short.name)
    assert (fixed.name, fixed.state, fixed.import_failure_reason) == (short.name, State.ENABLED, "")
    with pytest.raises(exceptions.FailedPrecondition, match="only DESTROYED or IMPORT_FAILED"):
        do_import(kms, key, job, "GOOGLE_SYMMETRIC_ENCRYPTION", material, crypto_key_version=short.name)

    wrong_ec = pkcs8(ec.generate_private_key(ec.SECP384R1()))
    signing = import_key(kms, ring, "ASYMMETRIC_SIGN", "EC_SIGN_P256_SHA256")
    mismatch = do_import(kms, signing, job, "EC_SIGN_P256_SHA256", wrong_ec)
    assert mismatch.state == State.IMPORT_FAILED and "does not match" in mismatch.import_failure_reason


def test_reimport_into_destroyed_version_and_job_expiry(
    launch: Callable[..., Any], clients: Callable[..., Client], new_ring: Callable[..., str], tmp_path: Any
) -> None:
    data_dir = tmp_path / "kms"
    running = launch("--data-dir", str(data_dir))
    kms = clients(running)
    ring = new_ring(kms)
    job = new_job(kms, ring)
    key = import_key(kms, ring, "MAC", "HMAC_SHA256")
    material = os.urandom(32)
    version = do_import(kms, key, job, "HMAC_SHA256", material)
    kms.destroy_crypto_key_version(name=version.name)
    running.admin.advance(DAY + 1)  # the key's destroy_scheduled_duration: 30 days by default
    running.admin.advance(30 * DAY)
    assert kms.get_crypto_key_version(name=version.name).state == State.DESTROYED

    # The job has expired meanwhile: no public key, no more imports.
    expired = kms.get_import_job(name=job.name)
    assert expired.state == JobState.EXPIRED and expired.expire_event_time
    assert not expired.public_key.pem
    with pytest.raises(exceptions.FailedPrecondition, match="current state is: EXPIRED"):
        do_import(kms, key, job, "HMAC_SHA256", material, crypto_key_version=version.name)

    # Restart: the new job and the version's import record survive.
    assert running.stop() == 0
    kms = clients(launch("--data-dir", str(data_dir)))
    fresh = new_job(kms, ring)
    with pytest.raises(exceptions.FailedPrecondition, match="does not match the material"):
        do_import(kms, key, fresh, "HMAC_SHA256", os.urandom(32), crypto_key_version=version.name)
    again = do_import(kms, key, fresh, "HMAC_SHA256", material, crypto_key_version=version.name)
    assert (again.name, again.state, again.import_job) == (version.name, State.ENABLED, fresh.name)
    assert (
        kms.mac_sign(request={"name": version.name, "data": b"d"}).mac
        == hmac.new(material, b"d", hashlib.sha256).digest()
    )


def test_import_iam(iam_emulator: Any, owner: str, clients: Any, new_ring: Any) -> None:
    admin = clients(iam_emulator, owner)
    ring = new_ring(admin)
    job = new_job(admin, ring)
    key = import_key(admin, ring, "ENCRYPT_DECRYPT", "GOOGLE_SYMMETRIC_ENCRYPTION")
    importer, key_admin, both = (
        f"serviceAccount:{n}-{uuid.uuid4().hex[:6]}@p.iam.gserviceaccount.com" for n in "iab"
    )
    policy = admin.get_iam_policy(request={"resource": ring})
    policy.bindings.add(role="roles/cloudkms.importer", members=[importer, both])
    policy.bindings.add(role="roles/cloudkms.admin", members=[key_admin, both])
    admin.set_iam_policy(request={"resource": ring, "policy": policy})
    assert clients(iam_emulator, importer).get_import_job(name=job.name).state == JobState.ACTIVE
    for alone in (importer, key_admin):
        with pytest.raises(exceptions.PermissionDenied):
            do_import(clients(iam_emulator, alone), key, job, "GOOGLE_SYMMETRIC_ENCRYPTION", os.urandom(32))
    with pytest.raises(exceptions.PermissionDenied):
        new_job(clients(iam_emulator, importer), ring)
    assert new_job(clients(iam_emulator, key_admin), ring).state == JobState.ACTIVE
    done = do_import(clients(iam_emulator, both), key, job, "GOOGLE_SYMMETRIC_ENCRYPTION", os.urandom(32))
    assert done.state == State.ENABLED
