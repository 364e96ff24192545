"""Recipient envelopes: the data key wrapped locally for a KMS-held private key (docs/FORMAT.md §12).

A producer holding only a public key (an ASYMMETRIC_DECRYPT RSA-OAEP or a KEY_ENCAPSULATION ML-KEM
or X-Wing version's) wraps the fresh Tink keyset itself, with no KMS call and no credentials; only a holder of
the KMS decrypt/decapsulate permission on that exact version can unwrap it. Both kinds follow one
shape, so one reader rule covers them:

1. a 32-byte shared secret and its encapsulation: RSA-OAEP (MGF1 and label as Cloud KMS: the key's
   own hash, empty label) of 32 random bytes, or ML-KEM or X-Wing encapsulation to the public key
   (X-Wing: :mod:`kmsflow.kms.xwing`);
2. a wrapping key = HKDF-SHA256(secret, no salt, 32 bytes, ``info = aad.recipient_info(...)``),
   which binds the wrap kind, the envelope id and the exact CryptoKeyVersion name;
3. ``wrapped_keyset`` = 12-byte random nonce ‖ AES-256-GCM(wrapping key, nonce, keyset,
   AAD = ``aad.keyset_aad(envelope_id)``), the same AAD as a KMS-wrapped keyset.

Why not RSA-OAEP of the keyset itself: Cloud KMS's AsymmetricDecrypt takes no associated data (and
no OAEP label), so the envelope id could not be bound; going through a secret and an AEAD makes RSA
and the KEMs identical from step 2 on. Every primitive is a ``cryptography`` call.

Unwrapping is exactly one KMS call (AsymmetricDecrypt or Decapsulate on the record's version).
Anything inconsistent in what the record says — an encapsulation of the wrong size for its kind, a
secret KMS refused, a GCM tag that fails (other kind, version, envelope id, or edited bytes) — is a
:class:`TamperedError`; permission and version-state errors keep their KMS error types.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kmsflow.clock import record_time
from kmsflow.envelope.aad import keyset_aad, recipient_info
from kmsflow.envelope.errors import TamperedError
from kmsflow.envelope.record import RecipientWrap, WrapKind, encode_b64
from kmsflow.kms import asymmetric, xwing
from kmsflow.kms.crypto import key_of
from kmsflow.kms.errors import KmsInvalidArgumentError
from kmsflow.kms.public_key import PublicKey, PublicKeyError

if TYPE_CHECKING:
    from google.api_core.retry import Retry

    from kmsflow.envelope.keyset import DataKey
    from kmsflow.kms.crypto import CryptoClient

WRAP_KIND_OF: dict[str, WrapKind] = {
    "RSA_DECRYPT_OAEP_2048_SHA256": "rsa-oaep-sha256",
    "RSA_DECRYPT_OAEP_3072_SHA256": "rsa-oaep-sha256",
    "RSA_DECRYPT_OAEP_4096_SHA256": "rsa-oaep-sha256",
    "RSA_DECRYPT_OAEP_4096_SHA512": "rsa-oaep-sha512",
    "ML_KEM_768": "ml-kem-768",
    "ML_KEM_1024": "ml-kem-1024",
    "KEM_XWING": "x-wing",
}
"""The record's ``key.wrap`` for each Cloud KMS algorithm kmsflow wraps for."""

SECRET_SIZE = 32
NONCE_SIZE = 12
_TAG_SIZE = 16
_OAEP_HASH: dict[str, type[hashes.HashAlgorithm]] = {
    "rsa-oaep-sha256": hashes.SHA256,
    "rsa-oaep-sha512": hashes.SHA512,
}
_KEM_CIPHERTEXT_SIZE = {"ml-kem-768": 1088, "ml-kem-1024": 1568, "x-wing": xwing.CIPHERTEXT_SIZE}
_RSA_CIPHERTEXT_SIZES = (256, 384, 512)  # RSA-2048, -3072, -4096: a ciphertext is the modulus size


def wrap_key(public: PublicKey, key: DataKey, envelope_id: str) -> RecipientWrap:
    """The record's ``key`` for ``key`` wrapped for ``public`` (no KMS call)."""
    return wrap_keyset(public, key.serialize(), envelope_id)


def wrap_keyset(public: PublicKey, keyset: bytes, envelope_id: str) -> RecipientWrap:
    """:func:`wrap_key` for a keyset already serialized (rewrap wraps the bytes it unwrapped)."""
    kind = WRAP_KIND_OF.get(public.algorithm)
    if kind is None:
        raise PublicKeyError(f"{public.version_name}: kmsflow cannot wrap for {public.algorithm}")
    secret, encapsulated = _encapsulate(kind, public)
    nonce = os.urandom(NONCE_SIZE)
    sealed = AESGCM(_wrapping_key(secret, kind, envelope_id, public.version_name)).encrypt(
        nonce, keyset, keyset_aad(envelope_id)
    )
    return RecipientWrap(
        crypto_key=key_of(public.version_name),
        crypto_key_version=public.version_name,
        wrap=kind,
        encapsulated_key=encode_b64(encapsulated),
        wrapped_keyset=encode_b64(nonce + sealed),
        wrapped_at=record_time(),
    )


def _encapsulate(kind: WrapKind, public: PublicKey) -> tuple[bytes, bytes]:
    """(shared secret, its encapsulation) for ``public``; PublicKeyError if the key is unusable."""
    loaded = public.load_key(f"{public.version_name}: public key")
    if kind in _OAEP_HASH:
        digest = _OAEP_HASH[kind]
        secret = os.urandom(SECRET_SIZE)
        oaep = padding.OAEP(mgf=padding.MGF1(digest()), algorithm=digest(), label=None)
        return secret, bytes(loaded.encrypt(secret, oaep))
    secret, encapsulated = loaded.encapsulate()
    return bytes(secret), bytes(encapsulated)


def _wrapping_key(secret: bytes, kind: str, envelope_id: str, version_name: str) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=recipient_info(kind, envelope_id, version_name),
    )
    return hkdf.derive(secret)


def unwrap_keyset(
    client: CryptoClient,
    wrap: RecipientWrap,
    envelope_id: str,
    where: str,
    *,
    retry: Retry | None = None,
) -> bytes:
    """One AsymmetricDecrypt or Decapsulate, then the local AES-GCM unwrap: the serialized keyset,
    secret, in memory only (not yet known to be a keyset: parse it with ``DataKey.parse``)."""
    version = wrap.crypto_key_version
    if key_of(version) != wrap.crypto_key:
        raise TamperedError(f"{where}: record names key version {version} outside {wrap.crypto_key}")
    encapsulated, wrapped = wrap.encapsulated_bytes(), wrap.wrapped_bytes()
    if wrap.wrap in _OAEP_HASH:
        fits = len(encapsulated) in _RSA_CIPHERTEXT_SIZES
    else:
        fits = len(encapsulated) == _KEM_CIPHERTEXT_SIZE[wrap.wrap]
    if not fits or len(wrapped) < NONCE_SIZE + _TAG_SIZE:
        raise TamperedError(
            f"{where}: the wrapped data key of envelope {envelope_id} does not fit its kind {wrap.wrap}"
        )
    try:
        if wrap.wrap in _OAEP_HASH:
            secret = asymmetric.asymmetric_decrypt(client, version, encapsulated, retry=retry)
        else:
            secret = asymmetric.decapsulate(client, version, encapsulated, retry=retry)
    except KmsInvalidArgumentError as exc:
        raise TamperedError(
            f"{where}: KMS refused to unwrap the data key of envelope {envelope_id} "
            f"(wrapped key altered, or record moved between key versions): {exc}"
        ) from None
    try:
        if len(secret) != SECRET_SIZE:
            raise InvalidTag
        key = _wrapping_key(secret, wrap.wrap, envelope_id, version)
        return AESGCM(key).decrypt(wrapped[:NONCE_SIZE], wrapped[NONCE_SIZE:], keyset_aad(envelope_id))
    except InvalidTag:
        raise TamperedError(
            f"{where}: the data key of envelope {envelope_id} failed authentication (wrapped key, "
            "wrap kind, key version or envelope id altered, or record moved between envelopes)"
        ) from None
