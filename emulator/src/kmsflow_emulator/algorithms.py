"""Cloud KMS algorithms beyond GOOGLE_SYMMETRIC_ENCRYPTION, composed from ``cryptography`` only.

One ``Spec`` per ``CryptoKeyVersionAlgorithm`` the emulator serves: the purpose it belongs to, how
its private material is generated and stored (PKCS#8 DER for RSA/EC/Ed25519, the FIPS 203/204 seed
for ML-KEM/ML-DSA, raw key bytes for HMAC), and the one operation it supports. No cryptography is
written here: every primitive is a ``cryptography`` call, this module only picks parameters the way
Cloud KMS documents them (PSS salt = digest length, OAEP with MGF1 over the same hash and no label,
ECDSA signatures DER-encoded, ML-DSA pure mode with an empty context).

Material never leaves this module except as the bytes ``state`` persists; nothing here logs.
"""

from __future__ import annotations

import hmac as _hmac
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hpke, keywrap, serialization
from cryptography.hazmat.primitives import hmac as hmac_primitive
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, mlkem, padding, rsa, utils, x25519
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.ciphers import algorithms as ciphers
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.cloud.kms_v1.types import resources

Algorithm = resources.CryptoKeyVersion.CryptoKeyVersionAlgorithm
Purpose = resources.CryptoKey.CryptoKeyPurpose
KeyFormat = resources.PublicKey.PublicKeyFormat

_PUBLIC_KEY_PURPOSES = (Purpose.ASYMMETRIC_SIGN, Purpose.ASYMMETRIC_DECRYPT, Purpose.KEY_ENCAPSULATION)

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


class OperationError(ValueError):
    """The input does not fit the algorithm (wrong digest, undecryptable ciphertext, ...)."""


@dataclass(frozen=True)
class Spec:
    """How the emulator serves one algorithm.

    ``kind`` is the family: "rsa_sign_pss", "rsa_sign_pkcs1", "rsa_sign_raw", "rsa_decrypt",
    "ec_sign", "ed25519", "hmac", "ml_kem", "ml_dsa", "ml_dsa_mu", "raw_gcm", "raw_cbc",
    "raw_ctr", "xwing", "slh_dsa", "aes_kwp". ``digest`` names the hash a
    digest input must use (None: the algorithm signs data only); ``size`` is the RSA modulus bits,
    the HMAC or AES key bytes, or the ML-KEM/ML-DSA parameter set.
    """

    algorithm: int
    purpose: int
    kind: str
    digest: str | None = None
    size: int = 0
    curve: type[ec.EllipticCurve] | None = None

    @property
    def post_quantum(self) -> bool:
        return self.kind in ("ml_kem", "ml_dsa", "ml_dsa_mu", "slh_dsa", "xwing")

    @property
    def symmetric(self) -> bool:
        """Material is the raw key bytes (HMAC, raw AES, AES key wrapping)."""
        return self.kind in ("hmac", "aes_kwp") or self.kind.startswith("raw_")

    @property
    def asymmetric(self) -> bool:
        """Versions are generated asynchronously (PENDING_GENERATION) and have a public key."""
        return self.purpose in _PUBLIC_KEY_PURPOSES


def _specs() -> dict[int, Spec]:
    out: dict[int, Spec] = {}

    def add(name: str, purpose: int, kind: str, **kw: Any) -> None:
        algorithm = int(getattr(Algorithm, name))
        out[algorithm] = Spec(algorithm=algorithm, purpose=purpose, kind=kind, **kw)

    sign, decrypt = Purpose.ASYMMETRIC_SIGN, Purpose.ASYMMETRIC_DECRYPT
    for bits, digest in ((2048, "sha256"), (3072, "sha256"), (4096, "sha256"), (4096, "sha512")):
        suffix = f"{bits}_{digest.upper()}"
        add(f"RSA_SIGN_PSS_{suffix}", sign, "rsa_sign_pss", digest=digest, size=bits)
        add(f"RSA_SIGN_PKCS1_{suffix}", sign, "rsa_sign_pkcs1", digest=digest, size=bits)
        add(f"RSA_DECRYPT_OAEP_{suffix}", decrypt, "rsa_decrypt", digest=digest, size=bits)
    for bits in (2048, 3072, 4096):
        add(f"RSA_SIGN_RAW_PKCS1_{bits}", sign, "rsa_sign_raw", size=bits)
        add(f"RSA_DECRYPT_OAEP_{bits}_SHA1", decrypt, "rsa_decrypt", digest="sha1", size=bits)
    add("EC_SIGN_P256_SHA256", sign, "ec_sign", digest="sha256", curve=ec.SECP256R1)
    add("EC_SIGN_P384_SHA384", sign, "ec_sign", digest="sha384", curve=ec.SECP384R1)
    add("EC_SIGN_SECP256K1_SHA256", sign, "ec_sign", digest="sha256", curve=ec.SECP256K1)
    add("EC_SIGN_ED25519", sign, "ed25519")
    for digest, key_bytes in (("sha1", 20), ("sha224", 28), ("sha256", 32), ("sha384", 48), ("sha512", 64)):
        add(f"HMAC_{digest.upper()}", Purpose.MAC, "hmac", digest=digest, size=key_bytes)
    for mode in ("GCM", "CBC", "CTR"):
        for bits in (128, 256):
            add(f"AES_{bits}_{mode}", Purpose.RAW_ENCRYPT_DECRYPT, f"raw_{mode.lower()}", size=bits // 8)
    add("AES_256_KWP", Purpose.AES_WRAPPING, "aes_kwp", size=32)
    add("ML_KEM_768", Purpose.KEY_ENCAPSULATION, "ml_kem", size=768)
    add("ML_KEM_1024", Purpose.KEY_ENCAPSULATION, "ml_kem", size=1024)
    add("KEM_XWING", Purpose.KEY_ENCAPSULATION, "xwing")
    for level in (44, 65, 87):
        add(f"PQ_SIGN_ML_DSA_{level}", sign, "ml_dsa", size=level)
        add(f"PQ_SIGN_ML_DSA_{level}_EXTERNAL_MU", sign, "ml_dsa_mu", digest="external_mu", size=level)
    # Pure SLH-DSA only: pqcrypto signs HashSLH-DSA from the message, never from a given digest,
    # so PQ_SIGN_HASH_SLH_DSA_SHA2_128S_SHA256 (a digest input) cannot be served faithfully.
    add("PQ_SIGN_SLH_DSA_SHA2_128S", sign, "slh_dsa", size=128)
    return out


SPECS: dict[int, Spec] = _specs()

# The algorithms a purpose admits in the emulator (GOOGLE_SYMMETRIC_ENCRYPTION is backend's own).
ALGORITHMS_BY_PURPOSE: dict[int, list[int]] = {}
for _spec in SPECS.values():
    ALGORITHMS_BY_PURPOSE.setdefault(_spec.purpose, []).append(_spec.algorithm)

_ML_KEM_PRIVATE: dict[int, Any] = {768: mlkem.MLKEM768PrivateKey, 1024: mlkem.MLKEM1024PrivateKey}
_ML_DSA_PRIVATE: dict[int, Any] = {
    44: mldsa.MLDSA44PrivateKey,
    65: mldsa.MLDSA65PrivateKey,
    87: mldsa.MLDSA87PrivateKey,
}


def spec_for(algorithm: int) -> Spec | None:
    return SPECS.get(algorithm)


# ----------------------------------------------------------------------------- key material


def generate(spec: Spec) -> bytes:
    """Fresh private material for ``spec``, in the form ``state`` persists."""
    if spec.symmetric:
        return os.urandom(spec.size)
    if spec.kind == "xwing":
        return os.urandom(XWING_SEED_SIZE)
    if spec.kind == "ml_kem":
        return bytes(_ML_KEM_PRIVATE[spec.size].generate().private_bytes_raw())
    if spec.kind in ("ml_dsa", "ml_dsa_mu"):
        return bytes(_ML_DSA_PRIVATE[spec.size].generate().private_bytes_raw())
    if spec.kind == "slh_dsa":
        return bytes(_slh_dsa().keygen()[1])
    key: Any
    if spec.kind.startswith("rsa"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=spec.size)
    elif spec.kind == "ec_sign":
        assert spec.curve is not None
        key = ec.generate_private_key(spec.curve())
    elif spec.kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:  # pragma: no cover - every Spec kind is handled above
        raise AssertionError(spec.kind)
    return bytes(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _private(spec: Spec, material: bytes) -> Any:
    if spec.kind == "ml_kem":
        return _ML_KEM_PRIVATE[spec.size].from_seed_bytes(material)
    if spec.kind in ("ml_dsa", "ml_dsa_mu"):
        return _ML_DSA_PRIVATE[spec.size].from_seed_bytes(material)
    return _stored_private_key(material)


def _stored_private_key(material: bytes) -> Any:
    """A private key the emulator stored itself: generated here, or checked in full when imported
    (:func:`imported_material`). Re-checking an RSA key's primes on every load costs ~0.3 s for
    RSA-3072 and proves nothing new, so only the stored form is parsed."""
    return serialization.load_der_private_key(material, password=None, unsafe_skip_rsa_key_validation=True)


def _slh_dsa() -> Any:
    """SLH-DSA-SHA2-128s (FIPS 205) from ``pqcrypto`` (RustCrypto's implementation): ``cryptography``
    has no SLH-DSA. Imported on first use, so the rest of the emulator never needs it."""
    from pqcrypto.sign import slh_dsa_sha2_128s

    return slh_dsa_sha2_128s


def public_key(spec: Spec, material: bytes, key_format: int) -> bytes:
    """The public key in ``key_format`` (PEM, DER, NIST_PQC or XWING_RAW_BYTES); the caller checked
    compatibility."""
    if spec.kind == "xwing":
        return _xwing_expand(material)[2]
    if spec.kind == "slh_dsa":
        # FIPS 205 encodes SK as SK.seed || SK.prf || PK.seed || PK.root and PK as its second half.
        return material[len(material) // 2 :]
    public = _private(spec, material).public_key()
    if key_format == KeyFormat.NIST_PQC:
        return bytes(public.public_bytes_raw())
    encoding = serialization.Encoding.PEM if key_format == KeyFormat.PEM else serialization.Encoding.DER
    return bytes(public.public_bytes(encoding, serialization.PublicFormat.SubjectPublicKeyInfo))


def formats(spec: Spec) -> tuple[int, ...]:
    """The ``PublicKeyFormat`` values GetPublicKey serves for ``spec`` (UNSPECIFIED means PEM)."""
    if spec.kind == "xwing":
        return (KeyFormat.XWING_RAW_BYTES,)
    if spec.post_quantum:
        return (KeyFormat.NIST_PQC,)
    return (KeyFormat.PUBLIC_KEY_FORMAT_UNSPECIFIED, KeyFormat.PEM, KeyFormat.DER)


# ----------------------------------------------------------------------------- operations


def sign(spec: Spec, material: bytes, *, digest: bytes | None, data: bytes | None) -> bytes:
    """Sign a digest (computed with ``spec.digest``) or data; exactly one of them is given."""
    if spec.kind == "slh_dsa":
        assert data is not None
        return bytes(_slh_dsa().sign(material, data))
    key = _private(spec, material)
    if spec.kind == "ml_dsa":
        assert data is not None
        return bytes(key.sign(data))
    if spec.kind == "ml_dsa_mu":
        assert digest is not None
        return bytes(key.sign_mu(digest))
    if spec.kind == "ed25519":
        assert data is not None
        return bytes(key.sign(data))
    if spec.kind == "rsa_sign_raw":
        assert data is not None
        try:
            return bytes(key.sign(data, padding.PKCS1v15(), utils.NoDigestInfo()))
        except ValueError as exc:
            raise OperationError("The data is too long for this key's modulus.") from exc
    assert spec.digest is not None
    algorithm = _HASHES[spec.digest]()
    if digest is None:
        assert data is not None
        hasher = hashes.Hash(algorithm)
        hasher.update(data)
        digest = hasher.finalize()
    prehashed = utils.Prehashed(algorithm)
    if spec.kind == "ec_sign":
        return bytes(key.sign(digest, ec.ECDSA(prehashed)))
    if spec.kind == "rsa_sign_pss":
        pss = padding.PSS(mgf=padding.MGF1(_HASHES[spec.digest]()), salt_length=algorithm.digest_size)
        return bytes(key.sign(digest, pss, prehashed))
    if spec.kind == "rsa_sign_pkcs1":
        return bytes(key.sign(digest, padding.PKCS1v15(), prehashed))
    raise AssertionError(spec.kind)  # pragma: no cover


def decrypt(spec: Spec, material: bytes, ciphertext: bytes) -> bytes:
    """RSA-OAEP decryption (MGF1 with the same hash, empty label), as Cloud KMS does it."""
    assert spec.digest is not None
    oaep = padding.OAEP(
        mgf=padding.MGF1(_HASHES[spec.digest]()), algorithm=_HASHES[spec.digest](), label=None
    )
    try:
        return bytes(_private(spec, material).decrypt(ciphertext, oaep))
    except ValueError as exc:
        raise OperationError("Decryption failed.") from exc


def decapsulate(spec: Spec, material: bytes, ciphertext: bytes) -> bytes:
    if spec.kind == "xwing":
        return _xwing_decapsulate(material, ciphertext)
    try:
        return bytes(_private(spec, material).decapsulate(ciphertext))
    except ValueError as exc:
        raise OperationError("Decapsulation failed: the ciphertext is invalid.") from exc


# X-Wing (draft-connolly-cfrg-xwing-kem-08): ML-KEM-768 and X25519 from one 32-byte seed expanded
# with SHAKE256, shared secret SHA3-256(ss_M || ss_X || ct_X || pk_X || label). Composed from
# cryptography's ML-KEM, X25519, SHAKE256 and SHA3-256; checked against the draft's test vector.
# kmsflow's producer encapsulates with its own code (kmsflow.kms.xwing) and neither imports the
# other on purpose: this side plays Google's service, and two independent implementations pinned by
# the same vector (tests/xwing_vectors.py) are what catches a mistake in either.
XWING_SEED_SIZE = 32
XWING_CIPHERTEXT_SIZE = 1088 + 32
_XWING_LABEL = b"\\.//^\\"


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    hasher = hashes.Hash(algorithm)
    hasher.update(data)
    return bytes(hasher.finalize())


def _xwing_expand(seed: bytes) -> tuple[Any, x25519.X25519PrivateKey, bytes]:
    """(ML-KEM-768 private key, X25519 private key, public key pk_M || pk_X) from the seed."""
    expanded = _digest(hashes.SHAKE256(digest_size=96), seed)
    kem = mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64])
    dh = x25519.X25519PrivateKey.from_private_bytes(expanded[64:96])
    return kem, dh, bytes(kem.public_key().public_bytes_raw()) + dh.public_key().public_bytes_raw()


def _xwing_decapsulate(seed: bytes, ciphertext: bytes) -> bytes:
    if len(ciphertext) != XWING_CIPHERTEXT_SIZE:
        raise OperationError(
            f"Decapsulation failed: an X-Wing ciphertext is {XWING_CIPHERTEXT_SIZE} bytes, "
            f"got {len(ciphertext)}."
        )
    kem, dh, public = _xwing_expand(seed)
    ct_m, ct_x = ciphertext[:1088], ciphertext[1088:]
    try:
        ss_m = kem.decapsulate(ct_m)
        ss_x = dh.exchange(x25519.X25519PublicKey.from_public_bytes(ct_x))
    except ValueError as exc:
        raise OperationError("Decapsulation failed: the ciphertext is invalid.") from exc
    return _digest(hashes.SHA3_256(), ss_m + ss_x + ct_x + public[1184:] + _XWING_LABEL)


def mac(spec: Spec, material: bytes, data: bytes) -> bytes:
    assert spec.digest is not None
    h = hmac_primitive.HMAC(material, _HASHES[spec.digest]())
    h.update(data)
    return bytes(h.finalize())


def mac_verify(spec: Spec, material: bytes, data: bytes, tag: bytes) -> bool:
    return _hmac.compare_digest(mac(spec, material, data), tag)


# Raw symmetric encryption (RAW_ENCRYPT_DECRYPT): AES-GCM with a 12-byte IV the service generates
# and a 16-byte tag appended; AES-CBC without padding and AES-CTR with a 16-byte IV (the initial
# counter block), supplied by the caller or generated.
GCM_IV_SIZE = 12
GCM_TAG_LENGTH = 16
BLOCK_IV_SIZE = 16


def raw_iv_size(spec: Spec) -> int:
    return GCM_IV_SIZE if spec.kind == "raw_gcm" else BLOCK_IV_SIZE


def raw_tag_length(spec: Spec) -> int:
    return GCM_TAG_LENGTH if spec.kind == "raw_gcm" else 0


def raw_encrypt(spec: Spec, material: bytes, plaintext: bytes, aad: bytes, iv: bytes) -> bytes:
    """Encrypt under ``iv`` (already checked or generated by the caller)."""
    if spec.kind == "raw_gcm":
        return bytes(AESGCM(material).encrypt(iv, plaintext, aad or None))
    mode = modes.CBC(iv) if spec.kind == "raw_cbc" else modes.CTR(iv)
    encryptor = Cipher(ciphers.AES(material), mode).encryptor()
    return bytes(encryptor.update(plaintext) + encryptor.finalize())


def raw_decrypt(spec: Spec, material: bytes, ciphertext: bytes, aad: bytes, iv: bytes) -> bytes:
    if spec.kind == "raw_gcm":
        try:
            return bytes(AESGCM(material).decrypt(iv, ciphertext, aad or None))
        except InvalidTag as exc:
            raise OperationError("Decryption failed: the ciphertext is invalid.") from exc
    mode = modes.CBC(iv) if spec.kind == "raw_cbc" else modes.CTR(iv)
    decryptor = Cipher(ciphers.AES(material), mode).decryptor()
    return bytes(decryptor.update(ciphertext) + decryptor.finalize())


# ----------------------------------------------------------------------------- import


ImportMethod = resources.ImportJob.ImportMethod

# ImportMethod → (RSA bits, OAEP hash, whether an ephemeral AES-256 key wraps the material with KWP).
_RSA_IMPORT: dict[int, tuple[int, str, bool]] = {
    ImportMethod.RSA_OAEP_3072_SHA1_AES_256: (3072, "sha1", True),
    ImportMethod.RSA_OAEP_4096_SHA1_AES_256: (4096, "sha1", True),
    ImportMethod.RSA_OAEP_3072_SHA256_AES_256: (3072, "sha256", True),
    ImportMethod.RSA_OAEP_4096_SHA256_AES_256: (4096, "sha256", True),
    ImportMethod.RSA_OAEP_3072_SHA256: (3072, "sha256", False),
    ImportMethod.RSA_OAEP_4096_SHA256: (4096, "sha256", False),
}
# ImportMethod → the KEM's Spec (its wrapping key is generated and stored like a KEY_ENCAPSULATION
# version's). The suite is HPKE (RFC 9180) base mode with HKDF-SHA256 and AES-256-GCM, from
# ``cryptography``'s ``hpke`` module; its MLKEM768-X25519 KEM (draft-ietf-hpke-pq) is X-Wing.
_HPKE_IMPORT: dict[int, tuple[Any, Spec]] = {
    ImportMethod.HPKE_KEM_ML_KEM_768_HKDF_SHA256_AES_256_GCM: (
        hpke.KEM.MLKEM768,
        SPECS[Algorithm.ML_KEM_768],
    ),
    ImportMethod.HPKE_KEM_ML_KEM_1024_HKDF_SHA256_AES_256_GCM: (
        hpke.KEM.MLKEM1024,
        SPECS[Algorithm.ML_KEM_1024],
    ),
    ImportMethod.HPKE_KEM_XWING_HKDF_SHA256_AES_256_GCM: (
        hpke.KEM.MLKEM768_X25519,
        SPECS[Algorithm.KEM_XWING],
    ),
}
HPKE_IMPORT_INFO = b""
"""The HPKE ``info`` of an import wrapping. Cloud KMS's reference does not name one; the emulator
uses the empty string (RFC 9180's default), so a wrapper needs nothing but the job's public key."""
IMPORT_METHODS: tuple[int, ...] = (*_RSA_IMPORT, *_HPKE_IMPORT)


def new_wrapping_key(method: int) -> bytes:
    """A fresh wrapping key for an ImportJob: RSA as PKCS#8 DER, a KEM as its seed."""
    if method in _HPKE_IMPORT:
        return generate(_HPKE_IMPORT[method][1])
    bits = _RSA_IMPORT[method][0]
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return bytes(
        key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def wrapping_formats(method: int) -> tuple[int, ...]:
    """The ``PublicKeyFormat`` values an ImportJob serves, the default first: PEM for RSA, the raw
    FIPS 203 bytes for ML-KEM, the draft's raw bytes for X-Wing (GetImportJobRequest's reference)."""
    if method in _HPKE_IMPORT:
        return formats(_HPKE_IMPORT[method][1])
    return (KeyFormat.PEM, KeyFormat.DER)


def wrapping_public_key(method: int, material: bytes, key_format: int) -> bytes:
    """An ImportJob's public wrapping key in ``key_format`` (one of :func:`wrapping_formats`)."""
    if method in _HPKE_IMPORT:
        return public_key(_HPKE_IMPORT[method][1], material, key_format)
    public = _stored_private_key(material).public_key()
    encoding = serialization.Encoding.DER if key_format == KeyFormat.DER else serialization.Encoding.PEM
    return bytes(public.public_bytes(encoding, serialization.PublicFormat.SubjectPublicKeyInfo))


def unwrap(method: int, material: bytes, wrapped: bytes) -> bytes:
    """Undo the ImportJob wrapping: HPKE single-shot open (enc || ciphertext), RSA-OAEP (MGF1 same
    hash, empty label) of the key itself, or of an ephemeral AES-256 key followed by the key under
    AES-KWP (RFC 5649, CKM_RSA_AES_KEY_WRAP)."""
    if method in _HPKE_IMPORT:
        return _hpke_open(method, material, wrapped)
    bits, digest, with_aes = _RSA_IMPORT[method]
    key = _stored_private_key(material)
    assert isinstance(key, rsa.RSAPrivateKey)
    oaep = padding.OAEP(mgf=padding.MGF1(_HASHES[digest]()), algorithm=_HASHES[digest](), label=None)
    head = bits // 8
    try:
        if not with_aes:
            return bytes(key.decrypt(wrapped, oaep))
        if len(wrapped) <= head:
            raise OperationError("The wrapped key is too short for this import method.")
        ephemeral = key.decrypt(wrapped[:head], oaep)
        if len(ephemeral) != 32:
            raise OperationError("The ephemeral wrapping key must be an AES-256 key.")
        return bytes(keywrap.aes_key_unwrap_with_padding(ephemeral, wrapped[head:]))
    except (ValueError, keywrap.InvalidUnwrap) as exc:
        raise OperationError("The wrapped key could not be unwrapped with this ImportJob's key.") from exc


def _hpke_open(method: int, material: bytes, wrapped: bytes) -> bytes:
    kem, spec = _HPKE_IMPORT[method]
    private: Any
    if spec.kind == "xwing":
        ml_kem, dh, _ = _xwing_expand(material)
        private = hpke.MLKEM768X25519PrivateKey(ml_kem, dh)
    else:
        private = _private(spec, material)
    suite = hpke.Suite(kem, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    try:
        return bytes(suite.decrypt(wrapped, private, info=HPKE_IMPORT_INFO))
    except (ValueError, InvalidTag) as exc:
        raise OperationError("The wrapped key could not be unwrapped with this ImportJob's key.") from exc


def trusted_wrap(wrapping: bytes, material: bytes) -> bytes:
    """``material`` (in its import form) under an AES_256_KWP key: AES key wrap with padding,
    RFC 5649 (ExportTrustedKeyWrappedCryptoKeyVersion)."""
    return bytes(keywrap.aes_key_wrap_with_padding(wrapping, material))


def trusted_unwrap(wrapping: bytes, wrapped: bytes) -> bytes:
    """Undo :func:`trusted_wrap` (ImportTrustedKeyWrappedCryptoKeyVersion)."""
    try:
        return bytes(keywrap.aes_key_unwrap_with_padding(wrapping, wrapped))
    except (ValueError, keywrap.InvalidUnwrap) as exc:
        raise OperationError("The wrapped key could not be unwrapped with the importing key.") from exc


def imported_material(spec: Spec | None, key_bytes: bytes) -> bytes:
    """Check unwrapped key material against the algorithm; return it in the form ``state`` keeps.

    ``spec`` None is GOOGLE_SYMMETRIC_ENCRYPTION (a 32-byte AES key). Asymmetric keys arrive as
    PKCS#8 DER and must be of the algorithm's type and size."""
    if spec is None:
        if len(key_bytes) != 32:
            raise OperationError(f"GOOGLE_SYMMETRIC_ENCRYPTION takes a 32-byte key, got {len(key_bytes)}.")
        return key_bytes
    if spec.symmetric:
        if len(key_bytes) != spec.size:
            raise OperationError(f"This algorithm takes a {spec.size}-byte key, got {len(key_bytes)}.")
        return key_bytes
    if spec.post_quantum:
        return _imported_seed(spec, key_bytes)
    try:
        key = serialization.load_der_private_key(key_bytes, password=None)
    except (ValueError, TypeError) as exc:
        raise OperationError("The key material is not a PKCS#8 DER private key.") from exc
    if spec.kind.startswith("rsa"):
        ok = isinstance(key, rsa.RSAPrivateKey) and key.key_size == spec.size
    elif spec.kind == "ec_sign":
        assert spec.curve is not None
        ok = isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == spec.curve().name
    else:
        ok = isinstance(key, ed25519.Ed25519PrivateKey)
    if not ok:
        raise OperationError("The key material does not match the algorithm (type or size).")
    return bytes(
        key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _imported_seed(spec: Spec, key_bytes: bytes) -> bytes:
    """Post-quantum keys are imported as the seed they are stored as: FIPS 203's 64-byte (d, z)
    for ML-KEM, FIPS 204's 32-byte xi for ML-DSA, the draft's 32-byte seed for X-Wing."""
    if spec.kind == "slh_dsa":
        return _imported_slh_dsa(key_bytes)
    size = XWING_SEED_SIZE if spec.kind == "xwing" else 64 if spec.kind == "ml_kem" else 32
    if len(key_bytes) != size:
        raise OperationError(
            f"{Algorithm(spec.algorithm).name} key material is its {size}-byte seed, "
            f"got {len(key_bytes)} bytes."
        )
    if spec.kind != "xwing":
        _private(spec, key_bytes)  # every seed of the right length expands to a key
    return key_bytes


def _imported_slh_dsa(key_bytes: bytes) -> bytes:
    """An SLH-DSA key is imported as its FIPS 205 private key (64 bytes for SHA2-128s), which holds
    the public key: a test signature must verify under it, or the halves do not belong together."""
    scheme = _slh_dsa()
    if len(key_bytes) != scheme.SECRET_KEY_SIZE:
        raise OperationError(
            f"PQ_SIGN_SLH_DSA_SHA2_128S key material is its {scheme.SECRET_KEY_SIZE}-byte private key, "
            f"got {len(key_bytes)} bytes."
        )
    probe = b"kmsflow-emulator import check"
    try:
        scheme.verify(key_bytes[len(key_bytes) // 2 :], probe, scheme.sign(key_bytes, probe))
    except Exception as exc:  # pqcrypto's InvalidSignatureError and malformed-key errors
        raise OperationError(
            "The SLH-DSA private key is inconsistent (its public half does not verify)."
        ) from exc
    return key_bytes


def digest_size(spec: Spec) -> int:
    if spec.digest == "external_mu":
        return 64
    assert spec.digest is not None
    return int(_HASHES[spec.digest]().digest_size)


__all__ = [
    "ALGORITHMS_BY_PURPOSE",
    "SPECS",
    "OperationError",
    "Spec",
    "decapsulate",
    "decrypt",
    "digest_size",
    "formats",
    "generate",
    "imported_material",
    "mac",
    "mac_verify",
    "new_wrapping_key",
    "public_key",
    "raw_decrypt",
    "raw_encrypt",
    "raw_iv_size",
    "raw_tag_length",
    "sign",
    "spec_for",
    "trusted_unwrap",
    "trusted_wrap",
    "unwrap",
    "wrapping_formats",
    "wrapping_public_key",
]
